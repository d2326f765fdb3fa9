"""SnapStart for runtimes that cannot be forked after init: environments initialised ahead of need.

A Node.js, Java, Ruby or .NET process cannot be forked once it has run its function's init
(their virtual machines run threads from the start; a fork copies one: docs/snapstart.md). For a
SnapStart version of such a runtime, Squall keeps a few environments **initialised ahead**
instead — each one ran the init itself, in its own sandbox, so nothing is shared between them —
and hands one to a cold start, whose REPORT then says ``Restore Duration`` (what the invocation
waited for its environment). As many are kept as the largest burst of cold starts of the last
minute (at least one, at most ``MAX_SPARES``); they count against the server's memory capacity
like any environment, and are reported with the snapshots (their memory: what their inits used).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable

from squall.arn import LATEST
from squall.environments.environment import Environment, EnvironmentState
from squall.errors import TooManyRequests

if TYPE_CHECKING:
    from squall.environments.pool import EnvironmentPool, PoolKey
    from squall.function import FunctionVersion
    from squall.invoke.resolver import Target

log = logging.getLogger("squall.snapshots")

MAX_SPARES = 4  # environments kept ahead per version, at most
SPARES_WINDOW_S = 60.0  # how far back a burst counts
BURST_S = 1.0  # cold starts that arrive within this long of each other are one burst


class Bursts:
    """How many starts were in flight at once lately: how many spares to keep."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.in_flight = 0
        self._seen: list[tuple[float, int]] = []  # (when, starts in flight then)

    def started(self) -> None:
        self.in_flight += 1
        self._seen.append((self._clock(), self.in_flight))

    def ended(self) -> None:
        self.in_flight -= 1

    @property
    def wanted(self) -> int:
        now = self._clock()
        self._seen = [(t, n) for t, n in self._seen if now - t < SPARES_WINDOW_S]
        return min(MAX_SPARES, max([1] + [n for _, n in self._seen]))


class Prestarted:
    """One SnapStart version's environments initialised ahead of need."""

    def __init__(self, key: PoolKey, target: Target, pool: EnvironmentPool) -> None:
        self.key = key
        self.target = target
        self.pool = pool
        self.ready = True  # kept (False once stopped)
        self.failure: str | None = None
        self.created_at = pool.clock()
        self.last_used = self.created_at
        self.forks = 0  # environments handed to cold starts
        self._envs: list[Environment] = []
        self._starting = 0
        self._bursts = Bursts(pool.clock)
        self.failed_at: float | None = None
        self.on_failed: Callable[[Prestarted], None] | None = None  # told when an init fails

    @property
    def function(self) -> FunctionVersion:
        return self.target.config

    @property
    def memory_bytes(self) -> int:
        return sum(env.init_peak_kb * 1024 for env in self._envs)

    def take(self) -> Environment | None:
        """An environment initialised ahead, now the caller's (None: none is ready)."""
        self._bursts.started()  # a hand-over takes no time: a burst is what arrives within a second
        asyncio.get_running_loop().call_later(BURST_S, self._bursts.ended)
        self._envs = [env for env in self._envs if env.state == EnvironmentState.READY]
        env = self._envs.pop(0) if self._envs else None
        if env is not None:
            self.forks += 1
            self.last_used = self.pool.clock()
        self.refill()
        return env

    def refill(self) -> None:
        """Start environments until as many are ready or starting as recent bursts want."""
        while self.ready and self.failure is None and len(self._envs) + self._starting < self._bursts.wanted:
            self._starting += 1
            self.pool.background(asyncio.get_running_loop().create_task(self._start_one()))

    async def _start_one(self) -> None:
        try:
            try:
                env = self.pool.new_environment(self.target)
            except TooManyRequests as e:  # the server's memory is in use: the next cold start tries again
                log.info("SnapStart: no room to initialise an environment of %s ahead: %s", self.target.name, e.message)
                return
            env.snap_start = True
            try:
                await env.start()
            except Exception as e:
                self.pool.stop_environment(env, "failed to start")
                self._failed(str(e) or type(e).__name__)
                return
            if env.state != EnvironmentState.READY:
                self.pool.stop_environment(env, "init failed")
                self._failed("its init failed")
                return
            if not self.ready:
                self.pool.stop_environment(env, "SnapStart environments of this version stopped")
                return
            self._envs.append(env)
        finally:
            self._starting -= 1

    def _failed(self, why: str) -> None:
        fn = self.target.config
        log.warning("SnapStart: %s:%s gets no environments initialised ahead (cold starts initialise): %s",
                    fn.name, fn.version or LATEST, why)
        self.failure = why
        self.failed_at = self.pool.clock()
        if self.on_failed is not None:
            self.on_failed(self)

    def stop(self, reason: str) -> None:
        """Stop the environments kept ahead (the pool keeps their stops until they are done)."""
        self.ready = False
        envs, self._envs = self._envs, []
        for env in envs:
            self.pool.stop_environment(env, reason)

    def report(self, now: float) -> dict[str, object]:
        fn = self.target.config
        return {
            "function": fn.name,
            "version": fn.version or LATEST,
            "kind": "initialised ahead",
            "state": "failed" if self.failure else "ready",
            "memory_mb": round(self.memory_bytes / (1 << 20), 1),
            "init_duration_ms": None,
            "restores": self.forks,
            "spares": len(self._envs),
            "pid": None,
            "age_s": round(now - self.created_at, 1),
            "idle_s": round(now - self.last_used, 1),
            **({"failure": self.failure} if self.failure else {}),
        }
