"""The dispatcher: drains the event queue into the invocation engine, within concurrency.

It keeps a small buffer of leased events per function and starts an invocation only when
the function has a free concurrency slot (reserved, or in the unreserved pool) and the
dispatcher is under ``max_concurrency``: an event that cannot run yet *waits* — leased in
the buffer, or unleased in the database — it is never dropped. A throttle that slips
through (memory admission, a race with a synchronous invoke) sends it back to the queue
with Lambda's throttle backoff.

Fresh events arrive two ways: straight from the accept path (inserted already leased to
this server when the buffer has room: no second database round trip, so an idle function
starts within a millisecond or two of the 202), or from the database (retries that came
due, events accepted while the buffer was full, leases reclaimed after a crash).
Ordering is not promised, as on Lambda.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from typing import Awaitable, Callable

from squall import tasks as background
from squall.arn import FunctionRef
from squall.async_invoke.configs import EventInvokeConfigs
from squall.async_invoke.queue import EventQueue, Lease
from squall.async_invoke.retries import Condition, Outcome, RetryPolicy
from squall.errors import LambdaError, RecursiveInvocation, ResourceNotFound, TooManyRequests
from squall.invoke.admission import Admission
from squall.invoke.invocation import InvocationResult, error_payload
from squall.store.events import QueuedEvent

log = logging.getLogger("squall.dispatcher")

# invoke(ref, payload, request_id, log line before START, the caller's trace header, when it was accepted)
Invoke = Callable[[FunctionRef, bytes, str, str, "str | None", float], Awaitable[InvocationResult | None]]
# finish(lease, condition, status, result or None): settle a final outcome (records, DLQ)
Finish = Callable[[Lease, Condition, int, "InvocationResult | None"], Awaitable[None]]

POLL_INTERVAL = 1.0  # look for functions with waiting events at least this often
SWEEP_INTERVAL = 5.0  # age expiry of events that wait unleased; queue depth recount


class Dispatcher:
    def __init__(
        self,
        queue: EventQueue,
        invoke: Invoke,
        finish: Finish,
        admission: Admission,
        configs: EventInvokeConfigs,
        policy: RetryPolicy,
        clock: Callable[[], float] = time.time,
        max_concurrency: int = 32,
    ) -> None:
        self.queue = queue
        self.invoke = invoke
        self.finish = finish
        self.admission = admission
        self.configs = configs
        self.policy = policy
        self.clock = clock
        self.max_concurrency = max_concurrency
        self.buffer_per_function = 2 * max_concurrency
        self._buffers: dict[str, deque[QueuedEvent]] = {}
        self._buffered = 0
        self._claimed: dict[str, int] = {}
        self._active: set[str] = set()  # events being invoked or expired now (their leases are renewed)
        self._unslotted: dict[str, int] = {}  # started tasks that have not taken their slot yet
        self._running: set[asyncio.Task[None]] = set()  # event tasks, invoking or settling
        self._invoking = 0  # of those, the ones whose invocation has not returned yet
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Function → when unleased events of it may be due in the database (accepted while
        # the buffer was full, retries, reclaimed leases): the only functions we query for.
        self._due: dict[str, float] = {}
        self._last_refresh = float("-inf")
        self._last_sweep = 0.0
        self._last_renew = 0.0
        self.depth = 0  # events stored and not finished (approximate between recounts)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self, depth: int, run: bool = True) -> None:
        """Start dispatching (``run=False``: the caller drives :meth:`step`, as unit tests do)."""
        self.depth = depth
        now = self.clock()
        self._last_sweep = self._last_renew = now
        self._task = asyncio.get_running_loop().create_task(self._loop() if run else asyncio.Event().wait())

    async def stop(self, grace: float) -> None:
        """Stop taking events, let running ones finish (up to ``grace``), cancel the rest."""
        if self._task is None:
            return
        await background.cancel(self._task)
        self._task = None
        await background.finish(self._running, grace)
        self._buffers.clear()
        self._buffered = 0

    async def wait_running(self) -> None:
        """Wait until every started invocation (and expiry) has settled."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return self._invoking

    @property
    def buffered(self) -> int:
        return self._buffered

    # ---- the accept path ---------------------------------------------------------------
    def claim(self, function_name: str) -> bool:
        """May a just-accepted event of this function be stored leased to us and handed over?"""
        if self._task is None or self.admission.turned_off(function_name):
            return False
        held = len(self._buffers.get(function_name, ())) + self._claimed.get(function_name, 0)
        if held >= self.buffer_per_function:
            return False
        self._claimed[function_name] = self._claimed.get(function_name, 0) + 1
        return True

    def accepted(self, event: QueuedEvent, claimed: bool, stored: bool) -> None:
        """After the accept's commit (or its failure): take the event, or note the backlog."""
        if claimed:
            self._claimed[event.function_name] -= 1
            if stored:
                self._buffer(event)
        if stored:
            self.depth += 1
            if not claimed:
                self._mark_due(event.function_name, event.not_before)
        self._wakeup.set()

    # ---- the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep dispatching; the failure is in the server log
                log.exception("async dispatcher step failed")
                await asyncio.sleep(POLL_INTERVAL)
            timeout = POLL_INTERVAL
            due = self._fillable()
            if due and self._has_room():
                timeout = max(0.0, min(timeout, min(due.values()) - self.clock()))
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def step(self) -> None:
        """One round: start what can run, lease more if there is room, housekeeping when due."""
        self._start_ready()
        now = self.clock()
        if now - self._last_refresh >= POLL_INTERVAL:
            self._last_refresh = now
            for name in await self.queue.functions_waiting():
                self._mark_due(name, now)
        if self._has_room():
            await self._fill(now)
            self._start_ready()
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = now
            await self._sweep()
        if now - self._last_renew >= self.queue.lease_seconds / 4:
            self._last_renew = now
            await self.queue.renew(self._held_ids())
            await self.queue.reclaim_expired()

    def _held_ids(self) -> set[str]:
        """The events this dispatcher holds leases on: buffered, running, expiring."""
        return {e.request_id for buffer in self._buffers.values() for e in buffer} | self._active

    def _has_room(self) -> bool:
        return self._buffered < 2 * self.buffer_per_function

    async def _fill(self, now: float) -> None:
        """Lease due events of functions that have a free slot and room in their buffer."""
        room = 2 * self.buffer_per_function - self._buffered
        wanted: dict[str, int] = {}
        for name, at in self._fillable().items():
            if at > now or room <= 0:
                continue
            take = min(room, self.buffer_per_function - len(self._buffers.get(name, ())))
            wanted[name] = take
            room -= take
        if not wanted:
            return
        events, next_due = await self.queue.lease_due(wanted)
        for event in events:
            self._buffer(event)
        for name, at in next_due.items():
            if at is None:
                self._due.pop(name, None)
            else:
                self._due[name] = at

    def _fillable(self) -> dict[str, float]:
        """Functions with events due in the database that could start and have buffer room."""
        return {
            name: at
            for name, at in self._due.items()
            if self._free(name) > 0 and len(self._buffers.get(name, ())) < self.buffer_per_function
        }

    def _mark_due(self, name: str, at: float) -> None:
        current = self._due.get(name)
        if current is None or at < current:
            self._due[name] = at

    def _buffer(self, event: QueuedEvent) -> None:
        self._buffers.setdefault(event.function_name, deque()).append(event)
        self._buffered += 1

    def _start_ready(self) -> None:
        """Start every buffered event that has a free slot, round-robin over functions."""
        progress = True
        while progress and self._buffered and self._invoking < self.max_concurrency:
            progress = False
            for name in list(self._buffers):
                buffer = self._buffers[name]
                if not buffer:
                    del self._buffers[name]
                    continue
                if self._invoking >= self.max_concurrency or self._free(name) <= 0:
                    continue
                event = buffer.popleft()
                self._buffered -= 1
                self._unslotted[name] = self._unslotted.get(name, 0) + 1
                self._invoking += 1
                task = asyncio.get_running_loop().create_task(self._run(event))
                self._running.add(task)
                task.add_done_callback(self._done)
                progress = True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    def _free(self, name: str) -> int:
        """Free concurrency slots of a function, minus our tasks about to take one."""
        return self.admission.available(name, self._unslotted)

    # ---- one event -----------------------------------------------------------------------
    async def _run(self, event: QueuedEvent) -> None:
        # Nothing below suspends before the invoke has taken its concurrency slot.
        self._unslotted[event.function_name] -= 1
        invoking = True

        def invoked() -> None:
            """The invocation is over: another may start while this one's outcome is committed."""
            nonlocal invoking
            if invoking:
                invoking = False
                self._invoking -= 1
                self._wakeup.set()

        try:
            await self._attempt(event, invoked)
        finally:
            invoked()

    async def _attempt(self, event: QueuedEvent, invoked: Callable[[], None]) -> None:
        self._active.add(event.request_id)
        try:
            await self._attempt_held(event, invoked)
        finally:
            self._active.discard(event.request_id)

    async def _attempt_held(self, event: QueuedEvent, invoked: Callable[[], None]) -> None:
        name = event.function_name
        async with self.queue.held(event) as lease:
            limits = self.configs.for_event(name, event.qualifier).limits
            now = self.clock()
            if self.policy.expired(event, limits, now):
                invoked()
                await self._final(lease, Condition.EVENT_AGE_EXCEEDED, event.last_status or 429, None)
                return
            attempt = event.attempts + 1
            prelude = (
                f"ASYNC_EVENT RequestId: {event.request_id}\tAttempt: {attempt} of {limits.maximum_retry_attempts + 1}"
                f"\tEvent Age: {max(0.0, now - event.enqueued_at):.3f} s"
            )
            result: InvocationResult | None = None
            try:
                result = await self.invoke(FunctionRef(name, event.qualifier), event.payload, event.request_id, prelude,
                                           event.trace, event.enqueued_at)
                outcome = Outcome.FUNCTION_ERROR if result is not None and result.function_error else Outcome.SUCCESS
                status, error = 200, (result.payload if result is not None and result.function_error else None)
            except TooManyRequests as exc:
                outcome, status, error = Outcome.THROTTLED, 429, error_payload(exc.code, exc.message)
            except RecursiveInvocation as exc:  # a loop, stopped (RecursiveLoop Terminate): not retried
                log.warning("async event %s of %s: %s", event.request_id, name, exc.message)
                invoked()
                lease.event = replace(event, last_status=400, last_error=error_payload(exc.code, exc.message))
                await self._final(lease, Condition.RECURSIVE_LOOP, 400, None)
                return
            except ResourceNotFound:
                log.warning("dropping async event %s: function %s no longer exists", event.request_id, name)
                await lease.finish(None)
                self.depth -= 1
                return
            except LambdaError as exc:  # e.g. the function is Pending or Failed
                outcome, status, error = Outcome.SYSTEM_ERROR, 500, error_payload(exc.code, exc.message)
            except Exception as exc:  # noqa: BLE001 - any engine failure is a system error to retry
                log.exception("async invocation %s of %s failed", event.request_id, name)
                outcome, status, error = Outcome.SYSTEM_ERROR, 500, error_payload("ServiceException", str(exc))
            invoked()
            if outcome in (Outcome.SUCCESS, Outcome.FUNCTION_ERROR):
                event = replace(event, attempts=attempt)
            else:
                event = replace(event, deferrals=event.deferrals + 1)
            event = replace(event, last_status=status, last_error=error if error is not None else event.last_error)
            lease.event = event
            decision = self.policy.decide(event, outcome, limits, self.clock())
            if decision.condition is None:
                assert decision.retry_at is not None
                await lease.retry(replace(event, not_before=decision.retry_at))
                self._mark_due(name, decision.retry_at)
                return
            await self._final(lease, decision.condition, status, result)

    async def _final(self, lease: Lease, condition: Condition, status: int, result: InvocationResult | None) -> None:
        await self.finish(lease, condition, status, result)
        self.depth -= 1

    # ---- housekeeping --------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Expire events that waited unleased past their age; expire stale buffered ones."""
        now = self.clock()
        for name, buffer in list(self._buffers.items()):
            stale = [e for e in buffer if self.policy.expired(e, self.configs.for_event(name, e.qualifier).limits, now)]
            for event in stale:
                buffer.remove(event)
                self._buffered -= 1
                self._spawn_expiry(event)
        for name in await self.queue.functions_waiting():
            limits = self.configs.for_event(name, None).limits  # waiting unleased: the function's own config
            for event in await self.queue.lease_expired(name, limits.maximum_event_age):
                self._spawn_expiry(event)
        self.depth = await asyncio.to_thread(self.queue.repo.count)

    def _spawn_expiry(self, event: QueuedEvent) -> None:
        async def expire() -> None:
            self._active.add(event.request_id)
            try:
                async with self.queue.held(event) as lease:
                    await self._final(lease, Condition.EVENT_AGE_EXCEEDED, event.last_status or 429, None)
            finally:
                self._active.discard(event.request_id)

        task = asyncio.get_running_loop().create_task(expire())
        self._running.add(task)
        task.add_done_callback(self._done)
