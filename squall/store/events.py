"""Repository of the asynchronous invocation queue: events, the delivery outbox, counters.

Every write takes the connection of a transaction the caller opened (the queue's group
commit writer batches many of them into one); reads open their own connection. Leases are
columns (``lease_owner``, ``lease_until``) so that several servers could share one
PostgreSQL queue (``SELECT … FOR UPDATE SKIP LOCKED``); SQLite ignores the locking clause
and is served by one writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from squall.store.db import async_deliveries, async_events, async_stats, functions

COUNTERS = ("succeeded", "retries_exhausted", "age_exceeded", "dead_lettered", "destination_failures", "recursive_loops")


@dataclass(frozen=True)
class QueuedEvent:
    """One accepted asynchronous invocation, as stored."""

    request_id: str
    function_name: str
    qualifier: str | None
    payload: bytes
    enqueued_at: float  # epoch seconds of the first enqueue (event age counts from here)
    attempts: int = 0  # function invocations made so far (approximateInvokeCount)
    deferrals: int = 0  # throttles / system errors so far (their backoff grows with it)
    not_before: float = 0.0
    last_status: int | None = None
    last_error: bytes | None = None
    trace: str | None = None  # the caller's X-Amzn-Trace-Id (its Lineage counts recursive hops)


@dataclass(frozen=True)
class Delivery:
    """A destination record or dead letter still to send (the outbox)."""

    function_name: str
    request_id: str
    kind: str  # "destination" | "dlq"
    target: str
    body: bytes
    attributes: dict[str, str] | None = None
    attempts: int = 0
    not_before: float = 0.0
    id: int | None = None


@dataclass
class FunctionQueueStats:
    name: str
    depth: int = 0
    oldest_enqueued_at: float | None = None
    in_retry: int = 0
    leased: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))


class EventRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- events --------------------------------------------------------------------
    @staticmethod
    def insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            conn.execute(async_events.insert(), rows)

    @staticmethod
    def row(event: QueuedEvent, lease_owner: str | None = None, lease_until: float | None = None) -> dict[str, Any]:
        return {
            "request_id": event.request_id,
            "function_name": event.function_name,
            "qualifier": event.qualifier,
            "payload": event.payload,
            "enqueued_at": event.enqueued_at,
            "attempts": event.attempts,
            "deferrals": event.deferrals,
            "not_before": event.not_before,
            "lease_owner": lease_owner,
            "lease_until": lease_until,
            "last_status": event.last_status,
            "last_error": event.last_error,
            "trace": event.trace,
        }

    def lease_due(
        self, conn: Connection, owner: str, now: float, until: float, function_name: str, limit: int
    ) -> list[QueuedEvent]:
        """Lease up to ``limit`` unleased, due events of one function, oldest due first."""
        c = async_events.c
        query = (
            sa.select(async_events)
            .where(c.function_name == function_name, c.lease_owner.is_(None), c.not_before <= now)
            .order_by(c.not_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return self._lease(conn, query, owner, until)

    def lease_older_than(
        self, conn: Connection, owner: str, function_name: str, enqueued_before: float, until: float, limit: int
    ) -> list[QueuedEvent]:
        """Lease unleased events of a function first enqueued before a time (age expiry)."""
        c = async_events.c
        query = (
            sa.select(async_events)
            .where(c.function_name == function_name, c.lease_owner.is_(None), c.enqueued_at < enqueued_before)
            .order_by(c.enqueued_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return self._lease(conn, query, owner, until)

    @staticmethod
    def _lease(conn: Connection, query: sa.Select[Any], owner: str, until: float) -> list[QueuedEvent]:
        rows = conn.execute(query).all()
        if rows:
            ids = [r.request_id for r in rows]
            conn.execute(
                async_events.update()
                .where(async_events.c.request_id.in_(ids))
                .values(lease_owner=owner, lease_until=until)
            )
        return [_event(r) for r in rows]

    @staticmethod
    def next_due(conn: Connection, function_name: str) -> float | None:
        """When the function's earliest unleased event becomes due (None: there is none)."""
        c = async_events.c
        return conn.execute(
            sa.select(sa.func.min(c.not_before)).where(c.function_name == function_name, c.lease_owner.is_(None))
        ).scalar()

    @staticmethod
    def delete(conn: Connection, request_ids: list[str]) -> None:
        for start in range(0, len(request_ids), 500):  # well within any driver's parameter limit
            chunk = request_ids[start : start + 500]
            conn.execute(async_events.delete().where(async_events.c.request_id.in_(chunk)))

    @staticmethod
    def reschedule(conn: Connection, event: QueuedEvent) -> None:
        """Store an event's new counts and due time, and give up its lease."""
        conn.execute(
            async_events.update()
            .where(async_events.c.request_id == event.request_id)
            .values(
                attempts=event.attempts,
                deferrals=event.deferrals,
                not_before=event.not_before,
                last_status=event.last_status,
                last_error=event.last_error,
                lease_owner=None,
                lease_until=None,
            )
        )

    @staticmethod
    def release(conn: Connection, request_ids: list[str]) -> None:
        if request_ids:
            conn.execute(
                async_events.update()
                .where(async_events.c.request_id.in_(request_ids))
                .values(lease_owner=None, lease_until=None)
            )

    @staticmethod
    def release_owner(conn: Connection, owner: str) -> int:
        """Give up every lease of one owner (a server that stops)."""
        total = 0
        for table in (async_events, async_deliveries):
            total += conn.execute(
                table.update().where(table.c.lease_owner == owner).values(lease_owner=None, lease_until=None)
            ).rowcount
        return total

    @staticmethod
    def renew(conn: Connection, owner: str, until: float, request_ids: Collection[str] | None = None) -> None:
        """Extend this owner's leases: of the events ``request_ids`` (None: all of them) and of every
        delivery it holds. An event leased but no longer held (lost track of) is left to expire."""
        c = async_events.c
        if request_ids is None:
            conn.execute(async_events.update().where(c.lease_owner == owner).values(lease_until=until))
        else:
            ids = list(request_ids)
            for start in range(0, len(ids), 500):
                conn.execute(async_events.update().where(c.lease_owner == owner, c.request_id.in_(ids[start:start + 500]))
                             .values(lease_until=until))
        conn.execute(async_deliveries.update().where(async_deliveries.c.lease_owner == owner).values(lease_until=until))

    @staticmethod
    def reclaim(conn: Connection, owner: str, now: float, everything: bool = False) -> int:
        """Make expired leases available again (this owner's too: one it no longer renews is one it
        lost track of), or every other owner's lease (a restart).

        Returns how many events (not deliveries) were reclaimed.
        """
        reclaimed = 0
        for table in (async_events, async_deliveries):
            stmt = table.update().where(table.c.lease_owner.is_not(None))
            if everything:
                stmt = stmt.where(table.c.lease_owner != owner)
            else:
                stmt = stmt.where(table.c.lease_until < now)
            count = conn.execute(stmt.values(lease_owner=None, lease_until=None)).rowcount
            if table is async_events:
                reclaimed = count
        return reclaimed

    @staticmethod
    def functions_with_unleased(conn: Connection) -> list[str]:
        """Functions with events waiting unleased (an index probe per function, no scan)."""
        c = async_events.c
        waiting = sa.exists().where(c.function_name == functions.c.name, c.lease_owner.is_(None))
        return list(conn.execute(sa.select(functions.c.name).where(waiting)).scalars())

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(async_events)).scalar_one())

    # ---- deliveries (the outbox) -------------------------------------------------------
    @staticmethod
    def insert_deliveries(conn: Connection, deliveries: list[Delivery]) -> None:
        if deliveries:
            conn.execute(
                async_deliveries.insert(),
                [
                    {
                        "function_name": d.function_name,
                        "request_id": d.request_id,
                        "kind": d.kind,
                        "target": d.target,
                        "body": d.body,
                        "attributes": d.attributes,
                        "attempts": d.attempts,
                        "not_before": d.not_before,
                    }
                    for d in deliveries
                ],
            )

    @staticmethod
    def lease_deliveries(conn: Connection, owner: str, now: float, until: float, limit: int) -> list[Delivery]:
        c = async_deliveries.c
        rows = conn.execute(
            sa.select(async_deliveries)
            .where(c.lease_owner.is_(None), c.not_before <= now)
            .order_by(c.not_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            conn.execute(
                async_deliveries.update()
                .where(c.id.in_([r.id for r in rows]))
                .values(lease_owner=owner, lease_until=until)
            )
        return [
            Delivery(
                r.function_name, r.request_id, r.kind, r.target, r.body, r.attributes, r.attempts, r.not_before, r.id
            )
            for r in rows
        ]

    @staticmethod
    def next_delivery_due(conn: Connection) -> float | None:
        c = async_deliveries.c
        return conn.execute(sa.select(sa.func.min(c.not_before)).where(c.lease_owner.is_(None))).scalar()

    @staticmethod
    def delete_delivery(conn: Connection, delivery_id: int) -> None:
        conn.execute(async_deliveries.delete().where(async_deliveries.c.id == delivery_id))

    @staticmethod
    def reschedule_delivery(conn: Connection, delivery_id: int, attempts: int, not_before: float) -> None:
        conn.execute(
            async_deliveries.update()
            .where(async_deliveries.c.id == delivery_id)
            .values(attempts=attempts, not_before=not_before, lease_owner=None, lease_until=None)
        )

    # ---- counters ----------------------------------------------------------------------
    @staticmethod
    def bump(conn: Connection, function_name: str, counter: str, by: int = 1) -> None:
        """Add to one of a function's counters (none are kept for a deleted function)."""
        if counter not in COUNTERS:
            raise ValueError(f"unknown counter {counter}")
        column = async_stats.c[counter]
        updated = conn.execute(
            async_stats.update().where(async_stats.c.function_name == function_name).values({column: column + by})
        ).rowcount
        if updated:
            return
        exists = conn.execute(sa.select(functions.c.name).where(functions.c.name == function_name)).first()
        if exists:
            conn.execute(async_stats.insert().values(function_name=function_name, **{**dict.fromkeys(COUNTERS, 0), counter: by}))

    # ---- visibility ----------------------------------------------------------------------
    def stats(self, function_name: str | None = None) -> list[FunctionQueueStats]:
        c = async_events.c
        query = sa.select(
            c.function_name,
            sa.func.count(),
            sa.func.min(c.enqueued_at),
            sa.func.sum(sa.case(((c.attempts + c.deferrals) > 0, 1), else_=0)),
            sa.func.sum(sa.case((c.lease_owner.is_not(None), 1), else_=0)),
        ).group_by(c.function_name)
        counters_query = sa.select(async_stats)
        if function_name is not None:
            query = query.where(c.function_name == function_name)
            counters_query = counters_query.where(async_stats.c.function_name == function_name)
        result: dict[str, FunctionQueueStats] = {}
        with self.engine.connect() as conn:
            for name, depth, oldest, in_retry, leased in conn.execute(query):
                result[name] = FunctionQueueStats(name, int(depth), oldest, int(in_retry or 0), int(leased or 0))
            for row in conn.execute(counters_query):
                stats = result.setdefault(row.function_name, FunctionQueueStats(row.function_name))
                stats.counters = {k: int(getattr(row, k) or 0) for k in COUNTERS}
        return [result[k] for k in sorted(result)]


def _event(row: Any) -> QueuedEvent:
    return QueuedEvent(
        request_id=row.request_id,
        function_name=row.function_name,
        qualifier=row.qualifier,
        payload=bytes(row.payload),
        enqueued_at=row.enqueued_at,
        attempts=row.attempts,
        deferrals=row.deferrals,
        not_before=row.not_before,
        last_status=row.last_status,
        last_error=bytes(row.last_error) if row.last_error is not None else None,
        trace=row.trace,
    )
