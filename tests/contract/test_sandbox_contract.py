"""What every sandbox backend guarantees, as the engine sees it.

The same tests run against each backend this machine offers (``process`` everywhere,
``linux`` where namespaces and cgroups work: skipped elsewhere, required in CI), through
the real engine pieces: an :class:`EnvironmentPool` of :class:`Environment` objects with
the real Python runtime. The last section holds what only the ``linux`` backend promises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import re
import signal
import socket
import sys
import textwrap
import time
import uuid
from pathlib import Path

import orjson
import pytest

from squall.environments.environment import EnvironmentState
from squall.invoke.invocation import InvocationRequest
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.function import Code, FunctionVersion, State
from squall.observe.logs import LogStore
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox.process import ProcessBackend
from tests.conftest import processes_with_arg, require
from tests.contract import linux_unavailable
from tests.targets import target_of

pytestmark = pytest.mark.timeout(120)

RUNTIME_ID = f"python{sys.version_info.major}.{sys.version_info.minor}"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


@pytest.fixture(params=["process", "linux"])
def backend_name(request: pytest.FixtureRequest) -> str:
    if request.param == "linux":
        reason = linux_unavailable()
        require(reason is None, f"linux sandbox unavailable: {reason}")
    return request.param


@pytest.fixture
def linux() -> str:
    reason = linux_unavailable()
    require(reason is None, f"linux sandbox unavailable: {reason}")
    return "linux"


def make_backend(name: str, data_dir: Path):
    scope = f"test-{uuid.uuid4().hex[:12]}"
    if name == "process":
        return ProcessBackend(scope)
    from squall.sandbox.linux.backend import create_linux_backend
    from squall.sandbox.linux.network import network_specs

    return create_linux_backend(scope, data_dir, network_specs("10.213.0.0/16", {}))


class Harness:
    """A pool over one backend, and functions made from source."""

    def __init__(self, backend_name: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.backend = make_backend(backend_name, tmp_path / "data")
        self.logs = LogStore(tmp_path / "logs")
        self.pool = EnvironmentPool(self.backend, self.logs, "us-east-1", PoolLimits(100_000, 600.0, 1 << 20))
        self.runtime = RuntimeRegistry.discover().get(RUNTIME_ID)

    def function(self, source: str, **changes) -> tuple[FunctionVersion, Path]:
        digest = hashlib.sha256(source.encode()).hexdigest()
        code_dir = self.tmp_path / "code" / digest[:16]
        if not code_dir.exists():
            code_dir.mkdir(parents=True)
            (code_dir / "app.py").write_text(textwrap.dedent(source))
            for path in (code_dir.parent, code_dir):
                path.chmod(0o755)  # tmp_path is 0700: a sandbox's uid must read the code
            (code_dir / "app.py").chmod(0o644)
        fn = FunctionVersion(
            name=changes.pop("name", f"f-{digest[:8]}"),
            runtime=RUNTIME_ID,
            handler="app.handler",
            role="arn:aws:iam::123456789012:role/r",
            code=Code("c2hh", digest, 10),
            state=State.ACTIVE,
        )
        return dataclasses.replace(fn, **changes), code_dir

    async def invoke(self, fn: FunctionVersion, code_dir: Path, payload: object = None, network: str | None = "default"):
        request = InvocationRequest(uuid.uuid4().hex, orjson.dumps(payload or {}), ARN)
        async with self.pool.lease(target_of(fn, self.runtime, code_dir, network)) as env:
            return env, await env.invoke(request)

    async def close(self) -> None:
        await self.pool.shutdown(0)
        await self.backend.close()


def run(backend_name: str, tmp_path: Path, scenario) -> None:
    async def main() -> None:
        harness = Harness(backend_name, tmp_path)
        try:
            await scenario(harness)
        finally:
            await harness.close()

    asyncio.run(main())


def error_message(result) -> str:
    return orjson.loads(result.payload)["errorMessage"]


async def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def tag() -> str:
    """A number no other process on this machine has on its command line."""
    return str(int.from_bytes(os.urandom(3), "big") + 100000)


# ---------------------------------------------------------------------------- the contract

JAIL_PROBE = """
import os, socket
def handler(event, context):
    st = os.statvfs("/tmp")
    return {
        "task": sorted(n for n in os.listdir("/var/task") if n != "__pycache__"),
        "task_writable": os.access("/var/task", os.W_OK),
        "tmp_mb": st.f_blocks * st.f_frsize >> 20,
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "host_path_seen": os.path.exists(event["host"]),
        "task_propagation": [line.split(" - ")[0].split()[6:] for line in open("/proc/self/mountinfo")
                             if line.split()[4] == "/var/task"],
    }
"""

ECHO = """
import os
def handler(event, context):
    return {"event": event, "pid": os.getpid()}
"""


def test_ready_invoke_and_warm_reuse(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(ECHO)
        env1, first = await h.invoke(fn, code, {"n": 1})
        env2, second = await h.invoke(fn, code, {"n": 2})
        assert first.function_error is None, first.payload
        assert orjson.loads(first.payload)["event"] == {"n": 1}
        assert orjson.loads(second.payload)["event"] == {"n": 2}
        assert env1 is env2 and first.cold and not second.cold
        assert orjson.loads(first.payload)["pid"] == orjson.loads(second.payload)["pid"]
        assert env1.state == EnvironmentState.READY and env1._handle.returncode is None

    run(backend_name, tmp_path, scenario)


def test_describe(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        info = h.backend.describe()
        assert info["name"] == backend_name == h.backend.name
        assert info["isolated"] is (backend_name != "process") is h.backend.isolated

    run(backend_name, tmp_path, scenario)


CONTEXT = """
import os
def handler(event, context):
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "group": context.log_group_name,
        "stream": context.log_stream_name,
    }
"""


def test_environment_variables_and_context(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(CONTEXT, memory_size=256, timeout=7, environment={"GREETING": "héllo", "EMPTY": ""})
        env, result = await h.invoke(fn, code)
        assert result.function_error is None, result.payload
        out = orjson.loads(result.payload)
        assert out["env"]["GREETING"] == "héllo" and out["env"]["EMPTY"] == ""
        assert out["env"]["AWS_LAMBDA_FUNCTION_NAME"] == fn.name == out["function_name"]
        assert out["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and out["memory"] == "256"
        assert out["env"]["_HANDLER"] == "app.handler"
        assert out["env"]["LAMBDA_TASK_ROOT"] == out["cwd"]
        assert os.path.isdir(out["env"]["LAMBDA_RUNTIME_DIR"]) or backend_name != "process"
        assert "_SQUALL_CHANNEL_FD" not in out["env"]
        assert out["request_id"] == result.request_id
        assert 5000 < out["remaining"] <= 7000
        assert out["group"] == f"/aws/lambda/{fn.name}" and out["stream"] == env.stream

    run(backend_name, tmp_path, scenario)


EXIT = """
import os, signal, sys
def handler(event, context):
    print("about to go", flush=True)
    if event["how"] == "exit":
        os._exit(3)
    if event["how"] == "sys.exit":
        sys.exit(4)
    os.kill(os.getpid(), getattr(signal, event["how"]))
"""


@pytest.mark.parametrize(
    "how, described",
    [("exit", "exit status 3"), ("SIGKILL", "signal: killed"), ("SIGTERM", "signal: terminated"), ("sys.exit", "exit status 4")],
)
def test_exit_status_and_signal_are_reported(backend_name, tmp_path, how, described):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(EXIT)
        env, result = await h.invoke(fn, code, {"how": how})
        assert result.error_type == "Runtime.ExitError", result.payload
        assert error_message(result).endswith(f"Runtime exited with error: {described}")
        assert b"about to go" in result.log_tail
        assert env.state == EnvironmentState.STOPPED
        # the next invoke gets a new environment
        env2, again = await h.invoke(fn, code, {"how": "none"})
        assert env2 is not env and again.cold

    run(backend_name, tmp_path, scenario)


TIMEOUT = """
import os, subprocess, time
def handler(event, context):
    subprocess.Popen(["sleep", event["tag"]])
    subprocess.Popen(["setsid", "sleep", event["tag2"]], start_new_session=True)
    subprocess.Popen(["sh", "-c", "sleep %s & sleep %s" % (event["tag"], event["tag2"])])
    print("children started", flush=True)
    time.sleep(30)
"""


def test_timeout_kills_the_runtime_and_all_its_children(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(TIMEOUT, timeout=1)
        t1, t2 = tag(), tag()
        env, result = await h.invoke(fn, code, {"tag": t1, "tag2": t2})
        assert result.error_type == "Sandbox.Timedout"
        assert b"children started" in result.log_tail
        assert b"Task timed out after 1.00 seconds" in result.log_tail
        assert env.state == EnvironmentState.STOPPED
        assert await wait_until(lambda: not processes_with_arg(t1, t2)), "children outlived the timeout"
        # the function still works afterwards
        fn2, code2 = h.function(ECHO)
        _, ok = await h.invoke(fn2, code2, {"after": "timeout"})
        assert ok.function_error is None

    run(backend_name, tmp_path, scenario)


SLEEPY = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "done"
"""


def test_kill_is_idempotent_and_wait_reports_it(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY)
        env, _ = await h.invoke(fn, code)
        handle = env._handle
        assert handle.pid and handle.returncode is None
        handle.kill()
        handle.kill()
        status = await asyncio.wait_for(handle.wait(), 10)
        assert status == -signal.SIGKILL == handle.returncode
        handle.kill()  # after the end too
        env.kill("test")
        env.kill("again")
        assert await asyncio.wait_for(handle.wait(), 1) == -signal.SIGKILL

    run(backend_name, tmp_path, scenario)


LOGS = """
import logging, sys
print("module level print")
def handler(event, context):
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger().warning("a warning")
    sys.stdout.write("no newline")
    return "logged"
"""


def test_logs_are_captured(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(LOGS)
        env, result = await h.invoke(fn, code)
        assert result.function_error is None, result.payload
        tail = result.log_tail.decode()
        for line in ("module level print", "to stdout", "to stderr", "a warning", "no newline"):
            assert line in tail
        assert re.search(r"REPORT RequestId: \S+\tDuration: ", tail)
        h.logs.flush()
        events, _ = h.logs.filter(f"/aws/lambda/{fn.name}")
        messages = "\n".join(e.message for e in events)
        assert "to stderr" in messages and "module level print" in messages

    run(backend_name, tmp_path, scenario)


MEMORY = """
def handler(event, context):
    block = bytearray(event["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)
"""


def test_peak_memory_is_reported_per_invocation(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(MEMORY, memory_size=256)

        def max_memory_used(result) -> int:
            match = re.search(rb"Max Memory Used: (\d+) MB", result.log_tail)
            assert match, result.log_tail
            return int(match.group(1))

        _, big = await h.invoke(fn, code, {"mb": 40})
        _, small = await h.invoke(fn, code, {"mb": 1})
        assert big.function_error is None and small.function_error is None
        assert max_memory_used(big) >= 40
        assert 0 < max_memory_used(small) < max_memory_used(big)

    run(backend_name, tmp_path, scenario)


INIT_ERROR = """
raise ValueError("broken at import")
def handler(event, context):
    return "never"
"""


def test_init_errors_are_served(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(INIT_ERROR)
        env, result = await h.invoke(fn, code)
        assert result.function_error == "Unhandled" and result.error_type == "ValueError"
        assert error_message(result) == "broken at import"
        assert b"INIT_REPORT" in result.log_tail and b"Status: error" in result.log_tail
        assert env.state == EnvironmentState.STOPPED
        missing, code2 = h.function(ECHO.replace("def handler", "def other"))
        _, result = await h.invoke(missing, code2)
        assert result.error_type == "Runtime.HandlerNotFound"

    run(backend_name, tmp_path, scenario)


def test_environments_run_in_parallel(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(ECHO.replace("return", "__import__('time').sleep(0.3); return"))
        results = await asyncio.gather(*(h.invoke(fn, code, {"i": i}) for i in range(3)))
        assert len({id(env) for env, _ in results}) == 3
        assert all(r.function_error is None for _, r in results)
        assert len({orjson.loads(r.payload)["pid"] for _, r in results}) == 3

    run(backend_name, tmp_path, scenario)


# ---------------------------------------------------------------------------- linux only

PROBE = """
import os, socket
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return "ok"
    except OSError as e:
        return type(e).__name__
def address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.18.0.1", 9))  # no packet is sent: the kernel only picks a route
            return s.getsockname()[0]
        except OSError:
            return None
def handler(event, context):
    return {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"],
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "pid": os.getpid(),
            "interfaces": sorted(name for _, name in socket.if_nameindex()), "address": address(),
            "loopback": connect("127.0.0.1", event["port"]), "gateway": connect(event["gateway"], event["port"])}
"""


def test_linux_sandbox_basics_and_its_own_network(linux, tmp_path):
    """Its own namespaces; on the default network it has an eth0 but reaches nothing of the
    host (neither at 127.0.0.1, which is its own loopback, nor at the gateway); with no network
    it has its loopback only."""
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]

    async def scenario(h: Harness) -> None:
        fn, code = h.function(PROBE, timeout=10)
        networks = h.backend.networks
        require(networks is not None, f"environments have no networks here: {h.backend.networks_problem}")
        event = {"port": port, "gateway": str(networks.specs["default"].gateway)}
        _, on = await h.invoke(fn, code, event)
        _, off = await h.invoke(fn, code, event, network=None)
        on, off = orjson.loads(on.payload), orjson.loads(off.payload)
        assert on["uid"] != 0 and on["gid"] != 0
        assert on["cwd"] == on["task_root"] == "/var/task"
        assert on["pids"] == [1, on["pid"]]  # its own pid namespace: init and the runtime
        assert on["interfaces"] == ["eth0", "lo"] and on["address"].startswith("10.213.")
        # a spare's eth0, made ahead, may linger a moment (down, without an address) until deleted
        assert off["interfaces"] in (["lo"], ["eth0", "lo"]) and off["address"] is None
        assert on["loopback"] == "ConnectionRefusedError"  # its own loopback: nothing listens there
        assert on["gateway"] in ("TimeoutError", "timeout"), on  # the host drops it
        assert off["loopback"] == "ConnectionRefusedError" and off["gateway"] == "OSError", off  # no route

    try:
        run(linux, tmp_path, scenario)
    finally:
        listener.close()


@pytest.mark.parametrize("mount_fds", [True, False], ids=["jail-built-ahead", "jail-built-on-request"])
def test_linux_jail_either_way(linux, tmp_path, mount_fds):
    """Spares build the jail ahead and take the code as a mount fd where the kernel allows
    it; elsewhere each sandbox builds it after its request. Both give the same sandbox."""
    async def scenario(h: Harness) -> None:
        h.backend.mount_fds = mount_fds
        fn, code = h.function(JAIL_PROBE, ephemeral_storage=700)
        for _ in range(2):  # the first start takes the zygote's path, the next a spare
            async with h.pool.lease(target_of(fn, h.runtime, code)):  # held: the next lease starts another
                _, result = await h.invoke(fn, code, {"host": str(code)})
            seen = orjson.loads(result.payload)
            assert 700 <= seen.pop("tmp_mb") <= 704  # a disk of 700 MB of files (or a tmpfs of 700 MB)
            assert seen == {"task": ["app.py"], "task_writable": False, "hostname": "localhost",
                            "cwd": "/var/task", "host_path_seen": False, "task_propagation": [[]]}, seen
        (zygote,) = h.backend._zygotes.values()
        assert zygote.trees is mount_fds

    run(linux, tmp_path, scenario)


def test_linux_reaps_orphans_of_a_crashed_server(linux, tmp_path):
    from squall.sandbox.linux.backend import LinuxBackend
    from squall.sandbox.linux.cgroups import CgroupLimits

    async def scenario(h: Harness) -> None:
        # what a SIGKILLed server leaves: a cgroup with a process in it
        group = h.backend.cgroups.create(f"env-{uuid.uuid4().hex}", CgroupLimits(64 << 20, None, 64))
        sleeper = await asyncio.create_subprocess_exec("sleep", "60")
        group.join(sleeper.pid)
        successor = LinuxBackend(h.backend.scope, tmp_path / "data", h.backend.cgroups)  # same scope, no networks
        assert successor.reap_orphans() >= 1
        assert await asyncio.wait_for(sleeper.wait(), 5) == -signal.SIGKILL
        assert not os.path.exists(group.path)

    run(linux, tmp_path, scenario)


async def _offered_spare(zygote, timeout: float = 10.0) -> int:
    """The pid of the spare the zygote has handed to the server (waits for the offer)."""
    deadline = time.monotonic() + timeout
    while zygote._spare is None:
        assert time.monotonic() < deadline, "the zygote never handed over a spare sandbox"
        await asyncio.sleep(0.01)
    return zygote._spare.pid


def test_linux_cold_start_takes_the_handed_over_spare_and_survives_its_death(linux, tmp_path, capfd):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(ECHO)
        first, _ = await h.invoke(fn, code, {"n": 1})
        (zygote,) = h.backend._zygotes.values()
        pid = await _offered_spare(zygote)
        async with h.pool.lease(target_of(fn, h.runtime, code)) as held:  # the idle one: the next is a cold start
            assert held is first
            second, result = await h.invoke(fn, code, {"n": 2})
        assert second._handle.pid == pid  # the server started the spare itself
        assert orjson.loads(result.payload)["event"] == {"n": 2}

        # a spare that dies while the server holds it: the start goes through the zygote
        pid = await _offered_spare(zygote)
        os.kill(pid, signal.SIGKILL)
        while os.path.exists(f"/proc/{pid}/fd/4"):  # its end of the socket is closed
            await asyncio.sleep(0.005)
        async with h.pool.lease(target_of(fn, h.runtime, code)), h.pool.lease(target_of(fn, h.runtime, code)):
            third, result = await h.invoke(fn, code, {"n": 3})
        assert third._handle.pid != pid
        assert orjson.loads(result.payload)["event"] == {"n": 3}, result.payload

    run(linux, tmp_path, scenario)
    assert "could not rehearse" not in capfd.readouterr().err  # the spares (their stderr is ours) rehearsed


def test_linux_zygote_death_fails_its_environments_and_a_new_one_starts(linux, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY)
        env, _ = await h.invoke(fn, code)
        (zygote,) = h.backend._zygotes.values()
        first_pid = zygote.pid
        os.kill(first_pid, signal.SIGKILL)
        status = await asyncio.wait_for(env._handle.wait(), 10)
        assert status == -signal.SIGKILL
        fn2, code2 = h.function(ECHO)
        _, result = await h.invoke(fn2, code2, {"after": "restart"})
        assert result.function_error is None, result.payload
        assert zygote.pid != first_pid

    run(linux, tmp_path, scenario)


# ---------------------------------------------------------------------------- choosing a backend


def test_select_backend_auto_falls_back_and_forced_linux_says_why(tmp_path, monkeypatch):
    import squall.sandbox.linux.backend as linux_backend
    from squall.errors import SquallError
    from squall.sandbox import select_backend

    monkeypatch.setattr(linux_backend, "unavailable_reason", lambda data_dir: "it needs root (run as root)")
    backend = select_backend("auto", tmp_path)
    assert isinstance(backend, ProcessBackend) and backend.describe()["isolated"] is False
    with pytest.raises(SquallError) as excinfo:
        select_backend("linux", tmp_path)
    message = str(excinfo.value)
    assert "isolation='linux' is not available" in message and "it needs root" in message and "'process'" in message
    assert isinstance(select_backend("process", tmp_path), ProcessBackend)


def test_select_backend_auto_prefers_linux_where_it_works(linux, tmp_path):
    from squall.sandbox import select_backend

    backend = select_backend("auto", tmp_path)
    try:
        assert backend.name == "linux" and backend.isolated
        info = backend.describe()
        assert info["uid"] != 0 and info["cgroup_version"] in (1, 2) and "pid" in info["namespaces"]
    finally:
        asyncio.run(backend.close())
