"""One environment of the ``linux`` backend: the zygote's child and the environment's cgroup."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from squall.sandbox.base import SandboxSpec
from squall.sandbox.linux.cgroups import Cgroup

log = logging.getLogger("squall.sandbox.linux")

_KILLED = -9


class LinuxHandle:
    """One environment: the zygote's child ``pid`` and the environment's cgroup."""

    def __init__(
        self,
        spec: SandboxSpec,
        cgroup: Cgroup,
        remove: Callable[[Cgroup], None],
        on_started: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.cgroup = cgroup
        self._remove = remove
        self.on_started = on_started
        self._pid: int | None = None
        self._returncode: int | None = None
        self.setup_failure: str | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._oom = False
        self._peak: int | None = None
        self._removed = False
        self.on_ended: list[Callable[[], None]] = []  # what it held beyond its cgroup (its address)

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self._removed:
            return
        try:
            self.cgroup.kill_all(timeout=0)  # one round; the exit report follows
        except OSError as e:
            log.warning("cannot kill environment %s: %s", self.spec.environment_id, e)

    def admits(self, connection: socket.socket) -> bool:
        """Whether a connection to this environment's Runtime API comes from its own processes:
        always, as it listens on the loopback of the sandbox's own network namespace."""
        return True

    def reset_peak_memory(self) -> None:
        if not self._removed:
            try:
                self.cgroup.reset_peak()
            except OSError:
                pass

    def peak_memory_bytes(self) -> int | None:
        if self._removed:
            return self._peak
        try:
            return self.cgroup.peak_bytes()
        except OSError:
            return self._peak

    def oom_killed(self) -> bool:
        if self._removed:
            return self._oom
        try:
            return self.cgroup.oom_kills() > 0
        except OSError:
            return self._oom

    def init_done(self) -> None:
        if self.on_started is not None:  # our start is over: prepare the next one, right after
            asyncio.get_running_loop().call_later(0.005, self.on_started)
            self.on_started = None
        if not self._removed:
            try:
                self.cgroup.set_cpu(self.spec.cpu_cores)  # capped at the host's cores
            except OSError as e:
                log.warning("cannot set the CPU quota of %s: %s", self.spec.environment_id, e)

    def on_exit(self, status: int | None, reason: str | None = None) -> None:
        """Called by the zygote client when the environment's main process has ended
        (``reason``: why its sandbox could not be built, when that is how it ended)."""
        self.setup_failure = reason
        if status is None:  # the zygote died: we cannot know; make sure it is gone
            self.kill()
            status = _KILLED
        try:
            self._oom = self.cgroup.oom_kills() > 0
            self._peak = self.cgroup.peak_bytes()
        except (OSError, ValueError):
            pass
        self._returncode = status
        self.remove_cgroup()
        self.ended()
        if not self._exited.done():
            self._exited.set_result(status)

    def ended(self) -> None:
        """Give back what the environment held besides its cgroup (once)."""
        callbacks, self.on_ended = self.on_ended, []
        for callback in callbacks:
            callback()

    def remove_cgroup(self) -> None:
        if not self._removed:
            self._removed = True
            self._remove(self.cgroup)
