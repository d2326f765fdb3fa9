"""Streamed responses: what a response-streaming function writes, on its way from the runtime's
connection to the client while the function still runs.

A :class:`ResponseStream` travels in the :class:`~squall.invoke.invocation.InvocationRequest`.
The Runtime API connection (``squall.runtimes.runtime_api``) opens it when the runtime posts its
response with ``Lambda-Runtime-Function-Response-Mode: streaming`` and feeds it the body's bytes
as httptools parses them; the consumer (a function URL in ``RESPONSE_STREAM`` mode,
``InvokeWithResponseStream``) reads them as they come. A runtime that answers in one piece (the
built-in Python runtime, a Node.js handler without ``streamifyResponse``) never opens it: its
answer is the invocation's result, sent as one chunk.

Back-pressure: past ``HIGH_WATER`` queued bytes the runtime's connection stops being read (so the
runtime's own writes block) until the consumer has taken the queue down to ``LOW_WATER``.

:class:`StreamedInvocation` is what ``Engine.invoke_stream`` hands back: the stream plus the
invocation running beside it (its admission slot and environment are held until the runtime has
sent its whole response; at most ``HIGH_WATER`` bytes may still be on their way to the client).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, AsyncIterator, Callable, ClassVar

if TYPE_CHECKING:
    from squall.invoke.invocation import InvocationResult

# Lambda's maximum for a streamed response: 200 MB since July 2025 (20 MB, a soft limit, before).
MAX_STREAMED_RESPONSE = 200 * 1024 * 1024
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"


class ResponseStream:
    """A one-producer, one-consumer queue of the chunks of one streamed response."""

    def __init__(self, limit: int = MAX_STREAMED_RESPONSE) -> None:
        self.limit = limit
        self.opened = False  # the runtime streams its response
        self.content_type: str | None = None
        self.executed_version: str | None = None  # the version that runs (set once resolved)
        self.size = 0  # bytes the runtime wrote
        self.truncated = False  # it wrote more than ``limit``: the rest was dropped
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._closed = False  # nothing more will come
        self._abandoned = False  # nobody reads any more: what comes is dropped
        self._waiter: asyncio.Future[None] | None = None
        self._resume: Callable[[], None] | None = None
        self._pause: Callable[[], None] | None = None
        self._paused = False

    # ---- the producer: the runtime's connection --------------------------------------
    def open(self, content_type: str, pause: Callable[[], None] | None = None,
             resume: Callable[[], None] | None = None) -> None:
        """The runtime starts streaming; ``pause``/``resume`` stop and restart reading its connection."""
        self.opened = True
        self.content_type = content_type
        self._pause, self._resume = pause, resume
        self._wake()

    def feed(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.truncated = True
            return
        if self._abandoned:
            return
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > HIGH_WATER and not self._paused and self._pause is not None:
            self._paused = True
            self._pause()
        self._wake()

    def close(self) -> None:
        """No more chunks (the invocation is over, whichever way)."""
        self._closed = True
        self._unpause()
        self._wake()

    # ---- the consumer ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def ready(self) -> None:
        """Until the runtime starts streaming or the invocation ends."""
        while not (self.opened or self._closed):
            await self._wait()

    async def read(self) -> bytes | None:
        """What has arrived since the last read (waiting for something); None at the end."""
        while not self._chunks:
            if self._closed:
                return None
            await self._wait()
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join([chunks.popleft() for _ in range(len(chunks))])
        self._queued -= len(data)
        if self._paused and self._queued <= LOW_WATER:
            self._unpause()
        return data

    def abandon(self) -> None:
        """The consumer is gone: drop what is queued and what still comes."""
        self._abandoned = True
        self._chunks.clear()
        self._queued = 0
        self._unpause()

    # ---- internals ---------------------------------------------------------------------
    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            if self._resume is not None:
                try:
                    self._resume()
                except (RuntimeError, AttributeError):  # the connection is closed already
                    pass

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamedInvocation:
    """An invocation whose response may arrive in chunks (``Engine.invoke_stream``)."""

    running: ClassVar[set[asyncio.Future[InvocationResult | None]]] = set()  # held while they run, read or not

    def __init__(self, stream: ResponseStream, task: asyncio.Future[InvocationResult | None]) -> None:
        self.stream = stream
        self.task = task
        self.running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[InvocationResult | None]) -> None:
        self.running.discard(task)
        self.stream.close()
        if not task.cancelled():
            task.exception()  # retrieved: a consumer that went away must not make asyncio log it

    async def begin(self) -> bool:
        """True once the function streams; False when the invocation ended without streaming
        (then :meth:`result` has its answer). What stopped the invocation from running (no
        such function, throttled) is raised here, before anything was sent."""
        try:
            await self.stream.ready()
        except BaseException:
            self.abandon()
            raise
        if self.stream.opened:
            return True
        self.task.result()
        return False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The streamed bytes as they arrive (nothing when the function did not stream)."""
        while True:
            data = await self.stream.read()
            if data is None:
                return
            yield data

    async def result(self) -> InvocationResult | None:
        """The invocation's result (once the stream has ended); raises what stopped it."""
        return await asyncio.shield(self.task)

    def abandon(self) -> None:
        """The client is gone: the function runs on, what it writes is dropped."""
        self.stream.abandon()
