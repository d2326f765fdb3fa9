"""Changes made on one front end, told to the others: the event bus bridged over PostgreSQL's
LISTEN/NOTIFY.

Every front end keeps caches of what the database holds (functions, aliases, policies, …) and
drops them when the bus says something changed. With several front ends on one database a
change made on one must reach the caches of all: :class:`ChangeRelay` subscribes to the bus's
*state-change* events (:data:`RELAYED`), sends each as a ``NOTIFY`` on :data:`CHANNEL` (JSON:
the node that made it, the event's type and fields), and publishes what the other front ends
sent on its own bus, as if the change were local. Events made from a notification are not
sent again.

Ordering and loss: a change is committed before its event is published, so a front end that
hears of it and re-reads finds it. Notifications sent while a front end's listening connection
is down are lost to it: on every (re)connection it publishes :class:`CachesReset`, on which every
cache drops everything. Sending retries until the database takes the notification (the queue is
bounded: past :data:`MAX_PENDING` the pending events collapse into one ``CachesReset`` for all).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections import deque
from typing import Any, Awaitable, Callable

from squall import tasks as background
from squall.engine.bus import (
    AliasChanged,
    CachesReset,
    EventBus,
    FunctionDeleted,
    FunctionUpdated,
    ProvisionedConcurrencyChanged,
    ReservedConcurrencyChanged,
    SandboxSettingsChanged,
    StateChanged,
    VersionDeleted,
    VersionPublished,
)

log = logging.getLogger("squall.cluster")

CHANNEL = "squall_changes"
MAX_PENDING = 10_000
MAX_PAYLOAD = 7_900  # PostgreSQL refuses NOTIFY payloads from 8000 bytes
RELAYED: tuple[type, ...] = (
    FunctionUpdated, FunctionDeleted, SandboxSettingsChanged, VersionPublished, VersionDeleted, AliasChanged,
    ReservedConcurrencyChanged, ProvisionedConcurrencyChanged, StateChanged, CachesReset,
)
_BY_NAME = {kind.__name__: kind for kind in RELAYED}

Connect = Callable[[str], Awaitable[Any]]  # conninfo -> an autocommit psycopg AsyncConnection


def conninfo(database_url: str) -> str:
    """libpq's form of a SQLAlchemy URL (``postgresql+psycopg://u@h/db`` -> ``postgresql://u@h/db``)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _connect(info: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(info, autocommit=True, connect_timeout=5)


def encode(node: str, event: object) -> str:
    payload = json.dumps({"n": node, "t": type(event).__name__, "f": dataclasses.asdict(event)},  # type: ignore[call-overload]
                         separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD:  # an event too large to send: everyone drops everything instead
        payload = json.dumps({"n": node, "t": "CachesReset", "f": {"reason": "a change too large to relay"}})
    return payload


def decode(payload: str) -> tuple[str, object] | None:
    """(sending node, event), or None for what is not one of ours."""
    try:
        data = json.loads(payload)
        kind = _BY_NAME[data["t"]]
        return str(data["n"]), kind(**data["f"])
    except (ValueError, KeyError, TypeError):
        return None


class ChangeRelay:
    def __init__(self, bus: EventBus, database_url: str, node: str | None = None, connect: Connect = _connect,
                 retry_seconds: tuple[float, float] = (0.2, 5.0)) -> None:
        self.bus = bus
        self.info = conninfo(database_url)
        self.node = node or uuid.uuid4().hex
        self._connect = connect
        self._retry = retry_seconds
        self._pending: deque[str] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.received = 0
        self.connected = False  # the listening connection is up

    def start(self) -> None:
        for kind in RELAYED:
            self.bus.subscribe(kind, self._local)
        self._tasks = [asyncio.create_task(self._listen(), name="squall-relay-listen"),
                       asyncio.create_task(self._send(), name="squall-relay-send")]

    async def stop(self) -> None:
        for task in self._tasks:
            await background.cancel(task)
        self._tasks = []

    def health(self) -> dict[str, Any]:
        return {"node": self.node, "connected": self.connected, "sent": self.sent, "received": self.received,
                "pending": len(self._pending)}

    # -- local changes, out

    def _local(self, event: object) -> None:
        if self.bus.from_remote:  # another front end's change (or a cache's echo of one): not sent back
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.clear()
            event = CachesReset("too many changes waiting for the database")
        self._pending.append(encode(self.node, event))
        self._wake.set()

    async def _send(self) -> None:
        connection = None
        delay = self._retry[0]
        try:
            while True:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                try:
                    if connection is None or connection.closed:
                        connection = await self._connect(self.info)
                    while self._pending:
                        await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self._pending[0]))
                        self._pending.popleft()
                        self.sent += 1
                    delay = self._retry[0]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database is away: keep the changes, try again
                    log.warning("cannot tell the other front ends of %d change(s) yet: %s", len(self._pending), exc)
                    await close_quietly(connection)
                    connection = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry[1])
        finally:
            await close_quietly(connection)

    # -- other nodes' changes, in

    async def _listen(self) -> None:
        delay = self._retry[0]
        while True:
            connection = None
            try:
                connection = await self._connect(self.info)
                await connection.execute(f"LISTEN {CHANNEL}")
                self.connected = True
                delay = self._retry[0]
                # whatever was sent while we were not listening is lost to us: drop everything
                self._publish(CachesReset("listening to the other front ends' changes (again)"))
                async for notice in connection.notifies():
                    decoded = decode(notice.payload)
                    if decoded is None or decoded[0] == self.node:
                        continue
                    self.received += 1
                    self._publish(decoded[1])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("lost the database connection that hears other front ends' changes: %s", exc)
            finally:
                self.connected = False
                await close_quietly(connection)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry[1])

    def _publish(self, event: object) -> None:
        with self.bus.remote():
            self.bus.publish(event)


async def close_quietly(connection: Any) -> None:
    """Close a psycopg connection (None: nothing), broken or not."""
    if connection is not None:
        try:
            await connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
