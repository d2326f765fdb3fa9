"""The Lambda Runtime API (2018-06-01), served to one execution environment.

A runtime (an official runtime interface client, a custom ``bootstrap``) long-polls
``GET /runtime/invocation/next``, then posts ``/response`` or ``/error`` for that request
id; ``POST /runtime/init/error`` reports a failed init. One invocation is outstanding at a
time. The engine side is three coroutines: :meth:`RuntimeApi.wait_init`,
:meth:`RuntimeApi.invoke` and :meth:`RuntimeApi.close`.

Each response is written with a single ``write`` on a TCP_NODELAY socket: with Nagle on, a
header-then-body response costs ~88 ms per round trip instead of a fraction of one.

Streamed responses (``Lambda-Runtime-Function-Response-Mode: streaming``): when the engine gave
the invocation a :class:`~squall.invoke.streaming.ResponseStream`, the connection opens it as the
request's headers complete and feeds it each piece of the chunked body as httptools parses it
(up to Lambda's 200 MB for a streamed response); the outcome (ok, or the error of the trailers)
still comes once the request is complete. Without a stream the body is buffered as ever.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

import httptools
import orjson

from squall.invoke.invocation import MAX_RESPONSE_PAYLOAD, error_payload
from squall.invoke.streaming import ResponseStream

PREFIX = "/2018-06-01/runtime"
_STATUS_TEXT = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error"}


@dataclass(frozen=True)
class RuntimeEvent:
    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(frozen=True)
class RuntimeOutcome:
    ok: bool
    body: bytes
    error_type: str | None = None
    content_type: str | None = None
    streamed: bool = False  # the body went to the invocation's stream as it arrived (``body`` is empty)


class InvocationState(StrEnum):
    QUEUED = "queued"  # waiting for the runtime's /next
    DELIVERED = "delivered"  # handed to the runtime
    DONE = "done"  # response or error received


class _Invocation:
    def __init__(self, event: RuntimeEvent, stream: ResponseStream | None = None) -> None:
        self.event = event
        self.stream = stream
        self.state = InvocationState.QUEUED
        self.outcome: asyncio.Future[RuntimeOutcome] = asyncio.get_running_loop().create_future()


class RuntimeApi:
    def __init__(self, max_response: int = MAX_RESPONSE_PAYLOAD, admit: Callable[[socket.socket], bool] | None = None) -> None:
        self.max_response = max_response
        self.admit = admit  # who may connect (the environment's own processes), checked per connection
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._init: asyncio.Future[RuntimeOutcome | None] = asyncio.get_running_loop().create_future()
        self._current: _Invocation | None = None
        self._waiter: asyncio.Future[None] | None = None  # a parked /next
        self._connections: set[_Connection] = set()
        self.address = ""

    # ---- lifecycle ---------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> str:
        """Listen on ``host:port``, or serve on ``sock``, a listening socket made elsewhere
        (by the sandbox, inside the environment's network namespace)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
        else:
            self._server = await loop.create_server(lambda: _Connection(self), host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = f"{sockname[0]}:{sockname[1]}"
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        if self._current is not None and not self._current.outcome.done():
            self._current.outcome.cancel()
        if not self._init.done():
            self._init.cancel()

    # ---- engine side -------------------------------------------------------------
    async def wait_init(self) -> RuntimeOutcome | None:
        """None once the runtime asks for its first event; the error if it reports init failure."""
        return await asyncio.shield(self._init)

    async def invoke(self, event: RuntimeEvent, stream: ResponseStream | None = None) -> RuntimeOutcome:
        """Hand one event to the runtime and wait for its response or error.

        ``stream``: where a streamed response's bytes go as they arrive (see the module's doc).
        The caller applies the deadline (``asyncio.timeout``); a cancelled invoke leaves the
        runtime unusable, and the environment is then stopped.
        """
        if self._current is not None and self._current.state != InvocationState.DONE:
            raise RuntimeError("an invocation is already outstanding")
        invocation = _Invocation(event, stream)
        self._current = invocation
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return await invocation.outcome

    # ---- runtime side ------------------------------------------------------------
    async def _next(self) -> tuple[int, list[tuple[str, str]], bytes]:
        if not self._init.done():
            self._init.set_result(None)
        while self._current is None or self._current.state != InvocationState.QUEUED:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        invocation = self._current
        invocation.state = InvocationState.DELIVERED
        event = invocation.event
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", event.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(event.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", event.invoked_arn),
            ("Lambda-Runtime-Trace-Id", event.trace_id or f"Root=1-00000000-{event.request_id.replace('-', '')[:24]};Sampled=0"),
            ("Content-Type", "application/json"),
        ]
        if event.client_context:
            headers.append(("Lambda-Runtime-Client-Context", event.client_context))
        if event.cognito_identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", event.cognito_identity))
        return 200, headers, event.payload

    def _finish(self, request_id: str, outcome: RuntimeOutcome | None, limit: int | None = None) -> tuple[int, bytes]:
        invocation = self._current
        if invocation is None or invocation.event.request_id != request_id:
            return 400, error_payload("InvalidRequestID", f"Invalid request ID: {request_id}")
        if invocation.state != InvocationState.DELIVERED:
            return 403, error_payload("InvalidStateTransition", "The invocation has already been answered")
        invocation.state = InvocationState.DONE
        if outcome is None:  # the response was too large
            outcome = RuntimeOutcome(
                False,
                orjson.dumps({
                    "errorMessage": f"Response payload size exceeded maximum allowed payload size ({limit or self.max_response} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }),
                "Function.ResponseSizeTooLarge",
            )
            if not invocation.outcome.done():
                invocation.outcome.set_result(outcome)
            return 413, error_payload("RequestEntityTooLarge", "Response payload size exceeded maximum allowed payload size")
        if not invocation.outcome.done():
            invocation.outcome.set_result(outcome)
        return 202, b'{"status":"OK"}'

    async def route(self, method: str, path: str, headers: dict[str, str], body: bytes, oversize: bool,
                    stream: ResponseStream | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        """``stream``: the body went there as it arrived (a streamed response; ``body`` is empty)."""
        path = path.split("?", 1)[0]
        if not path.startswith(PREFIX):
            return 404, [], error_payload("NotFound", f"Unknown path {path}")
        tail = path[len(PREFIX):]
        if tail == "/invocation/next":
            if method != "GET":
                return 405, [], error_payload("MethodNotAllowed", "Use GET")
            return await self._next()
        parts = tail.split("/")
        is_result = len(parts) == 4 and parts[1] == "invocation" and parts[3] in ("response", "error")
        if tail != "/init/error" and not is_result:
            return 404, [], error_payload("NotFound", f"Unknown path {path}")
        if method != "POST":
            return 405, [], error_payload("MethodNotAllowed", "Use POST")
        if tail == "/init/error":
            if not self._init.done():
                self._init.set_result(_runtime_error(headers, body, "Runtime.Unknown"))
                return 202, [], b'{"status":"OK"}'
            return 403, [], error_payload("InvalidStateTransition", "Init already completed")
        request_id = parts[2]
        if parts[3] == "response" and "lambda-runtime-function-error-type" in headers:
            outcome = _stream_error(headers)  # a streamed response that failed half way (trailers)
        elif stream is not None:
            outcome = None if stream.truncated else RuntimeOutcome(True, b"", None, stream.content_type, streamed=True)
        elif parts[3] == "response":
            outcome = None if oversize else RuntimeOutcome(True, body, None, headers.get("content-type"))
        else:
            outcome = _runtime_error(headers, body, "Runtime.Unknown")
        status, reply = self._finish(request_id, outcome, stream.limit if stream is not None else None)
        return status, [], reply

    def _open_stream(self, url: bytes, headers: dict[str, str], transport: asyncio.Transport) -> ResponseStream | None:
        """The current invocation's stream, opened, when this request is its streamed response."""
        invocation = self._current
        if (invocation is None or invocation.stream is None or invocation.state != InvocationState.DELIVERED
                or headers.get("lambda-runtime-function-response-mode", "").lower() != "streaming"):
            return None
        path = url.decode("latin-1").split("?", 1)[0]
        if path != f"{PREFIX}/invocation/{invocation.event.request_id}/response":
            return None
        stream = invocation.stream
        stream.open(headers.get("content-type") or "application/octet-stream", transport.pause_reading, transport.resume_reading)
        return stream


def _stream_error(headers: dict[str, str]) -> RuntimeOutcome:
    """The error a streaming response reports in its trailers (the body is base64 JSON)."""
    try:
        body = base64.b64decode(headers.get("lambda-runtime-function-error-body", ""), validate=True)
    except ValueError:
        body = b""
    return _runtime_error(headers, body, "Runtime.Unknown")


def _runtime_error(headers: dict[str, str], body: bytes, default_type: str) -> RuntimeOutcome:
    """An error posted by the runtime: type from the header or the body; rebuilt when unreadable."""
    header_type = headers.get("lambda-runtime-function-error-type")
    document = None
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and ("errorMessage" in document or "errorType" in document):
        error_type = str(document.get("errorType") or header_type or default_type)
        document.setdefault("errorType", error_type)
        return RuntimeOutcome(False, orjson.dumps(document), error_type)
    error_type = header_type or default_type
    message = body.decode("utf-8", "replace") if body else error_type
    return RuntimeOutcome(False, error_payload(error_type, message), error_type)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection from the runtime, parsed with httptools."""

    def __init__(self, api: RuntimeApi) -> None:
        self.api = api
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._oversize = False
        self._stream: ResponseStream | None = None  # this request's body goes there (a streamed response)
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        sock = transport.get_extra_info("socket")
        if self.api.admit is not None and (sock is None or not self.api.admit(sock)):
            self.api.refused += 1
            transport.close()
            return
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.api._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.api._connections.discard(self)
        for task in self._tasks:
            task.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(400, [], error_payload("BadRequest", "Malformed HTTP request"), keep_alive=False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size, self._oversize = b"", {}, [], 0, False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if "lambda-runtime-function-response-mode" in self._headers and self.transport is not None:
            self._stream = self.api._open_stream(self._url, self._headers, self.transport)

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream.feed(body)
            return
        self._size += len(body)
        if self._size > self.api.max_response:
            self._oversize = True
            self._body = []
        elif not self._oversize:
            self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        keep_alive = self.parser.should_keep_alive()
        stream, self._stream = self._stream, None
        task = asyncio.get_running_loop().create_task(
            self._handle(method, self._url.decode("latin-1"), self._headers, b"".join(self._body), self._oversize, keep_alive,
                         stream)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, method: str, url: str, headers: dict[str, str], body: bytes, oversize: bool, keep_alive: bool,
                      stream: ResponseStream | None = None) -> None:
        try:
            status, extra, reply = await self.api.route(method, url, headers, body, oversize, stream)
        except asyncio.CancelledError:
            return
        self._reply(status, extra, reply, keep_alive)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        lines = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'OK')}"]
        if not any(k.lower() == "content-type" for k, _ in headers):
            lines.append("Content-Type: application/json")
        lines.extend(f"{k}: {v}" for k, v in headers)
        lines.append(f"Content-Length: {len(body)}")
        if not keep_alive:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)
        if not keep_alive:
            self.transport.close()
