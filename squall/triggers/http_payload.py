"""HTTP request ⇄ Lambda event, and the function's answer ⇄ HTTP response.

For function URLs and HTTP APIs, payload formats 2.0 (``event_v2``/``response_v2``) and 1.0
(``event_v1``/``response_v1``, the REST-proxy shape). Pure: no I/O and no clock (the caller
passes the request time).

Where AWS's documentation and AWS's observed behaviour differ, this follows the behaviour
(recorded against AWS in LocalStack's function-URL snapshot tests, 2025):

* a function that returns a JSON *string* is answered with the string's value, without its
  quotes (``"hello"`` → 5 bytes ``hello``); the docs' example shows the quotes;
* any other value without ``statusCode`` is answered as compact JSON (``{"a": 1}`` from the
  Python runtime reaches the client as ``{"a":1}``): only whitespace between tokens is dropped,
  numbers and escapes are kept as the function wrote them;
* a structured answer without a content-type gets ``content-type: application/json``;
* ``statusCode`` may be a string of digits (``"418"``), and (2.0 only) ``body`` may be an object,
  which is sent as compact JSON.

Request bodies are passed as text only when they are UTF-8 and the content type is ``text/*``
or ``application/json`` (AWS: anything else is base64-encoded by default).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_JSON_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")|[ \t\n\r]+', re.DOTALL)
_DEFAULT_CONTENT_TYPE = ("content-type", "application/json")


@dataclass(frozen=True)
class HttpRequest:
    method: str  # "GET"
    raw_path: str  # as received, percent-encoding kept, no query
    raw_query: str  # without "?"
    headers: list[tuple[str, str]]  # in order, names as received (repeats possible)
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    time_epoch_ms: int = 0  # the caller passes the clock's value


@dataclass(frozen=True)
class RequestContext:
    """What the caller knows about the target of the request."""

    account_id: str
    api_id: str  # the URL id (function URLs) or the API id
    domain_name: str  # the Host as received, without port
    request_id: str
    route_key: str = "$default"
    stage: str = "$default"
    path_parameters: dict[str, str] | None = None  # HTTP APIs
    stage_variables: dict[str, str] | None = None
    # AWS_IAM: {"accessKey","accountId","callerId","cognitoIdentity","principalOrgId","userArn","userId"}
    authorizer_iam: dict[str, Any] | None = None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]  # Set-Cookie may repeat
    body: bytes


class BadFunctionResponse(Exception):
    """The function's answer cannot be mapped to an HTTP response (the caller answers 502)."""


# ---------------------------------------------------------------- request → event


def request_time(epoch_ms: int) -> str:
    """``12/Mar/2020:19:03:58 +0000`` (English month names whatever the locale)."""
    t = datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year:04d}:{t:%H:%M:%S} +0000"


def _domain_prefix(domain_name: str) -> str:
    return domain_name.split(".", 1)[0]


def _is_text(body: bytes, content_type: str | None) -> str | None:
    """The body as text when AWS would pass it as text, else None (→ base64)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not (media.startswith("text/") or media == "application/json"):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _body_fields(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """(body, isBase64Encoded): None for an empty body, base64 unless AWS would send text."""
    if not body:
        return None, False
    text = _is_text(body, content_type)
    if text is not None:
        return text, False
    return base64.b64encode(body).decode("ascii"), True


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    # Values and keys URL-decoded, "+" as a space (API Gateway does the same), blanks kept.
    return parse_qsl(raw_query, keep_blank_values=True) if raw_query else []


def event_v2(req: HttpRequest, ctx: RequestContext, for_function_url: bool = True) -> dict[str, Any]:
    """Payload format 2.0: the function URL event, or an HTTP API's with ``for_function_url=False``."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in req.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        elif key in headers:
            headers[key] = f"{headers[key]},{value}"
        else:
            headers[key] = value
    route_key = "$default" if for_function_url else ctx.route_key
    stage = "$default" if for_function_url else ctx.stage

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query: dict[str, str] = {}
    for key, value in _query_pairs(req.raw_query):
        query[key] = f"{query[key]},{value}" if key in query else value
    if query:
        event["queryStringParameters"] = query

    context: dict[str, Any] = {"accountId": ctx.account_id, "apiId": ctx.api_id}
    if ctx.authorizer_iam is not None:
        context["authorizer"] = {"iam": dict(ctx.authorizer_iam)}
    context.update(
        {
            "domainName": ctx.domain_name,
            "domainPrefix": _domain_prefix(ctx.domain_name),
            "http": {
                "method": req.method,
                "path": unquote(req.raw_path),
                "protocol": req.protocol,
                "sourceIp": req.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": ctx.request_id,
            "routeKey": route_key,
            "stage": stage,
            "time": request_time(req.time_epoch_ms),
            "timeEpoch": req.time_epoch_ms,
        }
    )
    event["requestContext"] = context
    body, encoded = _body_fields(req.body, headers.get("content-type"))
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    if not for_function_url:
        if ctx.path_parameters is not None:
            event["pathParameters"] = dict(ctx.path_parameters)
        if ctx.stage_variables is not None:
            event["stageVariables"] = dict(ctx.stage_variables)
    return event


def event_v1(req: HttpRequest, ctx: RequestContext, resource: str) -> dict[str, Any]:
    """Payload format 1.0 (the REST-proxy shape, as an HTTP API sends it: header names lower-case)."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in req.headers:
        key = name.lower()
        headers[key] = value  # the last value wins
        multi_headers.setdefault(key, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in _query_pairs(req.raw_query):
        query[key] = value  # the last value wins
        multi_query.setdefault(key, []).append(value)

    iam = ctx.authorizer_iam or {}
    path = unquote(req.raw_path)
    body, encoded = _body_fields(req.body, headers.get("content-type"))
    return {
        "version": "1.0",
        "resource": resource,
        "path": path,
        "httpMethod": req.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "domainName": ctx.domain_name,
            "domainPrefix": _domain_prefix(ctx.domain_name),
            "extendedRequestId": ctx.request_id,
            "httpMethod": req.method,
            "identity": {
                "accessKey": iam.get("accessKey"),
                "accountId": iam.get("accountId"),
                "caller": iam.get("callerId"),
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": iam.get("principalOrgId"),
                "sourceIp": req.source_ip,
                "user": iam.get("userId"),
                "userAgent": headers.get("user-agent", ""),
                "userArn": iam.get("userArn"),
            },
            "path": path,
            "protocol": req.protocol,
            "requestId": ctx.request_id,
            "requestTime": request_time(req.time_epoch_ms),
            "requestTimeEpoch": req.time_epoch_ms,
            "resourceId": None,
            "resourcePath": resource,
            "stage": ctx.stage,
        },
        "pathParameters": dict(ctx.path_parameters) if ctx.path_parameters is not None else None,
        "stageVariables": dict(ctx.stage_variables) if ctx.stage_variables is not None else None,
        "body": body,
        "isBase64Encoded": encoded,
    }


# ---------------------------------------------------------------- answer → response


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(payload: bytes) -> tuple[str, Any]:
    try:
        text = payload.decode("utf-8")
        return text, json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadFunctionResponse(f"the function's answer is not valid JSON: {exc}") from None


def compact_json(text: str) -> str:
    """Valid JSON text without the whitespace between tokens (string contents untouched)."""
    return _JSON_TOKEN.sub(lambda m: m.group(1) or "", text)


def _status(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 100 <= value <= 599:  # true is 1: out of range
        raise BadFunctionResponse(f"statusCode must be an integer from 100 to 599, not {value!r}")
    return value


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def sendable(name: str, value: str) -> bool:
    """Whether a header can go on the wire: a token name, a Latin-1 value without CR, LF or NUL."""
    if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _header_map(value: Any, field: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadFunctionResponse(f"{field} must be an object of strings")
    for name, header in value.items():
        if not sendable(name, header):
            raise BadFunctionResponse(f"{field}: {name!r} cannot be sent as an HTTP header")
    return list(value.items())


def _body(doc: dict[str, Any], allow_object: bool) -> bytes:
    body, encoded = doc.get("body"), doc.get("isBase64Encoded")
    if encoded is not None and not isinstance(encoded, bool):
        raise BadFunctionResponse("isBase64Encoded must be a boolean")
    if body is None:
        return b""
    if allow_object and isinstance(body, dict) and not encoded:
        return compact_json(json.dumps(body, ensure_ascii=False)).encode("utf-8")
    if not isinstance(body, str):
        raise BadFunctionResponse("body must be a string")
    try:
        return base64.b64decode(body, validate=True) if encoded else body.encode("utf-8")
    except (binascii.Error, ValueError) as exc:  # bad base64; a lone surrogate
        raise BadFunctionResponse(f"body cannot be decoded: {exc}") from None


def _with_content_type(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if any(name.lower() == "content-type" for name, _ in headers):
        return headers
    return [_DEFAULT_CONTENT_TYPE, *headers]


def response_v2(payload: bytes) -> HttpResponse:
    """Function URL / HTTP API 2.0 rules (the response is inferred when there is no statusCode)."""
    text, doc = _parse(payload)
    if not (isinstance(doc, dict) and "statusCode" in doc):
        # A string is sent as its value; anything else (object, array, number, boolean, null)
        # as its compact JSON text: a returned null reaches the client as the 4 bytes "null".
        try:
            body = (doc if isinstance(doc, str) else compact_json(text)).encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate escaped in the string
            raise BadFunctionResponse(f"the answer cannot be sent as UTF-8: {exc}") from None
        return HttpResponse(200, [_DEFAULT_CONTENT_TYPE], body)
    status = _status(doc["statusCode"])
    headers = _header_map(doc.get("headers"), "headers")
    cookies = doc.get("cookies")
    if cookies is None:
        cookies = []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise BadFunctionResponse("cookies must be an array of strings")
    if not all(sendable("Set-Cookie", c) for c in cookies):
        raise BadFunctionResponse("cookies: a cookie cannot be sent as an HTTP header")
    body = _body(doc, allow_object=True)
    headers = _with_content_type(headers) + [("Set-Cookie", cookie) for cookie in cookies]
    return HttpResponse(status, headers, body)


def response_v1(payload: bytes) -> HttpResponse:
    """REST-proxy (1.0) rules: an object with statusCode, nothing inferred."""
    _, doc = _parse(payload)
    if not (isinstance(doc, dict) and "statusCode" in doc):
        raise BadFunctionResponse("Malformed Lambda proxy response")
    status = _status(doc["statusCode"])
    single = _header_map(doc.get("headers"), "headers")
    multi_doc = doc.get("multiValueHeaders")
    if multi_doc is None:
        multi_doc = {}
    if not isinstance(multi_doc, dict) or not all(
        isinstance(vs, list) and all(isinstance(v, str) for v in vs) for vs in multi_doc.values()
    ):
        raise BadFunctionResponse("multiValueHeaders must be an object of string arrays")
    # Merged; a pair given in both is sent once (AWS: multiValueHeaders' values win).
    headers = [(name, v) for name, vs in multi_doc.items() for v in vs]
    if not all(sendable(name, v) for name, v in headers):
        raise BadFunctionResponse("multiValueHeaders: a value cannot be sent as an HTTP header")
    seen = {(name.lower(), v) for name, v in headers}
    headers += [(name, v) for name, v in single if (name.lower(), v) not in seen]
    return HttpResponse(status, _with_content_type(headers), _body(doc, allow_object=False))
