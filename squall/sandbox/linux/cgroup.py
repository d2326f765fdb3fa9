"""One environment's cgroup, whatever the layout: its limits and the common operations.

:class:`CgroupLimits` says what a group enforces; :class:`Cgroup` joins processes, lists,
kills and removes them, and leaves the layout-specific files to ``cgroup_v1.py`` and
``cgroup_v2.py``. Groups are made by :class:`~squall.sandbox.linux.cgroups.Cgroups`.
"""

from __future__ import annotations

import abc
import errno
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squall.sandbox.linux import cgroupfs

if TYPE_CHECKING:
    from squall.sandbox.linux.cgroups import Cgroups

PERIOD_US = 100_000  # CFS period; the kernel's default for a new group, so never written on v1
MIN_CORES = 0.01  # = the kernel's minimum quota of 1 ms per 100 ms period


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int  # hard limit, swap excluded (no swap at all where the kernel can say so)
    cpu_cores: float | None  # None = unlimited; else a CFS quota (see cpu_quota_us)
    pids_max: int = 1024  # processes + threads

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, not {self.memory_bytes}")
        if self.cpu_cores is not None and not self.cpu_cores > 0:
            raise ValueError(f"cpu_cores must be positive or None, not {self.cpu_cores}")
        if self.pids_max < 1:
            raise ValueError(f"pids_max must be at least 1, not {self.pids_max}")


def cpu_quota_us(cores: float | None, period_us: int = PERIOD_US, host_cores: int | None = None) -> int | None:
    """CFS quota for ``cores`` (None = unlimited), capped at the host's cores, at least 0.01 core."""
    if cores is None:
        return None
    cores = min(max(cores, MIN_CORES), float(host_cores or os.cpu_count() or 1))
    return max(1000, round(cores * period_us))


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Cgroup(abc.ABC):
    """One environment's cgroup (v1: one directory per hierarchy).

    Joining: :meth:`join` writes a pid to every ``procs_files`` entry. A process may also
    join itself by writing ``"0"`` (the kernel reads 0 as "the writer"), which is what a
    freshly forked child inside a new PID namespace should do. Join before dropping
    privileges: the writer needs write access to the files (and on v2 to the common
    ancestor's ``cgroup.procs``).
    """

    version: int

    def __init__(self, name: str, dirs: dict[str, str], driver: Cgroups) -> None:
        self.name = name
        self._by_controller = dirs  # controller -> this group's directory in its hierarchy
        self._dirs = tuple(dict.fromkeys(dirs.values()))  # unique, in controller order
        self.procs_files: tuple[str, ...] = tuple(d + "/cgroup.procs" for d in self._dirs)
        self._driver = driver
        self._procs_fds: tuple[int, ...] = ()
        self._peak_fd = -1

    def __repr__(self) -> str:
        return f"<Cgroup v{self.version} {self.name} {self._dirs[0]}>"

    @property
    def path(self) -> str:
        """The group's directory (v1: in the memory hierarchy)."""
        return self._dirs[0]

    # -- joining

    def procs_fds(self) -> tuple[int, ...]:
        """Open (once) and return write fds of ``procs_files``, e.g. to pass to a zygote."""
        if not self._procs_fds:
            fds = []
            try:
                for path in self.procs_files:
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            self._procs_fds = tuple(fds)
        return self._procs_fds

    def join(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this group; raises ProcessLookupError if gone."""
        data = b"%d" % pid
        for fd in self.procs_fds():
            os.write(fd, data)

    def close_fds(self) -> None:
        """Close the cached fds (they are reopened on demand)."""
        fds, self._procs_fds = self._procs_fds, ()
        if self._peak_fd >= 0:
            fds += (self._peak_fd,)
            self._peak_fd = -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        try:
            self.close_fds()
        except Exception:
            pass

    # -- reading

    def pids(self) -> list[int]:
        """Processes in the group (v1: in any of its hierarchies)."""
        seen: dict[int, None] = {}
        for path in self.procs_files:
            try:
                text = cgroupfs.read(path)
            except (FileNotFoundError, ProcessLookupError):
                continue
            for word in text.split():
                seen[int(word)] = None
        return list(seen)

    # -- provided by the v1 and v2 implementations

    @abc.abstractmethod
    def _apply(self, limits: CgroupLimits) -> None: ...

    @abc.abstractmethod
    def set_cpu(self, cores: float | None) -> None: ...

    @abc.abstractmethod
    def reset_peak(self) -> None: ...

    @abc.abstractmethod
    def peak_bytes(self) -> int | None: ...

    @abc.abstractmethod
    def oom_kills(self) -> int: ...

    def _freeze(self, frozen: bool, wait: float = 0.5) -> bool:
        """Freeze (waiting up to ``wait`` s until every task is stopped) or thaw; whether it worked."""
        return False

    # -- killing and removing

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL every process of the group, forks racing with us included.

        Idempotent; gone processes and a gone group are fine. Returns once the group is
        empty, or after ``timeout`` seconds (a process stuck in the kernel) — then
        :meth:`remove` reports False. ``timeout=0``: one round (every member has been sent
        SIGKILL, none waited for, not even the freezer), cheap enough for an event loop; a
        process forked during that round is caught by :meth:`remove` later, and an
        environment's processes also die with its pid namespace.
        """
        if not self.pids():
            return
        self._kill_once(min(0.5, timeout))
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while pids := self.pids():
            if time.monotonic() > deadline:
                return
            for pid in pids:  # a straggler (kernel without cgroup.kill / freezer)
                _sigkill(pid)
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def _kill_once(self, wait: float) -> None:
        frozen = self._freeze(True, wait)
        try:
            for pid in self.pids():
                _sigkill(pid)
        finally:
            if frozen:
                self._freeze(False)

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left, then remove the group everywhere; True when it is gone.

        Idempotent. ``timeout=0``: one attempt plus one kill round, no waiting (False if
        something was still dying: call again later).
        """
        self.close_fds()
        deadline = time.monotonic() + timeout
        delay = 0.0005
        pending = list(self._dirs)
        failed = killed = False
        while True:
            busy = []
            for path in reversed(pending):
                try:
                    cgroupfs.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        failed = True  # e.g. EACCES: retrying will not help
                    busy.append(path)
            if not busy:
                return True
            pending = busy[::-1]
            if failed or (killed and time.monotonic() > deadline):
                return False
            self.kill_all(timeout=max(0.0, deadline - time.monotonic()))
            if killed:
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
            killed = True
