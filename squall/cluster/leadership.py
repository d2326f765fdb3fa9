"""Which front end runs the work that must run once: the holder of a PostgreSQL advisory lock.

Some background work would be done twice if every front end did it: an event source mapping's
poller (two consumers of one Kinesis shard), a subscription to an MQTT topic (each message
delivered twice). Those run on the leader only. The leader is whichever front end holds
PostgreSQL's session-level advisory lock :data:`LOCK_KEY` on a connection of its own; the
others try again every ``interval`` seconds. PostgreSQL releases the lock when the holder's
session ends (the process died, its connection broke), so another front end takes over within
about ``interval`` seconds plus the time PostgreSQL takes to see the session gone. The holder
checks its connection every ``interval`` seconds and gives the work up when it fails, so two
leaders overlap for at most that long (the work it guards is at-least-once anyway).

With SQLite (one front end) the process is the leader from the start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from squall import tasks as background
from squall.cluster.relay import Connect, _connect, close_quietly, conninfo

log = logging.getLogger("squall.cluster")

LOCK_KEY = 0x5371_7561_6C6C  # "Squall"


class Leadership:
    def __init__(self, database_url: str, on_gain: Callable[[], Awaitable[None]],
                 on_loss: Callable[[], Awaitable[None]], interval: float = 2.0, connect: Connect = _connect) -> None:
        self.clustered = database_url.startswith("postgresql")
        self.info = conninfo(database_url) if self.clustered else ""
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.interval = interval
        self._connect = connect
        self.leader = False
        self._task: asyncio.Task[None] | None = None
        self.changes = 0  # times leadership was gained or lost

    async def start(self) -> None:
        if not self.clustered:
            await self._gain()
            return
        self._task = asyncio.create_task(self._run(), name="squall-leadership")

    async def stop(self) -> None:
        if self._task is not None:
            await background.cancel(self._task)
            self._task = None
        if self.leader:
            await self._lose()

    def health(self) -> dict[str, Any]:
        return {"leader": self.leader, "clustered": self.clustered, "changes": self.changes}

    async def _gain(self) -> None:
        self.leader = True
        self.changes += 1
        await self.on_gain()

    async def _lose(self) -> None:
        self.leader = False
        self.changes += 1
        await self.on_loss()

    async def _run(self) -> None:
        connection = None
        try:
            while True:
                try:
                    if connection is None or connection.closed:
                        connection = await self._connect(self.info)
                    if not self.leader:
                        cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                        row = await cursor.fetchone()
                        if row and row[0]:
                            log.info("this front end is the leader now: it runs event source pollers and subscriptions")
                            await self._gain()
                    else:
                        await asyncio.wait_for(connection.execute("SELECT 1"), timeout=self.interval)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.leader:
                        log.warning("lost the leader's database connection (%s): stopping the leader's work", exc)
                        await self._lose()
                    await close_quietly(connection)
                    connection = None
                await asyncio.sleep(self.interval)
        finally:  # stopped (cancelled) wherever it waited: the session ends, the lock is free
            await close_quietly(connection)

