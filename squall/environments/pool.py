"""Warm execution environments per function version, leases, keep-alive, provisioned sets.

``lease`` hands out an idle environment of the target's exact version and revision (warm) or
starts a new one (cold); one invocation per environment at a time, so concurrent invokes
scale out to parallel environments. A lease that runs on provisioned concurrency takes an
environment of that qualifier's provisioned set first (``environments/provisioned.py``) and
spills over to on-demand ones. Leases are context managers that give the environment back
(or stop it) on every path. Idle on-demand environments are reaped after the keep-alive
time; provisioned ones stay. Every environment holds its code until its processes are gone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable

from squall import tasks as background
from squall.arn import LATEST
from squall.engine.bus import EnvironmentStarted, EnvironmentStopped, EventBus
from squall.environments.environment import Environment, EnvironmentState
from squall.environments.provisioned import ProvisionedSet
from squall.errors import TooManyRequests
from squall.functions.code_store import CodeHold, CodeStore
from squall.invoke.resolver import Target
from squall.observe.logs import LogStore
from squall.sandbox.base import SandboxBackend

if TYPE_CHECKING:
    from squall.environments.snapshots import Snapshots

PoolKey = tuple[str, str, str, str | None]  # function name, version, revision id, network


class NoIdleEnvironment(Exception):
    """No warm environment of this key is idle (and the caller asked for no new one)."""


@dataclass(frozen=True)
class PoolLimits:
    memory_capacity_mb: int  # the sum of all environments' MemorySize stays within this
    keep_alive_seconds: float
    max_log_bytes: int
    # An environment is replaced after this long, busy or idle, provisioned or not, as Lambda
    # recycles its own: its role's credentials (12 hours, squall/auth/identity.py) outlive it.
    max_age_seconds: float = 11 * 3600


class EnvironmentPool:
    def __init__(
        self,
        backend: SandboxBackend,
        logs: LogStore,
        region: str,
        limits: PoolLimits,
        clock: Callable[[], float] = time.monotonic,
        code: CodeStore | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.backend = backend
        self.logs = logs
        self.region = region
        self.limits = limits
        self.clock = clock
        self.code = code  # environments hold their code until their processes are gone
        self.bus = bus
        self._idle: dict[PoolKey, deque[Environment]] = {}
        self._busy: set[Environment] = set()
        self._resident: dict[Environment, int] = {}  # every environment not yet stopped → its MemorySize
        self._code_holds: dict[Environment, CodeHold] = {}
        self._provisioned: dict[tuple[str, str], dict[str, ProvisionedSet]] = {}  # (function, qualifier) → version → set
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        # (role, function, network) → variables a new environment gets (its role's credentials…)
        self.environment_env: Callable[[str, str, str | None], dict[str, str]] | None = None
        # SnapStart: versions' templates new environments are forked from (None: none here)
        self.snapshots: Snapshots | None = None

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
            "provisioned": sum(s.allocated for sets in self._provisioned.values() for s in sets.values()),
            "memory_mb": self.memory_in_use_mb,
            "memory_capacity_mb": self.limits.memory_capacity_mb,
        }

    @asynccontextmanager
    async def lease(self, target: Target, provisioned: str | None = None,
                    start_new: bool = True) -> AsyncIterator[Environment]:
        """An environment for one invocation of ``target`` (``provisioned``: the qualifier
        whose provisioned concurrency the invocation runs on). ``start_new`` False: a warm one
        only, else :class:`NoIdleEnvironment` (a node agent: new ones need a placement first)."""
        chosen: ProvisionedSet | None = None
        env = None
        if provisioned is not None:
            chosen = self._provisioned.get((target.name, provisioned), {}).get(target.version)
            env = chosen.take(target.config.revision_id) if chosen is not None else None
        if env is None:
            chosen = None
            key = (target.name, target.version, target.config.revision_id, target.network)
            env = self._take_idle(key)
            if env is None and start_new and self.snapshots is not None:
                env = self.snapshots.take_prestarted(target)  # SnapStart: initialised ahead (prestarted.py)
                if env is not None:
                    self._busy.add(env)
            if env is None:
                if not start_new:
                    raise NoIdleEnvironment(key)
                env = self._new(target, provisioned=False)  # in this turn: the code is held (see code_store)
                self._busy.add(env)
                try:
                    await self.start_environment(env, target)
                except BaseException:
                    self._busy.discard(env)
                    self._stop_later(env, "failed to start")
                    raise
                self._started(env)
            else:
                self._busy.add(env)
        else:
            self._busy.add(env)
        try:
            yield env
        finally:
            self._busy.discard(env)
            if chosen is not None:
                chosen.give_back(env)
            else:
                self._give_back(env)

    def _new(self, target: Target, provisioned: bool) -> Environment:
        """A new environment of ``target`` (not started), admitted for memory, holding its code."""
        config = target.config
        self._admit(config.memory_size)
        env = Environment(
            config,
            target.runtime,
            target.code_dir,
            self.backend,
            self.logs,
            self.region,
            self.limits.max_log_bytes,
            self.clock,
            network=target.network,
            opt_dir=target.opt_dir,
            provisioned=provisioned,
            extra_env=self.environment_env(config.role, config.name, target.network) if self.environment_env else None,
        )
        self._resident[env] = config.memory_size
        if self.code is not None:
            self._code_holds[env] = self.code.hold(config.code.sha256_hex)
        return env

    def new_environment(self, target: Target) -> Environment:
        """A new on-demand environment of ``target``, not started (admitted for memory, holding its code)."""
        return self._new(target, provisioned=False)

    def stop_environment(self, env: Environment, reason: str) -> None:
        """Stop an environment the pool does not keep idle (one initialised ahead for SnapStart)."""
        self._stop_later(env, reason)

    async def start_environment(self, env: Environment, target: Target) -> None:
        """Start ``env``: forked from its version's snapshot when it has one (SnapStart)."""
        if self.snapshots is not None:
            env.snapshot = await self.snapshots.for_target(target)
            env.snap_start = env.snapshot is not None
        await env.start()

    def background(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` (a stop, a snapshot's build) until it is done; shutdown waits for it."""
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _started(self, env: Environment) -> None:
        if self.bus is not None and self.bus.wants(EnvironmentStarted):
            self.bus.publish(EnvironmentStarted(env.function.name, env.function.version, env.id, env.provisioned))

    def _admit(self, memory_mb: int) -> None:
        """Make room for a new environment, evicting idle on-demand ones (least recently used first)."""
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

    def idle_of(self, key: PoolKey) -> int:
        return len(self._idle.get(key, ()))

    def idle_memory_mb(self) -> int:
        return sum(env.function.memory_size for queue in self._idle.values() for env in queue)

    def evict_idle(self, memory_mb: int) -> int:
        """Stop idle on-demand environments (least recently used first) until ``memory_mb`` is
        freed or none is left; the memory freed."""
        freed = 0
        for env in sorted((e for queue in self._idle.values() for e in queue), key=lambda e: e.last_used):
            if freed >= memory_mb:
                break
            self._idle[env.pool_key].remove(env)
            freed += self._resident.get(env, 0)
            self._stop_later(env, "evicted for memory")
        self._idle = {k: q for k, q in self._idle.items() if q}
        return freed

    def _take_idle(self, key: PoolKey) -> Environment | None:
        queue = self._idle.get(key)
        while queue:
            env = queue.pop()  # most recently used first: warmest caches
            if env.state == EnvironmentState.READY:
                if self._too_old(env):
                    self._stop_later(env, "reached its maximum age")
                    continue
                return env
        return None

    def _too_old(self, env: Environment) -> bool:
        return self.clock() - env.created_at > self.limits.max_age_seconds

    def _give_back(self, env: Environment) -> None:
        if env.state != EnvironmentState.READY or env.retired:
            self._stop_later(env, env.stop_reason or "retired")
            return
        if self._too_old(env):
            self._stop_later(env, "reached its maximum age")
            return
        env.last_used = self.clock()
        self._idle.setdefault(env.pool_key, deque()).append(env)

    # ---- provisioned concurrency ---------------------------------------------------
    def provision(self, function: str, qualifier: str, wanted: list[tuple[Target, int]]) -> None:
        """Keep ``count`` initialised environments of each target for ``qualifier``'s
        provisioned concurrency (an empty list: none; sets of other versions are stopped)."""
        sets = self._provisioned.setdefault((function, qualifier), {})
        versions = {target.version for target, _ in wanted}
        for version in [v for v in sets if v not in versions]:
            sets.pop(version).shrink_to(0)
        for target, count in wanted:
            current = sets.get(target.version)
            if current is None or (current.target.config.revision_id, current.target.network) != (
                target.config.revision_id, target.network
            ):  # another configuration or sandbox: a new set
                if current is not None:
                    current.shrink_to(0)
                current = sets[target.version] = ProvisionedSet(self, target)
            current.want(count)
        if not sets:
            del self._provisioned[(function, qualifier)]

    def provisioned_report(self) -> dict[str, tuple[int, str | None]]:
        """Every qualifier's provisioned sets: "function:qualifier" → (ready, why provisioning failed)."""
        return {f"{function}:{qualifier}": self.provisioned_status(function, qualifier)
                for function, qualifier in self._provisioned}

    def provisioned_status(self, function: str, qualifier: str) -> tuple[int, str | None]:
        """(environments ready, why provisioning failed or None) for one qualifier."""
        sets = self._provisioned.get((function, qualifier), {}).values()
        failure = next((s.failure for s in sets if s.failure), None)
        return sum(s.allocated for s in sets), failure

    # ---- retiring and reaping ----------------------------------------------------
    def retire(self, function: str, version: str | None = None, keep_revision: str | None = None) -> None:
        """Stop a function's environments (of one version, or all; but those of
        ``keep_revision``). Idle ones stop now; busy ones after their invocation."""
        def doomed(env: Environment) -> bool:
            fn = env.function
            return fn.name == function and version in (None, fn.version) and fn.revision_id != keep_revision

        for key in list(self._idle):
            if key[0] == function and version in (None, key[1]) and key[2] != keep_revision:
                for env in self._idle.pop(key):
                    self._stop_later(env, "function updated")
        for env in self._busy:
            if doomed(env):
                env.retired = True
        for (name, _), sets in list(self._provisioned.items()):
            if name == function:
                for provisioned_set in sets.values():
                    provisioned_set.retire(doomed)
        if self.snapshots is not None:
            self.snapshots.retire(function, version, keep_revision)

    def drop_provisioned(self, function: str) -> None:
        for key in [k for k in self._provisioned if k[0] == function]:
            for provisioned_set in self._provisioned.pop(key).values():
                provisioned_set.shrink_to(0)

    def reap(self) -> int:
        """Stop on-demand environments idle for longer than the keep-alive time; returns how
        many. Provisioned environments past their maximum age are replaced."""
        for sets in self._provisioned.values():
            for provisioned in sets.values():
                provisioned.renew(self._too_old)
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
        if self.bus is not None and self.bus.wants(EnvironmentStopped):
            self.bus.publish(EnvironmentStopped(env.function.name, env.function.version or LATEST, env.id, reason))

    async def shutdown(self, grace: float) -> None:
        """Let in-flight invocations finish (up to ``grace``), then stop every environment."""
        await background.cancel(self._reaper)
        for sets in self._provisioned.values():
            for provisioned_set in sets.values():
                await provisioned_set.stop_filling()
        deadline = time.monotonic() + grace
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for env in list(self._busy):
            env.kill("shutdown")
        for key in list(self._idle):
            for env in self._idle.pop(key):
                self._stop_later(env, "shutdown")
        for sets in self._provisioned.values():
            for provisioned_set in sets.values():
                provisioned_set.shrink_to(0)
        for env in list(self._busy):
            self._stop_later(env, "shutdown")
        if self.snapshots is not None:  # their sandboxes end once the environments forked from them have
            self.snapshots.close()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
