"""The cgroup v1 (legacy / hybrid layout) implementation of :class:`Cgroup`."""

from __future__ import annotations

import os
import time

from squall.sandbox.linux import cgroupfs
from squall.sandbox.linux.cgroup import Cgroup, CgroupLimits, cpu_quota_us


class CgroupV1(Cgroup):
    """A group on cgroup v1: one directory per hierarchy (memory, cpu, pids, freezer)."""

    version = 1

    def _file(self, controller: str, name: str) -> str:
        return f"{self._by_controller[controller]}/{name}"

    def _apply(self, limits: CgroupLimits) -> None:
        memory = self._by_controller["memory"]
        value = b"%d" % limits.memory_bytes
        cgroupfs.write(memory + "/memory.limit_in_bytes", value)  # first: memsw may never be below it
        if self._driver._swap_limit:
            cgroupfs.write(memory + "/memory.memsw.limit_in_bytes", value)
        else:  # no swap accounting: at least keep this group's pages out of swap
            try:
                cgroupfs.write(memory + "/memory.swappiness", b"0")
            except OSError:
                pass
        quota = cpu_quota_us(limits.cpu_cores, host_cores=self._driver.host_cores)
        if quota is not None:  # a new group has period 100000 and quota -1 already
            cgroupfs.write(self._file("cpu", "cpu.cfs_quota_us"), b"%d" % quota)
        cgroupfs.write(self._file("pids", "pids.max"), b"%d" % limits.pids_max)

    def set_cpu(self, cores: float | None) -> None:
        quota = cpu_quota_us(cores, host_cores=self._driver.host_cores)
        cgroupfs.write(self._file("cpu", "cpu.cfs_quota_us"), b"%d" % (-1 if quota is None else quota))

    def _peak(self) -> int:
        if self._peak_fd < 0:
            self._peak_fd = os.open(self._file("memory", "memory.max_usage_in_bytes"), os.O_RDWR | os.O_CLOEXEC)
        return self._peak_fd

    def reset_peak(self) -> None:
        os.write(self._peak(), b"0")  # resets the high-water mark to the current usage

    def peak_bytes(self) -> int | None:
        return int(os.pread(self._peak(), 32, 0))

    def oom_kills(self) -> int:
        try:
            return cgroupfs.keyed(cgroupfs.read(self._file("memory", "memory.oom_control")), "oom_kill")
        except FileNotFoundError:
            return 0

    def _freeze(self, frozen: bool, wait: float = 0.5) -> bool:
        state = self._file("freezer", "freezer.state")
        try:
            cgroupfs.write(state, b"FROZEN" if frozen else b"THAWED")
            if not frozen:
                return True
            deadline = time.monotonic() + wait
            while cgroupfs.read(state).strip() != "FROZEN":  # FREEZING until every task is stopped
                if time.monotonic() > deadline:
                    return True  # still kill; thaw after
                time.sleep(0.0002)
            return True
        except OSError:
            return False
