"""One environment of the ``linux`` backend: the zygote's child and the environment's cgroup."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import Callable

from squall.sandbox.base import SandboxSpec
from squall.sandbox.linux.cgroups import Cgroup

log = logging.getLogger("squall.sandbox.linux")

_KILLED = -9


def shared_resident_bytes(pids: list[int]) -> int:
    """The resident memory the largest of ``pids`` shares with other processes (its Rss minus
    its private pages, from /proc/<pid>/smaps_rollup): for a runtime forked from a zygote, the
    interpreter and modules it got from the zygote, copy-on-write. About 0.3 ms: not for a hot path."""
    best_rss, shared = 0, 0
    for pid in pids:
        fields: dict[str, int] = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name in ("Rss", "Private_Clean", "Private_Dirty"):
                        fields[name] = int(rest.split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            continue
        rss = fields.get("Rss", 0)
        if rss > best_rss:
            best_rss = rss
            shared = max(0, rss - fields.get("Private_Clean", 0) - fields.get("Private_Dirty", 0))
    return shared


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
        # resident memory the runtime maps from the zygote it was forked from (the backend sets
        # it): not in the environment's cgroup, charged to the zygote's
        self.shared_bytes = 0
        self._removed = False
        # a SnapStart template: kill() ends its runtime only (its B stays while environments
        # forked from it live)
        self.template = spec.template
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
            if self.template:
                self._kill_runtime()
                return
            self.cgroup.kill_all(timeout=0)  # one round; the exit report follows
        except OSError as e:
            log.warning("cannot kill environment %s: %s", self.spec.environment_id, e)

    def _kill_runtime(self) -> None:
        """A template's processes but its B (the init of the pid namespaces its environments'
        nest in: it exits once they are gone)."""
        for pid in self.cgroup.pids():
            if pid != self._pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

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
        """The cgroup's peak (what the environment's processes wrote: private pages, its /tmp's
        page cache…) plus what its runtime maps from the zygote it was forked from, which the
        cgroup does not see (those pages are charged to the zygote): together, what a plain
        process would show as its resident memory (never above MemorySize)."""
        if self._removed:
            peak = self._peak
        else:
            try:
                peak = self.cgroup.peak_bytes()
            except OSError:
                peak = self._peak
        if peak is None:
            return None
        return min(peak + self.shared_bytes, max(peak, self.spec.memory_mb << 20))

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
