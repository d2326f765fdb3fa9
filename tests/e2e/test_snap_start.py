"""SnapStart for Python (issue 19): environments forked from a template that ran init once.

A real ``squall server --isolation linux`` (with ``snap_start_latest``, so that ``$LATEST`` of a
SnapStart function has a snapshot too) driven with boto3. What must hold in restored
environments: their own random values, ids and log streams; the after-restore hooks run (the
runtime's own ``snapshot_restore_py`` and the PyPI package vendored in a function); connections
opened during init are not shared; memory is reported; a new revision or a deleted version takes
its snapshot along; an init error leaves none. Isolation itself is re-checked on restored
environments by tests/e2e/test_isolation.py and test_hardening.py (their ``snapshot`` flavour).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, require, start_server, wait_for
from tests.contract import linux_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SNAP = {"ApplyOn": "PublishedVersions"}


@pytest.fixture(scope="module")
def snap_server(tmp_path_factory):
    reason = linux_unavailable()
    require(reason is None, f"linux sandbox unavailable: {reason}")
    server = start_server(tmp_path_factory.mktemp("snapstart"), "--isolation", "linux",
                          env={"SQUALL_SNAP_START_LATEST": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lam(snap_server):
    return snap_server.client("lambda")


def invoke(lam, name: str, payload: object = None, qualifier: str | None = None):
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}), LogType="Tail", **extra)
    body = json.loads(response["Payload"].read())
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return body, response.get("FunctionError"), log


def ok(lam, name: str, payload: object = None, qualifier: str | None = None):
    body, error, log = invoke(lam, name, payload, qualifier)
    assert error is None, (body, log)
    return body, log


def health(server) -> dict:
    with urllib.request.urlopen(f"{server.endpoint}/health") as response:
        return json.loads(response.read())


def snapshots_of(server, name: str) -> list[dict]:
    return [s for s in (health(server)["snapshots"] or {}).get("snapshots", []) if s["function"] == name]




def publish(lam, name: str) -> str:
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=version,
                                                     WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    return version


def concurrently(count: int, call):
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


UNIQUE = """
import os, random, time, uuid
INIT_ID = uuid.uuid4().hex  # made once, in the template
INIT_RANDOM = random.random()

def handler(event, context):
    time.sleep(event.get("hold", 0))
    return {
        "init_id": INIT_ID, "init_random": INIT_RANDOM, "random": random.random(), "uuid": uuid.uuid4().hex,
        "urandom": os.urandom(8).hex(), "pid": os.getpid(), "request_id": context.aws_request_id,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"), "stream": context.log_stream_name,
        "env_stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
        "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
"""


def test_optimization_status_follows_lambda(lam):
    name = create_function(lam, UNIQUE, SnapStart=SNAP)
    latest = lam.get_function_configuration(FunctionName=name)["SnapStart"]
    assert latest == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}  # $LATEST: Off, as on Lambda
    version = publish(lam, name)
    assert lam.get_function_configuration(FunctionName=name, Qualifier=version)["SnapStart"] == {
        "ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    plain = create_function(lam, UNIQUE)
    assert lam.get_function_configuration(FunctionName=plain)["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    with pytest.raises(ClientError) as caught:
        lam.update_function_configuration(FunctionName=plain, SnapStart={"ApplyOn": "Always"})
    assert caught.value.response["Error"]["Code"] == "ValidationException"  # the model's enum


def test_restored_environments_share_init_but_nothing_unique(lam, snap_server):
    name = create_function(lam, UNIQUE, SnapStart=SNAP, MemorySize=256)
    version = publish(lam, name)
    wait_for(lambda: any(s["state"] == "ready" for s in snapshots_of(snap_server, name)), what="the snapshot")
    results = concurrently(4, lambda: ok(lam, name, {"hold": 0.5}, version))
    bodies = [body for body, _ in results]
    assert len({b["init_id"] for b in bodies}) == 1, "init ran once, in the template"
    assert len({b["init_random"] for b in bodies}) == 1
    for field in ("random", "uuid", "urandom", "request_id", "trace", "stream"):
        assert len({b[field] for b in bodies}) == 4, (field, bodies)
    assert all(b["stream"] == b["env_stream"] for b in bodies)
    assert all(b["init_type"] == "snap-start" for b in bodies)
    assert all(b["procs"] == [1, b["pid"]] for b in bodies), "each in a pid namespace of its own"
    for _, log in results:
        assert "RESTORE_START" in log and "Restore Duration: " in log and "Billed Restore Duration: " in log, log
        assert "INIT_START" not in log and "Init Duration" not in log, log
    # the next invocation of one of them is warm: no restore line
    _, log = ok(lam, name, {}, version)
    assert "Restore Duration" not in log


def test_a_burst_of_cold_starts_is_restored_from_one_snapshot(lam, snap_server):
    name = create_function(lam, UNIQUE, SnapStart=SNAP)
    version = publish(lam, name)
    wait_for(lambda: any(s["state"] == "ready" for s in snapshots_of(snap_server, name)), what="the snapshot")
    results = concurrently(8, lambda: ok(lam, name, {"hold": 1.0}, version))
    bodies = [body for body, _ in results]
    assert len({b["stream"] for b in bodies}) == 8 and len({b["init_id"] for b in bodies}) == 1
    assert all("Restore Duration" in log for _, log in results)
    # the next burst finds environments forked ahead: as many as the last burst, up to 4
    wait_for(lambda: snapshots_of(snap_server, name)[0]["spares"] >= 4, what="spares for the next burst")


def test_provisioned_concurrency_on_a_snapstart_version_is_restored(lam, snap_server):
    name = create_function(lam, UNIQUE, SnapStart=SNAP)
    version = publish(lam, name)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=2)
    wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)["Status"] == "READY",
             timeout=60, what="provisioned concurrency READY")
    results = concurrently(2, lambda: ok(lam, name, {"hold": 0.5}, version))
    bodies = [body for body, _ in results]
    assert len({b["stream"] for b in bodies}) == 2 and len({b["init_id"] for b in bodies}) == 1, bodies
    assert all(b["init_type"] == "snap-start" for b in bodies)
    assert all("Restore Duration" not in log and "Init Duration" not in log for _, log in results)
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)


def _template_pid(sandbox_pid: int) -> int:
    """The template's runtime: the child of its sandbox's B that lives in B's pid namespace only
    (environments forked from it, reparented to B, are one namespace deeper)."""
    with open(f"/proc/{sandbox_pid}/task/{sandbox_pid}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    for pid in children:
        with open(f"/proc/{pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        if len(nspid) == 2:
            return pid
    raise AssertionError(f"no template among {children}")


def test_a_template_that_dies_is_replaced(lam, snap_server):
    import signal

    name = create_function(lam, UNIQUE, SnapStart=SNAP)
    version = publish(lam, name)
    first, _ = ok(lam, name, {}, version)
    snapshot = wait_for(lambda: snapshots_of(snap_server, name), what="the snapshot")[0]
    os.kill(_template_pid(snapshot["pid"]), signal.SIGKILL)
    wait_for(lambda: not snapshots_of(snap_server, name), what="the dead snapshot to be dropped")
    results = concurrently(2, lambda: ok(lam, name, {"hold": 0.5}, version))  # one of them is a cold start
    cold = [(body, log) for body, log in results if "RESTORE_START" in log or "INIT_START" in log]
    assert len(cold) == 1, results
    assert "Restore Duration" in cold[0][1] and cold[0][0]["init_id"] != first["init_id"], cold


HOOKS = """
import os, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

ORDER = []

@register_before_snapshot
def first_registered():
    ORDER.append("first")

def second_registered(tag):
    ORDER.append(tag)

register_before_snapshot(second_registered, "second")

RESTORED = []

@register_after_restore
def restored():
    RESTORED.append(uuid.uuid4().hex)

def handler(event, context):
    import snapshot_restore_py
    return {"before": ORDER, "restored": RESTORED, "module": snapshot_restore_py.__file__}
"""


def test_runtime_hooks_run_before_the_snapshot_and_after_each_restore(lam):
    name = create_function(lam, HOOKS, SnapStart=SNAP)
    version = publish(lam, name)
    bodies = [body for body, _ in concurrently(2, lambda: ok(lam, name, {}, version))]
    for body in bodies:
        assert body["before"] == ["second", "first"], body  # reverse order of registration
        assert len(body["restored"]) == 1, body
        assert body["module"].startswith("/var/runtime/"), body  # the runtime's own module
    assert bodies[0]["restored"] != bodies[1]["restored"]


def test_the_pypi_package_vendored_in_the_function_is_used(lam):
    import snapshot_restore_py  # the package from PyPI (a test dependency)

    vendored = Path(snapshot_restore_py.__file__).read_text()
    name = create_function(lam, {"app.py": HOOKS, "snapshot_restore_py.py": vendored}, SnapStart=SNAP)
    version = publish(lam, name)
    body, _ = ok(lam, name, {}, version)
    assert body["module"] == "/var/task/snapshot_restore_py.py"
    assert body["before"] == ["second", "first"] and len(body["restored"]) == 1


def test_a_failing_after_restore_hook_is_an_error_of_that_environment(lam):
    code = """
from snapshot_restore_py import register_after_restore

@register_after_restore
def broken():
    raise RuntimeError("no database")

def handler(event, context):
    return "never"
"""
    name = create_function(lam, code, SnapStart=SNAP)
    version = publish(lam, name)
    body, error, log = invoke(lam, name, {}, version)
    assert error == "Unhandled" and body["errorType"] == "Runtime.AfterRestoreError", body
    assert "no database" in body["errorMessage"]
    assert "RESTORE_REPORT" in log and "Phase: restore" in log, log


SOCKET = """
import os, socket
from urllib.parse import urlsplit
from snapshot_restore_py import register_after_restore

API = urlsplit(os.environ["AWS_ENDPOINT_URL_LAMBDA"])
CONNECTION = socket.create_connection((API.hostname, API.port), timeout=5)

def reconnect():
    global CONNECTION
    CONNECTION = socket.create_connection((API.hostname, API.port), timeout=5)

if os.environ.get("RECONNECT") == "1":
    register_after_restore(reconnect)

def handler(event, context):
    try:
        CONNECTION.sendall(b"GET /health HTTP/1.1\\r\\nHost: " + API.hostname.encode() + b"\\r\\n\\r\\n")
        return {"answer": CONNECTION.recv(64).decode(errors="replace"), "local": CONNECTION.getsockname()[1]}
    except OSError as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}
"""


def test_a_connection_opened_during_init_is_not_shared(lam, snap_server):
    broken = create_function(lam, SOCKET, SnapStart=SNAP)
    version = publish(lam, broken)
    body, log = ok(lam, broken, {}, version)
    assert "error" in body and ("Broken pipe" in body["error"] or "not connected" in body["error"]), body
    streams = [s["logStreamName"] for s in snap_server.client("logs").describe_log_streams(
        logGroupName=f"/aws/lambda/{broken}")["logStreams"]]
    warned = any("a network connection opened during init" in e["message"]
                 for stream in streams
                 for e in snap_server.client("logs").get_log_events(logGroupName=f"/aws/lambda/{broken}",
                                                                      logStreamName=stream)["events"])
    assert warned, "the snapshot's log says what happened to the connection"
    fixed = create_function(lam, SOCKET, SnapStart=SNAP, Environment={"Variables": {"RECONNECT": "1"}})
    version = publish(lam, fixed)
    bodies = [b for b, _ in concurrently(2, lambda: ok(lam, fixed, {"hold": 0}, version))]
    assert all(b.get("answer", "").startswith("HTTP/1.1 200") for b in bodies), bodies
    assert bodies[0]["local"] != bodies[1]["local"], "each environment has its own connection"


def test_memory_is_reported(lam, snap_server):
    code = "BLOB = bytearray(24 * 1024 * 1024)\nfor i in range(0, len(BLOB), 4096):\n    BLOB[i] = 1\n" \
           "def handler(event, context):\n    return len(BLOB)\n"
    name = create_function(lam, code, SnapStart=SNAP, MemorySize=256)
    version = publish(lam, name)
    _, log = ok(lam, name, {}, version)
    used = int(log.split("Max Memory Used: ")[1].split(" MB")[0])
    assert used >= 24, log  # the template's pages it maps count
    snapshot = wait_for(lambda: snapshots_of(snap_server, name), what="the snapshot in /health")[0]
    assert snapshot["state"] == "ready" and snapshot["memory_mb"] >= 24 and snapshot["restores"] >= 1, snapshot
    report = health(snap_server)["snapshots"]
    assert report["budget_mb"] > 0 and report["memory_mb"] >= snapshot["memory_mb"]
    cli = subprocess.run([sys.executable, "-m", "squall.cli.main", "functions", "--endpoint", snap_server.endpoint],
                         capture_output=True, text=True, timeout=60, env={**os.environ, **snap_server.aws_env()})
    assert cli.returncode == 0, cli.stderr
    line = next(row for row in cli.stdout.splitlines() if row.startswith(name))
    assert f"{version}:" in line and "ready" in line, cli.stdout


def test_a_new_revision_or_a_deleted_version_takes_its_snapshot_along(lam, snap_server):
    name = create_function(lam, UNIQUE, SnapStart=SNAP)
    before, log = ok(lam, name)  # $LATEST (snap_start_latest)
    assert "Restore Duration" in log
    old = wait_for(lambda: snapshots_of(snap_server, name), what="the snapshot")[0]
    assert old["version"] == "$LATEST" and old["pid"]
    lam.update_function_code(FunctionName=name, ZipFile=_zip(UNIQUE.replace("INIT_ID =", "NEW = 1\nINIT_ID =")))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    wait_for(lambda: not os.path.exists(f"/proc/{old['pid']}"), what="the old template's sandbox to end")
    after, log = ok(lam, name)
    assert after["init_id"] != before["init_id"] and "Restore Duration" in log
    version = publish(lam, name)
    ok(lam, name, {}, version)
    of_version = wait_for(lambda: [s for s in snapshots_of(snap_server, name) if s["version"] == version],
                          what="the version's snapshot")[0]
    lam.delete_function(FunctionName=name, Qualifier=version)
    wait_for(lambda: not [s for s in snapshots_of(snap_server, name) if s["version"] == version],
             what="the version's snapshot to go")
    wait_for(lambda: not os.path.exists(f"/proc/{of_version['pid']}"), what="its sandbox to end")


def test_an_init_error_leaves_no_snapshot(lam, snap_server):
    name = create_function(lam, "raise ValueError('bad config')\ndef handler(event, context):\n    return 1\n",
                           SnapStart=SNAP)
    version = publish(lam, name)
    body, error, log = invoke(lam, name, {}, version)
    assert error == "Unhandled" and body["errorType"] == "ValueError" and body["errorMessage"] == "bad config"
    assert "Restore Duration" not in log
    assert not snapshots_of(snap_server, name)


def _zip(code: str) -> bytes:
    from tests.conftest import make_zip

    return make_zip({"app.py": code})


def test_snapshots_stay_within_their_memory_budget(tmp_path_factory):
    """Two snapshots of ~20 MB under a 30 MB budget: the least recently used one goes; its
    version's environments are then initialised from scratch, until it is snapshotted again."""
    server = start_server(tmp_path_factory.mktemp("snap-budget"), "--isolation", "linux",
                          env={"SQUALL_SNAPSHOT_MEMORY_MB": "30"})
    try:
        lam = server.client("lambda")
        first = create_function(lam, UNIQUE, SnapStart=SNAP)
        first_version = publish(lam, first)
        wait_for(lambda: [s for s in snapshots_of(server, first) if s["state"] == "ready"], what="the first snapshot")
        second = create_function(lam, UNIQUE, SnapStart=SNAP)
        second_version = publish(lam, second)
        wait_for(lambda: [s for s in snapshots_of(server, second) if s["state"] == "ready"], what="the second snapshot")
        wait_for(lambda: not snapshots_of(server, first), what="the first snapshot to be evicted")
        report = health(server)["snapshots"]
        assert report["budget_mb"] == 30 and report["memory_mb"] <= 30, report
        _, log = ok(lam, second, {}, second_version)
        assert "Restore Duration" in log
        _, log = ok(lam, first, {}, first_version)  # snapshotted again: this start waited for it
        assert "Restore Duration" in log
        wait_for(lambda: not snapshots_of(server, second), what="the second snapshot to be evicted in turn")
    finally:
        server.stop()


NODE = """
const initialised = Date.now();
const initId = Math.random().toString(36).slice(2);
exports.handler = async (event, context) => {
    await new Promise((resolve) => setTimeout(resolve, (event.hold || 0) * 1000));
    return {initId, initialised, pid: process.pid, stream: context.logStreamName,
            initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE};
};
"""


def test_a_runtime_that_cannot_be_forked_gets_environments_initialised_ahead(lam, snap_server):
    """Node.js (its process runs threads from the start: no fork after init): SnapStart keeps
    environments that ran their own init ahead of need and hands them to cold starts."""
    import shutil

    require(shutil.which("node") is not None, "node is not installed")
    memory_before = health(snap_server)["environments"]["memory_mb"]
    name = create_function(lam, {"index.js": NODE}, handler="index.handler", Runtime="nodejs20.x", SnapStart=SNAP)
    version = publish(lam, name)
    assert lam.get_function_configuration(FunctionName=name, Qualifier=version)["SnapStart"]["OptimizationStatus"] == "On"
    wait_for(lambda: [s for s in snapshots_of(snap_server, name) if s["spares"] >= 1], what="an environment initialised ahead")
    body, log = ok(lam, name, {}, version)
    assert "RESTORE_START" in log and "Restore Duration: " in log and "Init Duration" not in log, log
    assert body["initType"] == "snap-start"
    # a burst: the spare goes to one, the other initialises; then spares for two are kept
    results = concurrently(3, lambda: ok(lam, name, {"hold": 0.5}, version))
    assert len({b["stream"] for b, _ in results}) == 3
    assert len({b["initId"] for b, _ in results}) == 3, "each ran its own init"
    wait_for(lambda: [s for s in snapshots_of(snap_server, name) if s["spares"] >= 2], timeout=60,
             what="spares for the last burst")
    lam.delete_function(FunctionName=name, Qualifier=version)
    wait_for(lambda: not snapshots_of(snap_server, name), what="its environments initialised ahead to go")
    wait_for(lambda: health(snap_server)["environments"]["memory_mb"] == memory_before,
             what="the memory of all its environments, those kept ahead too, to be given back")
