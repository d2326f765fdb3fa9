"""EventBridge's API (JSON 1.1 protocol, ``X-Amz-Target: AWSEvents.<Operation>``): rules, targets,
PutEvents and custom event buses, for boto3's ``events`` client and ``aws events``.

Each operation is authorized as ``events:<Operation>`` on the rule
(``arn:aws:events:<region>:<account>:rule/[<bus>/]<name>``) or on the event bus
(``…:event-bus/<name>``) it names.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse
from squall.auth.access import Access
from squall.errors import LambdaError
from squall.triggers.event_rules import DEFAULT_BUS, EventRules, EventsError

_TARGET_PREFIX = "AWSEvents."
_JSON = "application/x-amz-json-1.1"

# operation → (the service's method, whether it is a coroutine, what it is authorized on)
_OPERATIONS: dict[str, tuple[str, bool, str]] = {
    "PutRule": ("put_rule", False, "rule"),
    "DescribeRule": ("describe_rule", False, "rule"),
    "ListRules": ("list_rules", False, "rules"),
    "EnableRule": ("enable_rule", False, "rule"),
    "DisableRule": ("disable_rule", False, "rule"),
    "DeleteRule": ("delete_rule", False, "rule"),
    "PutTargets": ("put_targets", False, "rule"),
    "RemoveTargets": ("remove_targets", False, "rule"),
    "ListTargetsByRule": ("list_targets_by_rule", False, "rule"),
    "PutEvents": ("put_events", True, "entries"),
    "CreateEventBus": ("create_event_bus", False, "bus"),
    "DescribeEventBus": ("describe_event_bus", False, "bus"),
    "ListEventBuses": ("list_event_buses", False, "any"),
    "DeleteEventBus": ("delete_event_bus", False, "bus"),
}

_AUTH_STATUS = {
    "AccessDeniedException": 400, "UnrecognizedClientException": 400, "InvalidSignatureException": 400,
    "IncompleteSignatureException": 400, "MissingAuthenticationTokenException": 400, "ExpiredTokenException": 400,
    "ServiceUnavailableException": 503, "ServiceException": 500, "InternalException": 500,
}


def _error(code: str, message: str) -> HttpResponse:
    return HttpResponse(_AUTH_STATUS.get(code, 400), [("Content-Type", _JSON), ("x-amzn-ErrorType", code)],
                        orjson.dumps({"__type": code, "message": message}))


class EventsRoute:
    """Claimed by ``X-Amz-Target``, signed as ``events``."""

    service = "events"

    def __init__(self, rules: EventRules, access: Access) -> None:
        self.rules = rules
        self.access = access

    def claims(self, request: Request) -> bool:
        return request.headers.get("x-amz-target", "").startswith(_TARGET_PREFIX)

    async def handle(self, request: Request) -> HttpResponse:
        operation = request.headers["x-amz-target"].removeprefix(_TARGET_PREFIX)
        known = _OPERATIONS.get(operation)
        try:
            params = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError as exc:
            return _error("SerializationException", f"Could not parse request body: {exc}")
        if not isinstance(params, dict):
            return _error("SerializationException", "The request body must be a JSON object")
        principal = request.state.get("principal")
        try:
            for resource in self._resources(operation, known[2] if known else "any", params):
                self.access.check(principal, f"events:{operation}", resource)  # type: ignore[arg-type]
            if known is None:
                raise EventsError("UnknownOperationException", f"Squall does not serve AWSEvents.{operation}")
            method = getattr(self.rules, known[0])
            result = await method(params) if known[1] else await asyncio.to_thread(method, params)
        except EventsError as exc:
            return _error(exc.code, exc.message)
        return HttpResponse(200, [("Content-Type", _JSON)], orjson.dumps(result if result is not None else {}))

    def _resources(self, operation: str, kind: str, params: dict[str, Any]) -> list[str]:
        rules = self.rules
        if kind in ("rule", "rules"):
            bus = rules.bus_name(params.get("EventBusName"))
            name = params.get("Rule") if "Rule" in params else params.get("Name")
            if kind == "rules" or not isinstance(name, str):
                name = "*"
            return [rules.rule_arn(bus, name)]
        if kind == "bus":
            return [rules.bus_arn(rules.bus_name(params.get("Name"), field="name"))]
        if kind == "entries":
            entries = params.get("Entries")
            buses = {DEFAULT_BUS}
            if isinstance(entries, list):
                buses = {rules.bus_name(e.get("EventBusName")) for e in entries if isinstance(e, dict)} or buses
            return [rules.bus_arn(b) for b in sorted(buses)]
        return ["*"]

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        return _error(error.code, error.message)
