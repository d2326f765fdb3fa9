"""Isolation and limits of the ``linux`` sandbox, seen from inside functions.

A real ``squall server --isolation linux`` driven with boto3. Skipped where the machine
cannot build the sandbox (no root, no namespaces, no usable cgroups); required in CI.

Every test runs twice: on environments started from scratch, and on environments forked from
a SnapStart snapshot (``snapshot``: the function has SnapStart, a version is published, and the
version is what is invoked; its first REPORT must say Restore Duration).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
import uuid

import pytest

from tests.conftest import create_function, processes_with_arg, require, start_server
from tests.contract import linux_unavailable

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def linux_server(tmp_path_factory):
    reason = linux_unavailable()
    require(reason is None, f"linux sandbox unavailable: {reason}")
    server = start_server(tmp_path_factory.mktemp("squall-linux"), "--isolation", "linux")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lam(linux_server):
    return linux_server.client("lambda")


@pytest.fixture(scope="module", params=["scratch", "snapshot"])
def flavour(request):
    return request.param


def make(lam, flavour: str, code: str, **kwargs) -> str:
    """A function to invoke: its name, or (``snapshot``) its published SnapStart version, checked
    to be restored from its snapshot."""
    if flavour == "scratch":
        return create_function(lam, code, **kwargs)
    name = create_function(lam, code, SnapStart={"ApplyOn": "PublishedVersions"}, **kwargs)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=version,
                                                     WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    config = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert config["SnapStart"]["OptimizationStatus"] == "On"
    return f"{name}:{version}"


def invoke(lam, name: str, payload: object = None):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}), LogType="Tail")
    body = json.loads(response["Payload"].read())
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return body, response.get("FunctionError"), log


def ok(lam, name: str, payload: object = None):
    body, error, log = invoke(lam, name, payload)
    assert error is None, (body, log)
    return body


def tag() -> str:
    return str(int.from_bytes(os.urandom(3), "big") + 100000)


PROBE = """
import errno, os, socket

def attempt(action):
    try:
        return action()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def write(path, data="x"):
    with open(path, "w") as f:
        f.write(data)
    return "written"

def handler(event, context):
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "cwd": os.getcwd(), "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "write_task": attempt(lambda: write("/var/task/new-file")),
        "write_root": attempt(lambda: write("/new-file")),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "pid": os.getpid(),
        "paths": {p: attempt(lambda: sorted(os.listdir(p))[:3] if os.path.isdir(p) else open(p).read(10))
                  for p in event["paths"]},
        "shadow": os.path.exists("/etc/shadow"),
        "root": sorted(os.listdir("/")),
        "hostname": socket.gethostname(),
    }
"""


def test_a_function_sees_only_its_own_sandbox(lam, linux_server, flavour):
    other = make(lam, flavour, "def handler(event, context):\n    return 'other'\n")
    assert ok(lam, other) == "other"
    name = make(lam, flavour, PROBE)
    data_dir = str(linux_server.data_dir)
    trees = [str(p) for p in (linux_server.data_dir / "code").iterdir() if p.is_dir()]  # extracted code
    assert len(trees) >= 2  # both functions' code
    secrets = [data_dir, f"{data_dir}/squall.db", f"{data_dir}/secret", *trees, "/root", "/root/.ssh", "/work", "/etc/shadow"]
    out, error, log = invoke(lam, name, {"paths": secrets})
    assert error is None, (out, log)
    assert ("Restore Duration" in log) == (flavour == "snapshot"), log
    assert out["uid"] != 0 and out["euid"] != 0 and out["gid"] != 0
    assert out["cwd"] == out["task_root"] == "/var/task"
    assert out["write_task"] == "EROFS" and out["write_root"] == "EROFS"
    assert out["pids"] == [1, out["pid"]], "only the sandbox's own processes are visible"
    # the interpreter's prefixes are bound at their own paths: their parents show only the way to them
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    prefixes |= {sys.prefix, sys.base_prefix}

    def on_the_way(path: str, entry: str) -> bool:
        return any(prefix.startswith(f"{path.rstrip('/')}/{entry}/") or prefix == f"{path.rstrip('/')}/{entry}"
                   for prefix in prefixes)

    for path, result in out["paths"].items():
        if isinstance(result, list) and any(prefix.startswith(path + "/") for prefix in prefixes):
            assert all(on_the_way(path, entry) for entry in result), (path, result)
            continue
        assert result in ("ENOENT", "EACCES"), f"{path} is visible from a function: {result}"
    assert not out["shadow"]
    system = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "root", "sbin", "tmp", "usr", "var"}
    assert all(entry in system or on_the_way("/", entry) for entry in out["root"]), out["root"]
    with urllib.request.urlopen(f"{linux_server.endpoint}/health") as response:
        isolation = json.loads(response.read())["isolation"]
    assert isolation["name"] == "linux" and isolation["isolated"] is True
    assert isolation["uid"] == out["uid"] and isolation["cgroup_version"] in (1, 2)


TMP = """
import errno, os
def handler(event, context):
    if event["op"] == "write":
        with open("/tmp/" + event["file"], "w") as f:
            f.write("secret")
        return sorted(os.listdir("/tmp"))
    if event["op"] == "list":
        return sorted(os.listdir("/tmp"))
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open("/tmp/big", "wb") as f:
            for _ in range(event["mb"]):
                f.write(chunk)
                f.flush()
                written += 1
                if written % 32 == 0:
                    # On cgroup v1 the disk's dirty pages are charged to the function's memory until
                    # written back; on a loaded machine writeback can fall behind a writer this fast
                    # (a known limitation, see the closing note of issue 13's session).
                    os.fsync(f.fileno())
        result = "no error"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    os.unlink("/tmp/big")
    return {"result": result, "written_mb": written}
"""


def test_tmp_is_writable_private_and_capped(lam, flavour):
    a = make(lam, flavour, TMP, MemorySize=1024, Timeout=30)
    b = make(lam, flavour, TMP, MemorySize=1024, Timeout=30)
    secret = f"secret-{uuid.uuid4().hex}"
    assert secret in ok(lam, a, {"op": "write", "file": secret})
    assert secret not in ok(lam, b, {"op": "list"})
    assert not os.path.exists(f"/tmp/{secret}"), "a sandbox's /tmp is not the host's"
    full = ok(lam, a, {"op": "fill", "mb": 600})  # EphemeralStorage: 512 MB
    assert full["result"] == "ENOSPC" and 400 <= full["written_mb"] <= 512
    assert secret in ok(lam, a, {"op": "list"})  # the same environment carries on
    assert secret not in ok(lam, b, {"op": "list"})


def test_tmp_is_a_disk_not_the_functions_memory(lam, linux_server, flavour):
    """As on Lambda, /tmp is storage: a 128 MB function fills its 512 MB /tmp and lives."""
    with urllib.request.urlopen(f"{linux_server.endpoint}/health") as response:
        tmp = json.loads(response.read())["isolation"]["tmp"]
    require(tmp.startswith("a disk of its own"), f"/tmp cannot be a disk here: {tmp}")
    small = make(lam, flavour, TMP, MemorySize=128, Timeout=60)
    body, error, log = invoke(lam, small, {"op": "fill", "mb": 480})
    assert error is None, (body, log)
    assert body == {"result": "no error", "written_mb": 480}
    used = int(log.split("Max Memory Used: ")[1].split(" MB")[0])
    assert used <= 128, log
    full = ok(lam, small, {"op": "fill", "mb": 600})  # and its size is still EphemeralStorage
    assert full["result"] == "ENOSPC" and 480 <= full["written_mb"] <= 512


def test_out_of_memory_kills_only_the_function(lam, flavour):
    hog = make(
        lam,
        flavour,
        """
def handler(event, context):
    block = bytearray(300 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return "survived"
""",
        MemorySize=128,
        Timeout=30,
    )
    bystander = make(lam, flavour, "def handler(event, context):\n    return 'fine'\n")
    body, error, log = invoke(lam, hog)
    assert error == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: signal: killed")
    assert "out of memory" in log
    used = int(log.split("Max Memory Used: ")[1].split(" MB")[0])
    assert used >= 100, log  # what it had reached when it was killed, not 1 MB
    assert ok(lam, bystander) == "fine"
    assert lam.get_function(FunctionName=hog)["Configuration"]["State"] == "Active"


FORK_BOMB = """
import os, time
def handler(event, context):
    forked = 0
    while True:
        try:
            if os.fork() == 0:
                time.sleep(300)
                os._exit(0)
            forked += 1
        except OSError as e:
            return {"forked": forked, "errno": e.errno}
"""


def test_fork_bomb_hits_pids_max(lam, flavour):
    bomb = make(lam, flavour, FORK_BOMB, MemorySize=1024, Timeout=30)
    bystander = make(lam, flavour, "def handler(event, context):\n    return 'fine'\n")
    out = ok(lam, bomb)
    assert out["errno"] == 11  # EAGAIN: pids.max
    assert 900 <= out["forked"] <= 1024
    assert ok(lam, bystander) == "fine"
    lam.delete_function(FunctionName=bomb)  # its environment and its thousand children go


TIMEOUT = """
import subprocess, time
def handler(event, context):
    subprocess.Popen(["sleep", event["tag"]])
    subprocess.Popen(["setsid", "sleep", event["tag2"]], start_new_session=True)
    print("spawned", flush=True)
    time.sleep(60)
"""


def test_timeout_kills_every_process_of_the_environment(lam, flavour):
    import time

    name = make(lam, flavour, TIMEOUT, Timeout=1)
    t1, t2 = tag(), tag()
    body, error, log = invoke(lam, name, {"tag": t1, "tag2": t2})
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    assert "spawned" in log
    deadline = time.monotonic() + 5
    while processes_with_arg(t1, t2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_with_arg(t1, t2)
