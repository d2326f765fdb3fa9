"""Sends the outbox: destination records and dead letters, retried, never blocking the queue.

A settled event's deliveries are stored in the same transaction that removes the event,
so a crash between the two loses neither. This worker leases due deliveries, sends each
(at most ``concurrency`` at once), and removes it when sent. A failed send is retried
``ATTEMPTS`` times in all with backoff (1 s, 2 s, …); then it is dropped with a WARNING log
line ``DESTINATION_FAILED …`` and counted (``destination_failures`` per function and in
``/health``). Delivery is at least once: a crash after a send and before its removal sends
it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from squall import tasks as background
from squall.async_invoke.destinations import DeliveryError, Senders
from squall.async_invoke.queue import EventQueue
from squall.engine.bus import DeliveryFinished, EventBus
from squall.store.events import Delivery

log = logging.getLogger("squall.destinations")

ATTEMPTS = 3
BASE_DELAY = 1.0
POLL_INTERVAL = 1.0


class DeliveryWorker:
    def __init__(
        self,
        queue: EventQueue,
        senders: Senders,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
        attempts: int = ATTEMPTS,
        base_delay: float = BASE_DELAY,
        bus: EventBus | None = None,
    ) -> None:
        self.queue = queue
        self.bus = bus  # told each delivery's outcome (metrics)
        self.senders = senders
        self.clock = clock
        self.concurrency = concurrency
        self.attempts = attempts
        self.base_delay = base_delay
        self.sent = 0
        self.failed = 0
        self._running: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_due: float | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self, grace: float) -> None:
        await background.cancel(self._task)
        self._task = None
        await background.finish(self._running, grace)

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("destination delivery step failed")
            timeout = POLL_INTERVAL
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - self.clock()))
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def step(self) -> list[asyncio.Task[None]]:
        """Lease what is due and start sending it; returns the tasks started."""
        room = self.concurrency - len(self._running)
        if room <= 0:
            return []
        now = self.clock()
        repo = self.queue.repo

        def lease(conn):  # type: ignore[no-untyped-def]
            due = repo.lease_deliveries(conn, self.queue.owner, now, now + self.queue.lease_seconds, room)
            return due, repo.next_delivery_due(conn)

        due, self._next_due = await self.queue.run(lease)
        started = []
        for delivery in due:
            task = asyncio.get_running_loop().create_task(self._send(delivery))
            self._running.add(task)
            task.add_done_callback(self._done)
            started.append(task)
        return started

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    async def _send(self, delivery: Delivery) -> None:
        assert delivery.id is not None
        repo = self.queue.repo
        try:
            await self.senders.send(delivery.target, delivery.body, delivery.attributes)
        except DeliveryError as exc:
            attempts = delivery.attempts + 1
            if attempts < self.attempts:
                retry_at = self.clock() + self.base_delay * 2 ** (attempts - 1)
                await self.queue.run(lambda conn: repo.reschedule_delivery(conn, delivery.id, attempts, retry_at))
                if self._next_due is None or retry_at < self._next_due:
                    self._next_due = retry_at
                return
            self.failed += 1
            log.warning(
                "DESTINATION_FAILED function=%s request_id=%s kind=%s target=%s attempts=%d error=%s",
                delivery.function_name,
                delivery.request_id,
                delivery.kind,
                delivery.target,
                attempts,
                exc,
            )

            def give_up(conn):  # type: ignore[no-untyped-def]
                repo.delete_delivery(conn, delivery.id)
                repo.bump(conn, delivery.function_name, "destination_failures")

            await self.queue.run(give_up)
            if self.bus is not None:
                self.bus.publish(DeliveryFinished(delivery.function_name, delivery.kind, False))
            return
        self.sent += 1

        def done(conn):  # type: ignore[no-untyped-def]
            repo.delete_delivery(conn, delivery.id)
            if delivery.kind == "dlq":
                repo.bump(conn, delivery.function_name, "dead_lettered")

        await self.queue.run(done)
        if self.bus is not None:
            self.bus.publish(DeliveryFinished(delivery.function_name, delivery.kind, True))
