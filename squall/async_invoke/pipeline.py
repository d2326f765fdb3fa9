"""Asynchronous invocation (``InvocationType: Event``): the pieces, wired together.

    accept ──(group commit, 202 after it)──▶ EventQueue ──▶ Dispatcher ──▶ Engine.invoke
                                                  ▲              │ outcome → RetryPolicy
                                                  └─ retry ──────┤
                                   outbox (same transaction) ◀───┘ final: Success / RetriesExhausted /
                                        │                                 EventAgeExceeded
                                  DeliveryWorker ──▶ Senders: function · SQS · SNS · webhook · DLQ

Delivery is at least once: an event a crash interrupted runs again after the restart, so a
handler may see the same request id twice (as on Lambda).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from typing import Any, Awaitable, Callable

from sqlalchemy.exc import IntegrityError

from squall.arn import LATEST, Arns, FunctionRef
from squall.engine.bus import AsyncEventSettled, EventBus, FunctionDeleted
from squall.invoke.admission import Admission
from squall.invoke.resolver import Resolver
from squall.async_invoke.deliveries import DeliveryWorker
from squall.async_invoke.destinations import Endpoints, Senders, dead_letter_attributes, invocation_record
from squall.async_invoke.dispatcher import Dispatcher
from squall.async_invoke.configs import EventInvokeConfigs, Exists
from squall.async_invoke.queue import EventQueue, Lease
from squall.invoke.invocation import InvocationResult
from squall.async_invoke.retries import Condition, RetryPolicy
from squall.errors import LambdaError, ResourceNotFound
from squall.settings import Settings
from squall.store.db import create_engine
from squall.store.event_invoke_configs import EventInvokeConfigRepository
from squall.store.events import Delivery, EventRepository, QueuedEvent

log = logging.getLogger("squall.async")

MAX_EVENT_PAYLOAD = 1048576  # 1 MB: Lambda's limit for InvocationType Event
MAX_INVOKE_ASYNC_PAYLOAD = 262144  # 256 KB: the deprecated InvokeAsync operation

# (function, payload, request id, log line written before START) → result
InvokeEvent = Callable[[FunctionRef, bytes, str, str, "str | None", float], Awaitable[InvocationResult | None]]


class AsyncInvocations:
    def __init__(
        self,
        settings: Settings,
        resolver: Resolver,
        admission: Admission,
        invoke: InvokeEvent,
        exists: Exists,
        arns: Arns,
        bus: EventBus,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.arns = arns
        self.clock = clock
        # Its own connections, each commit fsynced: an accepted event survives power loss too.
        self.db = create_engine(settings.database, synchronous="FULL")
        self.repo = EventRepository(self.db)
        self.queue = EventQueue(self.repo, uuid.uuid4().hex, clock, settings.async_commit_batch,
                                settings.async_lease_seconds)
        self.configs = EventInvokeConfigs(EventInvokeConfigRepository(self.db), arns, exists, clock, bus)
        endpoints = Endpoints(
            sqs=settings.destination_sqs_endpoint or settings.aws_endpoint or None,
            sns=settings.destination_sns_endpoint or settings.aws_endpoint or None,
            access_key_id=settings.aws_access_key_id or None,
            secret_access_key=settings.aws_secret_access_key or None,
        )
        self.senders = Senders(endpoints, self._enqueue_for_destination)
        self.deliveries = DeliveryWorker(self.queue, self.senders, clock, bus=bus)
        self.dispatcher = Dispatcher(
            self.queue,
            invoke,
            self._finish,
            admission,
            self.configs,
            RetryPolicy(settings.async_retry_delay_seconds),
            clock,
            settings.async_max_concurrency,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.bus = bus
        bus.subscribe(FunctionDeleted, lambda event: self.function_changed(event.name))

    # ---- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        await self.configs.load()
        # One SQLite database serves one server: every lease left in it is from a dead run.
        reclaimed = await self.queue.start(reclaim_everything=self.settings.database.startswith("sqlite"))
        depth = await asyncio.to_thread(self.repo.count)
        if reclaimed:
            log.warning("re-delivering %d asynchronous event(s) a previous run had taken but not finished", reclaimed)
        if depth:
            log.info("%d asynchronous event(s) queued from a previous run", depth)
        self.dispatcher.start(depth)
        self.deliveries.start()

    async def stop(self, grace: float) -> None:
        await self.dispatcher.stop(grace)
        await self.deliveries.stop(grace)
        await self.queue.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.to_thread(self.db.dispose)

    def function_changed(self, name: str) -> None:
        """A function was deleted: forget its EventInvokeConfigs (the cascade removed them)."""
        task = asyncio.get_running_loop().create_task(self.configs.refresh(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- accepting -----------------------------------------------------------------------
    async def accept(self, ref: FunctionRef, payload: bytes, request_id: str, trace: str | None = None) -> None:
        """Queue an event durably; returns once it is committed (then the API answers 202).
        ``trace``: the caller's X-Amzn-Trace-Id (its lineage counts recursive hops)."""
        target = await self.resolver.resolve(ref)  # unknown → 404, Pending → 409, at once
        now = self.clock()
        event = QueuedEvent(request_id, target.name, ref.qualifier, payload, now, not_before=now, trace=trace)
        claimed = self.dispatcher.claim(target.name)
        future = self.queue.submit_accept(event, leased=claimed)
        future.add_done_callback(functools.partial(self._accepted, event, claimed))
        try:
            await asyncio.shield(future)  # a client that goes away does not make the outcome unknown
        except IntegrityError as exc:  # the function was deleted meanwhile
            raise ResourceNotFound(f"Function not found: {self.arns.function(target.name)}") from exc

    def _accepted(self, event: QueuedEvent, claimed: bool, future: "asyncio.Future[Any]") -> None:
        stored = not future.cancelled() and future.exception() is None
        self.dispatcher.accepted(event, claimed, stored)

    async def _enqueue_for_destination(self, name: str, qualifier: str | None, record: bytes) -> None:
        """A Lambda destination: the record becomes an asynchronous invocation of that function."""
        await self.accept(FunctionRef(name, qualifier), record, str(uuid.uuid4()))

    # ---- settling ------------------------------------------------------------------------
    async def _finish(self, lease: Lease, condition: Condition, status: int, result: InvocationResult | None) -> None:
        """Remove a finished event; queue its destination record and dead letter with it."""
        event = lease.event
        config = self.configs.for_event(event.function_name, event.qualifier)
        target = config.on_success if condition == Condition.SUCCESS else config.on_failure
        dead_letter = None if condition == Condition.SUCCESS else await self._dead_letter_target(event)
        deliveries: list[Delivery] = []
        now = self.clock()
        if result is not None:
            response, function_error, executed = result.payload, result.function_error, result.executed_version
        elif event.last_status == 200:  # the last attempt was a function error
            response, function_error, executed = event.last_error, "Unhandled", LATEST
        else:  # never ran (throttled, or waited too long)
            response, function_error, executed = None, None, LATEST
        if target:
            record = invocation_record(
                request_id=event.request_id,
                function_arn=self.arns.function(event.function_name, event.qualifier or LATEST),
                condition=condition.value,
                invoke_count=event.attempts,
                request_payload=event.payload,
                status_code=status,
                executed_version=executed,
                function_error=function_error,
                response_payload=response,
                timestamp=now,
            )
            deliveries.append(Delivery(event.function_name, event.request_id, "destination", target, record, None, 0, now))
        if dead_letter:
            error = response if function_error else event.last_error
            attributes = dead_letter_attributes(event.request_id, status, error)
            deliveries.append(
                Delivery(event.function_name, event.request_id, "dlq", dead_letter, event.payload, attributes, 0, now)
            )
        if condition != Condition.SUCCESS:
            log.info(
                "async event %s of %s: %s after %d attempt(s)",
                event.request_id,
                event.function_name,
                condition.value,
                event.attempts,
            )
        await lease.finish(condition.counter, deliveries)
        self.bus.publish(AsyncEventSettled(event.function_name, condition.value,
                                           max(0.0, (now - event.enqueued_at) * 1000)))
        if deliveries:
            self.deliveries.wake()

    async def _dead_letter_target(self, event: QueuedEvent) -> str | None:
        """The DeadLetterConfig target of the version the event was for (cached: no I/O)."""
        try:
            target = await self.resolver.resolve(FunctionRef(event.function_name, event.qualifier))
        except LambdaError:  # deleted, or not invocable right now: no dead letter
            return None
        return target.config.dead_letter_target

    # ---- visibility ----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "depth": self.dispatcher.depth,
            "in_flight": self.dispatcher.in_flight,
            "buffered": self.dispatcher.buffered,
            "destinations_sent": self.deliveries.sent,
            "destination_failures": self.deliveries.failed,
        }

    async def report(self, function_name: str | None = None) -> dict[str, Any]:
        """Per function: depth, oldest age, in retry, in flight, outcomes (``squall queue``)."""
        now = self.clock()
        rows = []
        for stats in await asyncio.to_thread(self.repo.stats, function_name):
            oldest = None if stats.oldest_enqueued_at is None else round(max(0.0, now - stats.oldest_enqueued_at), 3)
            rows.append(
                {
                    "function": stats.name,
                    "depth": stats.depth,
                    "oldest_age_seconds": oldest,
                    "in_retry": stats.in_retry,
                    "in_flight": stats.leased,
                    **stats.counters,
                }
            )
        if function_name is not None and not rows:
            rows.append({"function": function_name, "depth": 0, "oldest_age_seconds": None, "in_retry": 0, "in_flight": 0})
        return {"functions": rows, **self.health()}
