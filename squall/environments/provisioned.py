"""Provisioned concurrency: environments started and initialised before any invocation.

A :class:`ProvisionedSet` keeps ``wanted`` environments of one version ready for one
qualifier (a version, or an alias and each of its versions). They are started ahead (their
runtime sees ``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`` and their REPORT
lines carry no Init Duration), kept past the keep-alive time, and replaced when one dies
(a crash, a timeout, an out-of-memory kill). An environment whose init fails stops the set
from trying: its status is ``FAILED`` with Lambda's reason ``FUNCTION_ERROR_INIT_FAILURE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Callable

from squall.environments.environment import Environment, EnvironmentState
from squall.errors import TooManyRequests
from squall.invoke.resolver import Target

if TYPE_CHECKING:
    from squall.environments.pool import EnvironmentPool

log = logging.getLogger("squall.provisioned")

INIT_FAILURE = "FUNCTION_ERROR_INIT_FAILURE"
_STARTS_AT_ONCE = 8


class ProvisionedSet:
    def __init__(self, pool: EnvironmentPool, target: Target) -> None:
        self.pool = pool
        self.target = target
        self.wanted = 0
        self.failure: str | None = None
        self._envs: set[Environment] = set()  # started or starting, not stopped
        self._idle: deque[Environment] = deque()
        self._filler: asyncio.Task[None] | None = None

    @property
    def allocated(self) -> int:
        """Environments initialised and kept (idle or serving an invocation)."""
        return sum(1 for env in self._envs if env.state in (EnvironmentState.READY, EnvironmentState.BUSY))

    def want(self, count: int) -> None:
        self.wanted = count
        if count < len(self._envs):
            self.shrink_to(count)
        else:
            self._fill()

    def take(self, revision: str) -> Environment | None:
        while self._idle:
            env = self._idle.pop()
            if env.state == EnvironmentState.READY and env.function.revision_id == revision:
                return env
        return None

    def give_back(self, env: Environment) -> None:
        if env.state == EnvironmentState.READY and not env.retired and env in self._envs and len(self._envs) <= self.wanted:
            self._idle.append(env)
            return
        self._drop(env, env.stop_reason or "retired")
        self._fill()  # a crash, a timeout: replaced

    def retire(self, doomed: Callable[[Environment], bool]) -> None:
        for env in [e for e in self._idle if doomed(e)]:
            self._idle.remove(env)
            self._drop(env, "function updated")
        for env in self._envs:
            if doomed(env):
                env.retired = True

    def renew(self, doomed: Callable[[Environment], bool]) -> None:
        """Replace the environments ``doomed`` says are too old (busy ones when given back)."""
        if any(doomed(env) for env in self._envs):
            self.retire(doomed)
            self._fill()

    def shrink_to(self, count: int) -> None:
        self.wanted = count
        while len(self._envs) > count and self._idle:
            self._drop(self._idle.popleft(), "provisioned concurrency lowered")
        excess = len(self._envs) - count
        for env in list(self._envs):
            if excess <= 0:
                break
            if env.state != EnvironmentState.BUSY:  # a starting one: stopped now; busy ones on give-back
                self._drop(env, "provisioned concurrency lowered")
                excess -= 1
        if count == 0 and self._filler is not None:
            self._filler.cancel()

    async def stop_filling(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
            await asyncio.gather(self._filler, return_exceptions=True)

    def _drop(self, env: Environment, reason: str) -> None:
        self._envs.discard(env)
        self.pool._stop_later(env, reason)

    def _fill(self) -> None:
        if self.failure is not None or len(self._envs) >= self.wanted:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._filling())

    async def _filling(self) -> None:
        while self.failure is None and len(self._envs) < self.wanted:
            missing = min(self.wanted - len(self._envs), _STARTS_AT_ONCE)
            await asyncio.gather(*(self._start_one() for _ in range(missing)))

    async def _start_one(self) -> None:
        try:
            env = self.pool._new(self.target, provisioned=True)
        except TooManyRequests as exc:
            self._failed(f"the server's memory capacity is used up: {exc.message}")
            return
        self._envs.add(env)
        try:
            await self.pool.start_environment(env, self.target)
        except asyncio.CancelledError:
            self._drop(env, "provisioned concurrency lowered")
            raise
        except Exception as exc:  # the sandbox could not be built
            if env in self._envs:
                log.warning("a provisioned environment of %s:%s did not start: %s", env.function.name, env.function.version, exc)
                self._drop(env, "failed to start")
                self._failed(INIT_FAILURE)
            return
        if env not in self._envs:  # lowered (and stopped) while it started
            return
        if env.state != EnvironmentState.READY:  # its init failed
            self._drop(env, "init error")
            self._failed(INIT_FAILURE)
            return
        self.pool._started(env)
        self._idle.append(env)

    def _failed(self, reason: str) -> None:
        if self.failure is None:
            log.warning("provisioned concurrency of %s:%s failed: %s", self.target.name, self.target.version, reason)
        self.failure = reason
