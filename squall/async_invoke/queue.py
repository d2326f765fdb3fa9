"""The durable queue of asynchronous invocations: accept, lease, settle, retry, expire.

Every write goes through one writer task that commits in groups: the writes submitted by
many coroutines while the previous transaction was committing (accepts from concurrent
requests, settlements from finished invocations, leases) go to the database together in
one transaction, then each submitter is resumed. An accepted event is therefore answered
(202) only after the commit that stored it, yet durability costs one commit per *batch*,
not per event. The writer runs its transactions on one dedicated thread.

Leases: an event handed to this server's dispatcher carries ``lease_owner`` = this queue's
owner id. A lease ends with a settlement (delete, reschedule) or a release; a server that
stops releases its leases, and one that died leaves them to be reclaimed — at once by the
next start (SQLite serves one server), or by any server once they expire (they are
renewed while held).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Collection, NamedTuple

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from squall.errors import ResourceNotFound
from squall.store.events import Delivery, EventRepository, QueuedEvent

log = logging.getLogger("squall.events")

LEASE_SECONDS = 60.0  # default: a lease lasts this long unless renewed (every lease_seconds / 4); a front
# end that died leaves its events to the others once their leases expire

Op = Callable[[Connection], Any]


class _Finish(NamedTuple):
    request_id: str
    function_name: str
    counter: str | None
    deliveries: tuple[Delivery, ...]


class _Write(NamedTuple):
    """One submitted write. Inserts and finishes of a batch are coalesced into a few statements."""

    row: dict[str, Any] | None
    finish: _Finish | None
    op: Op | None
    future: "asyncio.Future[Any]"


class EventQueue:
    def __init__(
        self,
        repo: EventRepository,
        owner: str,
        clock: Callable[[], float] = time.time,
        max_batch: int = 1000,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.repo = repo
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.max_batch = max_batch
        self._pending: list[_Write] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squall-queue")
        self.commits = 0  # transactions committed (for the benchmark and tests)

    # ---- life cycle --------------------------------------------------------------------
    async def start(self, reclaim_everything: bool) -> int:
        """Start the writer and reclaim leases a previous run left; returns how many events."""
        self._wakeup = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        now = self.clock()
        return int(await self.run(lambda conn: self.repo.reclaim(conn, self.owner, now, reclaim_everything)))

    async def stop(self) -> None:
        """Give every lease back, write what is pending, and stop the writer."""
        if self._writer is None:
            return
        await self.run(lambda conn: self.repo.release_owner(conn, self.owner))
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        self._writer = None
        self._thread.shutdown(wait=True)

    # ---- writes ------------------------------------------------------------------------
    def submit_accept(self, event: QueuedEvent, leased: bool = False) -> "asyncio.Future[Any]":
        """Store an event durably; the future resolves after the commit that stored it.

        With ``leased`` the event is stored already leased to this server (handed straight
        to its dispatcher after the commit).
        """
        row = self.repo.row(event, self.owner, self.clock() + self.lease_seconds) if leased else self.repo.row(event)
        return self._submit(row=row)

    async def accept(self, event: QueuedEvent, leased: bool = False) -> None:
        try:
            await self.submit_accept(event, leased)
        except IntegrityError as exc:  # the function was deleted meanwhile
            raise ResourceNotFound(f"Function not found: {event.function_name}") from exc

    async def run(self, op: Op) -> Any:
        """Run ``op(conn)`` inside the next group transaction and return its result."""
        return await self._submit(op=op)

    async def lease_due(self, wanted: dict[str, int]) -> tuple[list[QueuedEvent], dict[str, float | None]]:
        """Lease due events of some functions (name → how many at most), in one transaction.

        Also returns, per function, when its next unleased event is due (None: none left).
        """
        now = self.clock()

        def op(conn: Connection) -> tuple[list[QueuedEvent], dict[str, float | None]]:
            events: list[QueuedEvent] = []
            next_due: dict[str, float | None] = {}
            for name, limit in wanted.items():
                events.extend(self.repo.lease_due(conn, self.owner, now, now + self.lease_seconds, name, limit))
                next_due[name] = self.repo.next_due(conn, name)
            return events, next_due

        return await self.run(op)  # type: ignore[no-any-return]

    async def functions_waiting(self) -> list[str]:
        return await self.run(self.repo.functions_with_unleased)  # type: ignore[no-any-return]

    async def lease_expired(self, function_name: str, max_age: float, limit: int = 500) -> list[QueuedEvent]:
        now = self.clock()
        return await self.run(  # type: ignore[no-any-return]
            lambda conn: self.repo.lease_older_than(
                conn, self.owner, function_name, now - max_age, now + self.lease_seconds, limit
            )
        )

    async def reschedule(self, event: QueuedEvent) -> None:
        await self.run(lambda conn: self.repo.reschedule(conn, event))

    async def finish(
        self, event: QueuedEvent, counter: str | None, deliveries: list[Delivery] = ()  # type: ignore[assignment]
    ) -> None:
        """Remove a settled event and queue its deliveries, atomically."""
        await self._submit(finish=_Finish(event.request_id, event.function_name, counter, tuple(deliveries)))

    async def release(self, events: list[QueuedEvent]) -> None:
        await self.run(lambda conn: self.repo.release(conn, [e.request_id for e in events]))

    async def renew(self, request_ids: Collection[str] | None = None) -> None:
        """Extend the leases of the events held (``request_ids``; None: all of this owner's)."""
        until = self.clock() + self.lease_seconds
        await self.run(lambda conn: self.repo.renew(conn, self.owner, until, request_ids))

    async def reclaim_expired(self) -> int:
        now = self.clock()
        return int(await self.run(lambda conn: self.repo.reclaim(conn, self.owner, now)))

    @asynccontextmanager
    async def held(self, event: QueuedEvent) -> AsyncIterator["Lease"]:
        """Hold a leased event: settle it through the lease, or it is released on exit."""
        lease = Lease(self, event)
        try:
            yield lease
        finally:
            if not lease.settled:
                lease.settled = True
                self._spawn_release(event)

    def _spawn_release(self, event: QueuedEvent) -> None:
        if self._writer is None or self._wakeup is None:
            return  # stopping: stop() releases every lease of this owner
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_ignore_result)
        self._pending.append(_Write(None, None, lambda conn: self.repo.release(conn, [event.request_id]), future))
        self._wakeup.set()

    # ---- the writer --------------------------------------------------------------------
    def _submit(
        self, row: dict[str, Any] | None = None, finish: _Finish | None = None, op: Op | None = None
    ) -> "asyncio.Future[Any]":
        if self._wakeup is None or self._writer is None:
            raise RuntimeError("the event queue is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(row, finish, op, future))
        self._wakeup.set()
        return future

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                outcomes = await loop.run_in_executor(self._thread, self._commit, batch)
                for (_, _, _, future), (ok, value) in zip(batch, outcomes):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    def _commit(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch; if it fails, each item alone (to isolate the culprit)."""
        try:
            with self.repo.engine.begin() as conn:
                self.repo.insert(conn, [w.row for w in batch if w.row is not None])
                finished = [w.finish for w in batch if w.finish is not None]
                if finished:
                    self.repo.delete(conn, [f.request_id for f in finished])
                    self.repo.insert_deliveries(conn, [d for f in finished for d in f.deliveries])
                    counts = Counter((f.function_name, f.counter) for f in finished if f.counter)
                    for (name, counter), n in counts.items():
                        self.repo.bump(conn, name, counter, n)
                results = [(True, w.op(conn) if w.op is not None else None) for w in batch]
            self.commits += 1
            return results
        except Exception as exc:  # noqa: BLE001 - retried item by item below
            if len(batch) == 1:
                return [(False, exc)]
        outcomes = []
        for item in batch:
            outcomes.extend(self._commit([item]))
        return outcomes


class Lease:
    """An event this server holds; settle it exactly once."""

    def __init__(self, queue: EventQueue, event: QueuedEvent) -> None:
        self.queue = queue
        self.event = event
        self.settled = False

    # Settled only once the database has it: if the write fails (a deadlock with another front
    # end's update, the database away), ``held`` gives the lease back instead of keeping it.
    async def retry(self, event: QueuedEvent) -> None:
        await self.queue.reschedule(event)
        self.settled = True

    async def finish(self, counter: str | None, deliveries: list[Delivery] = ()) -> None:  # type: ignore[assignment]
        await self.queue.finish(self.event, counter, deliveries)
        self.settled = True


def _ignore_result(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("releasing an event lease failed: %s", future.exception())
