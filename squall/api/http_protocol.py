"""uvicorn's httptools protocol, with each response sent in one write.

uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls. With TCP_NODELAY each becomes its own segment: two syscalls,
and the client wakes up twice per response. On the warm invoke path that second
wake-up costs as much as the rest of the HTTP layer. :class:`HttpProtocol` hands
uvicorn a transport that gathers what is written during one turn of the event loop
and passes it on in one ``writelines`` just before the loop polls again — the same bytes
in the same order, sent once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("squall.api")


class CoalescingTransport:
    """Forwards to a transport; writes made in one loop turn go out together."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if not pending or self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        pending = sum(len(data) for data in self._pending) if self._pending else 0
        return pending + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # a request's headers must be complete this long after its first byte
    body_idle: float = 30.0  # a request body may stall this long
    max_connections: int = 4096  # connections served at once; the next ones are closed at once


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`, with limits against
    slow clients: a connection that waits too long for a request's headers or body is closed
    (by :func:`watch_connections`, once a second: no timer per request on the warm path), and
    connections beyond ``max_connections`` are closed as they arrive."""

    limits = ConnectionLimits()
    # when the connection began waiting for the client's bytes (None: it is not), and how long it may
    waiting_since: float | None = None
    patience: float = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            log.warning("closing a new connection: %d are open (max_connections)", len(self.connections) - 1)
            transport.close()
            return
        self._wait(self.limits.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._wait(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._wait(self.limits.body_idle)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.waiting_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.waiting_since = None  # the application has the request: its time is its own

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.waiting_since = None  # idle until the next request: uvicorn's keep-alive timeout

    def _wait(self, patience: float) -> None:
        self.waiting_since = self.loop.time()
        self.patience = patience

    def too_slow(self, now: float) -> bool:
        return self.waiting_since is not None and now - self.waiting_since > self.patience


async def send_chunks(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, headers: list[tuple[bytes, bytes]],
                      chunks: AsyncIterator[bytes]) -> None:
    """An ASGI response whose body is sent piece by piece as ``chunks`` yields it: no
    Content-Length (uvicorn sends it chunked), one ``http.response.body`` per piece. Each piece
    leaves at the end of the loop turn it was sent in (:class:`CoalescingTransport`), so a
    streamed response reaches the client as it is produced."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    try:
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    await send({"type": "http.response.body", "body": b""})


async def watch_connections(connections: set[Any], interval: float = 1.0) -> None:
    """Close connections whose client is too slow to send a request (see :class:`HttpProtocol`)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        for protocol in [c for c in connections if isinstance(c, HttpProtocol) and c.too_slow(now)]:
            log.info("closing a connection from %s: no complete request within %.0f s", protocol.client, protocol.patience)
            protocol.waiting_since = None
            protocol.transport.close()
