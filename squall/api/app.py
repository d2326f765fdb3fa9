"""The ASGI application: a thin translator between HTTP and the engine.

It reads the request, routes it through the rest-json protocol (Lambda) or the JSON
protocol (the CloudWatch Logs subset), calls the operation, and writes the response.
This is the one place where internal errors become Lambda errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable

import orjson

from squall.api.lambda_api import CodeLinks, LambdaApi, RequestContext, service_model
from squall.api.logs_api import LogsApi
from squall.api.protocol import HttpResponse, RestJsonProtocol, parse_query
from squall.engine.engine import Engine
from squall.errors import LambdaError, RequestTooLarge, ServiceError, ServiceUnavailable

log = logging.getLogger("squall.api")

# Largest request we read: a 50 MB zip, base64-encoded in a JSON body, with room to spare.
MAX_REQUEST_BYTES = 70_167_211

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SquallApp:
    def __init__(self, engine: Engine, links: CodeLinks) -> None:
        self.engine = engine
        self.links = links
        self.lambda_api = LambdaApi(engine, links)
        self.operations = self.lambda_api.operations()
        self.protocol = RestJsonProtocol(service_model(), set(self.operations))
        self.logs_api = LogsApi(engine.logs)
        self.request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.engine.start()
                except Exception as exc:  # report start-up failure to the server and stop
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = self.request_ids.next()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        query = parse_query(scope.get("query_string", b""))
        try:
            body = await _read_body(receive, headers)
            if "x-amz-target" in headers:
                response = await self.logs_api.handle(headers["x-amz-target"], body)
            elif method == "GET" and raw_path == "/health":
                response = _json(200, self.engine.health())
            elif method == "GET" and raw_path.startswith("/squall/code/"):
                response = await self._code_download(raw_path, query)
            elif method == "GET" and raw_path == "/squall/queue":  # `squall queue`: async queue per function
                name = query.get("function", [None])[0]
                response = _json(200, await self.engine.async_invocations.report(name))
            else:
                op, path_params = self.protocol.match(method, raw_path, query)
                params = self.protocol.parse(op, path_params, query, headers, body)
                ctx = RequestContext(request_id, _base_url(scope, headers))
                output = await self.operations[op.name](params, ctx)
                response = self.protocol.serialize(op, output)
                if op.name == "Invoke" and response.body:
                    response.headers.append(("Content-Type", "application/json"))
                elif op.name == "InvokeAsync":  # Lambda's body; the model only maps the status
                    response = _json(202, {"Status": 202})
        except LambdaError as exc:
            response = self.protocol.serialize_error(exc)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the shutdown grace period is
            # over: answer them (a closed connection looks like a network failure, which
            # clients retry), then end normally so the shutdown goes on
            log.warning("request %s (%s %s) stopped by the server's shutdown", request_id, method, raw_path)
            response = self.protocol.serialize_error(
                ServiceUnavailable(
                    "Squall is shutting down: this request was still running when the shutdown grace period "
                    f"({self.engine.settings.shutdown_grace_seconds:g} s) ended, and was stopped before it "
                    "finished. An invocation may have run in part. Retry it once the server is back."
                )
            )
        except Exception:
            log.exception("internal error serving %s %s", method, raw_path)
            response = self.protocol.serialize_error(
                ServiceError(f"Squall hit an internal error; see the server log for request {request_id}.")
            )
        await _send(send, response, request_id)

    async def _code_download(self, raw_path: str, query: dict[str, list[str]]) -> HttpResponse:
        name = raw_path.rsplit("/", 1)[-1]
        sha = name.removesuffix(".zip")
        expires = query.get("expires", [""])[0]
        signature = query.get("signature", [""])[0]
        if not (len(sha) == 64 and self.links.verify(sha, expires, signature)):
            return HttpResponse(403, [("Content-Type", "text/plain")], b"This code link is invalid or has expired.\n")
        try:
            data = await self.engine.code.read(sha)
        except FileNotFoundError:
            return HttpResponse(404, [("Content-Type", "text/plain")], b"No such code package.\n")
        return HttpResponse(200, [("Content-Type", "application/zip")], data)


class RequestIds:
    """Request ids in UUID version 4 form, from a generator seeded once from the OS.

    They need to be unique, not secret: drawing them from ``random.Random`` (seeded with
    ``os.urandom``) saves the ``getrandom`` system call ``uuid.uuid4()`` makes per request.
    """

    _CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version nibble and the variant bits
    _SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def next(self) -> str:
        h = "%032x" % (self._random.getrandbits(128) & self._CLEAR | self._SET)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"Request must be smaller than {MAX_REQUEST_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise RequestTooLarge(f"Request must be smaller than {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _json(status: int, document: Any) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], orjson.dumps(document))


async def _send(send: Send, response: HttpResponse, request_id: str) -> None:
    headers = [(b"x-amzn-requestid", request_id.encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
