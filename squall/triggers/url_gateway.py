"""Function URLs, the HTTP side: a request to ``<url-id>.lambda-url.<region>.localhost`` (or to
``/lambda-url/<url-id>/…``) becomes a synchronous invocation with the payload format 2.0
event, and the function's answer becomes the HTTP response, as on Lambda.

Function URLs answer in their own way, not the Lambda API's: errors are
``{"Message": ...}`` with the status a function URL gives (403 Forbidden, 413, 429, 502,
504). CORS is answered here (preflights never reach the function) when the URL has a
``Cors`` setting. ``AWS_IAM`` URLs verify SigV4 (service ``lambda``) and the
``lambda:InvokeFunctionUrl`` permission; ``NONE`` URLs need a resource-policy statement that
allows ``lambda:InvokeFunctionUrl`` to principal ``*``, as on Lambda. URLs in ``RESPONSE_STREAM``
mode answer as the function writes (``url_stream.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson

from squall.api.guard import host_name
from squall.api.http_protocol import send_chunks
from squall.api.protocol import parse_query
from squall.auth import sigv4
from squall.auth.policy import Caller, evaluate
from squall.engine.engine import Engine, InvokeOptions
from squall.errors import LambdaError, ResourceNotFound, TooManyRequests
from squall.invoke.invocation import MAX_SYNC_PAYLOAD
from squall.triggers.function_urls import PATH_PREFIX, FunctionUrl
from squall.triggers.http_payload import BadFunctionResponse, HttpRequest, RequestContext, event_v2, response_v2
from squall.triggers.url_stream import invoke_streaming

log = logging.getLogger("squall.urls")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Body = bytes | AsyncIterator[bytes]  # an AsyncIterator: a RESPONSE_STREAM answer, sent as it comes

ANONYMOUS = Caller(arn="*", account="", kind="anonymous")
JSON = [(b"content-type", b"application/json")]


def _message(status: int, text: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, list(JSON), orjson.dumps({"Message": text})


class UrlGateway:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.urls = engine.function_urls
        self.suffix = f".lambda-url.{engine.settings.region}.localhost"

    def url_id(self, host: str | None, raw_path: str) -> tuple[str, str] | None:
        """(url id, the path the function sees) when the request is for a function URL."""
        if host:
            name = host_name(host)
            if name.endswith(self.suffix):
                return name[: -len(self.suffix)], raw_path
        if raw_path.startswith(PATH_PREFIX):
            rest = raw_path[len(PATH_PREFIX):]
            url_id, _, path = rest.partition("/")
            return url_id, "/" + path
        return None

    async def serve(self, scope: Scope, receive: Receive, send: Send, request_id: str, url_id: str, path: str) -> None:
        status, headers, body = await self._answer(scope, receive, request_id, url_id, path)
        headers.append((b"x-amzn-requestid", request_id.encode()))
        if not isinstance(body, bytes):  # RESPONSE_STREAM: chunked, as the function writes
            await send_chunks(send, status, headers, body)
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive, request_id: str, url_id: str,
                      path: str) -> tuple[int, list[tuple[bytes, bytes]], Body]:
        url = self.urls.lookup(url_id)
        if url is None:
            return _message(404, "Not Found")
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        lower = {k.lower(): v for k, v in raw_headers}
        cors = url.record.cors
        origin = lower.get("origin")
        method = scope["method"]
        if cors and method == "OPTIONS" and origin is not None and "access-control-request-method" in lower:
            return 200, self._preflight(cors, origin, lower), b""
        body = await read_limited(receive, MAX_SYNC_PAYLOAD)
        if body is None:
            return _message(413, "Request Entity Too Large")
        query = scope.get("query_string", b"").decode("latin-1")
        authorizer = None
        if self.engine.identity.enabled:
            refused, authorizer = self._authorize(url, scope, raw_headers, lower, query, body, path)
            if refused is not None:
                return self._cors(cors, origin, refused)
        client = scope.get("client") or ("127.0.0.1", 0)
        request = HttpRequest(method, path, query, raw_headers, body, client[0], f"HTTP/{scope.get('http_version', '1.1')}",
                              int(time.time() * 1000))
        domain = host_name(lower.get("host", "")) or f"{url_id}{self.suffix}"
        context = RequestContext(self.engine.settings.account_id, url_id, domain, request_id, authorizer_iam=authorizer)
        payload = orjson.dumps(event_v2(request, context))
        if len(payload) > MAX_SYNC_PAYLOAD:
            return self._cors(cors, origin, _message(413, "Request Entity Too Large"))
        if url.record.invoke_mode == "RESPONSE_STREAM":
            return self._cors(cors, origin, await invoke_streaming(self.engine, url, payload, request_id))
        return self._cors(cors, origin, await self._invoke(url, payload, request_id))

    async def _invoke(self, url: FunctionUrl, payload: bytes, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            result = await self.engine.invoke(url.ref, payload, InvokeOptions(request_id))
        except TooManyRequests:
            return _message(429, "Rate Exceeded.")
        except ResourceNotFound:
            return _message(404, "Not Found")
        except LambdaError as error:
            log.info("function URL %s: %s: %s", url.record.url_id, error.code, error.message)
            return _message(502, "Internal Server Error")
        assert result is not None
        if result.function_error:
            if result.error_type == "Sandbox.Timedout":
                return _message(504, "Gateway Timeout")
            return _message(502, "Internal Server Error")
        try:
            response = response_v2(result.payload)
        except BadFunctionResponse as error:
            log.info("function URL %s: the function's answer cannot be sent: %s", url.record.url_id, error)
            return _message(502, "Internal Server Error")
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        return response.status, headers, response.body

    # ---- authorization ---------------------------------------------------------------------------
    def _authorize(self, url: FunctionUrl, scope: Scope, raw_headers: list[tuple[str, str]], lower: dict[str, str],
                   query: str, body: bytes, path: str) -> tuple[tuple[int, list[tuple[bytes, bytes]], bytes] | None,
                                                              dict[str, Any] | None]:
        """(a refusal or None, the ``authorizer.iam`` block for a signed caller)."""
        engine = self.engine
        resource = engine.arns.function(url.record.function_name, url.record.qualifier)
        policy = engine.resource_policy(resource)
        if url.record.auth_type == "NONE":
            context = {"lambda:functionurlauthtype": "NONE"}
            if evaluate(ANONYMOUS, "lambda:InvokeFunctionUrl", resource, (), policy, context).allowed:
                return None, None
            return _message(403, "Forbidden"), None
        parsed_query = parse_query(query.encode("latin-1"))
        try:
            signed = sigv4.read(scope["method"], lower, parsed_query)
            sigv4.check_time(signed, engine.clock())
            if signed.service != "lambda" or signed.region != engine.settings.region:
                return _message(403, "Forbidden"), None
            base = f"{scope.get('scheme', 'http')}://{lower.get('host', '')}"
            signed_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0]

            def verify(secret: str) -> bool:
                return sigv4.verify(signed, secret, scope["method"], base + signed_path, lower, parsed_query, body)

            principal = engine.identity.directory.authenticate(signed, verify)
        except LambdaError:
            return _message(403, "Forbidden"), None
        access = engine.identity.access
        context = access.context(principal)
        context["lambda:functionurlauthtype"] = "AWS_IAM"
        if not access.allowed(principal, "lambda:InvokeFunctionUrl", resource, policy, context):
            return _message(403, "Forbidden"), None
        caller = principal.caller
        return None, {
            "accessKey": signed.access_key,
            "accountId": caller.account,
            "callerId": principal.user_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": caller.arn,
            "userId": principal.user_id,
        }

    # ---- CORS -------------------------------------------------------------------------------------
    @staticmethod
    def _origin_allowed(cors: dict[str, Any], origin: str) -> str | None:
        allowed = cors.get("AllowOrigins") or []
        if "*" in allowed:
            return "*" if not cors.get("AllowCredentials") else origin
        return origin if origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in allowed} else None

    def _preflight(self, cors: dict[str, Any], origin: str, lower: dict[str, str]) -> list[tuple[bytes, bytes]]:
        allowed = self._origin_allowed(cors, origin)
        if allowed is None:
            return []
        headers = [(b"access-control-allow-origin", allowed.encode()), (b"vary", b"Origin")]
        methods = cors.get("AllowMethods") or []
        if methods:
            headers.append((b"access-control-allow-methods", ",".join(m.upper() for m in methods).encode()))
        if cors.get("AllowHeaders"):
            headers.append((b"access-control-allow-headers", ",".join(cors["AllowHeaders"]).lower().encode()))
        if cors.get("AllowCredentials"):
            headers.append((b"access-control-allow-credentials", b"true"))
        if cors.get("MaxAge") is not None:
            headers.append((b"access-control-max-age", str(cors["MaxAge"]).encode()))
        return headers

    def _cors(self, cors: dict[str, Any] | None, origin: str | None,
              answer: tuple[int, list[tuple[bytes, bytes]], Body]) -> tuple[int, list[tuple[bytes, bytes]], Body]:
        if not cors or origin is None:
            return answer
        allowed = self._origin_allowed(cors, origin)
        if allowed is None:
            return answer
        status, headers, body = answer
        headers = [h for h in headers if not h[0].startswith(b"access-control-")]
        headers.append((b"access-control-allow-origin", allowed.encode()))
        headers.append((b"vary", b"Origin"))
        if cors.get("AllowCredentials"):
            headers.append((b"access-control-allow-credentials", b"true"))
        if cors.get("ExposeHeaders"):
            headers.append((b"access-control-expose-headers", ",".join(cors["ExposeHeaders"]).lower().encode()))
        return status, headers, body


async def read_limited(receive: Receive, limit: int) -> bytes | None:
    """A request's body from ASGI messages, or None as soon as it is over ``limit`` bytes (a
    function URL takes 6 MB, an HTTP API 10 MB)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)
