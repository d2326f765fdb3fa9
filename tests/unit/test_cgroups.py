"""Per-environment cgroups: v1 on the real machine (hybrid CI hosts), v2 on a fake tree and on
the controller-less cgroup2 mount at /sys/fs/cgroup/unified."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from squall.sandbox.linux import cgroupfs
from squall.sandbox.linux import cgroups as cg
from squall.sandbox.linux.cgroups import Cgroup, CgroupLimits, Cgroups, CgroupsUnavailable, cpu_quota_us
from tests.conftest import require

MB = 1 << 20
ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


def _scope() -> str:
    return "test-" + uuid.uuid4().hex[:10]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _gone(pid: int) -> bool:
    """Dead: no /proc entry, or a zombie waiting for its (new) parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout: float = 2.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if not _gone(p)]
    return alive


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-S", "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# A child that joins the group itself: writing "0" to cgroup.procs moves the writer.
JOIN_SELF = """
import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_WRONLY); os.write(fd, b"0"); os.close(fd)
"""


# -- pure logic ----------------------------------------------------------------------------


def test_cpu_quota_and_limits_validation() -> None:
    ncpu = os.cpu_count() or 1
    assert cpu_quota_us(None) is None
    assert cpu_quota_us(0.25) == 25_000
    assert cpu_quota_us(1024 / 1769) == 57_886
    assert cpu_quota_us(0.0001) == 1_000  # at least 0.01 core (the kernel's 1 ms minimum)
    assert cpu_quota_us(1000.0) == ncpu * 100_000  # capped at the host's cores
    assert cpu_quota_us(1000.0, host_cores=3) == 300_000  # the manager passes the count it read once
    with pytest.raises(ValueError):
        CgroupLimits(0, None)
    with pytest.raises(ValueError):
        CgroupLimits(MB, 0.0)
    with pytest.raises(ValueError):
        CgroupLimits(MB, None, pids_max=0)


# -- the real machine: v1 here (hybrid CI hosts), whatever detect() picks elsewhere ----------


def _has_v1() -> bool:
    return all(os.path.exists(f"{ROOT}/{c}/cgroup.procs") for c in cg.V1_CONTROLLERS)


@pytest.fixture
def real() -> Cgroups:
    require(os.geteuid() == 0, "cgroup tests need root")
    scope = _scope()
    try:
        driver = Cgroups.detect(scope)
    except CgroupsUnavailable as e:
        require(False, f"cgroups unavailable: {e.reason}")
    yield driver
    for group in Cgroups.detect(scope).leftovers():
        group.remove()
    driver.close()
    parents = driver.describe()["parent"]
    assert not any(os.path.exists(p) for p in (parents.values() if isinstance(parents, dict) else [parents]))


def test_detect_picks_v1_on_a_hybrid_host(real: Cgroups) -> None:
    hybrid = _has_v1() and os.path.exists(UNIFIED + "/cgroup.controllers")
    if hybrid:
        assert "memory" not in _read(UNIFIED + "/cgroup.controllers").split()  # v2 cannot enforce here
    require(hybrid and real.version == 1, "not a hybrid host whose cgroup2 mount lacks controllers")
    info = real.describe()
    assert info["version"] == 1
    assert info["controllers"] == ["memory", "cpu", "pids", "freezer"]
    assert info["kill"] == "freezer"
    own = cg._v1_paths(Path("/proc/self/cgroup").read_text())
    for controller, parent in info["parent"].items():
        # below our own cgroup in each hierarchy, named after the scope
        expected = f"{os.path.realpath(f'{ROOT}/{controller}')}{own[controller]}/squall-{real.scope}"
        assert parent == os.path.normpath(expected)
        assert os.path.isdir(parent)


def _limit_files(group: Cgroup) -> dict[str, str]:
    """The limits as the kernel reports them, in v1 terms."""
    if group.version == 1:
        mem, cpu, pids, _ = (group._by_controller[c] for c in cg.V1_CONTROLLERS)
        memsw = mem + "/memory.memsw.limit_in_bytes"
        return {
            "memory": _read(mem + "/memory.limit_in_bytes"),
            "swap": _read(memsw) if os.path.exists(memsw) else None,
            "period": _read(cpu + "/cpu.cfs_period_us"),
            "quota": _read(cpu + "/cpu.cfs_quota_us"),
            "pids": _read(pids + "/pids.max"),
        }
    d = group.path
    quota, period = _read(d + "/cpu.max").split()
    swap = d + "/memory.swap.max"
    return {
        "memory": _read(d + "/memory.max"),
        "swap": _read(swap) if os.path.exists(swap) else None,
        "period": period,
        "quota": "-1" if quota == "max" else quota,
        "pids": _read(d + "/pids.max"),
    }


def test_create_writes_limits_and_join(real: Cgroups) -> None:
    group = real.create("env-limits", CgroupLimits(128 * MB, 0.25, pids_max=64))
    limits = _limit_files(group)
    if limits.pop("swap") is not None:  # where the kernel accounts swap: none allowed
        assert _limit_files(group)["swap"] == {1: str(128 * MB), 2: "0"}[real.version]  # v1: memory+swap
    assert limits == {"memory": str(128 * MB), "period": "100000", "quota": "25000", "pids": "64"}
    if real.version == 2:
        assert _read(group.path + "/memory.oom.group") == "1"
    group.set_cpu(None)
    assert _limit_files(group)["quota"] == "-1"
    group.set_cpu(0.5)
    assert _limit_files(group)["quota"] == "50000"
    assert len(group.procs_files) == {1: 4, 2: 1}[real.version]
    assert all(os.path.exists(p) for p in group.procs_files)

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        group.join(sleeper.pid)
        assert group.pids() == [sleeper.pid]
        lines = Path(f"/proc/{sleeper.pid}/cgroup").read_text().splitlines()
        assert sum(line.endswith("/env-limits") for line in lines) == len(group.procs_files)
        # a child can join itself by writing "0"
        child = _python(JOIN_SELF + "print(os.getpid(), flush=True); sys.stdin.readline()", *group.procs_files)
        pid = int(child.stdout.readline())
        assert sorted(group.pids()) == sorted([sleeper.pid, pid])
        child.stdin.close()
        child.wait(5)
        with pytest.raises(ProcessLookupError):
            group.join(2**22 + 12345)  # no such pid
    finally:
        assert group.remove()
    assert sleeper.wait(5) == -signal.SIGKILL
    assert not any(os.path.exists(os.path.dirname(p)) for p in group.procs_files)
    assert group.remove()  # idempotent


def test_memory_limit_oom_kills(real: Cgroups) -> None:
    group = real.create("env-oom", CgroupLimits(64 * MB, None))
    child = _python(JOIN_SELF + "data = b'x' * (200 << 20)\nprint('survived')", *group.procs_files)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, out
    assert "survived" not in out
    assert group.oom_kills() >= 1
    assert group.remove()


def test_peak_memory_and_reset(real: Cgroups) -> None:
    group = real.create("env-peak", CgroupLimits(512 * MB, None))
    child = _python(
        JOIN_SELF + "data = b'x' * (100 << 20)\nprint('ok', flush=True)\nsys.stdin.readline()\ndel data\nprint('freed', flush=True)\nsys.stdin.readline()",
        *group.procs_files,
    )
    try:
        assert child.stdout.readline().strip() == "ok"
        peak = group.peak_bytes()
        assert peak is not None and peak >= 100 * MB
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "freed"
        assert group.peak_bytes() >= 100 * MB  # still the high-water mark
        group.reset_peak()
        assert group.peak_bytes() < 50 * MB  # back to the current usage
        assert group.oom_kills() == 0
    finally:
        child.kill()
        child.wait()
        assert group.remove()


def test_pids_max_stops_a_fork_loop(real: Cgroups) -> None:
    group = real.create("env-pids", CgroupLimits(256 * MB, None, pids_max=12))
    child = _python(
        JOIN_SELF
        + """
import errno, json, time
ok, errors = [], []
for _ in range(40):
    try:
        pid = os.fork()
    except OSError as e:
        errors.append(e.errno)
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    ok.append(pid)
print(json.dumps({"ok": ok, "errors": errors}), flush=True)
sys.stdin.readline()
""",
        *group.procs_files,
    )
    try:
        result = json.loads(child.stdout.readline())
        assert len(result["ok"]) == 11  # 12 = the loop's process + 11 children
        assert len(result["errors"]) == 29 and set(result["errors"]) == {11}  # EAGAIN
        assert sorted(group.pids()) == sorted([child.pid, *result["ok"]])  # nothing escaped
        group.kill_all()
        assert group.pids() == []
        assert child.wait(5) == -signal.SIGKILL
        assert _wait_gone(result["ok"]) == []
    finally:
        child.kill()
        assert group.remove()


def test_kill_all_kills_a_process_tree(real: Cgroups) -> None:
    group = real.create("env-tree", CgroupLimits(256 * MB, None))
    child = _python(
        """
import os, subprocess, sys, time
sys.stdin.readline()  # joined by the test
session = subprocess.Popen(["sleep", "60"], start_new_session=True)
if os.fork() == 0:  # a daemon: double fork + setsid
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(60)
    os._exit(0)
print(session.pid, flush=True)
time.sleep(60)
"""
    )
    try:
        group.join(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        grandchildren = [int(child.stdout.readline()), int(child.stdout.readline())]
        assert set(grandchildren) <= set(group.pids())
        group.kill_all()
        assert group.pids() == []
        assert child.wait(5) == -signal.SIGKILL
        assert _wait_gone(grandchildren) == []
        group.kill_all()  # idempotent on an empty group
    finally:
        child.kill()
        assert group.remove()
    group.kill_all()  # and on a removed one


def test_timeout_zero_is_one_kill_round(real: Cgroups) -> None:
    group = real.create("env-quick", CgroupLimits(64 * MB, None))
    first = subprocess.Popen(["sleep", "30"])
    group.join(first.pid)
    group.kill_all(timeout=0)  # what SandboxHandle.kill does on the event loop
    assert first.wait(5) == -signal.SIGKILL
    second = subprocess.Popen(["sleep", "30"])
    group.join(second.pid)
    t0 = time.perf_counter()
    done = group.remove(timeout=0)  # one attempt + one kill round, no waiting
    assert time.perf_counter() - t0 < 0.5
    assert second.wait(5) == -signal.SIGKILL
    assert group.remove() and (done or not os.path.exists(group.path))


def test_leftovers_of_a_crashed_run(real: Cgroups) -> None:
    crashed = Cgroups.detect(real.scope)  # a previous server with the same data dir
    a = crashed.create("env-a", CgroupLimits(64 * MB, 0.5))
    crashed.create("env-b", CgroupLimits(64 * MB, None))
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    a.join(sleeper.pid)
    del crashed, a  # "crash": nothing cleaned up

    found = real.leftovers()
    assert [g.name for g in found] == ["env-a", "env-b"]
    assert all(isinstance(g, Cgroup) for g in found)
    assert found[0].pids() == [sleeper.pid]
    assert all(g.remove() for g in found)
    assert sleeper.wait(5) == -signal.SIGKILL
    assert real.leftovers() == []


def test_create_errors_leave_nothing_behind(real: Cgroups) -> None:
    group = real.create("env-dup", CgroupLimits(64 * MB, None))
    with pytest.raises(FileExistsError):
        real.create("env-dup", CgroupLimits(64 * MB, None))
    for bad in ("", "../x", "a/b", ".hidden", "squall-server"):
        with pytest.raises(ValueError):
            real.create(bad, CgroupLimits(64 * MB, None))
    assert [g.name for g in real.leftovers()] == ["env-dup"]
    assert group.remove()
    assert real.leftovers() == []


def test_costs(real: Cgroups) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    create, join, remove = [], [], []
    try:
        limits = CgroupLimits(128 * MB, 0.5)
        previous = real.create("bench-home", limits)
        previous.join(sleeper.pid)
        for i in range(30):
            t0 = time.perf_counter()
            group = real.create(f"bench-{i}", limits)
            t1 = time.perf_counter()
            group.join(sleeper.pid)  # leaves the previous group empty
            t2 = time.perf_counter()
            assert previous.remove()
            t3 = time.perf_counter()
            create.append(t1 - t0)
            join.append(t2 - t1)
            remove.append(t3 - t2)
            previous = group
        assert previous.remove()
    finally:
        sleeper.kill()
        sleeper.wait()
    med = {k: round(sorted(v)[len(v) // 2] * 1e6) for k, v in {"create": create, "join": join, "remove": remove}.items()}
    print(f"\ncgroup v{real.version} costs (median µs): {med}")
    assert med["create"] < 5000 and med["join"] < 2000 and med["remove"] < 5000


# -- v2 against a fake tree ---------------------------------------------------------------

V2_DEFAULTS = {
    "cgroup.procs": "",
    "cgroup.type": "domain",
    "cgroup.subtree_control": "",
    "cgroup.kill": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "memory.max": "max",
    "memory.swap.max": "max",
    "memory.oom.group": "0",
    "memory.peak": "0",
    "memory.current": "0",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "cpu.max": "max 100000",
    "pids.max": "max",
}


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup2 mount where we sit in /system.slice/squall.service with memory cpu pids delegated."""

    def mkdir(path: str) -> None:  # the kernel populates a new group's interface files
        os.mkdir(path)
        parent_enabled = Path(path).parent.joinpath("cgroup.subtree_control").read_text()
        for name, value in V2_DEFAULTS.items():
            Path(path, name).write_text(value)
        Path(path, "cgroup.controllers").write_text(" ".join(w.lstrip("+") for w in parent_enabled.split()))

    def write(path: str, data: bytes) -> None:  # a write replaces the value
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        Path(path).write_bytes(data)

    monkeypatch.setattr(cgroupfs, "mkdir", mkdir)
    monkeypatch.setattr(cgroupfs, "rmdir", shutil.rmtree)
    monkeypatch.setattr(cgroupfs, "write", write)
    mount = tmp_path / "cgroup"
    own = mount / "system.slice" / "squall.service"
    own.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc")
    (mount / "cgroup.subtree_control").write_text("cpu memory pids")
    for d in (mount / "system.slice", own):
        for name, value in V2_DEFAULTS.items():
            (d / name).write_text(value)
        (d / "cgroup.controllers").write_text("cpu memory pids")
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")
    return mount


def test_v2_detect_moves_the_server_into_a_leaf(fake_v2: Path) -> None:
    own = fake_v2 / "system.slice" / "squall.service"
    driver = Cgroups._detect_v2("data1", str(fake_v2), "/system.slice/squall.service")
    assert driver.version == 2
    assert (own / "squall-server" / "cgroup.procs").read_text() == "0"  # we wrote "0": moved ourselves
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    parent = own / "squall-data1"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    info = driver.describe()
    assert info["parent"] == str(parent) and info["server_cgroup"] == str(own / "squall-server")
    assert info["controllers"] == ["memory", "cpu", "pids"] and info["kill"] == "cgroup.kill"
    assert info["swap_limited"] is True and info["peak"].startswith("memory.peak (fd-local")

    # a second detect from the leaf (same process or a child) does not nest another leaf
    (own / "cgroup.procs").write_text("")
    again = Cgroups._detect_v2("data2", str(fake_v2), "/system.slice/squall.service/squall-server")
    assert again.describe()["parent"] == str(own / "squall-data2") and again.moved_to is None
    assert not (own / "squall-server" / "squall-server").exists()


def test_v2_detect_explains_what_is_missing(fake_v2: Path) -> None:
    own = fake_v2 / "system.slice" / "squall.service"
    (own / "cgroup.controllers").write_text("memory pids")
    with pytest.raises(CgroupsUnavailable, match=r"cpu not delegated .*Delegate=yes"):
        Cgroups._detect_v2("s", str(fake_v2), "/system.slice/squall.service")
    assert not (own / "squall-server").exists()  # refused before touching anything
    with pytest.raises(CgroupsUnavailable, match="not visible"):
        Cgroups._detect_v2("s", str(fake_v2), "/../../etc")
    with pytest.raises(CgroupsUnavailable, match="0::"):
        Cgroups._detect_v2("s", str(fake_v2), None)
    assert cg._v2_path("12:pids:/a\n0::/user.slice/x.scope\n") == "/user.slice/x.scope"
    assert cg._v1_paths("4:cpu,cpuacct:/a\n0::/b\n") == {"cpu": "/a", "cpuacct": "/a"}


def test_v2_detect_reports_other_processes(fake_v2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = fake_v2 / "system.slice" / "squall.service"
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    real_write = cgroupfs.write

    def write(path: str, data: bytes) -> None:
        if path.endswith("squall.service/cgroup.subtree_control"):
            raise OSError(16, "Device or resource busy")  # the no-internal-processes rule
        real_write(path, data)

    monkeypatch.setattr(cgroupfs, "write", write)
    with pytest.raises(CgroupsUnavailable, match="other processes live in it"):
        Cgroups._detect_v2("s", str(fake_v2), "/system.slice/squall.service")
    assert not (own / "squall-server").exists()  # moved back and removed the leaf


def test_v2_create_writes_limits(fake_v2: Path) -> None:
    driver = Cgroups._detect_v2("d", str(fake_v2), "/system.slice/squall.service")
    group = driver.create("env-1", CgroupLimits(128 * MB, 0.5, pids_max=64))
    d = Path(group.path)
    assert group.procs_files == (str(d / "cgroup.procs"),)
    assert (d / "memory.max").read_text() == str(128 * MB)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "memory.oom.group").read_text() == "1"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "pids.max").read_text() == "64"
    group.set_cpu(None)
    assert (d / "cpu.max").read_text() == "max 100000"
    group.set_cpu(0.001)
    assert (d / "cpu.max").read_text() == "1000 100000"
    group.set_cpu(999)
    assert (d / "cpu.max").read_text() == f"{(os.cpu_count() or 1) * 100000} 100000"

    unlimited = driver.create("env-2", CgroupLimits(MB, None))
    assert (Path(unlimited.path) / "cpu.max").read_text() == "max 100000"  # untouched
    (Path(unlimited.path) / "memory.events").write_text("low 0\nhigh 4\nmax 9\noom 2\noom_kill 3\noom_group_kill 1\n")
    assert unlimited.oom_kills() == 3
    assert group.oom_kills() == 0

    # no swap accounting / no memory.oom.group on this kernel: those writes are skipped
    (d.parent / "memory.swap.max").unlink()
    (d.parent / "memory.oom.group").unlink()
    old = Cgroups._detect_v2("d", str(fake_v2), "/system.slice/squall.service")
    assert old.describe()["swap_limited"] is False
    old.create("env-3", CgroupLimits(MB, None))

    assert [g.name for g in driver.leftovers()] == ["env-1", "env-2", "env-3"]
    assert all(g.remove() for g in driver.leftovers())
    driver.close()
    assert not d.parent.exists()


def test_v2_peak_modes(fake_v2: Path) -> None:
    driver = Cgroups._detect_v2("p", str(fake_v2), "/system.slice/squall.service")
    group = driver.create("env", CgroupLimits(MB, None))
    d = Path(group.path)
    # Linux >= 6.12: the reset is a write through our own fd, later reads use the same fd
    (d / "memory.peak").write_text("7340032\n")
    assert group.peak_bytes() == 7340032
    group.reset_peak()
    assert (d / "memory.peak").read_text().startswith("0")  # the write went to memory.peak
    group.close_fds()

    # older kernels: read-only lifetime peak, estimated with memory.current
    driver._peak_mode = "lifetime"
    (d / "memory.peak").write_text("1000\n")
    (d / "memory.current").write_text("300\n")
    group.reset_peak()
    (d / "memory.current").write_text("500\n")
    assert group.peak_bytes() == 500  # no new high since the reset: the best estimate
    (d / "memory.peak").write_text("2000\n")
    assert group.peak_bytes() == 2000  # a new high is exact
    group.close_fds()

    # kernels without memory.peak
    driver._peak_mode = "current"
    (d / "memory.current").write_text("800\n")
    group.reset_peak()
    (d / "memory.current").write_text("400\n")
    assert group.peak_bytes() == 800

    # the version 1 parser for comparison
    assert cgroupfs.keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n", "oom_kill") == 4


def test_v2_kill_writes_cgroup_kill_or_freezes(fake_v2: Path) -> None:
    driver = Cgroups._detect_v2("k", str(fake_v2), "/system.slice/squall.service")
    group = driver.create("env", CgroupLimits(MB, None))
    d = Path(group.path)
    group.kill_all()
    assert (d / "cgroup.kill").read_text() == ""  # empty group: nothing to do

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (d / "cgroup.procs").write_text(f"{sleeper.pid}\n")
        assert group.pids() == [sleeper.pid]
        group.kill_all(timeout=0)
        assert (d / "cgroup.kill").read_text() == "1"
    finally:
        sleeper.kill()
        sleeper.wait()

    # kernels before 5.14: freeze, SIGKILL every member, thaw
    driver._kill_file = False
    sleeper = subprocess.Popen(["sleep", "30"])
    (d / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    group.kill_all(timeout=0)
    assert sleeper.wait(5) == -signal.SIGKILL
    assert (d / "cgroup.freeze").read_text() == "0"  # thawed again


# -- v2 semantics on the real (controller-less) cgroup2 mount --------------------------------


def _unified_usable() -> bool:
    return os.geteuid() == 0 and os.path.exists(UNIFIED + "/cgroup.controllers")


def test_v2_real_join_kill_rmdir_without_controllers() -> None:
    require(_unified_usable(), "needs root and a cgroup2 mount at /sys/fs/cgroup/unified (hybrid host)")
    scope = _scope()
    driver = Cgroups._detect_v2(scope, UNIFIED, cg._v2_path(Path("/proc/self/cgroup").read_text()), need=())
    try:
        assert driver.version == 2 and driver.moved_to is None  # we sit in the root group: no move
        group = driver.create("env", CgroupLimits(64 * MB, 0.5))
        require(os.path.exists(group.path + "/cgroup.kill"), "kernel without cgroup.kill (< 5.14)")
        child = _python(
            """
import subprocess, sys, time
sys.stdin.readline()
print(subprocess.Popen(["sleep", "60"], start_new_session=True).pid, flush=True)
time.sleep(60)
"""
        )
        group.join(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        grandchild = int(child.stdout.readline())
        assert sorted(group.pids()) == sorted([child.pid, grandchild])
        assert group.peak_bytes() is None and group.oom_kills() == 0  # no memory controller here
        group.kill_all()
        assert group.pids() == []
        assert child.wait(5) == -signal.SIGKILL
        assert _wait_gone([grandchild]) == []
        assert group.remove() and not os.path.exists(group.path)
    finally:
        for g in driver.leftovers():
            g.remove()
        driver.close()
    assert not os.path.exists(f"{UNIFIED}/squall-{scope}")


def test_v2_real_server_moves_into_a_leaf() -> None:
    require(_unified_usable(), "needs root and a cgroup2 mount at /sys/fs/cgroup/unified (hybrid host)")
    base = f"{UNIFIED}/squall-test-{uuid.uuid4().hex[:10]}"
    os.mkdir(base)
    code = """
import json, os, sys
from squall.sandbox.linux import cgroups as cg
base = sys.argv[1]
with open(base + "/cgroup.procs", "w") as f:
    f.write("0")  # this process plays a server started in its own (delegated) cgroup
own = cg._v2_path(open("/proc/self/cgroup").read())
driver = cg.Cgroups._detect_v2("s", "/sys/fs/cgroup/unified", own, need=())
group = driver.create("env", cg.CgroupLimits(1 << 26, None))
print(json.dumps({
    "own": own,
    "now": cg._v2_path(open("/proc/self/cgroup").read()),
    "moved_to": driver.moved_to,
    "base_procs": open(base + "/cgroup.procs").read().split(),
    "removed": group.remove(),
}))
driver.close()
"""
    try:
        out = subprocess.run([sys.executable, "-c", code, base], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        rel = base[len(UNIFIED):]
        assert result["own"] == rel
        assert result["now"] == rel + "/squall-server"
        assert result["moved_to"] == base + "/squall-server"
        assert result["base_procs"] == []  # the non-leaf holds no process
        assert result["removed"] is True
        assert not os.path.exists(base + "/squall-s")
    finally:
        for path in (base + "/squall-s/env", base + "/squall-s", base + "/squall-server", base):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
