"""The cgroup v2 (unified layout) implementation of :class:`Cgroup`."""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING

from squall.sandbox.linux import cgroupfs
from squall.sandbox.linux.cgroup import PERIOD_US, Cgroup, CgroupLimits, cpu_quota_us

if TYPE_CHECKING:
    from squall.sandbox.linux.cgroups import Cgroups


class CgroupV2(Cgroup):
    """A group on cgroup v2 (unified): one directory."""

    version = 2

    def __init__(self, name: str, dirs: dict[str, str], driver: Cgroups) -> None:
        super().__init__(name, dirs, driver)
        self._base_peak = 0
        self._base_current = 0

    def _apply(self, limits: CgroupLimits) -> None:
        d = self._dirs[0]
        controllers = self._driver.controllers
        if "memory" in controllers:
            cgroupfs.write(d + "/memory.max", b"%d" % limits.memory_bytes)
            if self._driver._swap_limit:
                cgroupfs.write(d + "/memory.swap.max", b"0")
            if self._driver._oom_group:
                cgroupfs.write(d + "/memory.oom.group", b"1")  # an OOM kill takes the whole environment
        if "cpu" in controllers:
            quota = cpu_quota_us(limits.cpu_cores, host_cores=self._driver.host_cores)
            if quota is not None:
                cgroupfs.write(d + "/cpu.max", b"%d %d" % (quota, PERIOD_US))
        if "pids" in controllers:
            cgroupfs.write(d + "/pids.max", b"%d" % limits.pids_max)

    def set_cpu(self, cores: float | None) -> None:
        quota = cpu_quota_us(cores, host_cores=self._driver.host_cores)
        cgroupfs.write(self._dirs[0] + "/cpu.max", b"max %d" % PERIOD_US if quota is None else b"%d %d" % (quota, PERIOD_US))

    # Peak memory. Since Linux 6.12 memory.peak is writable and the reset is local to the
    # open file description: a write resets the peak *seen through that fd* to the current
    # usage. So we keep one O_RDWR fd per group and read it with pread. Older kernels
    # (read-only memory.peak, 5.19+) get an estimate from the lifetime peak and
    # memory.current; without memory.peak (< 5.19) memory.current samples only.

    def _peak(self) -> int:
        if self._peak_fd < 0:
            path = self._dirs[0] + "/memory.peak"
            if self._driver._peak_mode == "fd":
                try:
                    self._peak_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                except PermissionError:
                    self._driver._peak_mode = "lifetime"
            if self._driver._peak_mode == "lifetime":
                self._peak_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return self._peak_fd

    def _current(self) -> int:
        return int(cgroupfs.read(self._dirs[0] + "/memory.current"))

    def reset_peak(self) -> None:
        mode = self._driver._peak_mode
        if mode == "none":
            return
        if mode == "current":
            self._base_current = self._current()
            return
        fd = self._peak()
        if self._driver._peak_mode == "fd":
            try:
                os.write(fd, b"0")
                return
            except OSError as e:  # EINVAL/EACCES: a kernel with a read-only memory.peak
                if e.errno not in (errno.EINVAL, errno.EACCES, errno.EPERM, errno.EBADF):
                    raise
                self._driver._peak_mode = "lifetime"
        self._base_peak = int(os.pread(fd, 32, 0))
        self._base_current = self._current()

    def peak_bytes(self) -> int | None:
        mode = self._driver._peak_mode
        if mode == "none":
            return None
        if mode == "current":
            return max(self._base_current, self._current())
        peak = int(os.pread(self._peak(), 32, 0))
        if self._driver._peak_mode == "fd":
            return peak
        # read-only lifetime peak: a new high since the reset is exact, otherwise the
        # peak since the reset was at most the old one: estimate it from memory.current
        return peak if peak > self._base_peak else max(self._base_current, self._current())

    def oom_kills(self) -> int:
        if "memory" not in self._driver.controllers:
            return 0
        try:
            return cgroupfs.keyed(cgroupfs.read(self._dirs[0] + "/memory.events"), "oom_kill")
        except FileNotFoundError:
            return 0

    def _kill_once(self, wait: float) -> None:
        if self._driver._kill_file:
            try:
                cgroupfs.write(self._dirs[0] + "/cgroup.kill", b"1")  # race-free with forks, 5.14+
                return
            except FileNotFoundError:
                return
            except OSError:
                pass
        super()._kill_once(wait)

    def _freeze(self, frozen: bool, wait: float = 0.5) -> bool:
        d = self._dirs[0]
        try:
            cgroupfs.write(d + "/cgroup.freeze", b"1" if frozen else b"0")
            if not frozen:
                return True
            deadline = time.monotonic() + wait
            while not cgroupfs.keyed(cgroupfs.read(d + "/cgroup.events"), "frozen"):
                if time.monotonic() > deadline:
                    return True
                time.sleep(0.0002)
            return True
        except OSError:
            return False
