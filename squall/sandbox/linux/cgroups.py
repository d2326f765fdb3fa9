"""Per-environment cgroups: memory, CPU and process limits, peak memory, OOM count, kill.

One interface over both cgroup layouts:

* **v2** (unified, most current distributions): one tree. The server needs a *delegated*
  subtree: its own cgroup must offer ``memory cpu pids`` in ``cgroup.controllers`` and be
  writable (root, or a systemd unit with ``Delegate=yes``). Because of the "no internal
  processes" rule, the server first moves itself into the leaf ``<own cgroup>/squall-server``,
  then enables the controllers in ``<own cgroup>/cgroup.subtree_control``, creates
  ``<own cgroup>/squall-<scope>`` and enables them there too. Environments are children of
  that parent group.
* **v1** (legacy / hybrid, e.g. this project's CI machines, where the cgroup2 mount at
  ``/sys/fs/cgroup/unified`` has no controllers): one hierarchy per controller; we need
  ``memory``, ``cpu``, ``pids`` and ``freezer``. The parent ``squall-<scope>`` is created
  below the server's own cgroup in each hierarchy, and every environment has one directory
  per hierarchy (``procs_files`` lists the ``cgroup.procs`` a process must join).

v2 is preferred whenever it can enforce the limits. :meth:`Cgroups.detect` raises
:class:`CgroupsUnavailable` with a human-readable reason otherwise; the caller then falls
back to rlimits.

Costs (this machine, v1, 4 hierarchies): :meth:`Cgroups.create` is a few hundred µs
(mkdirs dominate), :meth:`Cgroup.join` with the pre-opened ``cgroup.procs`` fds tens of µs,
:meth:`Cgroup.remove` of an empty group under 100 µs. Each :class:`Cgroup` keeps its
``cgroup.procs`` fds (1 on v2, one per hierarchy on v1) and one memory-peak fd open until
:meth:`Cgroup.remove` (or :meth:`Cgroup.close_fds`); all are close-on-exec.
"""

from __future__ import annotations

import abc
import errno
import os
import re
import signal
import time
from dataclasses import dataclass

__all__ = ["CgroupLimits", "Cgroup", "Cgroups", "CgroupsUnavailable", "cpu_quota_us"]

PERIOD_US = 100_000  # CFS period; the kernel's default for a new group, so never written on v1
MIN_CORES = 0.01  # = the kernel's minimum quota of 1 ms per 100 ms period
V2_CONTROLLERS = ("memory", "cpu", "pids")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
SERVER_LEAF = "squall-server"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+=-]{0,199}")


class CgroupsUnavailable(Exception):
    """This machine (or this user) cannot enforce memory + CPU + pids limits with cgroups."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def cpu_quota_us(cores: float | None, period_us: int = PERIOD_US) -> int | None:
    """CFS quota for ``cores`` (None = unlimited), capped at the host's cores, at least 0.01 core."""
    if cores is None:
        return None
    cores = min(max(cores, MIN_CORES), float(os.cpu_count() or 1))
    return max(1000, round(cores * period_us))


# -- file primitives (module functions so that tests can emulate the kernel's mkdir/rmdir) --


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def _mkdir(path: str) -> None:
    os.mkdir(path, 0o755)


def _rmdir(path: str) -> None:
    os.rmdir(path)


def _keyed(text: str, key: str) -> int:
    """The value of ``key`` in a flat-keyed file ("key value" lines), 0 when absent."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name) or name == SERVER_LEAF:
        raise ValueError(f"invalid cgroup {kind} {name!r}")


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _self_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


def _v2_path(self_cgroup: str) -> str | None:
    for line in self_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].removesuffix(" (deleted)")
    return None


def _v1_paths(self_cgroup: str) -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1]:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _join(*parts: str) -> str:
    return os.path.normpath("/".join(parts))


# -- one environment's group --------------------------------------------------------------


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
                text = _read(path)
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
        SIGKILL, none waited for), cheap enough for an event loop.
        """
        if not self.pids():
            return
        self._kill_once(min(0.5, max(timeout, 0.02)))
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
                    _rmdir(path)
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


class _CgroupV1(Cgroup):
    version = 1

    def _file(self, controller: str, name: str) -> str:
        return f"{self._by_controller[controller]}/{name}"

    def _apply(self, limits: CgroupLimits) -> None:
        memory = self._by_controller["memory"]
        value = b"%d" % limits.memory_bytes
        _write(memory + "/memory.limit_in_bytes", value)  # first: memsw may never be below it
        if self._driver._swap_limit:
            _write(memory + "/memory.memsw.limit_in_bytes", value)
        else:  # no swap accounting: at least keep this group's pages out of swap
            try:
                _write(memory + "/memory.swappiness", b"0")
            except OSError:
                pass
        quota = cpu_quota_us(limits.cpu_cores)
        if quota is not None:  # a new group has period 100000 and quota -1 already
            _write(self._file("cpu", "cpu.cfs_quota_us"), b"%d" % quota)
        _write(self._file("pids", "pids.max"), b"%d" % limits.pids_max)

    def set_cpu(self, cores: float | None) -> None:
        quota = cpu_quota_us(cores)
        _write(self._file("cpu", "cpu.cfs_quota_us"), b"%d" % (-1 if quota is None else quota))

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
            return _keyed(_read(self._file("memory", "memory.oom_control")), "oom_kill")
        except FileNotFoundError:
            return 0

    def _freeze(self, frozen: bool, wait: float = 0.5) -> bool:
        state = self._file("freezer", "freezer.state")
        try:
            _write(state, b"FROZEN" if frozen else b"THAWED")
            if not frozen:
                return True
            deadline = time.monotonic() + wait
            while _read(state).strip() != "FROZEN":  # FREEZING until every task is stopped
                if time.monotonic() > deadline:
                    return True  # still kill; thaw after
                time.sleep(0.0002)
            return True
        except OSError:
            return False


class _CgroupV2(Cgroup):
    version = 2

    def __init__(self, name: str, dirs: dict[str, str], driver: Cgroups) -> None:
        super().__init__(name, dirs, driver)
        self._base_peak = 0
        self._base_current = 0

    def _apply(self, limits: CgroupLimits) -> None:
        d = self._dirs[0]
        controllers = self._driver.controllers
        if "memory" in controllers:
            _write(d + "/memory.max", b"%d" % limits.memory_bytes)
            if self._driver._swap_limit:
                _write(d + "/memory.swap.max", b"0")
            if self._driver._oom_group:
                _write(d + "/memory.oom.group", b"1")  # an OOM kill takes the whole environment
        if "cpu" in controllers:
            quota = cpu_quota_us(limits.cpu_cores)
            if quota is not None:
                _write(d + "/cpu.max", b"%d %d" % (quota, PERIOD_US))
        if "pids" in controllers:
            _write(d + "/pids.max", b"%d" % limits.pids_max)

    def set_cpu(self, cores: float | None) -> None:
        quota = cpu_quota_us(cores)
        _write(self._dirs[0] + "/cpu.max", b"max %d" % PERIOD_US if quota is None else b"%d %d" % (quota, PERIOD_US))

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
        return int(_read(self._dirs[0] + "/memory.current"))

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
            return _keyed(_read(self._dirs[0] + "/memory.events"), "oom_kill")
        except FileNotFoundError:
            return 0

    def _kill_once(self, wait: float) -> None:
        if self._driver._kill_file:
            try:
                _write(self._dirs[0] + "/cgroup.kill", b"1")  # race-free with forks, 5.14+
                return
            except FileNotFoundError:
                return
            except OSError:
                pass
        super()._kill_once(wait)

    def _freeze(self, frozen: bool, wait: float = 0.5) -> bool:
        d = self._dirs[0]
        try:
            _write(d + "/cgroup.freeze", b"1" if frozen else b"0")
            if not frozen:
                return True
            deadline = time.monotonic() + wait
            while not _keyed(_read(d + "/cgroup.events"), "frozen"):
                if time.monotonic() > deadline:
                    return True
                time.sleep(0.0002)
            return True
        except OSError:
            return False


# -- the driver ---------------------------------------------------------------------------


class Cgroups:
    """Creates environment cgroups under ``squall-<scope>``; one per server (data dir)."""

    version: int

    def __init__(
        self,
        version: int,
        scope: str,
        parents: dict[str, str],
        controllers: tuple[str, ...],
        *,
        swap_limit: bool = False,
        oom_group: bool = False,
        kill_file: bool = False,
        peak_mode: str = "none",
        moved_to: str | None = None,
    ) -> None:
        self.version = version
        self.scope = scope
        self.controllers = controllers
        self._parents = parents  # controller -> parent group directory (v2: one directory)
        self._swap_limit = swap_limit
        self._oom_group = oom_group
        self._kill_file = kill_file
        self._peak_mode = peak_mode  # v2: fd | lifetime | current | none
        self.moved_to = moved_to  # v2: the leaf the server moved itself into, if it did
        self._cls = _CgroupV1 if version == 1 else _CgroupV2

    def __repr__(self) -> str:
        return f"<Cgroups v{self.version} {self.scope}>"

    # -- detection

    @classmethod
    def detect(cls, scope: str, root: str = "/sys/fs/cgroup") -> Cgroups:
        """The best layout this process can use, or raise :class:`CgroupsUnavailable`."""
        _check_name("scope", scope)
        try:
            self_cgroup = _self_cgroup()
        except OSError as e:
            raise CgroupsUnavailable(f"cannot read /proc/self/cgroup: {e}") from None
        reasons = []
        mount = None
        if os.path.exists(root + "/cgroup.controllers"):
            mount = root  # pure v2
        elif os.path.exists(root + "/unified/cgroup.controllers"):
            mount = root + "/unified"  # hybrid
        if mount is not None:
            try:
                return cls._detect_v2(scope, mount, _v2_path(self_cgroup))
            except CgroupsUnavailable as e:
                reasons.append(f"cgroup v2: {e.reason}")
        if mount != root:
            try:
                return cls._detect_v1(scope, root, _v1_paths(self_cgroup))
            except CgroupsUnavailable as e:
                reasons.append(f"cgroup v1: {e.reason}")
        if not reasons:
            reasons.append(f"no cgroup filesystem at {root}")
        raise CgroupsUnavailable("; ".join(reasons))

    @classmethod
    def _detect_v2(
        cls, scope: str, mount: str, own: str | None, need: tuple[str, ...] = V2_CONTROLLERS
    ) -> Cgroups:
        if own is None or not own.startswith("/"):
            raise CgroupsUnavailable("no cgroup v2 entry ('0::/path') in /proc/self/cgroup")
        base = _join(mount, own)
        if not (base == mount or base.startswith(mount + "/")) or not os.path.isdir(base):
            raise CgroupsUnavailable(f"our cgroup {own} is not visible under {mount}")
        if os.path.basename(base) == SERVER_LEAF and base != mount:
            base = os.path.dirname(base)  # we moved ourselves earlier (or our parent process did)
        try:
            available = _read(base + "/cgroup.controllers").split()
        except OSError as e:
            raise CgroupsUnavailable(f"cannot read {base}/cgroup.controllers: {e}") from None
        missing = [c for c in need if c not in available]
        if missing:
            raise CgroupsUnavailable(
                f"controller(s) {' '.join(missing)} not delegated to {base} (available: "
                f"{' '.join(available) or 'none'}); run squall as root or in a cgroup with "
                "Delegate=yes (e.g. a systemd service, or systemd-run -p Delegate=yes)"
            )
        if _read_only(base):
            raise CgroupsUnavailable(f"{mount} is mounted read-only")
        if not (os.access(base, os.W_OK) and os.access(base + "/cgroup.subtree_control", os.W_OK)):
            raise CgroupsUnavailable(f"{base} is not writable (not root, and not a delegated subtree)")

        moved_to = None
        is_root = not os.path.exists(base + "/cgroup.type")  # only the root group lacks it
        if not is_root and str(os.getpid()) in _read(base + "/cgroup.procs").split():
            # "no internal processes": a group with domain controllers enabled for its
            # children cannot hold processes itself, so the server moves into a leaf.
            leaf = base + "/" + SERVER_LEAF
            try:
                try:
                    _mkdir(leaf)
                except FileExistsError:
                    pass
                _write(leaf + "/cgroup.procs", b"0")
            except OSError as e:
                raise CgroupsUnavailable(f"cannot move the server into {leaf}: {e}") from None
            moved_to = leaf
        try:
            _enable(base, need)
        except OSError as e:
            others = []
            try:
                others = _read(base + "/cgroup.procs").split()
            except OSError:
                pass
            if moved_to is not None:  # put things back as they were
                try:
                    _write(base + "/cgroup.procs", b"0")
                    _rmdir(moved_to)
                except OSError:
                    pass
            if e.errno == errno.EBUSY and others:
                raise CgroupsUnavailable(
                    f"cannot enable {' '.join(need)} in {base}: other processes live in it "
                    f"({' '.join(others[:5])}{' ...' if len(others) > 5 else ''}); run squall in a "
                    "cgroup of its own (a systemd service with Delegate=yes)"
                ) from None
            raise CgroupsUnavailable(f"cannot enable {' '.join(need)} in {base}: {e}") from None

        parent = f"{base}/squall-{scope}"
        try:
            try:
                _mkdir(parent)
            except FileExistsError:
                pass
            _enable(parent, need)
        except OSError as e:
            raise CgroupsUnavailable(f"cannot set up {parent}: {e}") from None

        if "memory" not in need:
            peak_mode = "none"
        elif os.path.exists(parent + "/memory.peak"):
            # writable (mode 0644) since Linux 6.12; before, a read-only lifetime peak
            peak_mode = "fd" if os.stat(parent + "/memory.peak").st_mode & 0o222 else "lifetime"
        else:
            peak_mode = "current"
        return cls(
            2,
            scope,
            {"unified": parent},
            tuple(need),
            swap_limit=os.path.exists(parent + "/memory.swap.max"),
            oom_group=os.path.exists(parent + "/memory.oom.group"),
            kill_file=os.path.exists(parent + "/cgroup.kill"),
            peak_mode=peak_mode,
            moved_to=moved_to,
        )

    @classmethod
    def _detect_v1(cls, scope: str, root: str, own: dict[str, str]) -> Cgroups:
        missing = [c for c in V1_CONTROLLERS if c not in own or not os.path.exists(f"{root}/{c}/cgroup.procs")]
        if missing:
            raise CgroupsUnavailable(f"hierarchy for {' '.join(missing)} not mounted under {root}")
        bases = {c: _join(os.path.realpath(f"{root}/{c}"), own[c]) for c in V1_CONTROLLERS}
        for c, base in bases.items():
            if not os.path.isdir(base):
                raise CgroupsUnavailable(f"our {c} cgroup {own[c]} is not visible under {root}/{c}")
            if _read_only(base):
                raise CgroupsUnavailable(f"{root}/{c} is mounted read-only")
            if not os.access(base, os.W_OK):
                raise CgroupsUnavailable(f"{base} is not writable (not root)")
        parents = {c: f"{base}/squall-{scope}" for c, base in bases.items()}
        made = []
        try:
            for path in dict.fromkeys(parents.values()):
                try:
                    _mkdir(path)
                    made.append(path)
                except FileExistsError:
                    pass
        except OSError as e:
            _rmdir_quietly(made)
            raise CgroupsUnavailable(f"cannot create {path}: {e}") from None
        markers = {
            "memory": "memory.limit_in_bytes",
            "cpu": "cpu.cfs_quota_us",
            "pids": "pids.max",
            "freezer": "freezer.state",
        }
        lacking = [c for c, f in markers.items() if not os.path.exists(f"{parents[c]}/{f}")]
        if lacking:
            _rmdir_quietly(made)
            raise CgroupsUnavailable(f"the {' '.join(lacking)} hierarchy lacks its controller files")
        memory = parents["memory"]
        try:  # a no-op on kernels >= 5.x where hierarchy is always on
            if _read(memory + "/memory.use_hierarchy").strip() == "0":
                _write(memory + "/memory.use_hierarchy", b"1")
        except OSError:
            pass
        return cls(
            1,
            scope,
            parents,
            V1_CONTROLLERS,
            swap_limit=os.path.exists(memory + "/memory.memsw.limit_in_bytes"),
            peak_mode="fd",
        )

    # -- groups

    def _group(self, name: str) -> Cgroup:
        return self._cls(name, {c: f"{p}/{name}" for c, p in self._parents.items()}, self)

    def create(self, name: str, limits: CgroupLimits) -> Cgroup:
        """Create the environment's group with its limits; raises FileExistsError if it exists."""
        _check_name("name", name)
        group = self._group(name)
        made = []
        try:
            for path in group._dirs:
                _mkdir(path)
                made.append(path)
            group._apply(limits)
            group.procs_fds()  # pre-opened: a join is then one write per hierarchy
        except BaseException:
            group.close_fds()
            _rmdir_quietly(made)
            raise
        return group

    def leftovers(self) -> list[Cgroup]:
        """Groups under our parent, e.g. from a previous run that crashed."""
        names: dict[str, None] = {}
        for parent in dict.fromkeys(self._parents.values()):
            try:
                entries = sorted(os.scandir(parent), key=lambda e: e.name)
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    names[entry.name] = None
        return [self._group(name) for name in names]

    def describe(self) -> dict[str, object]:
        parents = dict.fromkeys(self._parents.values())
        info: dict[str, object] = {
            "version": self.version,
            "controllers": list(self.controllers),
            "parent": next(iter(parents)) if self.version == 2 else dict(self._parents),
            "swap_limited": self._swap_limit,
            "kill": "freezer" if self.version == 1 else ("cgroup.kill" if self._kill_file else "cgroup.freeze"),
            "peak": {
                "fd": "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak (fd-local reset)",
                "lifetime": "memory.peak (not resettable: estimated)",
                "current": "memory.current samples (estimated)",
                "none": "unavailable",
            }[self._peak_mode],
        }
        if self.moved_to:
            info["server_cgroup"] = self.moved_to
        return info

    def close(self) -> None:
        """Remove our parent group(s) if no environment is left in them."""
        for parent in reversed(list(dict.fromkeys(self._parents.values()))):
            try:
                _rmdir(parent)
            except OSError:
                pass


def _enable(group: str, controllers: tuple[str, ...]) -> None:
    enabled = _read(group + "/cgroup.subtree_control").split()
    todo = [c for c in controllers if c not in enabled]
    if todo:
        _write(group + "/cgroup.subtree_control", " ".join("+" + c for c in todo).encode())


def _rmdir_quietly(paths: list[str]) -> None:
    for path in reversed(paths):
        try:
            _rmdir(path)
        except OSError:
            pass
