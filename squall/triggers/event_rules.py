"""EventBridge rules, targets and custom event buses, delivering to Lambda functions.

A rule has an ``EventPattern`` (events put on its bus that match it go to its targets; the
grammar is event filtering's, ``squall/sources/filters.py``) or a ``ScheduleExpression`` (the
durable ticker, ``scheduler.py``, fires it with Lambda's scheduled-event payload). Every
delivery is an asynchronous invocation through the durable queue (retries, event age,
destinations and DLQ apply), made only where the function's resource-based policy lets
``events.amazonaws.com`` call ``lambda:InvokeFunction`` with the rule's ARN as ``SourceArn``.
A denied or failed delivery is counted (``stats``) and logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from squall.arn import FunctionRef
from squall.auth.policy import Caller, evaluate
from squall.errors import LambdaError
from squall.sources.filters import FilterError, Filters, parse_pattern
from squall.store.event_rules import EventRuleRepository, StoredRule
from squall.triggers.deliveries import Deliveries
from squall.triggers.schedule_expressions import ScheduleError
from squall.triggers.schedule_expressions import parse as parse_schedule
from squall.triggers.scheduler import Clock, Ticker, next_tick

log = logging.getLogger("squall.eventbridge")

SERVICE = "events.amazonaws.com"
EVENTS = Caller(arn=SERVICE, account="", kind="service", service=SERVICE)
DEFAULT_BUS = "default"
MAX_TARGETS_PER_RULE = 5
MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
MAX_PATTERN_LENGTH = 4096

_NAME = re.compile(r"[\.\-_A-Za-z0-9]{1,64}")
_BUS_NAME = re.compile(r"[/\.\-_A-Za-z0-9]{1,256}")
_BUS_ARN = re.compile(r"arn:aws[\w-]*:events:[a-z]+-[a-z]+-[\w-]+:[0-9]{12}:event-bus/([/\.\-_A-Za-z0-9]+)")
_LAMBDA_ARN = re.compile(r"arn:aws:lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})(?::([$A-Za-z0-9_-]{1,128}))?")
_PATH_KEY = re.compile(r"[A-Za-z0-9_\-]{1,256}")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_MISSING: Any = object()


ROUTES_TTL = 1.0  # seconds a cached read of a bus's rules and targets is used


class EventsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _validation(message: str) -> EventsError:
    return EventsError("ValidationException", message)


def _constraint(value: Any, field: str, constraint: str) -> EventsError:
    return _validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                       f"{constraint}")


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- JSONPath (the subset EventBridge's InputPath and InputPathsMap use) -----------------------
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def compile_path(path: Any) -> tuple[str | int, ...]:
    if not isinstance(path, str) or not path.startswith("$"):
        raise ValueError(f"{path!r} is not a JSONPath starting with $")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"{path!r} is not a valid JSONPath")
        name, index, quoted, double = match.groups()
        steps.append(int(index) if index is not None else (name or quoted or double or ""))
        position = match.end()
    return tuple(steps)


def read_path(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document``; ``_MISSING`` when there is none."""
    value = document
    for step in compile_path(path):
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


# ---- input transformation --------------------------------------------------------------------
def render_template(template: str, values: dict[str, Any]) -> bytes:
    """``InputTemplate`` with each ``<name>`` replaced: inside a JSON string by the value's text
    (a string's characters, escaped; anything else its JSON), elsewhere by the value's JSON
    (``null`` when the path found nothing). Names not in ``values`` stay as written."""
    out: list[str] = []
    in_string = False
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        in_string = _string_state(template, position, match.start(), in_string)
        out.append(template[position:match.start()])
        name = match.group(1)
        position = match.end()
        if name not in values:
            out.append(match.group(0))
            continue
        value = values[name]
        if in_string:
            text = "" if value is _MISSING else value if isinstance(value, str) else orjson.dumps(value).decode()
            out.append(orjson.dumps(text).decode()[1:-1])
        else:
            out.append("null" if value is _MISSING else orjson.dumps(value).decode())
    out.append(template[position:])
    return "".join(out).encode()


def _string_state(text: str, start: int, end: int, in_string: bool) -> bool:
    """Whether position ``end`` is inside a JSON string, given the state at ``start``."""
    escaped = False
    for char in text[start:end]:
        if escaped:
            escaped = False
        elif char == "\\" and in_string:
            escaped = True
        elif char == '"':
            in_string = not in_string
    return in_string


def target_payload(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str) -> bytes:
    """What a target receives: ``Input`` as given, the ``InputPath`` part of the event, the
    ``InputTransformer`` rendering, or the whole event."""
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath"):
        value = read_path(event, target["InputPath"])
        return b"null" if value is _MISSING else orjson.dumps(value)
    transformer = target.get("InputTransformer")
    if transformer:
        values = {key: read_path(event, path) for key, path in (transformer.get("InputPathsMap") or {}).items()}
        values["aws.events.rule-arn"] = rule_arn
        values["aws.events.rule-name"] = rule_name
        values["aws.events.event.ingestion-time"] = event.get("time", _MISSING)
        values["aws.events.event"] = event
        values["aws.events.event.json"] = event
        return render_template(transformer["InputTemplate"], values)
    return orjson.dumps(event)


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> Filters:
    """A rule's ``EventPattern`` (EventsError ``InvalidEventPatternException`` when invalid)."""
    try:
        filters = parse_pattern(text)
        document = orjson.loads(text)
    except FilterError as exc:
        reason = str(exc).removeprefix("Filter 1: ").removeprefix("Filter 1")
        raise EventsError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {reason}") from None
    if not document:
        raise EventsError("InvalidEventPatternException", "Event pattern is not valid. Reason: Empty event pattern.")
    return filters


# ---- the service ---------------------------------------------------------------------------
class EventRules:
    def __init__(self, repo: EventRuleRepository, region: str, account_id: str,
                 accept: Callable[[FunctionRef, bytes, str], Awaitable[None]],
                 resource_policy: Callable[[str], Any], clock: Clock, interval: float = 1.0,
                 grace: float = 30.0, deliveries: Deliveries | None = None) -> None:
        self.repo = repo
        self.deliveries = deliveries or Deliveries()
        self._routes: dict[str, tuple[float, list[tuple[StoredRule, list[dict[str, Any]]]]]] = {}
        self._known_buses: dict[str, tuple[float, bool]] = {}
        self.region = region
        self.account_id = account_id
        self.accept = accept
        self.resource_policy = resource_policy
        self.clock = clock  # the schedule clock (created_at, ticks)
        self.ticker = Ticker(repo, self.fire_tick, clock, interval, grace)
        self.stats = {"events": 0, "delivered": 0, "denied": 0, "failed": 0}

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()

    def report(self) -> dict[str, int]:
        return {**self.stats, "ticks_fired": self.ticker.fired, "ticks_missed": self.ticker.skipped}

    # ---- names and ARNs -------------------------------------------------------------------
    def bus_arn(self, bus: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account_id}:event-bus/{bus}"

    def rule_arn(self, bus: str, name: str) -> str:
        middle = "" if bus == DEFAULT_BUS else f"{bus}/"
        return f"arn:aws:events:{self.region}:{self.account_id}:rule/{middle}{name}"

    def bus_name(self, value: Any, *, field: str = "eventBusName") -> str:
        """A bus given by name or ARN (``default`` when absent), without checking it exists."""
        if value is None or value == "":
            return DEFAULT_BUS
        if not isinstance(value, str):
            raise _validation(f"{field} must be a string")
        match = _BUS_ARN.fullmatch(value)
        name = match.group(1) if match else value
        if not _BUS_NAME.fullmatch(name):
            raise _constraint(value, field, r"Member must satisfy regular expression pattern: "
                              r"(arn:aws[\w-]*:events:[a-z]+-[a-z]+-[\w-]+:[0-9]{12}:event-bus\/)?[/\.\-_A-Za-z0-9]+")
        return name

    def bus_exists(self, bus: str) -> bool:
        return bus == DEFAULT_BUS or self.repo.get_bus(bus) is not None

    def _existing_bus(self, value: Any) -> str:
        bus = self.bus_name(value)
        if not self.bus_exists(bus):
            raise EventsError("ResourceNotFoundException", f"Event bus {bus} does not exist.")
        return bus

    @staticmethod
    def _name(value: Any, field: str = "name") -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise _constraint(value, field, r"Member must satisfy regular expression pattern: [\.\-_A-Za-z0-9]+")
        return value

    def _rule(self, params: dict[str, Any], key: str = "Name") -> StoredRule:
        bus = self._existing_bus(params.get("EventBusName"))
        name = self._name(params.get(key), key.lower())
        rule = self.repo.get_rule(bus, name)
        if rule is None:
            raise EventsError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus {bus}.")
        return rule

    def _describe(self, rule: StoredRule) -> dict[str, Any]:
        doc = rule.document
        shown = {"Name": rule.name, "Arn": self.rule_arn(rule.bus, rule.name), "State": doc.get("State", "ENABLED"),
                 "EventBusName": rule.bus}
        for key in ("EventPattern", "ScheduleExpression", "Description", "RoleArn"):
            if doc.get(key) is not None:
                shown[key] = doc[key]
        return shown

    # ---- rules ----------------------------------------------------------------------------
    def put_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._existing_bus(params.get("EventBusName"))
        name = self._name(params.get("Name"))
        pattern, schedule = params.get("EventPattern"), params.get("ScheduleExpression")
        if not pattern and not schedule:
            raise _validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if pattern is not None:
            if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
                raise EventsError("InvalidEventPatternException",
                                  f"Event pattern is not valid. Reason: longer than {MAX_PATTERN_LENGTH} characters.")
            compile_pattern(pattern)
        if schedule is not None:
            if bus != DEFAULT_BUS:
                raise _validation("ScheduleExpression is supported only on the default event bus.")
            try:
                parse_schedule(schedule, "UTC")
            except ScheduleError as exc:
                raise _validation(exc.message) from None
        state = params.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"):
            raise _constraint(state, "state", "Member must satisfy enum value set: [ENABLED, DISABLED, "
                              "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]")
        document = {"EventPattern": pattern, "ScheduleExpression": schedule, "State": state,
                    "Description": params.get("Description"), "RoleArn": params.get("RoleArn")}
        now = self.clock()
        existing = self.repo.get_rule(bus, name)
        created_at, tick = now, None
        if existing is not None and existing.document.get("ScheduleExpression") == schedule:
            created_at, tick = existing.created_at, existing.next_tick  # the same schedule goes on
        if schedule and state != "DISABLED" and tick is None:
            tick = next_tick(schedule, created_at, now)
        if state == "DISABLED":
            tick = None
        self.repo.put_rule(bus, name, document, created_at, tick)
        self._invalidate()
        return {"RuleArn": self.rule_arn(bus, name)}

    def describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params)
        return {**self._describe(rule), "CreatedBy": self.account_id}

    def list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self._existing_bus(params.get("EventBusName"))
        rules = [self._describe(r) for r in self.repo.list_rules(bus, params.get("NamePrefix") or "")]
        page, token = _page(rules, params)
        return {"Rules": page, **({"NextToken": token} if token else {})}

    def enable_rule(self, params: dict[str, Any]) -> None:
        self._set_state(params, "ENABLED")

    def disable_rule(self, params: dict[str, Any]) -> None:
        self._set_state(params, "DISABLED")

    def _set_state(self, params: dict[str, Any], state: str) -> None:
        rule = self._rule(params)
        document = {**rule.document, "State": state}
        tick = rule.next_tick
        schedule = document.get("ScheduleExpression")
        if state == "DISABLED":
            tick = None
        elif schedule and tick is None:
            tick = next_tick(schedule, rule.created_at, self.clock())
        self.repo.put_rule(rule.bus, rule.name, document, rule.created_at, tick)
        self._invalidate()

    def delete_rule(self, params: dict[str, Any]) -> None:
        bus = self._existing_bus(params.get("EventBusName"))
        name = self._name(params.get("Name"))
        if self.repo.get_rule(bus, name) is None:
            return  # as on AWS: deleting a rule that is not there succeeds
        if self.repo.targets(bus, name) and not params.get("Force"):
            raise _validation("Rule can't be deleted since it has targets.")
        self.repo.delete_rule(bus, name)
        self._invalidate()

    # ---- targets --------------------------------------------------------------------------
    def put_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params, "Rule")
        targets = params.get("Targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 10:
            raise _constraint("...", "targets", "Member must have length between 1 and 10")
        accepted: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for target in targets:
            if not isinstance(target, dict):
                raise _validation("A target must be an object.")
            self._name(target.get("Id"), "targets.member.id")
            inputs = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
            if len(inputs) > 1:
                raise _validation("Only one of Input, InputPath, or InputTransformer must be provided.")
            self._check_input(target)
            arn = target.get("Arn")
            match = _LAMBDA_ARN.fullmatch(arn) if isinstance(arn, str) else None
            if match is None or match.group(1) != self.region or match.group(2) != self.account_id:
                failed.append({"TargetId": target["Id"], "ErrorCode": "ValidationException",
                               "ErrorMessage": f"Target {target['Id']}: Squall delivers only to Lambda functions of "
                                               f"account {self.account_id} in {self.region}, not to {arn}."})
                continue
            accepted.append({k: target[k] for k in ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer")
                             if target.get(k) is not None})
        have = {t["Id"] for t in self.repo.targets(rule.bus, rule.name)}
        if len(have | {t["Id"] for t in accepted}) > MAX_TARGETS_PER_RULE:
            raise EventsError("LimitExceededException", "The requested resource exceeds the maximum number allowed.")
        if accepted:
            self.repo.put_targets(rule.bus, rule.name, accepted)
            self._invalidate()
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    @staticmethod
    def _check_input(target: dict[str, Any]) -> None:
        if target.get("Input") is not None:
            try:
                orjson.loads(target["Input"])
            except (orjson.JSONDecodeError, TypeError):
                raise _validation(f"Target {target['Id']}: Input is not valid JSON text.") from None
        if target.get("InputPath") is not None:
            try:
                compile_path(target["InputPath"])
            except ValueError as exc:
                raise _validation(f"Target {target['Id']}: InputPath is not valid: {exc}.") from None
        transformer = target.get("InputTransformer")
        if transformer is not None:
            if not isinstance(transformer, dict) or not isinstance(transformer.get("InputTemplate"), str):
                raise _validation(f"Target {target['Id']}: InputTransformer requires an InputTemplate.")
            paths = transformer.get("InputPathsMap") or {}
            if not isinstance(paths, dict) or len(paths) > 100:
                raise _validation(f"Target {target['Id']}: InputPathsMap takes at most 100 entries.")
            for key, path in paths.items():
                if not _PATH_KEY.fullmatch(key) or key.startswith("aws."):
                    raise _validation(f"Target {target['Id']}: InputPathsMap key {key!r} is not valid.")
                try:
                    compile_path(path)
                except ValueError as exc:
                    raise _validation(f"Target {target['Id']}: InputPathsMap {key}: {exc}.") from None

    def remove_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params, "Rule")
        ids = params.get("Ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _constraint("...", "ids", "Member must have length between 1 and 100")
        self.repo.remove_targets(rule.bus, rule.name, [self._name(i, "ids.member") for i in ids])
        self._invalidate()
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params, "Rule")
        page, token = _page(self.repo.targets(rule.bus, rule.name), params)
        return {"Targets": page, **({"NextToken": token} if token else {})}

    # ---- buses ----------------------------------------------------------------------------
    def create_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("Name")
        if not isinstance(name, str) or not _BUS_NAME.fullmatch(name):
            raise _constraint(name, "name", r"Member must satisfy regular expression pattern: [/\.\-_A-Za-z0-9]+")
        if name.startswith("aws."):
            raise _validation("Event bus names starting with aws. are for partner event sources.")
        if params.get("EventSourceName"):
            raise _validation("Squall has no partner event sources.")
        description = params.get("Description")
        self._invalidate()
        if name == DEFAULT_BUS or not self.repo.create_bus(name, description, time.time()):
            raise EventsError("ResourceAlreadyExistsException", f"Event bus {name} already exists.")
        answer: dict[str, Any] = {"EventBusArn": self.bus_arn(name)}
        if description:
            answer["Description"] = description
        return answer

    def describe_event_bus(self, params: dict[str, Any]) -> dict[str, Any]:
        bus = self.bus_name(params.get("Name"), field="name")
        if bus == DEFAULT_BUS:
            return {"Name": bus, "Arn": self.bus_arn(bus)}
        found = self.repo.get_bus(bus)
        if found is None:
            raise EventsError("ResourceNotFoundException", f"Event bus {bus} does not exist.")
        description, created = found
        answer: dict[str, Any] = {"Name": bus, "Arn": self.bus_arn(bus), "CreationTime": created,
                                  "LastModifiedTime": created}
        if description:
            answer["Description"] = description
        return answer

    def list_event_buses(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        buses: list[dict[str, Any]] = [{"Name": DEFAULT_BUS, "Arn": self.bus_arn(DEFAULT_BUS)}]
        for name, description, created in self.repo.list_buses():
            entry: dict[str, Any] = {"Name": name, "Arn": self.bus_arn(name), "CreationTime": created,
                                     "LastModifiedTime": created}
            if description:
                entry["Description"] = description
            buses.append(entry)
        page, token = _page([b for b in buses if b["Name"].startswith(prefix)], params)
        return {"EventBuses": page, **({"NextToken": token} if token else {})}

    def delete_event_bus(self, params: dict[str, Any]) -> None:
        bus = self.bus_name(params.get("Name"), field="name")
        if bus == DEFAULT_BUS:
            raise _validation("Cannot delete event bus default.")
        if self.repo.rule_count(bus):
            raise _validation(f"Cannot delete event bus {bus}: delete its rules first.")
        self.repo.delete_bus(bus)
        self._invalidate()

    # ---- events ---------------------------------------------------------------------------
    async def put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = params.get("Entries")
        if not isinstance(entries, list) or not entries:
            raise _constraint("[]", "entries", "Member must have length greater than or equal to 1")
        if len(entries) > MAX_ENTRIES:
            raise _constraint("[...]", "entries", f"Member must have length less than or equal to {MAX_ENTRIES}")
        if sum(_entry_size(e) for e in entries) > MAX_REQUEST_BYTES:
            raise _validation("Total size of the entries in the request is over the limit.")
        answers: list[dict[str, Any]] = []
        deliveries = []
        for entry in entries:
            bus = self._entry_bus(entry)
            if bus is not None and bus != DEFAULT_BUS:
                await self._bus_known(bus)  # fills the cache _event_of reads (it refuses a missing bus)
            try:
                event, bus = self._event_of(entry, self._known_buses)
            except EventsError as exc:
                answers.append({"ErrorCode": exc.code, "ErrorMessage": exc.message})
                continue
            self.stats["events"] += 1
            for rule, targets in await self._routes_of(bus):
                if compile_pattern(rule.document["EventPattern"]).matches(event):
                    deliveries.extend(self.deliver(rule, target, event) for target in targets)
            answers.append({"EventId": event["id"]})
        # Every matched target's invocation queued at once: they share the queue's group commits,
        # and the answer comes after all of them are durable.
        await asyncio.gather(*deliveries)
        return {"FailedEntryCount": sum(1 for a in answers if "ErrorCode" in a), "Entries": answers}

    # ---- routing cache ----------------------------------------------------------------------
    # PutEvents reads rules and buses from memory; every change made here empties the cache, and
    # a read older than ROUTES_TTL is refreshed (changes made by another process sharing the
    # database are seen within that time).
    def _invalidate(self) -> None:
        self._routes.clear()
        self._known_buses.clear()

    def _entry_bus(self, entry: Any) -> str | None:
        try:
            return self.bus_name(entry.get("EventBusName")) if isinstance(entry, dict) else None
        except EventsError:
            return None

    async def _bus_known(self, bus: str) -> bool:
        seen = self._known_buses.get(bus)
        if seen is None or time.monotonic() - seen[0] > ROUTES_TTL:
            exists = await asyncio.to_thread(self.bus_exists, bus)
            self._known_buses[bus] = seen = (time.monotonic(), exists)
        return seen[1]

    async def _routes_of(self, bus: str) -> list[tuple[StoredRule, list[dict[str, Any]]]]:
        cached = self._routes.get(bus)
        if cached is None or time.monotonic() - cached[0] > ROUTES_TTL:
            cached = self._routes[bus] = (time.monotonic(), await asyncio.to_thread(self._pattern_rules, bus))
        return cached[1]

    def _event_of(self, entry: Any, known: dict[str, tuple[float, bool]] | None = None) -> tuple[dict[str, Any], str]:
        if not isinstance(entry, dict):
            raise EventsError("InvalidArgument", "An entry must be an object.")
        for key in ("Source", "DetailType", "Detail"):
            if not entry.get(key) or not isinstance(entry[key], str):
                raise EventsError("InvalidArgument", f"Parameter {key} is not valid. Reason: {key} is a required argument.")
        try:
            detail = orjson.loads(entry["Detail"])
        except orjson.JSONDecodeError:
            detail = None
        if not isinstance(detail, dict):
            raise EventsError("MalformedDetail", "Detail is malformed.")
        bus = self.bus_name(entry.get("EventBusName"))
        exists = bus == DEFAULT_BUS or (known[bus][1] if known is not None and bus in known else self.bus_exists(bus))
        if not exists:
            raise EventsError("ResourceNotFoundException", f"Event bus {bus} does not exist.")
        moment = entry.get("Time")
        when = float(moment) if isinstance(moment, (int, float)) and not isinstance(moment, bool) else time.time()
        resources = entry.get("Resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise EventsError("InvalidArgument", "Parameter Resources is not valid.")
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": entry["DetailType"], "source": entry["Source"],
                 "account": self.account_id, "time": iso_time(when), "region": self.region, "resources": resources,
                 "detail": detail}
        return event, bus

    def _pattern_rules(self, bus: str) -> list[tuple[StoredRule, list[dict[str, Any]]]]:
        targets = self.repo.targets_of_bus(bus)
        return [(r, targets[r.name]) for r in self.repo.list_rules(bus)
                if r.document.get("EventPattern") and r.document.get("State") != "DISABLED" and targets.get(r.name)]

    # ---- delivery -------------------------------------------------------------------------
    async def fire_tick(self, rule: StoredRule, tick: float) -> None:
        """A schedule's tick: Lambda's scheduled-event payload to each target."""
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": self.account_id, "time": iso_time(tick), "region": self.region,
                 "resources": [self.rule_arn(rule.bus, rule.name)], "detail": {}}
        for target in await asyncio.to_thread(self.repo.targets, rule.bus, rule.name):
            await self.deliver(rule, target, event)

    async def deliver(self, rule: StoredRule, target: dict[str, Any], event: dict[str, Any]) -> bool:
        """Queue one asynchronous invocation of a target, if its resource policy allows it."""
        key = f"{rule.bus}/{rule.name}/{target.get('Id')}"
        failure = await self._deliver(rule, target, event)
        if failure is None:
            self.stats["delivered"] += 1
            self.deliveries.delivered(key)
            return True
        counter, reason = failure
        self.stats[counter] += 1
        self.deliveries.failed(key, reason)
        return False

    async def _deliver(self, rule: StoredRule, target: dict[str, Any], event: dict[str, Any]
                       ) -> tuple[str, str] | None:
        """None once queued, else (the stats counter, the reason)."""
        arn = target["Arn"]
        rule_arn = self.rule_arn(rule.bus, rule.name)
        match = _LAMBDA_ARN.fullmatch(arn)
        if match is None:
            log.warning("rule %s, target %s: %s is not a Lambda function", rule_arn, target["Id"], arn)
            return "failed", f"{arn} is not a Lambda function"
        context = {"aws:sourcearn": rule_arn, "aws:sourceaccount": self.account_id}
        if not evaluate(EVENTS, "lambda:InvokeFunction", arn, (), self.resource_policy(arn), context).allowed:
            log.warning("rule %s, target %s: the resource-based policy of %s does not let events.amazonaws.com "
                        "invoke it for this rule; event %s not delivered", rule_arn, target["Id"], arn, event["id"])
            return "denied", "AccessDeniedException: the function's resource-based policy does not allow this rule"
        try:
            payload = target_payload(target, event, rule_arn, rule.name)
            await self.accept(FunctionRef(match.group(3), match.group(4)), payload, str(uuid.uuid4()))
        except LambdaError as exc:
            log.warning("rule %s, target %s: %s: %s", rule_arn, target["Id"], exc.code, exc.message)
            return "failed", f"{exc.code}: {exc.message}"
        except Exception as exc:
            log.exception("rule %s, target %s: delivery failed", rule_arn, target["Id"])
            return "failed", f"{type(exc).__name__}: {exc}"
        return None


def _entry_size(entry: Any) -> int:
    """An entry's size as EventBridge counts it (Time 14 bytes, then the UTF-8 strings)."""
    if not isinstance(entry, dict):
        return 0
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if isinstance(entry.get(key), str):
            size += len(entry[key].encode())
    return size + sum(len(r.encode()) for r in entry.get("Resources") or [] if isinstance(r, str))


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    token = params.get("NextToken")
    start = 0
    if token:
        if not isinstance(token, str) or not token.isdigit():
            raise _validation("The NextToken is invalid.")
        start = int(token)
    limit = params.get("Limit") or 100
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise _constraint(limit, "limit", "Member must have value between 1 and 100")
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)
