"""The front ends of one database, as they report themselves: what ``squall cluster status`` shows.

Each front end writes its row (``front_ends``) every :data:`BEAT_SECONDS`: where it listens, since
when, whether it leads, and what it runs (environments busy / idle / provisioned, invocations in
flight, memory for environments used and in all). A front end not heard of for
:data:`STALE_SECONDS` is shown as gone; the leader removes rows older than :data:`FORGET_SECONDS`.
A front end that stops removes its own row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any, Callable

from squall import tasks as background
from squall.store.front_ends import FrontEndRepository, FrontEndRow

log = logging.getLogger("squall.cluster")

BEAT_SECONDS = 2.0
STALE_SECONDS = 10.0
FORGET_SECONDS = 3600.0


class FrontEnds:
    def __init__(self, repo: FrontEndRepository, version: str, report: Callable[[], dict[str, Any]],
                 is_leader: Callable[[], bool], node: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.version = version
        self.report = report  # what this front end runs now (environments, in flight, memory)
        self.is_leader = is_leader
        self.id = node or uuid.uuid4().hex
        self.clock = clock
        self.url = ""
        self.started_at = clock()
        self._task: asyncio.Task[None] | None = None
        self._live = 1  # front ends heard of lately, this one included (as of the last beat)

    def start(self, url: str) -> None:
        self.url = url
        self._task = asyncio.create_task(self._run(), name="squall-front-end-beat")

    async def stop(self) -> None:
        if self._task is not None:
            await background.cancel(self._task)
            self._task = None
            try:
                await asyncio.to_thread(self.repo.remove, self.id)
            except Exception as exc:  # the database is away: the row goes stale, then is forgotten
                log.warning("could not remove this front end's row: %s", exc)

    def row(self) -> FrontEndRow:
        return FrontEndRow(self.id, self.url, socket.gethostname(), os.getpid(), self.version, self.started_at,
                           self.clock(), self.is_leader(), self.report())

    def live(self) -> int:
        """How many front ends serve the database now (heard of within STALE_SECONDS; at least this one)."""
        return self._live

    async def beat(self) -> None:
        await asyncio.to_thread(self.repo.beat, self.row())
        now = self.clock()
        rows = await asyncio.to_thread(self.repo.all)
        self._live = max(1, sum(1 for row in rows if now - row.seen_at < STALE_SECONDS))
        if self.is_leader():
            await asyncio.to_thread(self.repo.forget_older_than, self.clock() - FORGET_SECONDS)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again at the next beat
                log.debug("front end heartbeat failed: %s", exc)
            await asyncio.sleep(BEAT_SECONDS)

    async def status(self) -> dict[str, Any]:
        """Every front end of the database (this one's row fresh), as ``squall cluster status`` shows them."""
        now = self.clock()
        rows = {row.id: row for row in await asyncio.to_thread(self.repo.all)}
        if self.url:
            rows[self.id] = self.row()
        listed = []
        for row in sorted(rows.values(), key=lambda r: r.started_at):
            age = max(0.0, now - row.seen_at)
            listed.append({"id": row.id, "url": row.url, "host": row.host, "pid": row.pid, "version": row.version,
                           "leader": row.leader, "up_seconds": round(now - row.started_at, 1),
                           "seen_seconds_ago": round(age, 1), "alive": age < STALE_SECONDS,
                           "this": row.id == self.id, **row.info})
        return {"front_ends": listed, "this": self.id}
