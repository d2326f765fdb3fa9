"""This front end's channel to one node's agent (``wire.py``'s frames): requests with ids,
answers matched to them, streamed chunks handed on as they come, log lines into this front end's
log store; every waiting request fails with :class:`wire.ChannelClosed` when the channel breaks."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable

from squall import tasks as background
from squall.cluster import wire
from squall.observe.logs import LogStore


class NodeLink:
    """This front end's channel to one node's agent."""

    def __init__(self, node_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 logs: LogStore) -> None:
        self.node_id = node_id
        self.status: dict[str, Any] = {}
        self._reader, self._writer = reader, writer
        self._logs = logs
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future[tuple[dict[str, Any], bytes]], Any]] = {}
        self._closed: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, endpoint: dict[str, Any], key: bytes, api: str | None, logs: LogStore) -> "NodeLink":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint["host"], endpoint["port"]), 5)
        try:
            hello = await wire.answer(reader, writer, key)
        except BaseException:
            writer.close()
            raise
        link = cls(str(hello.get("node", endpoint.get("node"))), reader, writer, logs)
        if api:
            writer.write(wire.encode({"op": "hello", "api": api}))
        return link

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def call(self, header: dict[str, Any], body: bytes = b"",
                   on_frame: Callable[[dict[str, Any], bytes], None] | None = None) -> tuple[dict[str, Any], bytes]:
        if self._closed is not None:
            raise wire.ChannelClosed(self._closed)
        request_id = header["id"] = next(self._ids)
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (future, on_frame)
        try:
            self._writer.write(wire.encode(header, body))
            if self._writer.transport.get_write_buffer_size() > 1 << 20:
                await self._writer.drain()
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self) -> None:
        reason = "closed"
        try:
            while True:
                header, body = await wire.read_frame(self._reader)
                logs = header.get("logs")
                if logs is not None:
                    for group, stream, events in logs:
                        self._logs.append(group, stream, [(int(t), str(line)) for t, line in events])
                    continue
                waiting = self._waiting.get(header.get("id"))  # type: ignore[arg-type]
                if waiting is None:
                    continue
                future, on_frame = waiting
                if "open" in header or "chunk" in header:
                    if on_frame is not None:
                        on_frame(header, body)
                elif not future.done():
                    future.set_result((header, body))
        except (wire.ChannelClosed, ConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            self._close(reason)

    def _close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        self._writer.close()
        for future, _ in list(self._waiting.values()):
            if not future.done():
                future.set_exception(wire.ChannelClosed(reason))

    async def close(self) -> None:
        self._close("front end stopping")
        await background.cancel(self._task)
