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

from squall import tasks as background
from squall.functions.code_store import CodeHold, CodeStore
from squall.environments.environment import Environment, EnvironmentState
from squall.errors import TooManyRequests
from squall.function import FunctionVersion
from squall.observe.logs import LogStore
from squall.runtimes.registry import Runtime
from squall.sandbox.base import SandboxBackend

PoolKey = tuple[str, str, str, bool]  # function name, version, revision id, network


@dataclass(frozen=True)
class PoolLimits:
    memory_capacity_mb: int  # the sum of all environments' MemorySize stays within this
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
        code: CodeStore | None = None,
    ) -> None:
        self.backend = backend
        self.code = code  # environments hold their code until their processes are gone
        self.logs = logs
        self.region = region
        self.limits = limits
        self.clock = clock
        self._idle: dict[PoolKey, deque[Environment]] = {}
        self._busy: set[Environment] = set()
        self._resident: dict[Environment, int] = {}  # every environment not yet stopped → its MemorySize
        self._code_holds: dict[Environment, CodeHold] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    # ---- leasing -----------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._busy)

    @property
    def memory_in_use_mb(self) -> int:
        return sum(self._resident.values())

    def counts(self) -> dict[str, int]:
        return {
            "busy": len(self._busy),
            "idle": sum(len(q) for q in self._idle.values()),
            "memory_mb": self.memory_in_use_mb,
            "memory_capacity_mb": self.limits.memory_capacity_mb,
        }

    @asynccontextmanager
    async def lease(
        self, function: FunctionVersion, runtime: Runtime, code_dir: Path, network: bool = True
    ) -> AsyncIterator[Environment]:
        key = (function.name, function.version, function.revision_id, network)
        env = self._take_idle(key)
        if env is None:
            self._admit(function.memory_size)
            env = Environment(
                function,
                runtime,
                code_dir,
                self.backend,
                self.logs,
                self.region,
                self.limits.max_log_bytes,
                self.clock,
                network=network,
            )
            self._resident[env] = function.memory_size
            if self.code is not None:  # in the turn that resolved the version: see code_store
                self._code_holds[env] = self.code.hold(function.code.sha256_hex)
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

    def _admit(self, memory_mb: int) -> None:
        """Make room for a new environment, evicting idle ones (least recently used first)."""
        capacity = self.limits.memory_capacity_mb
        if self.memory_in_use_mb + memory_mb <= capacity:
            return
        idle = sorted((env for queue in self._idle.values() for env in queue), key=lambda e: e.last_used)
        for env in idle:
            if self.memory_in_use_mb + memory_mb <= capacity:
                break
            self._idle[env.pool_key].remove(env)
            self._stop_later(env, "evicted for memory")
        self._idle = {k: q for k, q in self._idle.items() if q}
        if self.memory_in_use_mb + memory_mb > capacity:
            raise TooManyRequests(
                f"Rate Exceeded. This server's memory capacity for environments is in use "
                f"({self.memory_in_use_mb} of {capacity} MB).",
                "ConcurrentInvocationLimitExceeded",
            )

    def _take_idle(self, key: PoolKey) -> Environment | None:
        queue = self._idle.get(key)
        while queue:
            env = queue.pop()  # most recently used first: warmest caches
            if env.state == EnvironmentState.READY:
                return env
        return None

    def _give_back(self, key: PoolKey, env: Environment) -> None:
        if env.state != EnvironmentState.READY or env.retired:
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
                for env in self._idle.pop(key):
                    self._stop_later(env, "function updated")
        for env in self._busy:
            if env.function.name == function_name and env.function.revision_id != keep_revision:
                env.retired = True

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
        self._resident.pop(env, None)
        env.kill(reason)
        task = asyncio.get_running_loop().create_task(env.stop(reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        hold = self._code_holds.pop(env, None)
        if hold is not None:  # the code may go once the environment's processes have
            task.add_done_callback(lambda _: hold.release())

    async def shutdown(self, grace: float) -> None:
        """Let in-flight invocations finish (up to ``grace``), then stop every environment."""
        await background.cancel(self._reaper)
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
