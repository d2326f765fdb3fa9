"""Warm execution environments per function version, leases, and keep-alive.

``lease`` hands out an idle environment of the exact function revision (warm) or starts a
new one (cold); one invocation per environment at a time, so concurrent invokes scale out
to parallel environments. Leases are context managers that give the environment back (or
stop it) on every path. Idle environments are reaped after the keep-alive time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

from squall.engine.environment import Environment, EnvironmentState
from squall.errors import TooManyRequests
from squall.function import FunctionVersion
from squall.observe.logs import LogStore
from squall.runtimes.registry import Runtime
from squall.sandbox.base import SandboxBackend

PoolKey = tuple[str, str, str]  # function name, version, revision id


@dataclass(frozen=True)
class PoolLimits:
    account_concurrency: int
    keep_alive_seconds: float
    max_log_bytes: int


class EnvironmentPool:
    def __init__(
        self,
        backend: SandboxBackend,
        logs: LogStore,
        region: str,
        limits: PoolLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.logs = logs
        self.region = region
        self.limits = limits
        self.clock = clock
        self._idle: dict[PoolKey, deque[Environment]] = {}
        self._busy: set[Environment] = set()
        self._retired: set[str] = set()  # revision ids whose environments must not be reused
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    # ---- leasing -----------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def counts(self) -> dict[str, int]:
        return {"busy": len(self._busy), "idle": sum(len(q) for q in self._idle.values())}

    @asynccontextmanager
    async def lease(self, function: FunctionVersion, runtime: Runtime, code_dir: Path) -> AsyncIterator[Environment]:
        if len(self._busy) >= self.limits.account_concurrency:
            raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
        key = (function.name, function.version, function.revision_id)
        env = self._take_idle(key)
        if env is None:
            env = Environment(
                function, runtime, code_dir, self.backend, self.logs, self.region, self.limits.max_log_bytes, self.clock
            )
            self._busy.add(env)
            try:
                await env.start()
            except BaseException:
                self._busy.discard(env)
                self._stop_later(env, "failed to start")
                raise
        else:
            self._busy.add(env)
        try:
            yield env
        finally:
            self._busy.discard(env)
            self._give_back(key, env)

    def _take_idle(self, key: PoolKey) -> Environment | None:
        queue = self._idle.get(key)
        while queue:
            env = queue.pop()  # most recently used first: warmest caches
            if env.state == EnvironmentState.READY:
                return env
        return None

    def _give_back(self, key: PoolKey, env: Environment) -> None:
        if env.state != EnvironmentState.READY or key[2] in self._retired:
            self._stop_later(env, env.stop_reason or "retired")
            return
        env.last_used = self.clock()
        self._idle.setdefault(key, deque()).append(env)

    # ---- retiring and reaping ----------------------------------------------------
    def retire(self, function_name: str, keep_revision: str | None = None) -> None:
        """Stop a function's environments of every revision but ``keep_revision``.

        Idle ones stop now; busy ones finish their invocation and stop on release.
        """
        for key in list(self._idle):
            if key[0] == function_name and key[2] != keep_revision:
                self._retired.add(key[2])
                for env in self._idle.pop(key):
                    self._stop_later(env, "function updated")
        for env in self._busy:
            if env.function.name == function_name and env.function.revision_id != keep_revision:
                self._retired.add(env.function.revision_id)

    def reap(self) -> int:
        """Stop environments idle for longer than the keep-alive time; returns how many."""
        now = self.clock()
        reaped = 0
        for key in list(self._idle):
            queue = self._idle[key]
            keep = deque(env for env in queue if now - env.last_used < self.limits.keep_alive_seconds)
            for env in queue:
                if env not in keep:
                    self._stop_later(env, "idle")
                    reaped += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return reaped

    def start(self, interval: float | None = None) -> None:
        period = interval or min(10.0, self.limits.keep_alive_seconds / 2)

        async def loop() -> None:
            while True:
                await asyncio.sleep(period)
                self.reap()

        self._reaper = asyncio.get_running_loop().create_task(loop())

    def _stop_later(self, env: Environment, reason: str) -> None:
        env.kill(reason)
        task = asyncio.get_running_loop().create_task(env.stop(reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def shutdown(self, grace: float) -> None:
        """Let in-flight invocations finish (up to ``grace``), then stop every environment."""
        if self._reaper is not None:
            self._reaper.cancel()
        deadline = time.monotonic() + grace
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for env in list(self._busy):
            env.kill("shutdown")
        for key in list(self._idle):
            for env in self._idle.pop(key):
                self._stop_later(env, "shutdown")
        for env in list(self._busy):
            self._stop_later(env, "shutdown")
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
