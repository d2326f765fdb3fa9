"""EventBridge Scheduler schedules targeting Lambda functions (``scheduler`` API, group ``default``).

A schedule stores its next due fire (``schedules.next_tick``) and the durable ticker of
``scheduler.py`` claims and fires it, exactly as for scheduled EventBridge rules (compare-and-set
claim, missed fires not replayed, the injected / test schedule clock).

Firing semantics (``schedule_expressions.py``): cron() in ``ScheduleExpressionTimezone`` (DST:
a skipped wall time is skipped, a repeated one fires once); rate() fires at StartDate itself (or
at creation without one) and every period after; at() fires once. ``FlexibleTimeWindow``
``FLEXIBLE`` delays every fire by a fixed offset inside the window, derived from a hash of the
group and name (``flex_offset``): deterministic, so every Squall process agrees on it. A fire
missed while Squall was down is replayed once, late, if Squall is back before its window ends
(``ScheduleTicks.replay``); otherwise it is skipped, as every missed tick of a rule is.

A fire invokes the target asynchronously (the durable queue) with the target's ``Input`` as the
payload, ``{}`` without one. As on AWS, Scheduler uses the target's ``RoleArn``, not the
function's resource policy: with authentication on, the role must exist and its identity
policies must allow ``lambda:InvokeFunction`` on the target. A refused or failed invocation is
counted (``stats``, and per schedule in ``deliveries``) and, with a ``DeadLetterConfig``, the
Input goes to that SQS queue with Scheduler's dead-letter attributes.

The target's ``RetryPolicy`` (defaults: 185 attempts, 24 hours) governs handing the event to the
durable queue, as on AWS it governs calling the target: a retryable refusal (throttled, the
function not ready, a server error) is retried in the background with exponential backoff
(1 s doubling up to 60 s) while attempts and ``MaximumEventAgeInSeconds`` allow, then
dead-lettered with ``RETRY_ATTEMPTS``. A refusal that cannot change on its own (no such
function, a denied role, a bad payload) is not retried. Once the event is queued, the function's
own asynchronous retry settings (EventInvokeConfig) apply. Retries in progress live in this
process: a restart abandons them (the fire is then lost, not doubled).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from squall.arn import FunctionRef
from squall.auth.policy import Caller, evaluate
from squall.errors import LambdaError
from squall.store.schedules import ScheduleRepository, StoredSchedule
from squall.triggers.deliveries import Deliveries
from squall.triggers.schedule_expressions import Schedule, ScheduleError
from squall.triggers.schedule_expressions import parse as parse_schedule
from squall.triggers.scheduler import Clock, Ticker

log = logging.getLogger("squall.scheduler")

DEFAULT_GROUP = "default"
DEFAULT_RETRY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
RETRY_MAX_DELAY = 60.0
# refusals that retrying cannot change: straight to the dead-letter queue
NOT_RETRYABLE = frozenset({"ResourceNotFoundException", "AccessDeniedException", "ValidationException",
                           "InvalidParameterValueException", "RequestTooLargeException", "KMSAccessDeniedException"})
_LAMBDA_ARN = re.compile(
    r"arn:aws:lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})(?::([$A-Za-z0-9_-]{1,128}))?")


def context_attributes(text: str, schedule_arn: str, tick: float, execution_id: str, attempt: int = 1) -> str:
    """Scheduler's context attributes in a target's Input: ``<aws.scheduler.schedule-arn>``,
    ``<aws.scheduler.scheduled-time>`` (the tick, ISO 8601 UTC), ``<aws.scheduler.execution-id>``
    and ``<aws.scheduler.attempt-number>`` (1, then 2… as the RetryPolicy retries the hand-over)."""
    if "<aws.scheduler." not in text:
        return text
    scheduled = datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, value in (("schedule-arn", schedule_arn), ("scheduled-time", scheduled),
                        ("execution-id", execution_id), ("attempt-number", str(attempt))):
        text = text.replace(f"<aws.scheduler.{name}>", value)
    return text


class SchedulerError(LambdaError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]


def _validation(message: str) -> SchedulerError:
    return SchedulerError("ValidationException", message)


def flex_offset(group: str, name: str, window_minutes: int) -> float:
    """Seconds (whole, in [0, window)) by which every fire of a FLEXIBLE schedule is delayed."""
    digest = hashlib.sha256(f"{group}/{name}".encode()).digest()
    return float(int.from_bytes(digest[:8], "big") % (window_minutes * 60))


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _validation(f"Invalid timestamp: {value}") from None


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def compile_schedule(document: dict[str, Any], created_at: float) -> Schedule:
    start = document.get("StartDate")
    return parse_schedule(document["ScheduleExpression"], document.get("ScheduleExpressionTimezone") or "UTC",
                          allow_at=True, start=_at(start if start is not None else created_at),
                          end=_at(document.get("EndDate")))


def offset_of(group: str, name: str, document: dict[str, Any]) -> float:
    window = document.get("FlexibleTimeWindow") or {}
    if window.get("Mode") != "FLEXIBLE":
        return 0.0
    return flex_offset(group, name, int(window["MaximumWindowInMinutes"]))


def next_fire(group: str, name: str, document: dict[str, Any], created_at: float, after: float,
              inclusive: bool) -> float | None:
    """The first fire (offset included) after ``after`` (at or after it if ``inclusive``)."""
    offset = offset_of(group, name, document)
    nominal = compile_schedule(document, created_at).next_after(_at(after - offset), inclusive=inclusive)
    return None if nominal is None else nominal.timestamp() + offset


class ScheduleTicks:
    """Scheduler schedules as the ticker's source (``scheduler.TickSource``)."""

    def __init__(self, repo: ScheduleRepository) -> None:
        self.repo = repo

    def due(self, now: float) -> list[StoredSchedule]:
        return self.repo.due(now)

    def tick_of(self, item: StoredSchedule) -> float:
        assert item.next_tick is not None
        return item.next_tick

    def following(self, item: StoredSchedule, now: float) -> float | None:
        try:
            return next_fire(item.group, item.name, item.document, item.created_at, now, inclusive=False)
        except ScheduleError:
            return None

    def claim(self, item: StoredSchedule, following: float | None) -> bool:
        won = self.repo.claim_tick(item.group, item.name, self.tick_of(item), following)
        if won and following is None and item.document.get("ActionAfterCompletion") == "DELETE":
            self.repo.delete(item.group, item.name)  # completed: nothing left to fire
        return won

    def active(self, item: StoredSchedule) -> bool:
        return item.document.get("State", "ENABLED") != "DISABLED"

    def label(self, item: StoredSchedule) -> str:
        return f"schedule {item.group}/{item.name}"

    def replay(self, item: StoredSchedule, now: float) -> float | None:
        """The latest missed fire whose flexible window has not ended yet (None: none)."""
        window = item.document.get("FlexibleTimeWindow") or {}
        if window.get("Mode") != "FLEXIBLE":
            return None
        # a fire f (offset included) is due by its nominal time + the window: f - offset + window
        span = int(window["MaximumWindowInMinutes"]) * 60 - offset_of(item.group, item.name, item.document)
        try:
            late = next_fire(item.group, item.name, item.document, item.created_at, now - span, inclusive=False)
        except ScheduleError:
            return None
        return late if late is not None and late <= now else None


class Schedules:
    def __init__(self, repo: ScheduleRepository, region: str, account_id: str,
                 accept: Callable[[FunctionRef, bytes, str], Awaitable[None]],
                 send: Callable[[str, bytes, dict[str, str]], Awaitable[None]],
                 role_policies: Callable[[str], tuple[Any, ...] | None],
                 clock: Clock, interval: float = 1.0, grace: float = 30.0,
                 wall: Clock = time.time, deliveries: Deliveries | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``role_policies(role_arn)``: the role's identity policies, None when it does not exist
        (or a callable answering ``()`` for everything when authentication is off)."""
        self.repo = repo
        self.region = region
        self.account_id = account_id
        self.accept = accept
        self.send = send
        self.role_policies = role_policies
        self.clock = clock  # the schedule clock (anchors, fires)
        self.wall = wall  # CreationDate / LastModificationDate
        self.deliveries = deliveries or Deliveries()
        self.sleep = sleep
        self.ticker = Ticker(ScheduleTicks(repo), self.fire, clock, interval, grace, name="squall-scheduler-ticker")
        self.stats = {"invoked": 0, "denied": 0, "failed": 0, "dead_lettered": 0, "retried": 0}
        self._retrying: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        for task in list(self._retrying):
            task.cancel()
        await asyncio.gather(*self._retrying, return_exceptions=True)

    def report(self) -> dict[str, int]:
        return {**self.stats, "fires": self.ticker.fired, "fires_missed": self.ticker.skipped,
                "retrying": len(self._retrying)}

    def arn(self, group: str, name: str) -> str:
        return f"arn:aws:scheduler:{self.region}:{self.account_id}:schedule/{group}/{name}"

    # ---- the API ----------------------------------------------------------------------------
    @staticmethod
    def _group(params: dict[str, Any]) -> str:
        group = params.get("GroupName") or DEFAULT_GROUP
        if group != DEFAULT_GROUP:
            raise SchedulerError("ResourceNotFoundException", f"Schedule group {group} does not exist.")
        return group

    def _document(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate a CreateSchedule / UpdateSchedule request; the stored document."""
        expression = params["ScheduleExpression"]
        zone = params.get("ScheduleExpressionTimezone") or "UTC"
        window = dict(params["FlexibleTimeWindow"])
        if window.get("Mode") == "FLEXIBLE" and window.get("MaximumWindowInMinutes") is None:
            raise _validation("MaximumWindowInMinutes must be provided when FlexibleTimeWindow Mode is FLEXIBLE.")
        if window.get("Mode") == "OFF" and window.get("MaximumWindowInMinutes") is not None:
            raise _validation("MaximumWindowInMinutes is only allowed when FlexibleTimeWindow Mode is FLEXIBLE.")
        target = dict(params["Target"])
        if _LAMBDA_ARN.fullmatch(target["Arn"]) is None:
            raise _validation(f"Squall's EventBridge Scheduler invokes Lambda functions only: {target['Arn']} is not "
                              "a Lambda function ARN.")
        retry = {**DEFAULT_RETRY, **(target.get("RetryPolicy") or {})}
        if not 60 <= retry["MaximumEventAgeInSeconds"] <= 86400:
            raise _validation("MaximumEventAgeInSeconds must be between 60 and 86400.")
        if not 0 <= retry["MaximumRetryAttempts"] <= 185:
            raise _validation("MaximumRetryAttempts must be between 0 and 185.")
        target["RetryPolicy"] = retry
        if "Input" in target:
            try:
                orjson.loads(target["Input"])
            except orjson.JSONDecodeError:
                raise _validation("Target Input must be well-formed JSON for a Lambda target.") from None
        start, end = _epoch(params.get("StartDate")), _epoch(params.get("EndDate"))
        if start is not None and end is not None and end <= start:
            raise _validation("The EndDate must be after the StartDate.")
        document: dict[str, Any] = {
            "ScheduleExpression": expression, "ScheduleExpressionTimezone": zone, "FlexibleTimeWindow": window,
            "Target": target, "State": params.get("State") or "ENABLED",
            "ActionAfterCompletion": params.get("ActionAfterCompletion") or "NONE",
        }
        for key, value in (("StartDate", start), ("EndDate", end), ("Description", params.get("Description")),
                           ("KmsKeyArn", params.get("KmsKeyArn"))):
            if value is not None:
                document[key] = value
        try:
            compile_schedule(document, 0.0)
        except ScheduleError as exc:
            if exc.parameter == "ScheduleExpressionTimezone":
                raise _validation(f"Invalid time zone {zone}.") from None
            raise _validation(f"Invalid Schedule Expression {expression}.") from None
        return document

    def _first_fire(self, group: str, name: str, document: dict[str, Any], created_at: float) -> float | None:
        return next_fire(group, name, document, created_at, self.clock(), inclusive=True)

    def create_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        group, name = self._group(params), params["Name"]
        document = self._document(params)
        now = self.clock()
        document["CreationDate"] = document["LastModificationDate"] = self.wall()
        if not self.repo.create(group, name, document, now, self._first_fire(group, name, document, now)):
            raise SchedulerError("ConflictException", f"Schedule {name} already exists.")
        return {"ScheduleArn": self.arn(group, name)}

    def update_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        group, name = self._group(params), params["Name"]
        stored = self._get(group, name)
        document = self._document(params)
        document["CreationDate"] = stored.document.get("CreationDate")
        document["LastModificationDate"] = self.wall()
        if not self.repo.update(group, name, document, self._first_fire(group, name, document, stored.created_at)):
            raise SchedulerError("ResourceNotFoundException", f"Schedule {name} does not exist.")
        return {"ScheduleArn": self.arn(group, name)}

    def _get(self, group: str, name: str) -> StoredSchedule:
        stored = self.repo.get(group, name)
        if stored is None:
            raise SchedulerError("ResourceNotFoundException", f"Schedule {name} does not exist.")
        return stored

    def get_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        group, name = self._group(params), params["Name"]
        stored = self._get(group, name)
        return {"Arn": self.arn(group, name), "GroupName": group, "Name": name, **stored.document}

    def delete_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        group, name = self._group(params), params["Name"]
        if not self.repo.delete(group, name):
            raise SchedulerError("ResourceNotFoundException", f"Schedule {name} does not exist.")
        return {}

    def list_schedules(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("GroupName")
        if group is not None:
            self._group(params)
        found = [s for s in self.repo.list(group, params.get("NamePrefix") or "")
                 if params.get("State") in (None, s.document.get("State"))]
        start = int(params["NextToken"]) if str(params.get("NextToken") or "").isdigit() else 0
        size = int(params.get("MaxResults") or 100)
        page = found[start:start + size]
        summaries = [{"Arn": self.arn(s.group, s.name), "Name": s.name, "GroupName": s.group,
                      "State": s.document.get("State"), "CreationDate": s.document.get("CreationDate"),
                      "LastModificationDate": s.document.get("LastModificationDate"),
                      "Target": {"Arn": s.document["Target"]["Arn"]}} for s in page]
        answer: dict[str, Any] = {"Schedules": summaries}
        if start + size < len(found):
            answer["NextToken"] = str(start + size)
        return answer

    # ---- firing -----------------------------------------------------------------------------
    async def fire(self, item: StoredSchedule, tick: float) -> None:
        target = item.document["Target"]
        schedule_arn = self.arn(item.group, item.name)
        execution_id = str(uuid.uuid4())
        match = _LAMBDA_ARN.fullmatch(target["Arn"])
        refusal = self._refusal(target, match)
        if refusal is not None:
            payload = context_attributes(target.get("Input") or "{}", schedule_arn, tick, execution_id).encode()
            return await self._failed(item, target, payload, *refusal, attempts=1)
        assert match is not None
        ref = FunctionRef(match.group(3), match.group(4))
        code, message = await self._attempt(item, ref, tick, execution_id, 1)
        if code is None:
            return
        policy = target.get("RetryPolicy") or DEFAULT_RETRY
        if code in NOT_RETRYABLE or policy["MaximumRetryAttempts"] == 0:
            payload = context_attributes(target.get("Input") or "{}", schedule_arn, tick, execution_id).encode()
            return await self._failed(item, target, payload, "failed", code, message or "", attempts=1)
        task = asyncio.get_running_loop().create_task(self._retry(item, ref, tick, execution_id, policy,
                                                                  code, message or ""),
                                                      name=f"squall-scheduler-retry-{item.name}")
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    def _refusal(self, target: dict[str, Any], match: re.Match[str] | None) -> tuple[str, str, str] | None:
        """Why the target is not invoked at all (counter, code, message); None: go ahead."""
        if match is None:
            return "failed", "ValidationException", f"{target['Arn']} is not a Lambda function"
        policies = self.role_policies(target["RoleArn"])
        if policies is None:
            return "denied", "AccessDeniedException", f"The role {target['RoleArn']} does not exist."
        caller = Caller(target["RoleArn"], self.account_id, "assumed-role", role_arn=target["RoleArn"])
        if not evaluate(caller, "lambda:InvokeFunction", target["Arn"], policies).allowed:
            return ("denied", "AccessDeniedException", f"{target['RoleArn']} is not authorized to perform: "
                    f"lambda:InvokeFunction on resource: {target['Arn']}")
        return None

    async def _attempt(self, item: StoredSchedule, ref: FunctionRef, tick: float, execution_id: str,
                       attempt: int) -> tuple[str | None, str | None]:
        """Hand one fire to the durable queue: (None, None) once queued, else the error."""
        target = item.document["Target"]
        schedule_arn = self.arn(item.group, item.name)
        payload = context_attributes(target.get("Input") or "{}", schedule_arn, tick, execution_id, attempt).encode()
        try:
            await self.accept(ref, payload, execution_id if attempt == 1 else str(uuid.uuid4()))
        except LambdaError as exc:
            log.info("schedule %s: attempt %d to invoke %s refused: %s: %s", schedule_arn, attempt, target["Arn"],
                     exc.code, exc.message)
            return exc.code, exc.message
        self.stats["invoked"] += 1
        self.deliveries.delivered(f"{item.group}/{item.name}")
        log.debug("schedule %s fired (tick %s, attempt %d)", schedule_arn, tick, attempt)
        return None, None

    async def _retry(self, item: StoredSchedule, ref: FunctionRef, tick: float, execution_id: str,
                     policy: dict[str, Any], code: str, message: str) -> None:
        """Retry a retryable refusal with backoff while the RetryPolicy allows; then dead-letter."""
        target = item.document["Target"]
        waited = 0.0  # the event's age, counted in backoff delays (the hand-over itself takes ~ms)
        attempt, condition = 1, "MaximumRetryAttempts"
        while attempt <= policy["MaximumRetryAttempts"]:
            delay = min(RETRY_MAX_DELAY, 2.0 ** (attempt - 1))
            if waited + delay > policy["MaximumEventAgeInSeconds"]:
                condition = "MaximumEventAgeInSeconds"
                break
            await self.sleep(delay)
            waited += delay
            attempt += 1
            self.stats["retried"] += 1
            found, text = await self._attempt(item, ref, tick, execution_id, attempt)
            if found is None:
                return
            code, message = found, text or ""
            if code in NOT_RETRYABLE:
                break
        payload = context_attributes(target.get("Input") or "{}", self.arn(item.group, item.name), tick,
                                     execution_id, attempt).encode()
        await self._failed(item, target, payload, "failed", code, message, attempts=attempt, condition=condition)

    async def _failed(self, item: StoredSchedule, target: dict[str, Any], payload: bytes, counter: str,
                      code: str, message: str, attempts: int, condition: str = "MaximumRetryAttempts") -> None:
        self.stats[counter] += 1
        self.deliveries.failed(f"{item.group}/{item.name}", f"{code}: {message}")
        schedule_arn = self.arn(item.group, item.name)
        log.warning("schedule %s: target %s not invoked after %d attempt(s): %s: %s", schedule_arn, target["Arn"],
                    attempts, code, message)
        queue = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not queue:
            return
        attributes = {"ERROR_CODE": code, "ERROR_MESSAGE": message, "EXHAUSTED_RETRY_CONDITION": condition,
                      "RETRY_ATTEMPTS": str(attempts - 1), "SCHEDULE_ARN": schedule_arn, "TARGET_ARN": target["Arn"]}
        try:
            await self.send(queue, payload, attributes)
            self.stats["dead_lettered"] += 1
        except Exception as exc:  # the queue unreachable: logged, the fire is lost (as a failed DLQ send)
            log.warning("schedule %s: the dead-letter queue %s refused the message: %s", schedule_arn, queue, exc)

    async def operation(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = {"CreateSchedule": self.create_schedule, "GetSchedule": self.get_schedule,
                   "UpdateSchedule": self.update_schedule, "DeleteSchedule": self.delete_schedule,
                   "ListSchedules": self.list_schedules}[name]
        return await asyncio.to_thread(handler, params)
