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

This module is the manager, :class:`Cgroups` (detection, create, leftovers, describe), and
the place to import from. One group, :class:`Cgroup`, and :class:`CgroupLimits` are in
``cgroup.py``; the two layouts' groups in ``cgroup_v1.py`` and ``cgroup_v2.py``; the file
primitives every one of them goes through in ``cgroupfs.py``.

Costs (this machine, v1, 4 hierarchies): :meth:`Cgroups.create` is a few hundred µs
(mkdirs dominate), :meth:`Cgroup.join` with the pre-opened ``cgroup.procs`` fds tens of µs,
:meth:`Cgroup.remove` of an empty group under 100 µs. Each :class:`Cgroup` keeps its
``cgroup.procs`` fds (1 on v2, one per hierarchy on v1) and one memory-peak fd open until
:meth:`Cgroup.remove` (or :meth:`Cgroup.close_fds`); all are close-on-exec.
"""

from __future__ import annotations

import errno
import os
import re

from squall.sandbox.linux import cgroupfs
from squall.sandbox.linux.cgroup import Cgroup, CgroupLimits, cpu_quota_us
from squall.sandbox.linux.cgroup_v1 import CgroupV1
from squall.sandbox.linux.cgroup_v2 import CgroupV2

__all__ = ["CgroupLimits", "Cgroup", "Cgroups", "CgroupsUnavailable", "cpu_quota_us"]

V2_CONTROLLERS = ("memory", "cpu", "pids")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
SERVER_LEAF = "squall-server"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+=-]{0,199}")


class CgroupsUnavailable(Exception):
    """This machine (or this user) cannot enforce memory + CPU + pids limits with cgroups."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- names and our own cgroup -------------------------------------------------------------


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
        self.host_cores = os.cpu_count() or 1  # read once: os.cpu_count() reads /sys each call
        self._cls = CgroupV1 if version == 1 else CgroupV2

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
            available = cgroupfs.read(base + "/cgroup.controllers").split()
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
        if not is_root and str(os.getpid()) in cgroupfs.read(base + "/cgroup.procs").split():
            # "no internal processes": a group with domain controllers enabled for its
            # children cannot hold processes itself, so the server moves into a leaf.
            leaf = base + "/" + SERVER_LEAF
            try:
                try:
                    cgroupfs.mkdir(leaf)
                except FileExistsError:
                    pass
                cgroupfs.write(leaf + "/cgroup.procs", b"0")
            except OSError as e:
                raise CgroupsUnavailable(f"cannot move the server into {leaf}: {e}") from None
            moved_to = leaf
        try:
            _enable(base, need)
        except OSError as e:
            others = []
            try:
                others = cgroupfs.read(base + "/cgroup.procs").split()
            except OSError:
                pass
            if moved_to is not None:  # put things back as they were
                try:
                    cgroupfs.write(base + "/cgroup.procs", b"0")
                    cgroupfs.rmdir(moved_to)
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
                cgroupfs.mkdir(parent)
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
                    cgroupfs.mkdir(path)
                    made.append(path)
                except FileExistsError:
                    pass
        except OSError as e:
            cgroupfs.rmdir_quietly(made)
            raise CgroupsUnavailable(f"cannot create {path}: {e}") from None
        markers = {
            "memory": "memory.limit_in_bytes",
            "cpu": "cpu.cfs_quota_us",
            "pids": "pids.max",
            "freezer": "freezer.state",
        }
        lacking = [c for c, f in markers.items() if not os.path.exists(f"{parents[c]}/{f}")]
        if lacking:
            cgroupfs.rmdir_quietly(made)
            raise CgroupsUnavailable(f"the {' '.join(lacking)} hierarchy lacks its controller files")
        memory = parents["memory"]
        try:  # a no-op on kernels >= 5.x where hierarchy is always on
            if cgroupfs.read(memory + "/memory.use_hierarchy").strip() == "0":
                cgroupfs.write(memory + "/memory.use_hierarchy", b"1")
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
                cgroupfs.mkdir(path)
                made.append(path)
            group._apply(limits)
            group.procs_fds()  # pre-opened: a join is then one write per hierarchy
        except BaseException:
            group.close_fds()
            cgroupfs.rmdir_quietly(made)
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
                cgroupfs.rmdir(parent)
            except OSError:
                pass


def _enable(group: str, controllers: tuple[str, ...]) -> None:
    enabled = cgroupfs.read(group + "/cgroup.subtree_control").split()
    todo = [c for c in controllers if c not in enabled]
    if todo:
        cgroupfs.write(group + "/cgroup.subtree_control", " ".join("+" + c for c in todo).encode())
