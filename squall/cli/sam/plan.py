"""The change set: what the template wants against what the server holds (:mod:`.state`).

``compute_plan`` is pure: a :class:`~.template.StackSpec`, a :class:`~.state.Current` and the
packaged code in, a :class:`Plan` out. Each :class:`Change` is one line of the change set and
carries what :mod:`.apply` needs to make it happen. The order of the changes is the order
they are applied in: layers, roles, functions and what hangs off them, events, then deletes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squall.cli.sam.state import (
    LOGICAL_ID_TAG,
    STACK_TAG,
    Current,
    FunctionState,
    api_names,
    code_sha256,
)
from squall.cli.sam.template import (
    ACCOUNT,
    FunctionSpec,
    LayerRef,
    StackSpec,
    TemplateError,
)

HANDLED_EVENTS = ("Schedule", "ScheduleV2", "SQS", "Kinesis", "DynamoDB", "SNS")
API_EVENTS = ("HttpApi", "Api")
_SYMBOLS = {"create": "+", "update": "~", "delete": "-", "skipped": "!"}


@dataclass
class Change:
    action: str  # create, update, delete, skipped
    kind: str  # Function, Layer, Role, Alias, Schedule, ...
    target: str  # what it is about, as a person reads it
    details: list[str] = field(default_factory=list)  # what differs, or why skipped
    logical_id: str | None = None  # the function (or layer) of the template it belongs to
    data: dict[str, Any] = field(default_factory=dict)  # for apply

    def line(self) -> str:
        text = f"  {_SYMBOLS[self.action]} {self.action:<8}{self.kind:<24}{self.target}"
        if self.details:
            text += (": " if self.action != "skipped" else " — skipped: ") + ", ".join(self.details)
        return text


@dataclass
class Plan:
    stack: StackSpec
    changes: list[Change]

    @property
    def actions(self) -> list[Change]:
        return [c for c in self.changes if c.action != "skipped"]

    def render(self) -> str:
        lines = [f"Change set for stack {self.stack.name} ({self.stack.template}):"]
        if not self.actions:
            lines.append("  No changes.")
        lines.extend(c.line() for c in self.changes)
        counts = {a: sum(c.action == a for c in self.changes) for a in ("create", "update", "delete", "skipped")}
        lines.append("  " + ", ".join(f"{n} to {a}" if a != "skipped" else f"{n} skipped"
                                      for a, n in counts.items()))
        return "\n".join(lines)


def function_arn(stack: StackSpec, name: str, qualifier: str | None = None) -> str:
    return f"arn:aws:lambda:{stack.region}:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


def event_resource_name(function: FunctionSpec | str, event_id: str) -> str:
    """The rule or schedule of an event: ``<function>-<EventId>`` (64 at most)."""
    name = function if isinstance(function, str) else function.name
    return f"{name}-{event_id}"[:64]


def desired_tags(stack: StackSpec, function: FunctionSpec) -> dict[str, str]:
    return {**function.tags, STACK_TAG: stack.name, LOGICAL_ID_TAG: function.logical_id}


def current_config(config: dict[str, Any]) -> dict[str, Any]:
    """GetFunctionConfiguration's answer in the shape of a template's settings."""
    return {
        "Runtime": config.get("Runtime"),
        "Handler": config.get("Handler"),
        "MemorySize": config.get("MemorySize", 128),
        "Timeout": config.get("Timeout", 3),
        "Description": config.get("Description") or "",
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables") or {}},
        "Layers": [layer["Arn"] for layer in config.get("Layers") or []],
        "Architectures": config.get("Architectures") or ["x86_64"],
        "EphemeralStorage": {"Size": (config.get("EphemeralStorage") or {}).get("Size", 512)},
        "Role": config.get("Role"),
    }


_LABELS = {"Runtime": "runtime", "Handler": "handler", "MemorySize": "memory", "Timeout": "timeout",
           "Description": "description", "Environment": "environment", "Layers": "layers",
           "Architectures": "architectures", "EphemeralStorage": "ephemeral storage", "Role": "role"}


def compute_plan(stack: StackSpec, current: Current, packages: dict[Path, bytes]) -> Plan:
    changes: list[Change] = []
    layer_arns: dict[str, str | None] = {}  # logical id -> version ARN (None: a new one is published)
    for layer in stack.layers.values():
        sha = code_sha256(packages[layer.content_dir])
        now = current.layers.get(layer.name)
        if now is None:
            changes.append(Change("create", "Layer", f"{layer.logical_id} ({layer.name})", ["version 1"],
                                  layer.logical_id))
            layer_arns[layer.logical_id] = None
        elif now.sha256 != sha or now.settings != {k: v for k, v in layer.settings.items() if v}:
            what = ["content" if now.sha256 != sha else "settings", "publishes a new version"]
            changes.append(Change("update", "Layer", f"{layer.logical_id} ({layer.name})", what, layer.logical_id))
            layer_arns[layer.logical_id] = None
        else:
            layer_arns[layer.logical_id] = now.version_arn

    for function in stack.functions.values():
        if function.policies is None or function.role_name is None:
            continue
        wanted = {f"policy-{i}": doc for i, doc in enumerate(function.policies)}
        now_role = current.roles.get(function.role_name)
        if now_role is None:
            count = f"{len(wanted)} inline polic{'y' if len(wanted) == 1 else 'ies'}"
            changes.append(Change("create", "Role", function.role_name, [count], function.logical_id,
                                  {"policies": wanted}))
        elif now_role != wanted:
            changes.append(Change("update", "Role", function.role_name, ["inline policies"], function.logical_id,
                                  {"policies": wanted, "stale": sorted(set(now_role) - set(wanted))}))

    deletes: list[Change] = []
    for logical_id, function in stack.functions.items():
        if function.name in current.foreign:
            owner = current.foreign[function.name]
            raise TemplateError(
                f"{logical_id}: a function named {function.name} exists already and "
                + (f"belongs to stack {owner}." if owner else "belongs to no stack."),
                )
        now = current.functions.get(logical_id)
        if now is not None and now.name != function.name:  # renamed: a new function replaces the old one
            deletes.append(_delete_function(logical_id, now, "FunctionName changed"))
            now = None
        changes.extend(_function_changes(stack, function, now, packages, layer_arns))

    changes.extend(_api_changes(stack, current))
    for logical_id, now in current.functions.items():
        if logical_id not in stack.functions:
            deletes.append(_delete_function(logical_id, now, "no longer in the template"))
    changes.extend(deletes)
    changes.extend(Change("skipped", s.kind, s.logical_id, [s.reason]) for s in stack.skipped)
    return Plan(stack, changes)


def _delete_function(logical_id: str, now: FunctionState, why: str) -> Change:
    return Change("delete", "Function", f"{logical_id} ({now.name})", [why], logical_id, {"state": now})


def _function_changes(stack: StackSpec, function: FunctionSpec, now: FunctionState | None,
                      packages: dict[Path, bytes], layer_arns: dict[str, str | None]) -> list[Change]:
    lid = function.logical_id
    label = f"{lid} ({function.name})"
    sha = code_sha256(packages[function.code_dir])
    layers = [layer_arns.get(x.logical_id) if isinstance(x, LayerRef) else x for x in function.config["Layers"]]
    changes: list[Change] = []
    if now is None:
        changes.append(Change("create", "Function", label, [function.config["Runtime"]], lid))
        moved = True
    else:
        have = current_config(now.config)
        what = ["code"] if now.config.get("CodeSha256") != sha else []
        for key, wanted in function.config.items():
            if key == "Layers":
                if None in layers or layers != have["Layers"]:
                    what.append("layers")
            elif have.get(key) != wanted:
                what.append(_LABELS[key])
        tags = desired_tags(stack, function)
        if {k: v for k, v in now.tags.items() if not k.startswith("aws:")} != tags:
            what.append("tags")
        if what:
            changes.append(Change("update", "Function", label, what, lid, {"code": "code" in what}))
        moved = bool(set(what) - {"tags"})

    aliases = now.aliases if now else {}
    if function.alias:
        if function.alias not in aliases:
            changes.append(Change("create", "Alias", f"{lid}:{function.alias}", ["points at a new version"], lid))
        elif moved:
            changes.append(Change("update", "Alias", f"{lid}:{function.alias}",
                                  [f"moves from version {aliases[function.alias]['FunctionVersion']} to a new version"],
                                  lid))
    provisioned_now = (now.provisioned if now else {}).get(function.alias or "")
    if function.provisioned is not None and provisioned_now != function.provisioned:
        changes.append(Change("create" if provisioned_now is None else "update", "ProvisionedConcurrency",
                              f"{lid}:{function.alias}", [str(function.provisioned)], lid))
    elif function.provisioned is None and provisioned_now is not None:
        changes.append(Change("delete", "ProvisionedConcurrency", f"{lid}:{function.alias}", [], lid))

    url_now = now.url if now else None
    if function.url is not None:
        qualifier = function.alias
        if url_now is None or url_now.get("Qualifier") != qualifier:
            changes.append(Change("create", "FunctionUrl", f"{lid}" + (f":{qualifier}" if qualifier else ""),
                                  [f"auth {function.url['AuthType']}"], lid, {"old": url_now}))
        elif _url_differs(function.url, url_now):
            changes.append(Change("update", "FunctionUrl", f"{lid}" + (f":{qualifier}" if qualifier else ""),
                                  ["settings"], lid))
    elif url_now is not None:
        changes.append(Change("delete", "FunctionUrl", lid, [], lid, {"old": url_now}))

    reserved_now = now.reserved if now else None
    if function.reserved is not None and reserved_now != function.reserved:
        changes.append(Change("create" if reserved_now is None else "update", "ReservedConcurrency", lid,
                              [str(function.reserved)], lid))
    elif function.reserved is None and reserved_now is not None:
        changes.append(Change("delete", "ReservedConcurrency", lid, [], lid))

    invoke_now = _invoke_config_of(now.invoke_config) if now and now.invoke_config else None
    if function.invoke_config is not None and invoke_now != function.invoke_config:
        changes.append(Change("create" if invoke_now is None else "update", "EventInvokeConfig", lid, [], lid))
    elif function.invoke_config is None and invoke_now is not None:
        changes.append(Change("delete", "EventInvokeConfig", lid, [], lid))

    changes.extend(_event_changes(stack, function, now))
    return changes


def _url_differs(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    if wanted["AuthType"] != have.get("AuthType") or wanted["InvokeMode"] != have.get("InvokeMode", "BUFFERED"):
        return True
    cors_now = have.get("Cors") or {}
    for key, value in (wanted.get("Cors") or {}).items():
        mine = cors_now.get(key)
        if isinstance(value, list):
            if sorted(map(str, value)) != sorted(map(str, mine or [])):
                return True
        elif value != mine:
            return True
    return bool(cors_now) and not wanted.get("Cors") and any(cors_now.values())


def _invoke_config_of(config: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {}
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
        if config.get(key) is not None:
            shaped[key] = config[key]
    destinations = {k: {"Destination": v["Destination"]} for k, v in (config.get("DestinationConfig") or {}).items()
                    if v and v.get("Destination")}
    if destinations:
        shaped["DestinationConfig"] = destinations
    return shaped


# ---------------------------------------------------------------------- events


def desired_event(stack: StackSpec, function: FunctionSpec, event_id: str, kind: str,
                  props: dict[str, Any]) -> dict[str, Any]:
    """An event as the fields compared with the server's."""
    target = function_arn(stack, function.name, function.alias)
    if kind == "Schedule":
        state = props.get("State") or ("DISABLED" if props.get("Enabled") is False else "ENABLED")
        shaped = {"ScheduleExpression": props["Schedule"], "State": state, "Target": target}
        if props.get("Input") is not None:
            shaped["Input"] = props["Input"]
        return shaped
    if kind == "ScheduleV2":
        shaped = {"ScheduleExpression": props["ScheduleExpression"], "State": props.get("State", "ENABLED"),
                  "Target": target, "Timezone": props.get("ScheduleExpressionTimezone", "UTC")}
        if props.get("Input") is not None:
            shaped["Input"] = props["Input"]
        return shaped
    if kind == "SNS":
        if not props.get("Topic"):
            raise TemplateError(f"{function.logical_id}.Events.{event_id}: an SNS event needs Topic.")
        return {"Topic": props["Topic"]}
    source = props.get("Queue") if kind == "SQS" else props.get("Stream")
    if not source:
        raise TemplateError(f"{function.logical_id}.Events.{event_id}: a {kind} event needs "
                            f"{'Queue' if kind == 'SQS' else 'Stream'}.")
    shaped = {"EventSourceArn": source, "Target": target, "Enabled": props.get("Enabled", True) is not False}
    if props.get("BatchSize") is not None:
        shaped["BatchSize"] = int(props["BatchSize"])
    if props.get("MaximumBatchingWindowInSeconds") is not None:
        shaped["MaximumBatchingWindowInSeconds"] = int(props["MaximumBatchingWindowInSeconds"])
    if kind != "SQS":
        shaped["StartingPosition"] = props.get("StartingPosition", "LATEST")
    return shaped


def current_rule(found: dict[str, Any]) -> dict[str, Any]:
    rule, targets = found["Rule"], found["Targets"]
    shaped = {"ScheduleExpression": rule.get("ScheduleExpression"), "State": rule.get("State"),
              "Target": targets[0]["Arn"] if targets else None}
    if targets and targets[0].get("Input") is not None:
        shaped["Input"] = targets[0]["Input"]
    return shaped


def current_schedule(found: dict[str, Any]) -> dict[str, Any]:
    target = found.get("Target") or {}
    shaped = {"ScheduleExpression": found.get("ScheduleExpression"), "State": found.get("State"),
              "Target": target.get("Arn"), "Timezone": found.get("ScheduleExpressionTimezone") or "UTC"}
    if target.get("Input") is not None:
        shaped["Input"] = target["Input"]
    return shaped


def current_mapping(found: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    shaped = {"EventSourceArn": found.get("EventSourceArn"), "Target": found.get("FunctionArn"),
              "Enabled": found.get("State") not in ("Disabled", "Disabling")}
    for key in ("BatchSize", "MaximumBatchingWindowInSeconds", "StartingPosition"):
        if key in wanted:
            shaped[key] = found.get(key)
    return shaped


def _event_changes(stack: StackSpec, function: FunctionSpec, now: FunctionState | None) -> list[Change]:
    changes: list[Change] = []
    lid = function.logical_id
    rules = dict(now.rules) if now else {}
    schedules = dict(now.schedules) if now else {}
    mappings = list(now.mappings) if now else []
    topics = dict(now.sns) if now else {}
    for event in function.events:
        where = f"{lid}.{event.logical_id}"
        if event.kind in API_EVENTS:
            continue  # see _api_changes: one API per stack
        if event.kind not in HANDLED_EVENTS:
            changes.append(Change("skipped", f"Event {event.kind}", where,
                                  [f"{event.kind} events are not made by squall deploy yet; see docs/sam.md"]))
            continue
        wanted = desired_event(stack, function, event.logical_id, event.kind, event.properties)
        data = {"event": event, "wanted": wanted}
        if event.kind == "SNS":
            if topics.pop(wanted["Topic"], None) is None:
                changes.append(Change("create", "Event SNS", f"{where} ({wanted['Topic']})", [], lid, data))
            continue
        if event.kind in ("Schedule", "ScheduleV2"):
            name = event_resource_name(function, event.logical_id)
            pool = rules if event.kind == "Schedule" else schedules
            found = pool.pop(name, None)
            have = None if found is None else (current_rule(found) if event.kind == "Schedule"
                                               else current_schedule(found))
            label = f"{where} ({'rule' if event.kind == 'Schedule' else 'schedule'} {name})"
            data["name"] = name
        else:
            match = next((m for m in mappings if m.get("EventSourceArn") == wanted["EventSourceArn"]), None)
            if match is not None:
                mappings.remove(match)
            have = None if match is None else current_mapping(match, wanted)
            label = f"{where} ({wanted['EventSourceArn']})"
            data["uuid"] = match["UUID"] if match else None
        if have is None:
            changes.append(Change("create", f"Event {event.kind}", label, [], lid, data))
        elif have != wanted:
            what = sorted(k for k in wanted if wanted.get(k) != have.get(k))
            changes.append(Change("update", f"Event {event.kind}", label, what, lid, data))
    for name in rules:
        changes.append(Change("delete", "Event Schedule", f"{lid} (rule {name})", ["no longer in the template"],
                              lid, {"name": name}))
    for name in schedules:
        changes.append(Change("delete", "Event ScheduleV2", f"{lid} (schedule {name})", ["no longer in the template"],
                              lid, {"name": name}))
    for topic, trigger_id in topics.items():
        changes.append(Change("delete", "Event SNS", f"{lid} ({topic})", ["no longer in the template"], lid,
                              {"trigger": trigger_id}))
    for mapping in mappings:
        changes.append(Change("delete", "Event mapping", f"{lid} ({mapping.get('EventSourceArn')})",
                              ["no longer in the template"], lid, {"uuid": mapping["UUID"]}))
    return changes


def route_key(kind: str, props: dict[str, Any]) -> str:
    """``METHOD /path`` (``ANY`` for SAM's ``any``); an HttpApi event without a Path: ``$default``."""
    path, method = props.get("Path"), props.get("Method")
    if not path:
        if kind == "Api":
            raise TemplateError("an Api event needs Path and Method.")
        return "$default"
    method = "ANY" if not method or str(method).lower() == "any" else str(method).upper()
    return f"{method} {path}"


def _api_changes(stack: StackSpec, current: Current) -> list[Change]:
    """The stack's HTTP APIs (``<stack>-HttpApi``: payload 2.0, ``<stack>-Api``: payload 1.0), their routes."""
    changes: list[Change] = []
    for kind, api_name in api_names(stack.name).items():
        wanted: dict[str, dict[str, Any]] = {}
        for function in stack.functions.values():
            for event in function.events:
                if event.kind != kind:
                    continue
                try:
                    key = route_key(kind, event.properties)
                except TemplateError as exc:
                    changes.append(Change("skipped", f"Event {kind}", f"{function.logical_id}.{event.logical_id}",
                                          [str(exc)]))
                    continue
                if key in wanted:
                    changes.append(Change("skipped", f"Event {kind}", f"{function.logical_id}.{event.logical_id}",
                                          [f"route {key} is taken by {wanted[key]['where']}"]))
                    continue
                wanted[key] = {"Target": function_arn(stack, function.name, function.alias),
                               "where": f"{function.logical_id}.{event.logical_id}", "function": function.logical_id,
                               "Payload": "2.0" if kind == "HttpApi" else "1.0"}
        have = current.apis.get(api_name)
        if have is None and wanted:
            changes.append(Change("create", "HttpApi", api_name, [f"{len(wanted)} route(s)"], None,
                                  {"api": api_name, "kind": kind}))
        routes = dict(have["Routes"]) if have else {}
        for key, route in wanted.items():
            now = routes.pop(key, None)
            data = {"api": api_name, "key": key, **route, "now": now}
            label = f"{route['where']} ({api_name} {key})"
            if now is None:
                changes.append(Change("create", f"Event {kind}", label, [], route["function"], data))
            elif now.get("Target") != route["Target"]:
                changes.append(Change("update", f"Event {kind}", label, ["integration"], route["function"], data))
        if have is not None and not wanted:
            changes.append(Change("delete", "HttpApi", api_name, ["no events use it any more"], None,
                                  {"api": api_name}))
        elif have is not None:
            for key, now in routes.items():
                changes.append(Change("delete", f"Event {kind}", f"{api_name} {key}", ["no longer in the template"],
                                      None, {"api": api_name, "key": key, "now": now}))
    return changes
