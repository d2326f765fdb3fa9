"""Attacks on the server and the sandbox (issue 12), each tried, each expected to fail while
the server and other functions keep working.

From inside a function: the kernel's surface (user namespaces, keys, io_uring, mounts,
ptrace, bpf). From a hostile client: a web page (cross-site POSTs, rebinding Host headers),
slow connections, a quota-filling upload loop, log group names that are not names.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, make_zip, require, signed_headers, start_server, unique_name
from tests.contract import linux_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def hardened(tmp_path_factory):
    reason = linux_unavailable()
    require(reason is None, f"linux sandbox unavailable: {reason}")
    server = start_server(
        tmp_path_factory.mktemp("hardened"), "--isolation", "linux",
        env={"SQUALL_REQUEST_HEADER_TIMEOUT_SECONDS": "2", "SQUALL_MAX_CONNECTIONS": "300",
             "SQUALL_CODE_STORAGE_LIMIT_BYTES": str(3 * 1024 * 1024)},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lam(hardened):
    return hardened.client("lambda")


def ok(lam, name, payload=None):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}))
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


KERNEL = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
CALLS = {  # x86_64 numbers; aarch64 below
    "x86_64": {"keyctl": 250, "add_key": 248, "bpf": 321, "io_uring_setup": 425, "perf_event_open": 298,
               "userfaultfd": 323, "ptrace": 101, "mount": 165, "unshare": 272, "clone3": 435, "setns": 308},
    "aarch64": {"keyctl": 219, "add_key": 217, "bpf": 280, "io_uring_setup": 425, "perf_event_open": 241,
                "userfaultfd": 282, "ptrace": 117, "mount": 40, "unshare": 97, "clone3": 435, "setns": 268},
}[os.uname().machine]

def call(name, *args):
    result = libc.syscall(ctypes.c_long(CALLS[name]), *[ctypes.c_long(a) for a in args])
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]

def handler(event, context):
    return {
        "unshare_user": call("unshare", 0x10000000),        # unshare -U
        "unshare_net": call("unshare", 0x40000000),
        "keyctl": call("keyctl", 0, 0),                     # KEYCTL_GET_KEYRING_ID
        "add_key": call("add_key", 0, 0, 0, 0, 0),
        "io_uring_setup": call("io_uring_setup", 1, 0),
        "bpf": call("bpf", 0, 0, 0),
        "perf_event_open": call("perf_event_open", 0, 0, -1, -1, 0),
        "userfaultfd": call("userfaultfd", 0),
        "ptrace": call("ptrace", 16, 1),                    # PTRACE_ATTACH to PID 1
        "mount": call("mount", 0, 0, 0, 0, 0),
        "setns": call("setns", 0, 0),
        "clone3": call("clone3", 0, 0),
        "threads_still_work": __import__("threading").Thread(target=lambda: None).start() is None,
        "fork_still_works": os.waitpid(os.fork() or 0, 0)[1] == 0 if True else None,
    }
"""


@pytest.mark.parametrize("flavour", ["scratch", "snapshot"])
def test_the_kernels_surface_is_narrowed_by_seccomp(lam, flavour):
    """Also in environments forked from a SnapStart snapshot, whose template may create namespaces
    (for them): each adds the full filter before the function runs."""
    code = KERNEL.replace("os.waitpid(os.fork() or 0, 0)[1] == 0 if True else None", "_fork_and_wait()") + """
def _fork_and_wait():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0
"""
    if flavour == "snapshot":
        name = create_function(lam, code, SnapStart={"ApplyOn": "PublishedVersions"})
        name = f"{name}:{lam.publish_version(FunctionName=name)['Version']}"
    else:
        name = create_function(lam, code)
    response = lam.invoke(FunctionName=name, LogType="Tail")
    seen = json.loads(response["Payload"].read())
    log = base64.b64decode(response["LogResult"]).decode()
    assert "FunctionError" not in response, seen
    assert ("Restore Duration" in log) == (flavour == "snapshot"), log
    refused = {k: v for k, v in seen.items() if k not in ("threads_still_work", "fork_still_works")}
    assert all(v in ("EPERM", "ENOSYS") for v in refused.values()), seen
    assert seen["io_uring_setup"] == "ENOSYS" and seen["clone3"] == "ENOSYS" and seen["unshare_user"] == "EPERM"
    assert seen["threads_still_work"] and seen["fork_still_works"]


def test_the_health_report_names_the_filter(hardened, lam):
    name = create_function(lam, "def handler(e, c):\n    return 1\n")
    ok(lam, name)
    conn = http.client.HTTPConnection(urlsplit(hardened.endpoint).hostname, urlsplit(hardened.endpoint).port)
    conn.request("GET", "/health")
    isolation = json.loads(conn.getresponse().read())["isolation"]
    assert isolation["seccomp"] and all(z["seccomp"] for z in isolation["zygotes"].values()), isolation


# ---------------------------------------------------------------------------- a web page


def raw(server, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request, signed by the administrator (so that only the browser guard can refuse it)."""
    u = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, path, body=body, headers=signed_headers(server, method, path, body, headers))
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def test_a_cross_site_form_post_cannot_create_or_invoke(hardened, lam):
    name = create_function(lam, "def handler(e, c):\n    return 'ran'\n")
    page = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    status, headers, body = raw(hardened, "POST", f"/2015-03-31/functions/{name}/invocations", page, b"{}")
    assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException", body
    assert "access-control-allow-origin" not in headers
    # without the Origin header a browser would not send, the content type alone is refused
    status, headers, _ = raw(hardened, "POST", f"/2015-03-31/functions/{name}/invocations", {"Content-Type": "text/plain"}, b"{}")
    assert status == 415 and headers["x-amzn-errortype"] == "UnsupportedMediaTypeException"
    for form in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, _ = raw(hardened, "POST", "/2015-03-31/functions", {"Content-Type": form}, b"FunctionName=x")
        assert status == 415, form
    assert ok(lam, name) == "ran"  # the API itself still works


def test_a_rebinding_host_header_is_refused(hardened):
    status, headers, body = raw(hardened, "GET", "/2015-03-31/functions", {"Host": "evil.example:9000"})
    assert status == 403 and b"allowed_hosts" in body
    for host in ("localhost", "127.0.0.1:1234", "[::1]:9000", "squall.localhost:9000"):
        assert raw(hardened, "GET", "/2015-03-31/functions", {"Host": host})[0] == 200, host


# ---------------------------------------------------------------------------- slow clients


def test_slow_connections_are_cut_off_and_the_server_keeps_serving(hardened, lam):
    u = urlsplit(hardened.endpoint)
    slow = []
    for _ in range(200):  # each sends half a request line and stalls
        s = socket.create_connection((u.hostname, u.port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        slow.append(s)
    name = create_function(lam, "def handler(e, c):\n    return 'still here'\n")
    assert ok(lam, name) == "still here"
    deadline = time.monotonic() + 10  # header timeout 2 s, checked once a second
    closed = 0
    for s in slow:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if s.recv(1) == b"":
                closed += 1
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
    assert closed == len(slow)


def test_connections_beyond_the_cap_are_closed_at_once(hardened):
    u = urlsplit(hardened.endpoint)
    held = [socket.create_connection((u.hostname, u.port), timeout=5) for _ in range(300)]
    try:
        extra = socket.create_connection((u.hostname, u.port), timeout=5)
        extra.settimeout(3)
        assert extra.recv(1) == b""  # closed by the server
        extra.close()
    finally:
        for s in held:
            s.close()


# ---------------------------------------------------------------------------- the disk


def test_the_code_storage_quota_stops_a_filling_loop(lam):
    import os

    refused = None
    for i in range(20):  # about 1 MB of incompressible code each; the quota is 3 MB
        try:
            create_function(lam, {"app.py": "def handler(e, c):\n    return 1\n", "blob.bin": os.urandom(700_000)}, wait=False)
        except ClientError as exc:
            refused = exc
            break
    assert refused is not None, "the quota was never applied"
    error = refused.response["Error"]
    assert (error["Code"], refused.response["ResponseMetadata"]["HTTPStatusCode"]) == ("CodeStorageExceededException", 400)
    assert 1 <= i <= 4


def test_log_group_names_must_be_names(hardened):
    logs = hardened.client("logs")
    for bad in ("..", ".", "x" * 513, "a b"):
        with pytest.raises(ClientError) as info:
            logs.filter_log_events(logGroupName=bad)
        assert info.value.response["Error"]["Code"] == "InvalidParameterException", bad
    with pytest.raises(ClientError) as info:
        logs.filter_log_events(logGroupName="/aws/lambda/" + "x" * 300)  # a valid, long, missing name
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_concurrent_code_updates_conflict_as_on_lambda(lam):
    import concurrent.futures as cf

    name = create_function(lam, "def handler(e, c):\n    return 1\n")
    zips = [make_zip({"app.py": f"def handler(e, c):\n    return {i}\n"}) for i in range(6)]

    def update(z):
        try:
            lam.update_function_code(FunctionName=name, ZipFile=z)
            return "ok"
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with cf.ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(update, zips))
    assert "ok" in outcomes and set(outcomes) <= {"ok", "ResourceConflictException"}, outcomes


def test_unique_name_helper_is_unique():
    assert unique_name() != unique_name()
