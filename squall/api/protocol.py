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
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

from squall.errors import InvalidParameterValue, InvalidRequestContent, LambdaError, UnknownOperation

# Codes we may answer that the model does not list (AWS sends them too).
_UNMODELLED_STATUS = {"UnknownOperationException": 404, "ValidationException": 400}


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


class RestJsonProtocol:
    """Routes, parses and serialises requests of one rest-json service model."""

    def __init__(self, model: ServiceModel, operations: set[str] | None = None) -> None:
        self.model = model
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

    # ---- routing -------------------------------------------------------------------
    def match(self, method: str, raw_path: str, query: dict[str, list[str]]) -> tuple[OperationModel, dict[str, str]]:
        path = raw_path.rstrip("/") or "/"
        for route in self._routes_by_method.get(method, ()):
            m = route.pattern.match(path)
            if m is None:
                continue
            if any(query.get(k, [None])[0] != v for k, v in route.literal_query):
                continue
            return route.operation, {k: unquote(v) for k, v in m.groupdict().items()}
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
        shape = op.input_shape
        if shape is None:
            return {}
        params: dict[str, Any] = {}
        payload_name = shape.serialization.get("payload")
        body_members: dict[str, Shape] = {}
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if loc == "uri":
                if wire in path_params:
                    params[name] = _coerce_scalar(member, path_params[wire], name)
            elif loc == "querystring":
                if wire in query:
                    values = query[wire]
                    if member.type_name == "list":
                        params[name] = values
                    else:
                        params[name] = _coerce_scalar(member, values[0], name)
            elif loc == "header":
                value = headers.get(wire.lower())
                if value is not None:
                    params[name] = _coerce_scalar(member, value, name)
            elif name == payload_name:
                if member.type_name == "blob":
                    params[name] = body
                elif body:
                    params[name] = _decode_blobs(member, _json_body(body))
            else:
                body_members[name] = member
        if body_members and body and payload_name is None:
            document = _json_body(body)
            if not isinstance(document, dict):
                raise InvalidRequestContent("Could not parse request body into json: expected an object")
            for name, member in body_members.items():
                if name in document and document[name] is not None:
                    params[name] = _decode_blobs(member, document[name])
        _validate(shape, params, path="")
        return params

    # ---- responses -----------------------------------------------------------------
    def serialize(self, op: OperationModel, output: dict[str, Any] | None) -> HttpResponse:
        status = op.http.get("responseCode", 200)
        headers: list[tuple[str, str]] = []
        shape = op.output_shape
        output = output or {}
        if shape is None:
            return HttpResponse(status, headers, b"")
        payload_name = shape.serialization.get("payload")
        document: dict[str, Any] = {}
        body = b""
        for name, value in output.items():
            if value is None:
                continue
            member = shape.members.get(name)
            if member is None:
                continue
            loc = member.serialization.get("location")
            if loc == "statusCode":
                status = int(value)
            elif loc == "header":
                headers.append((member.serialization.get("name", name), str(value)))
            elif name == payload_name:
                if member.type_name == "blob":
                    body = value if isinstance(value, bytes) else bytes(value)
                else:
                    body = orjson.dumps(_encode_blobs(member, value))
            else:
                document[name] = _encode_blobs(member, value)
        if payload_name is None:
            body = orjson.dumps(document)
            headers.append(("Content-Type", "application/json"))
        return HttpResponse(status, headers, body)

    def serialize_error(self, error: LambdaError) -> HttpResponse:
        status, message_key, header_members = self._error_layout(error.code)
        document: dict[str, Any] = {"Type": "User" if status < 500 else "Service", message_key: error.message}
        headers = [("x-amzn-ErrorType", error.code), ("Content-Type", "application/json")]
        for key, value in error.fields.items():
            if key in header_members:
                headers.append((header_members[key], str(value)))
            else:
                document[key] = value
        return HttpResponse(status, headers, orjson.dumps(document))

    def _error_layout(self, code: str) -> tuple[int, str, dict[str, str]]:
        return self._error_layouts.get(code) or (_UNMODELLED_STATUS.get(code, 500), "message", {})

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


def _coerce_scalar(shape: Shape, value: str, name: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(value)
        except ValueError as exc:
            raise InvalidParameterValue(f"Invalid value for {name}: {value!r} is not an integer") from exc
    if kind == "boolean":
        return value.lower() == "true"
    return value


def _decode_blobs(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
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


def _validation_error(value: Any, path: str, constraint: str) -> InvalidParameterValue:
    shown = value if not isinstance(value, (bytes, bytearray)) else "<binary>"
    # AWS writes a missing value as a bare ``null``: "Value null at 'role' ...".
    quoted = "null" if value is None else f"'{shown}'"
    return InvalidParameterValue(
        f"1 validation error detected: Value {quoted} at '{path}' failed to satisfy constraint: {constraint}"
    )


def _validate(shape: Shape, value: Any, path: str) -> None:
    """Check a value against its shape: types, required members, lengths, ranges, enums, patterns."""
    kind = shape.type_name
    expected = _TYPES.get(kind)
    if expected and (not isinstance(value, expected) or (kind in ("integer", "long") and isinstance(value, bool))):
        raise _validation_error(value, path or shape.name, f"Member must be of type {kind}")
    meta = shape.metadata
    if kind == "structure":
        for req in shape.required_members:
            if value.get(req) is None:
                raise _validation_error(None, _join(path, req), "Member must not be null")
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is not None and member_value is not None:
                _validate(member, member_value, _join(path, name))
        return
    if kind in ("string", "blob", "list", "map"):
        length = len(value)
        if "min" in meta and length < meta["min"]:
            raise _validation_error(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and length > meta["max"]:
            raise _validation_error(value, path, f"Member must have length less than or equal to {meta['max']}")
    if kind in ("integer", "long"):
        if "min" in meta and value < meta["min"]:
            raise _validation_error(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise _validation_error(value, path, f"Member must have value less than or equal to {meta['max']}")
    if kind == "string":
        enum = shape.enum
        if enum and value not in enum:
            raise _validation_error(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = _pattern(meta.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            raise _validation_error(
                value, path, f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
    elif kind == "list":
        for i, item in enumerate(value):
            _validate(shape.member, item, f"{path}.{i + 1}.member")
    elif kind == "map":
        for k, v in value.items():
            _validate(shape.key, k, f"{path}.key")
            _validate(shape.value, v, f"{path}.value")


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
