"""Concurrency limits that hold across front ends: permits granted by the database.

With one front end, admission counts in memory. With several on one database, a function with
reserved concurrency 10 must not run 10 on each: each front end may run only as many invocations
of a *scope* — a function with reserved concurrency (``function:<name>``), or the account's
unreserved pool (``account``) — as it holds permits for, and permits are granted in the database
(:class:`~squall.store.permits.PermitRepository`: one transaction under a per-scope lock, so the
live holders' permits never add up to more than the limit).

The warm path stays off the database: a front end keeps up to its *share* of a scope (the limit
divided by the live front ends, rounded up) once it has needed permits, and asks the database only
when it needs more than it holds — a burst beyond its share. Permits above what it runs and above
its share go back within :data:`TRIM_SECONDS`. A front end refused a permit says so to the others
(``StateChanged("permits", scope)``, relayed): each gives back at once what it holds of that scope
beyond what it runs, and the refused front end tries again 50 and 150 ms later (so a newcomer
waits a moment instead of being throttled); only then is the invocation throttled (429). All permits are renewed every
:data:`RENEW_SECONDS` and expire :data:`TTL_SECONDS` after a front end stops renewing them (it
died): until then the others may throttle a little early, never admit too many.

Consistency: strict — at no moment do the front ends together run more invocations of a scope
than its limit (each admission is checked against permits already granted). Latency: none while a
front end is within its share; one database transaction (about a millisecond here) for an
invocation beyond it. When the database is away, a front end runs what its permits allow and
throttles beyond them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Callable

from squall import tasks as background
from squall.engine.bus import EventBus, StateChanged
from squall.errors import TooManyRequests
from squall.store.permits import PermitRepository

log = logging.getLogger("squall.cluster")

ACCOUNT = "account"
KIND = "permits"  # StateChanged("permits", scope): a front end was refused a permit of scope
TRIM_SECONDS = 0.25
ASK_AGAIN_SECONDS = (0.05, 0.1)  # after asking the others to give permits back: try again after these pauses
RENEW_SECONDS = 2.0
TTL_SECONDS = 10.0


def function_scope(name: str) -> str:
    return f"function:{name}"


class NeedPermits(Exception):
    """Admission's limits allow one more, but this front end holds no permit for it yet."""

    def __init__(self, scope: str, limit: int, in_use: int, refusal: TooManyRequests) -> None:
        super().__init__(scope)
        self.scope = scope
        self.limit = limit
        self.in_use = in_use
        self.refusal = refusal  # what the caller gets when no permit can be had


class ClusterPermits:
    def __init__(self, repo: PermitRepository, holder: str, live_front_ends: Callable[[], int],
                 usage: Callable[[str], tuple[int, int | None]], bus: EventBus | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.bus = bus
        self.holder = holder
        self.live_front_ends = live_front_ends  # how many front ends share the limits now (at least 1)
        self.usage = usage  # scope -> (invocations running here, its limit now; None: no such scope any more)
        self.clock = clock
        self.held: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self.grants = 0  # database transactions that granted or returned permits
        self.refused = 0  # invocations throttled because no permit could be had
        if bus is not None:
            bus.subscribe(StateChanged, self._wanted_elsewhere)

    def has(self, scope: str, in_use: int) -> bool:
        """May one more invocation of ``scope`` run here (``in_use`` run already)?"""
        return in_use < self.held.get(scope, 0)

    def share(self, limit: int) -> int:
        return min(limit, math.ceil(limit / max(1, self.live_front_ends())))

    async def acquire(self, scope: str, limit: int, in_use: int) -> bool:
        """Hold enough permits for one more invocation of ``scope`` (and up to this front end's share).
        When the others hold them all, they are asked to give back what they do not run, and the
        grant is tried again a moment later (:data:`ASK_AGAIN_SECONDS`)."""
        for attempt, pause in enumerate((0.0, *ASK_AGAIN_SECONDS)):
            if pause:
                await asyncio.sleep(pause)
            async with self._lock(scope):
                if self.has(scope, in_use):
                    return True
                wanted = max(in_use + 1, self.share(limit))
                try:
                    self.held[scope] = await asyncio.to_thread(self.repo.resize, scope, self.holder, wanted, limit,
                                                               self.clock(), TTL_SECONDS)
                    self.grants += 1
                except Exception as exc:  # the database is away: only what is held already
                    log.warning("cannot get concurrency permits for %s: %s", scope, exc)
                    break
                if self.has(scope, in_use):
                    return True
            if attempt == 0 and self.bus is not None:  # the others give back what they do not run
                self.bus.publish(StateChanged(KIND, scope))
            if self.bus is None:
                break
        self.refused += 1
        return False

    def _wanted_elsewhere(self, event: StateChanged) -> None:
        if event.kind == KIND and self.bus is not None and self.bus.from_remote and event.name in self.held:
            self.bus.defer(lambda: self.give_back(event.name), f"the concurrency permits of {event.name}")

    async def give_back(self, scope: str) -> None:
        """Keep of ``scope`` only what runs here (another front end wants the rest)."""
        async with self._lock(scope):
            running, limit = self.usage(scope)
            if self.held.get(scope, 0) > running:
                self.held[scope] = await asyncio.to_thread(
                    self.repo.resize, scope, self.holder, running, limit if limit is not None else running,
                    self.clock(), TTL_SECONDS)
                self.grants += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="squall-permits")

    async def stop(self) -> None:
        if self._task is not None:
            await background.cancel(self._task)
            self._task = None
        try:
            await asyncio.to_thread(self.repo.drop, self.holder)  # the others may have them at once
        except Exception as exc:
            log.warning("could not give the concurrency permits back (they expire in %.0f s): %s", TTL_SECONDS, exc)
        self.held.clear()

    def _lock(self, scope: str) -> asyncio.Lock:
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = asyncio.Lock()
        return lock

    async def trim(self) -> None:
        """Give back what is held beyond what runs and this front end's share."""
        for scope in list(self.held):
            running, limit = self.usage(scope)
            target = running if limit is None else max(running, self.share(limit))
            if limit is not None:
                target = min(target, max(running, limit))
            if self.held.get(scope, 0) <= target:
                continue
            async with self._lock(scope):
                running, limit = self.usage(scope)
                if limit is None and running == 0:
                    target = 0
                if self.held.get(scope, 0) > target:
                    self.held[scope] = await asyncio.to_thread(
                        self.repo.resize, scope, self.holder, target, limit if limit is not None else target,
                        self.clock(), TTL_SECONDS)
                    self.grants += 1
                if self.held.get(scope) == 0:
                    self.held.pop(scope, None)

    async def _run(self) -> None:
        renewed = self.clock()
        while True:
            await asyncio.sleep(TRIM_SECONDS)
            try:
                await self.trim()
                if self.held and self.clock() - renewed >= RENEW_SECONDS:
                    await asyncio.to_thread(self.repo.renew, self.holder, self.clock(), TTL_SECONDS)
                    renewed = self.clock()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep what is held (it may expire)
                log.debug("concurrency permits: %s", exc)
