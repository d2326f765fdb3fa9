"""The server side of AWS's ``rest-json`` protocol, driven by botocore's service model.

botocore's model of Lambda (``lambda/2015-03-31``) is the single source of truth for
routes (method + request URI), where each input member comes from (path, query string,
header, JSON body, raw payload), the shapes' constraints, the success status codes, and
every error's HTTP status and message spelling. Operations are implemented as plain
functions taking and returning dicts shaped exactly like boto3's parameters and results;
this module turns HTTP requests into those dicts and those dicts back into HTTP responses.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, AsyncIterator, Callable, ClassVar
from urllib.parse import parse_qs, unquote

import orjson
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

from squall.errors import InvalidParameterValue, InvalidRequestContent, LambdaError, UnknownOperation, Validation

# Codes we may answer that the model does not list (AWS sends them too).
_UNMODELLED_STATUS = {
    "UnknownOperationException": 404,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "RequestEntityTooLargeException": 413,
    "NotImplementedException": 501,
    "ServiceUnavailableException": 503,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
    "ExpiredTokenException": 403,
}
_UNMODELLED_KEY = {"AccessDeniedException": "Message"}  # as AWS's IAM denials are written
_FRONT_END = frozenset({"MissingAuthenticationTokenException", "IncompleteSignatureException", "InvalidSignatureException",
                        "UnrecognizedClientException", "ExpiredTokenException", "AccessDeniedException"})  # as AWS's IAM denials are written


def load_service_model(service: str = "lambda") -> ServiceModel:
    loader = Loader()
    return ServiceModel(loader.load_service_model(service, "service-2"), service_name=service)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    literal_query: tuple[tuple[str, str], ...]
    operation: OperationModel


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    # A body sent as it is produced (chunked), instead of ``body``: e.g. an event stream. Not a
    # field (set by ``streaming``): every other response would pay for it in ``__init__``.
    stream: ClassVar[AsyncIterator[bytes] | None] = None

    def streaming(self, chunks: AsyncIterator[bytes]) -> "HttpResponse":
        """This response, its body sent piece by piece as ``chunks`` yields it."""
        object.__setattr__(self, "stream", chunks)
        return self


class RestJsonProtocol:
    """Routes, parses and serialises requests of one rest-json service model."""

    def __init__(self, model: ServiceModel, operations: set[str] | None = None) -> None:
        self.model = model
        self._plans: dict[str, _OperationPlan] = {}
        self._validators: dict[str, Validator] = {}
        routes = []
        for name in model.operation_names:
            if operations is not None and name not in operations:
                continue
            op = model.operation_model(name)
            routes.append(_compile_route(op))
        # Routes with a literal query (e.g. ?find=LayerVersion) must win over the bare path.
        routes.sort(key=lambda r: -len(r.literal_query))
        self._routes_by_method: dict[str, list[Route]] = {}
        for route in routes:
            self._routes_by_method.setdefault(route.method, []).append(route)
        # The query keys routing looks at (e.g. ``find``); other parameters do not change the route.
        self._literal_keys = tuple(sorted({k for route in routes for k, _ in route.literal_query}))

    # ---- routing -------------------------------------------------------------------
    def match(self, method: str, raw_path: str, query: dict[str, list[str]]) -> tuple[OperationModel, dict[str, str]]:
        literal = tuple((k, query[k][0]) for k in self._literal_keys if k in query) if query else ()
        op, params = self._match(method, raw_path, literal)
        return op, dict(params)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one protocol per server; paths repeat (invokes)
    def _match(self, method: str, raw_path: str, literal: tuple[tuple[str, str], ...]) -> tuple[OperationModel, tuple[tuple[str, str], ...]]:
        query = {k: [v] for k, v in literal}
        path = raw_path.rstrip("/") or "/"
        for route in self._routes_by_method.get(method, ()):
            m = route.pattern.match(path)
            if m is None:
                continue
            if any(query.get(k, [None])[0] != v for k, v in route.literal_query):
                continue
            return route.operation, tuple((k, unquote(v)) for k, v in m.groupdict().items())
        raise UnknownOperation(f"Unknown operation {method} {raw_path}")

    # ---- requests ------------------------------------------------------------------
    def parse(
        self,
        op: OperationModel,
        path_params: dict[str, str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        plan = self._plan(op)  # an operation without input has no members and no checks
        params: dict[str, Any] = {}
        body_members: list[tuple[str, Shape]] = []
        for name, loc, wire, member, kind in plan.inputs:
            if loc == "uri":
                if wire in path_params:
                    params[name] = _coerce_scalar(kind, path_params[wire], name)
            elif loc == "querystring":
                if wire in query:
                    values = query[wire]
                    params[name] = values if kind == "list" else _coerce_scalar(kind, values[0], name)
            elif loc == "header":
                value = headers.get(wire)
                if value is not None:
                    params[name] = _coerce_scalar(kind, value, name)
            elif name == plan.input_payload:
                if kind == "blob":
                    params[name] = body
                elif body:
                    params[name] = _decode_blobs(member, _json_body(body))
            else:
                body_members.append((name, member))
        if body_members and body and plan.input_payload is None:
            document = _json_body(body)
            if not isinstance(document, dict):
                raise InvalidRequestContent("Could not parse request body into json: expected an object")
            for name, member in body_members:
                if name in document and document[name] is not None:
                    params[name] = _decode_blobs(member, document[name])
        problems: list[str] = []
        plan.validate(params, "", problems)
        if problems:
            raise validation_error(problems)
        return params

    # ---- responses -----------------------------------------------------------------
    def serialize(self, op: OperationModel, output: dict[str, Any] | None) -> HttpResponse:
        plan = self._plan(op)
        status = plan.status
        headers: list[tuple[str, str]] = []
        if not plan.has_output:
            return HttpResponse(status, headers, b"")
        document: dict[str, Any] = {}
        body = b""
        stream = None
        members = plan.outputs
        for name, value in (output or {}).items():
            if value is None:
                continue
            found = members.get(name)
            if found is None:
                continue
            loc, wire, member, kind = found
            if loc == "statusCode":
                status = int(value)
            elif loc == "header":
                headers.append((wire, str(value)))
            elif name == plan.output_payload:
                if kind == "blob":
                    body = value if isinstance(value, bytes) else bytes(value)
                elif member.serialization.get("eventstream"):  # the operation hands over the encoded messages
                    stream = value
                else:
                    body = orjson.dumps(_encode_blobs(member, value))
            else:
                document[name] = _encode_blobs(member, value)
        if plan.output_payload is None:
            body = orjson.dumps(document)
            headers.append(("Content-Type", "application/json"))
        response = HttpResponse(status, headers, body)
        return response if stream is None else response.streaming(stream)

    def _plan(self, op: OperationModel) -> "_OperationPlan":
        plan = self._plans.get(op.name)
        if plan is None:
            plan = self._plans[op.name] = _OperationPlan(op, self._validators)
        return plan

    def serialize_error(self, error: LambdaError) -> HttpResponse:
        status, message_key, header_members = self._error_layout(error.code)
        if error.code in _FRONT_END:  # the signature checks answer before Lambda does: no Type
            document: dict[str, Any] = {message_key: error.message}
        else:
            document = {"Type": "User" if status < 500 else "Service", message_key: error.message}
        headers = [("x-amzn-ErrorType", error.code), ("Content-Type", "application/json")]
        for key, value in error.fields.items():
            if key in header_members:
                headers.append((header_members[key], str(value)))
            else:
                document[key] = value
        return HttpResponse(status, headers, orjson.dumps(document))

    def _error_layout(self, code: str) -> tuple[int, str, dict[str, str]]:
        return self._error_layouts.get(code) or (_UNMODELLED_STATUS.get(code, 500), _UNMODELLED_KEY.get(code, "message"), {})

    @cached_property
    def _error_layouts(self) -> dict[str, tuple[int, str, dict[str, str]]]:
        layouts = {}
        for shape_name in self.model.shape_names:
            shape = self.model.shape_for(shape_name)
            if not shape.metadata.get("exception"):
                continue
            status = shape.metadata.get("error", {}).get("httpStatusCode", 400)
            key = "message" if "message" in shape.members else "Message"
            header_members = {
                name: m.serialization["name"]
                for name, m in shape.members.items()
                if m.serialization.get("location") == "header"
            }
            layouts[shape_name] = (status, key, header_members)
        return layouts


def parse_query(raw: bytes | str) -> dict[str, list[str]]:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return parse_qs(text, keep_blank_values=True) if text else {}


# ---- helpers ---------------------------------------------------------------------------
def _compile_route(op: OperationModel) -> Route:
    uri = op.http["requestUri"]
    path, _, literal = uri.partition("?")
    literal_query = tuple((k, v[0]) for k, v in parse_qs(literal, keep_blank_values=True).items())
    regex = "^"
    for part in re.split(r"(\{[^}]+\})", path.rstrip("/") or "/"):
        if part.startswith("{"):
            label = part[1:-1]
            greedy = label.endswith("+")
            label = label.rstrip("+")
            regex += f"(?P<{label}>{'.+' if greedy else '[^/]+'})"
        else:
            regex += re.escape(part)
    return Route(op.http["method"], re.compile(regex + "$"), literal_query, op)


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from exc


def _coerce_scalar(kind: str, value: str, name: str) -> Any:
    if kind in ("integer", "long"):
        try:
            return int(value)
        except ValueError as exc:
            raise InvalidParameterValue(f"Invalid value for {name}: {value!r} is not an integer") from exc
    if kind == "boolean":
        return value.lower() == "true"
    return value


def _decode_blobs(shape: Shape, value: Any) -> Any:
    """JSON values as the model types them: blobs decoded from base64, doubles as floats."""
    kind = shape.type_name
    if kind in ("double", "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "map" and isinstance(value, dict):
        return {k: _decode_blobs(shape.value, v) for k, v in value.items()}
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidParameterValue("Could not decode base64-encoded blob value") from exc
    if kind == "structure" and isinstance(value, dict):
        return {k: (_decode_blobs(shape.members[k], v) if k in shape.members else v) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_decode_blobs(shape.member, v) for v in value]
    return value


def _encode_blobs(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "blob" and isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if kind == "structure" and isinstance(value, dict):
        return {
            k: (_encode_blobs(shape.members[k], v) if k in shape.members else v)
            for k, v in value.items()
            if v is not None
        }
    if kind == "list" and isinstance(value, list):
        return [_encode_blobs(shape.member, v) for v in value]
    return value


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "blob": (bytes, bytearray),
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str),
}


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:] if name else name


def _shown(value: Any) -> str:
    """A value as AWS's (Java) validator writes it: lists ``[a, b]``, maps ``{k=v}``,
    doubles ``2.0``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    if isinstance(value, (bytes, bytearray)):
        return "<binary>"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_shown(k)}={_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def _problem(value: Any, path: str, constraint: str) -> str:
    quoted = "null" if value is None else f"'{_shown(value)}'"  # AWS writes a missing value bare
    return f"Value {quoted} at '{path}' failed to satisfy constraint: {constraint}"


def validation_error(problems: list[str]) -> Validation:
    """AWS's ValidationException: every problem, counted, in one message."""
    count = len(problems)
    return Validation(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))


# check(value, path, problems): appends what is wrong with value (AWS's wording) to problems
Validator = Callable[[Any, str, list[str]], None]


class _OperationPlan:
    """What parsing and serialising one operation needs from the model, looked up once."""

    def __init__(self, op: OperationModel, validators: dict[str, Validator]) -> None:
        shape = op.input_shape
        self.input_payload = shape.serialization.get("payload") if shape is not None else None
        self.inputs: tuple[tuple[str, str | None, str, Shape, str], ...] = ()
        self.validate: Validator = _no_check
        if shape is not None:
            self.inputs = tuple(
                (name, m.serialization.get("location"), _input_wire(name, m), m, m.type_name)
                for name, m in shape.members.items()
            )
            self.validate = _validator(shape, validators)
        out = op.output_shape
        self.status: int = op.http.get("responseCode", 200)
        self.has_output = out is not None
        self.output_payload = out.serialization.get("payload") if out is not None else None
        self.outputs: dict[str, tuple[str | None, str, Shape, str]] = {}
        if out is not None:
            self.outputs = {
                name: (m.serialization.get("location"), m.serialization.get("name", name), m, m.type_name)
                for name, m in out.members.items()
            }


def _input_wire(name: str, member: Shape) -> str:
    wire = member.serialization.get("name", name)
    return wire.lower() if member.serialization.get("location") == "header" else wire


def _no_check(value: Any, path: str, problems: list[str]) -> None:
    return None


def _validator(shape: Shape, validators: dict[str, Validator]) -> Validator:
    """A function that checks a value against its shape: types, required members, lengths,
    ranges, enums, patterns — built once per shape from the model."""
    key = f"{shape.type_name}:{shape.name}"
    found = validators.get(key)
    if found is not None:
        return found
    late: list[Validator] = []
    validators[key] = lambda value, path, problems: late[0](value, path, problems)  # a shape that contains itself
    check = _build_validator(shape, validators)
    late.append(check)
    validators[key] = check
    return check


def _constraints(shape: Shape) -> list[str]:
    """A shape's own constraints in AWS's words (for the members of a list or map)."""
    meta = shape.metadata
    kind = shape.type_name
    said: list[str] = []
    what = "length" if kind in ("string", "blob", "list", "map") else "value"
    double = kind in ("double", "float")
    if meta.get("max") is not None:
        said.append(f"Member must have {what} less than or equal to {_bound(meta['max'], double)}")
    if meta.get("min") is not None:
        said.append(f"Member must have {what} greater than or equal to {_bound(meta['min'], double)}")
    if kind == "string" and meta.get("pattern") is not None:
        said.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if kind == "string" and getattr(shape, "enum", None):
        said.append(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
    return said


def _bound(value: Any, double: bool) -> str:
    return f"{float(value):.1f}" if double else str(value)


def _build_validator(shape: Shape, validators: dict[str, Validator]) -> Validator:
    kind = shape.type_name
    name = shape.name
    expected = _TYPES.get(kind)
    integral = kind in ("integer", "long")
    double = kind in ("double", "float")
    meta = shape.metadata

    def wrong_type(value: Any) -> bool:
        return bool(expected) and (not isinstance(value, expected) or ((integral or double) and isinstance(value, bool)))

    if kind == "structure":
        required = tuple(shape.required_members)
        members = {m: _validator(member, validators) for m, member in shape.members.items()}

        def check_structure(value: Any, path: str, problems: list[str]) -> None:
            if wrong_type(value):
                problems.append(_problem(value, path or name, f"Member must be of type {kind}"))
                return
            for req in required:
                if value.get(req) is None:
                    problems.append(_problem(None, _join(path, req), "Member must not be null"))
            for member_name, member_value in value.items():
                member_check = members.get(member_name)
                if member_check is not None and member_value is not None:
                    member_check(member_value, _join(path, member_name), problems)

        return check_structure

    checks: list[Callable[[Any], str | None]] = []
    if kind in ("string", "blob", "list", "map"):
        low, high = meta.get("min"), meta.get("max")
        if high is not None:
            checks.append(lambda v, h=high: f"Member must have length less than or equal to {h}" if len(v) > h else None)
        if low is not None:
            checks.append(lambda v, lo=low: f"Member must have length greater than or equal to {lo}" if len(v) < lo else None)
    if (integral or double) and (meta.get("min") is not None or meta.get("max") is not None):
        low, high = meta.get("min"), meta.get("max")
        if high is not None:
            checks.append(lambda v, h=high: f"Member must have value less than or equal to {_bound(h, double)}" if v > h else None)
        if low is not None:
            checks.append(lambda v, lo=low: f"Member must have value greater than or equal to {_bound(lo, double)}" if v < lo else None)
    if kind == "string":
        pattern = _pattern(meta.get("pattern"))
        if pattern is not None:
            source = meta["pattern"]
            checks.append(lambda v: None if pattern.fullmatch(v) else f"Member must satisfy regular expression pattern: {source}")
        if shape.enum:
            allowed, listed = frozenset(shape.enum), ", ".join(shape.enum)
            checks.append(lambda v: None if v in allowed else f"Member must satisfy enum value set: [{listed}]")
    elements: Callable[[Any, str, list[str]], None] | None = None
    if kind == "list":
        member = shape.member
        item = _validator(member, validators)
        said = _constraints(member) + (["Member must not be null"] if getattr(member, "enum", None) else [])

        def check_items(value: Any, path: str, problems: list[str]) -> None:
            inner: list[str] = []
            for element in value:
                item(element, path, inner)
            if inner:
                problems.append(_problem(value, path, f"Member must satisfy constraint: [{', '.join(said)}]"))

        elements = check_items
    elif kind == "map":
        key_check, value_check = _validator(shape.key, validators), _validator(shape.value, validators)
        keys_said = _constraints(shape.key)
        values_said = _constraints(shape.value) + ["Member must not be null"]

        def check_entries(value: Any, path: str, problems: list[str]) -> None:
            bad_keys: list[str] = []
            bad_values: list[str] = []
            for k, v in value.items():
                key_check(k, path, bad_keys)
                value_check(v, path, bad_values)
            if bad_keys:
                problems.append(_problem(value, path, f"Map keys must satisfy constraint: [{', '.join(keys_said)}]"))
            if bad_values:
                problems.append(_problem(value, path, f"Map value must satisfy constraint: [{', '.join(values_said)}]"))

        elements = check_entries
    steps = tuple(checks)

    def check_all(value: Any, path: str, problems: list[str]) -> None:
        if wrong_type(value):
            problems.append(_problem(value, path or name, f"Member must be of type {kind}"))
            return
        for step in steps:
            said = step(value)
            if said is not None:
                problems.append(_problem(value, path or name, said))
        if elements is not None:
            elements(value, path or name, problems)

    return check_all


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


@functools.lru_cache(maxsize=None)
def _pattern(source: str | None) -> re.Pattern[str] | None:
    """Compile a model pattern once; Java-only syntax we cannot express is skipped."""
    if source is None:
        return None
    try:
        return re.compile(source, re.DOTALL)
    except re.error:
        return None
