"""How an environment talks to the runtime inside it: two links, one interface.

* :class:`FramesLink` — Squall's built-in Python runtime: small frames on the environment's
  unix socket (``squall.runtimes.python.frames``), the cheapest round trip there is.
* :class:`RuntimeApiLink` — every other runtime (Node.js, Ruby, Java, a custom
  ``bootstrap``): the Lambda Runtime API over HTTP. The sandbox creates the listening socket
  *inside the environment's network namespace* (so it is reachable at ``127.0.0.1`` even
  when the function has no network) and hands it to Squall as the first message on the
  environment's channel; Squall serves the API on it from its own event loop.

Both links return a :class:`Reply` and raise :class:`LinkBroken` when the runtime is gone
(the environment then reports ``Runtime.ExitError`` with the process's exit status).

Response streaming: only the Runtime API link streams (the request's ``stream`` gets a streamed
response's bytes as they arrive, and the reply's body is then empty). The frames link never
does: like Lambda's runtimes without streaming support, the Python runtime answers in one piece,
which a streaming consumer sends as one chunk.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, cast

from squall.invoke.invocation import MAX_RESPONSE_PAYLOAD, InvocationRequest, response_too_large
from squall.runtimes.python.frames import FrameError, FrameParser, FrameTooLarge, encode_frame
from squall.runtimes.runtime_api import RuntimeApi, RuntimeEvent
from squall.sandbox.base import SandboxHandle


class LinkBroken(Exception):
    """The runtime went away (its process ended or closed the channel)."""


class ResponseTooLarge(Exception):
    """The runtime sent more than Lambda's response limit; the environment cannot go on."""


@dataclass(frozen=True)
class Reply:
    ok: bool
    body: bytes
    content_type: str | None = None
    max_rss_kb: int = 0  # the runtime's own measurement (used when the sandbox cannot measure)


class FramesLink(asyncio.Protocol):
    """The frames channel as an asyncio protocol: one write and one future per invocation."""

    def __init__(self) -> None:
        self._parser = FrameParser(MAX_RESPONSE_PAYLOAD + 65536)
        self._transport: asyncio.Transport | None = None
        self._frames: deque[tuple[dict, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: Exception | None = None
        self.on_lost: Callable[[], None] | None = None  # told when the runtime goes (a SnapStart template's)

    @classmethod
    async def open(cls, channel: socket.socket) -> "FramesLink":
        link = cls()
        await asyncio.get_running_loop().create_unix_connection(lambda: link, sock=channel)
        return link

    # ---- asyncio.Protocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self._frames.extend(self._parser.feed(data))
        except FrameTooLarge as e:
            self._fail(ResponseTooLarge(str(e)))
            return
        except FrameError as e:
            self._fail(LinkBroken(str(e)))
            return
        if self._frames:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._failure is None:
            detail = "mid-frame" if self._parser.pending else "between frames"
            self._failure = LinkBroken(f"control channel closed {detail}" + (f": {exc}" if exc else ""))
        self._wake()
        if self.on_lost is not None:
            self.on_lost()

    def _fail(self, error: Exception) -> None:
        self._failure = error
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_frame(self, timeout: float | None = None) -> tuple[dict, bytes]:
        """The next frame; TimeoutError after ``timeout`` seconds; the link's failure if it broke."""
        while not self._frames:
            if self._failure is not None:
                raise self._failure
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return self._frames.popleft()

    # ---- the link ------------------------------------------------------------------
    @property
    def broken(self) -> bool:
        """The runtime went away (or sent what the link could not take)."""
        return self._failure is not None

    async def next_meta(self, timeout: float) -> dict[str, Any]:
        """The next frame's meta (a SnapStart template's answer to a fork frame)."""
        meta, _body = await self._next_frame(timeout)
        return meta

    async def init(self) -> Reply:
        """ok when the runtime is ready; the init error otherwise."""
        try:
            meta, body = await self._next_frame()
        except ResponseTooLarge as e:
            raise LinkBroken(str(e)) from None
        if meta.get("t") == "ready":
            return Reply(True, b"", None, int(meta.get("max_rss_kb") or 0))
        return Reply(False, body)

    async def invoke(self, request: InvocationRequest, deadline_ms: int, timeout: float) -> Reply:
        """The runtime's answer; TimeoutError when it takes longer than ``timeout`` seconds."""
        meta = {
            "t": "invoke",
            "id": request.request_id,
            "deadline_ms": deadline_ms,
            "arn": request.invoked_arn,
            "client_context": request.client_context,
            "identity": request.identity,
            "trace_id": request.trace_id,
        }
        if self._failure is not None or self._transport is None:
            raise self._failure or LinkBroken("the control channel is not open")
        self._transport.write(encode_frame(meta, request.payload))
        reply, body = await self._next_frame(timeout)
        max_rss_kb = int(reply.get("max_rss_kb") or 0)
        if len(body) > MAX_RESPONSE_PAYLOAD and reply.get("ok"):
            return Reply(False, response_too_large(), None, max_rss_kb)
        return Reply(bool(reply.get("ok")), body, reply.get("content_type"), max_rss_kb)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _expire(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class RuntimeApiLink:
    def __init__(self, api: RuntimeApi, handle: SandboxHandle) -> None:
        self.api = api
        self._exited: asyncio.Future[Any] = asyncio.ensure_future(handle.wait())
        self._exited.add_done_callback(_ignore_result)

    @classmethod
    async def open(cls, channel: socket.socket, handle: SandboxHandle) -> "RuntimeApiLink":
        """Take the Runtime API's listening socket from the sandbox and serve the API on it."""
        listener = await _receive_listener(channel)
        api = RuntimeApi(admit=handle.admits)
        try:
            await api.start(sock=listener)
        except BaseException:
            listener.close()
            raise
        return cls(api, handle)

    async def _until_exit(self, work: "asyncio.Future[Any]") -> Any:
        done, _ = await asyncio.wait({work, self._exited}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        raise LinkBroken("the runtime exited")

    async def init(self) -> Reply:
        """ok once the runtime asks for its first event; the error it posted to /init/error otherwise."""
        outcome = await self._until_exit(asyncio.ensure_future(self.api.wait_init()))
        return Reply(True, b"") if outcome is None else Reply(False, outcome.body)

    async def invoke(self, request: InvocationRequest, deadline_ms: int, timeout: float) -> Reply:
        """The runtime's answer; TimeoutError when it takes longer than ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self._invoke(request, deadline_ms)

    async def _invoke(self, request: InvocationRequest, deadline_ms: int) -> Reply:
        event = RuntimeEvent(
            request.request_id,
            request.payload,
            deadline_ms,
            request.invoked_arn,
            trace_id=request.trace_id,
            client_context=request.client_context,
            cognito_identity=request.identity,
        )
        outcome = await self._until_exit(asyncio.ensure_future(self.api.invoke(event, request.stream)))
        return Reply(outcome.ok, outcome.body, outcome.content_type if outcome.ok else None)

    def close(self) -> None:
        asyncio.ensure_future(self.api.close()).add_done_callback(_ignore_result)


async def _receive_listener(channel: socket.socket) -> socket.socket:
    """The first message on the channel: the address as bytes, the listening socket as an fd."""
    loop = asyncio.get_running_loop()
    channel.setblocking(False)
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, 256, 1)
        except BlockingIOError:
            readable = loop.create_future()
            loop.add_reader(channel.fileno(), lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(channel.fileno())
            continue
        except OSError as e:
            raise LinkBroken(f"the sandbox did not hand over the Runtime API socket: {e}") from None
        if not fds:
            raise LinkBroken("the runtime ended before it started" if not data else "no Runtime API socket was handed over")
        for extra in fds[1:]:
            socket.close(extra)
        listener = socket.socket(fileno=fds[0])
        listener.setblocking(False)
        return listener


def _ignore_result(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled():
        future.exception()
