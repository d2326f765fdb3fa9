"""The Python runtime (squall/runtimes/python/bootstrap.py), driven as the server drives it.

Each test starts bootstrap.py in a subprocess exactly per the process contract:
cwd = code dir, fd 3 = one end of a socketpair, fd 1 + fd 2 = one log pipe,
stdin = /dev/null, configuration in environment variables.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import squall.runtimes.python as runtime_pkg

BOOTSTRAP = Path(runtime_pkg.__file__).resolve().parent / "bootstrap.py"
# the interpreter that runs the worker (any python3.x a runtime may use)
WORKER_PYTHON = os.environ.get("SQUALL_TEST_WORKER_PYTHON") or sys.executable
HEADER = struct.Struct("!II")
NBSP = "\u00a0"
MAX_RESPONSE = 6291556
LOG_LINE = re.compile(
    r"^\[(?P<level>[A-Z]+)\]\t(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t(?P<rid>[^\t]*)\t(?P<msg>.*)$"
)
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


class Worker:
    """One bootstrap.py process and the server side of its channel and log pipe."""

    def __init__(self, code_dir: Path, handler: str, env: dict | None = None, fd3: bool = True):
        self.code_dir = code_dir
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        child_fd = child.fileno()
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(code_dir),
            "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "AWS_REGION": "us-east-1",
        }
        base_env.update(env or {})

        def put_channel_on_fd3():
            os.dup2(child_fd, 3)

        if fd3:
            fd_options = dict(
                # fd 3 is created by dup2 in the child, so it cannot be listed in
                # pass_fds (the parent may not have an fd 3); everything the
                # parent opened is non-inheritable, so nothing else leaks.
                close_fds=False,
                preexec_fn=put_channel_on_fd3,
            )
        else:  # the way the process sandbox does it
            base_env["_SQUALL_CHANNEL_FD"] = str(child_fd)
            fd_options = dict(pass_fds=(child_fd,), close_fds=True)
        self.channel_fd = 3 if fd3 else child_fd
        self.proc = subprocess.Popen(
            [WORKER_PYTHON, "-s", str(BOOTSTRAP)],
            cwd=str(code_dir),
            stdin=subprocess.DEVNULL,
            stdout=log_w,
            stderr=log_w,
            env=base_env,
            **fd_options,
        )
        child.close()
        os.close(log_w)
        os.set_blocking(log_r, False)
        self.sock = parent
        self.sock.settimeout(10)
        self.log_fd = log_r
        self.log = b""

    # -- channel
    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"channel closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def recv(self) -> tuple[dict, bytes]:
        meta_len, body_len = HEADER.unpack(self._recv_exact(HEADER.size))
        meta = json.loads(self._recv_exact(meta_len))
        return meta, self._recv_exact(body_len) if body_len else b""

    def send(self, meta: dict, body: bytes = b"") -> None:
        m = json.dumps(meta).encode()
        self.sock.sendall(HEADER.pack(len(m), len(body)) + m + body)

    def invoke(self, event=None, *, body: bytes | None = None, timeout_ms: int = 3000, **extra):
        rid = extra.pop("id", None) or str(uuid.uuid4())
        meta = {
            "t": "invoke",
            "id": rid,
            "deadline_ms": int(time.time() * 1000) + timeout_ms,
            "arn": ARN,
            "client_context": None,
            "identity": None,
            "trace_id": None,
        }
        meta.update(extra)
        if body is None:
            body = json.dumps(event if event is not None else {}).encode()
        self.send(meta, body)
        result_meta, result_body = self.recv()
        assert result_meta["t"] == "result"
        assert result_meta["id"] == rid
        return result_meta, result_body

    # -- log pipe
    def read_log(self) -> str:
        """Everything written to the log pipe so far (without waiting)."""
        while True:
            try:
                chunk = os.read(self.log_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.log += chunk
        return self.log.decode("utf-8")

    def drain_log_to_eof(self) -> str:
        os.set_blocking(self.log_fd, True)
        while True:
            chunk = os.read(self.log_fd, 65536)
            if not chunk:
                break
            self.log += chunk
        return self.log.decode("utf-8")

    def close(self):
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            os.close(self.log_fd)


@pytest.fixture
def code_dir(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    return d


@pytest.fixture
def start(code_dir):
    workers = []

    def _start(files: dict[str, str], handler: str = "app.handler", env: dict | None = None, fd3: bool = True):
        for name, src in files.items():
            p = code_dir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(src))
        w = Worker(code_dir, handler, env, fd3)
        workers.append(w)
        return w

    yield _start
    for w in workers:
        w.close()


def start_ready(start, files, handler="app.handler", env=None) -> Worker:
    w = start(files, handler, env)
    meta, body = w.recv()
    assert meta["t"] == "ready", (meta, body, w.read_log())
    assert body == b""
    return w


def expect_init_error(start, files, handler="app.handler", env=None):
    w = start(files, handler, env)
    meta, body = w.recv()
    assert meta["t"] == "init_error", (meta, body)
    assert w.proc.wait(timeout=5) == 1
    err = json.loads(body)
    assert meta["error_type"] == err["errorType"]
    return w, err, w.drain_log_to_eof()


# ---------------------------------------------------------------- happy path


def test_ready_then_result(start):
    w = start_ready(start, {"app.py": """
        def handler(event, context):
            return {"got": event, "n": 1}
    """})
    meta, body = w.invoke({"a": [1, 2]})
    assert meta["ok"] is True
    assert "content_type" not in meta
    assert json.loads(body) == {"got": {"a": [1, 2]}, "n": 1}
    assert isinstance(meta["max_rss_kb"], int) and meta["max_rss_kb"] > 0


def test_ready_reports_rss_and_eof_exits_zero(start):
    w = start({"app.py": "def handler(e, c):\n    return 1\n"}, "app.handler")
    meta, _ = w.recv()
    assert meta["t"] == "ready" and meta["max_rss_kb"] > 0
    w.sock.shutdown(socket.SHUT_WR)
    assert w.proc.wait(timeout=5) == 0
    assert w.drain_log_to_eof() == ""


def test_channel_fd_from_environment(start):
    """The sandbox names the channel fd in _SQUALL_CHANNEL_FD; user code sees neither."""
    w = start({"app.py": """
        import os
        def handler(event, context):
            fd = event["fd"]
            return {"env": "_SQUALL_CHANNEL_FD" in os.environ, "inheritable": os.get_inheritable(fd)}
    """}, fd3=False)
    assert w.recv()[0]["t"] == "ready"
    meta, body = w.invoke({"fd": w.channel_fd})
    assert meta["ok"], body
    assert json.loads(body) == {"env": False, "inheritable": False}


def test_none_result_is_null_and_bytes_pass_through(start):
    w = start_ready(start, {"app.py": """
        def handler(event, context):
            if event.get("raw"):
                return b"\\x00\\xffraw"
            return None
    """})
    meta, body = w.invoke({})
    assert meta["ok"] and body == b"null"
    meta, body = w.invoke({"raw": True})
    assert meta["ok"] is True
    assert meta["content_type"] == "application/unknown"
    assert body == b"\x00\xffraw"


def test_json_encoding_matches_runtime(start):
    w = start_ready(start, {"app.py": """
        import decimal
        def handler(event, context):
            return {"s": "caf\\u00e9", "d": decimal.Decimal("12"), "f": decimal.Decimal("1.5"), "t": (1, 2)}
    """}, env={"AWS_EXECUTION_ENV": "AWS_Lambda_python3.11"})
    meta, body = w.invoke({})
    assert meta["ok"]
    # python3.11 runtimes escape non-ASCII; default separators as json.dumps
    assert body == b'{"s": "caf\\u00e9", "d": 12, "f": 1.5, "t": [1, 2]}'


def test_empty_body_is_empty_object_event(start):
    w = start_ready(start, {"app.py": "def handler(event, context):\n    return {'event': event}\n"})
    meta, body = w.invoke(body=b"")
    assert meta["ok"] and json.loads(body) == {"event": {}}


def test_context_fields(start):
    w = start_ready(start, {"app.py": """
        import os, time
        def handler(event, context):
            first = context.get_remaining_time_in_millis()
            time.sleep(0.02)
            second = context.get_remaining_time_in_millis()
            cc = context.client_context
            return {
                "aws_request_id": context.aws_request_id,
                "invoked_function_arn": context.invoked_function_arn,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "first": first,
                "second": second,
                "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
                "client": None if cc is None else {
                    "installation_id": cc.client.installation_id,
                    "app_title": cc.client.app_title,
                    "app_version_name": cc.client.app_version_name,
                    "app_version_code": cc.client.app_version_code,
                    "app_package_name": cc.client.app_package_name,
                    "custom": cc.custom,
                    "env": cc.env,
                },
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            }
    """})
    client_context = {
        "client": {"installation_id": "i-1", "app_title": "T", "app_version_name": "1.0",
                   "app_version_code": "100", "app_package_name": "com.x"},
        "custom": {"k": "v"},
        "env": {"platform": "android"},
    }
    identity = {"cognitoIdentityId": "us-east-1:abc", "cognitoIdentityPoolId": "us-east-1:pool"}
    meta, body = w.invoke(
        {}, id="req-1", timeout_ms=5000,
        client_context=json.dumps(client_context), identity=json.dumps(identity),
        trace_id="Root=1-5e1b4151-5ac6c58f5b5daa6532e4b2c5;Parent=1;Sampled=0",
    )
    assert meta["ok"], body
    out = json.loads(body)
    assert out["aws_request_id"] == "req-1"
    assert out["invoked_function_arn"] == ARN
    assert out["function_name"] == "fn"
    assert out["function_version"] == "$LATEST"
    assert out["memory_limit_in_mb"] == "256"  # a string, as in the Lambda runtime
    assert out["log_group_name"] == "/aws/lambda/fn"
    assert out["log_stream_name"].startswith("2024/01/01/[$LATEST]")
    assert 4000 < out["first"] <= 5000
    assert out["second"] < out["first"]
    assert out["identity"] == ["us-east-1:abc", "us-east-1:pool"]
    assert out["client"] == {**client_context["client"], "custom": {"k": "v"}, "env": {"platform": "android"}}
    assert out["trace"].startswith("Root=1-5e1b4151")

    # absent client context / identity, no trace id; deadline in the past -> 0
    meta, body = w.invoke({}, timeout_ms=-1000)
    out = json.loads(body)
    assert out["client"] is None
    assert out["identity"] == [None, None]
    assert out["trace"] is None
    assert out["first"] == 0 and out["second"] == 0


def test_trace_id_follows_each_invocation(start):
    """_X_AMZN_TRACE_ID is rewritten only when it changes, but always matches the invocation."""
    w = start_ready(start, {"app.py": """
        import os
        def handler(event, context):
            seen = os.environ.get("_X_AMZN_TRACE_ID")
            if event.get("meddle"):  # user code may set it; the next invocation still gets its own
                os.environ["_X_AMZN_TRACE_ID"] = "set-by-the-function"
            return seen
    """})
    seen = []
    for trace, meddle in (("Root=1-a", False), ("Root=1-a", True), ("Root=1-a", False), ("Root=1-b", False),
                          (None, True), (None, False), ("Root=1-a", False)):
        meta, body = w.invoke({"meddle": meddle}, trace_id=trace)
        assert meta["ok"], body
        seen.append(json.loads(body))
    assert seen == ["Root=1-a", "Root=1-a", "Root=1-a", "Root=1-b", None, None, "Root=1-a"]


def test_module_state_persists(start):
    w = start_ready(start, {"app.py": """
        import os
        COUNT = 0
        def handler(event, context):
            global COUNT
            COUNT += 1
            return {"count": COUNT, "pid": os.getpid()}
    """})
    one = json.loads(w.invoke({})[1])
    two = json.loads(w.invoke({})[1])
    assert one["count"] == 1 and two["count"] == 2
    assert one["pid"] == two["pid"] == w.proc.pid


def test_nested_handler_path_and_sys_path(start):
    w = start_ready(start, {
        "src/pkg/mod.py": """
            import sys
            def fn(event, context):
                return {"path0": sys.path[0], "path": sys.path}
        """,
    }, handler="src/pkg/mod.fn")
    meta, body = w.invoke({})
    out = json.loads(body)
    assert out["path0"] == str(w.code_dir)
    assert str(BOOTSTRAP.parent) not in out["path"]


def test_runtime_imports_only_stdlib(start):
    # whatever the interpreter's site hooks (.pth files) import is not ours
    baseline = set(json.loads(subprocess.run(
        [WORKER_PYTHON, "-s", "-c", "import sys, json; print(json.dumps(list(sys.modules)))"],
        capture_output=True, check=True, env={"PATH": os.environ.get("PATH", "")},
    ).stdout))
    w = start_ready(start, {"app.py": """
        import os, sys, sysconfig
        STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
        def handler(event, context):
            foreign = []
            for name, mod in list(sys.modules.items()):
                f = getattr(mod, "__file__", None)
                if name in ("__main__", "app") or f is None:
                    continue  # builtin / frozen modules, and the script itself
                f = os.path.realpath(f)
                if not f.startswith(STDLIB + os.sep) or "site-packages" in f:
                    foreign.append(name)
            return sorted(foreign)
    """})
    meta, body = w.invoke({})
    assert meta["ok"]
    assert [m for m in json.loads(body) if m not in baseline] == []


# ---------------------------------------------------------------- logging


def test_logs_reach_pipe_before_result(start):
    w = start_ready(start, {"app.py": """
        import logging, sys
        logger = logging.getLogger("mine")
        def handler(event, context):
            print("hello from print")
            print("partial", end="")
            sys.stderr.write("to stderr\\n")
            logger.warning("warned %s", 42)
            logging.info("dropped at default level")
            context.log("via context.log\\n")
            return "done"
    """})
    meta, body = w.invoke({}, id="rid-123")
    assert meta["ok"] and json.loads(body) == "done"
    log = w.read_log()  # non-blocking: must already be in the pipe
    assert "hello from print\n" in log
    assert "partial" in log
    assert "to stderr\n" in log
    assert "via context.log\n" in log
    assert "dropped" not in log
    lines = [LOG_LINE.match(l) for l in log.splitlines() if l.startswith("[")]
    warned = [m for m in lines if m and m["msg"] == "warned 42"]
    assert len(warned) == 1
    assert warned[0]["level"] == "WARNING"
    assert warned[0]["rid"] == "rid-123"


def test_log_level_from_env(start):
    w = start_ready(start, {"app.py": """
        import logging
        def handler(event, context):
            logging.getLogger().debug("debug line")
            logging.info("info line")
            return 1
    """}, env={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    w.invoke({}, id="r2")
    log = w.read_log()
    assert re.search(r"^\[INFO\]\t\S+Z\tr2\tinfo line$", log, re.M)
    assert re.search(r"^\[DEBUG\]\t\S+Z\tr2\tdebug line$", log, re.M)


def test_json_log_format(start):
    w = start_ready(start, {"app.py": """
        import logging
        def handler(event, context):
            logging.getLogger("lg").warning("hi %s", "there", extra={"k": 1})
            raise KeyError("nope")
    """}, env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    meta, body = w.invoke({}, id="rj")
    assert meta["ok"] is False
    records = [json.loads(l) for l in w.read_log().splitlines() if l.startswith("{")]
    assert records[0]["level"] == "WARNING"
    assert records[0]["message"] == "hi there"
    assert records[0]["logger"] == "lg"
    assert records[0]["requestId"] == "rj"
    assert records[0]["k"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", records[0]["timestamp"])
    assert records[1]["level"] == "ERROR"
    assert records[1]["errorType"] == "KeyError"
    assert records[1]["errorMessage"] == "'nope'"
    assert records[1]["requestId"] == "rj"


# ---------------------------------------------------------------- invoke errors


def test_unhandled_exception(start, code_dir):
    w = start_ready(start, {"app.py": """
        def handler(event, context):
            if event.get("ok"):
                return "fine"
            raise ValueError("boom")
    """})
    meta, body = w.invoke({}, id="rid-err")
    assert meta["ok"] is False
    assert meta["error_type"] == "ValueError"
    assert meta["max_rss_kb"] > 0
    path = code_dir / "app.py"
    frame = f'  File "{path}", line 5, in handler\n    raise ValueError("boom")\n'
    assert json.loads(body) == {
        "errorMessage": "boom",
        "errorType": "ValueError",
        "requestId": "rid-err",
        "stackTrace": [frame],
    }
    assert list(json.loads(body)) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    expected_line = (
        "[ERROR] ValueError: boom\rTraceback (most recent call last):\r"
        f'{NBSP * 2}File "{path}", line 5, in handler\r'
        f'{NBSP * 4}raise ValueError("boom")\n'
    )
    assert expected_line in w.read_log()
    # the process keeps serving
    meta, body = w.invoke({"ok": True})
    assert meta["ok"] and json.loads(body) == "fine"


def test_exception_in_nested_user_frames(start, code_dir):
    w = start_ready(start, {
        "app.py": "import helper\ndef handler(event, context):\n    return helper.go()\n",
        "helper.py": "def go():\n    return {}['missing']\n",
    })
    meta, body = w.invoke({})
    err = json.loads(body)
    assert err["errorType"] == "KeyError"
    assert err["errorMessage"] == "'missing'"
    assert len(err["stackTrace"]) == 2
    assert err["stackTrace"][0].startswith(f'  File "{code_dir / "app.py"}", line 3, in handler')
    assert err["stackTrace"][1].startswith(f'  File "{code_dir / "helper.py"}", line 2, in go')


def test_marshal_error(start):
    w = start_ready(start, {"app.py": "def handler(event, context):\n    return {1, 2}\n"})
    meta, body = w.invoke({}, id="rid-m")
    assert meta["ok"] is False
    assert json.loads(body) == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": "rid-m",
        "stackTrace": [],
    }
    assert (
        "[ERROR] Runtime.MarshalError: Unable to marshal response: "
        "Object of type set is not JSON serializable\rTraceback (most recent call last):\n"
    ) in w.read_log()


def test_unmarshal_error(start):
    w = start_ready(start, {"app.py": "def handler(event, context):\n    return 1\n"})
    meta, body = w.invoke(body=b"{not json", id="rid-u")
    try:
        json.loads("{not json")
    except ValueError as e:
        reason = str(e)
    assert meta["ok"] is False
    assert json.loads(body) == {
        "errorMessage": f"Unable to unmarshal input: {reason}",
        "errorType": "Runtime.UnmarshalError",
        "requestId": "rid-u",
        "stackTrace": [],
    }


def test_response_size_limit(start):
    w = start_ready(start, {"app.py": """
        def handler(event, context):
            return "x" * event["n"]
    """})
    # JSON adds two quote characters: this payload is exactly at the limit
    meta, body = w.invoke({"n": MAX_RESPONSE - 2})
    assert meta["ok"] is True and len(body) == MAX_RESPONSE
    meta, body = w.invoke({"n": MAX_RESPONSE - 1})
    assert meta["ok"] is False
    assert meta["error_type"] == "Function.ResponseSizeTooLarge"
    assert json.loads(body) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_system_exit_in_handler_ends_process(start):
    w = start_ready(start, {"app.py": "import sys\ndef handler(event, context):\n    sys.exit(3)\n"})
    w.send({"t": "invoke", "id": "x", "deadline_ms": int(time.time() * 1000) + 3000, "arn": ARN})
    with pytest.raises(EOFError):
        w.recv()
    assert w.proc.wait(timeout=5) == 3


# ---------------------------------------------------------------- init errors


WARNING_RE = re.compile(
    r"^\[WARNING\]\t\S+Z\t\tLAMBDA_WARNING: Unhandled exception\. The most likely cause", re.M
)


def test_malformed_handler_name(start):
    _, err, log = expect_init_error(start, {"app.py": "def handler(e, c): pass\n"}, handler="app")
    assert err == {
        "errorMessage": "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
        "errorType": "Runtime.MalformedHandlerName",
        "requestId": "",
        "stackTrace": [],
    }
    assert WARNING_RE.search(log)
    assert (
        "[ERROR] Runtime.MalformedHandlerName: Bad handler 'app': not enough values to unpack "
        "(expected 2, got 1)\rTraceback (most recent call last):\n"
    ) in log


def test_import_module_error(start):
    _, err, log = expect_init_error(start, {"app.py": "import x\ndef handler(e, c): pass\n"})
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'app': No module named 'x'"
    assert err["stackTrace"] == []
    assert WARNING_RE.search(log)
    assert (
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'x'"
        "\rTraceback (most recent call last):\n"
    ) in log
    assert log.index("LAMBDA_WARNING") < log.index("[ERROR]")


def test_missing_module_with_path(start):
    _, err, _ = expect_init_error(start, {}, handler="src/pkg/missing.fn")
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'src/pkg/missing': No module named 'src'"


def test_syntax_error(start, code_dir):
    _, err, log = expect_init_error(start, {"app.py": "x = 1\ny = 2\nz = = 3\n"})
    assert err["errorType"] == "Runtime.UserCodeSyntaxError"
    assert err["errorMessage"] == "Syntax error in module 'app': invalid syntax (app.py, line 3)"
    assert err["stackTrace"] == [f'  File "{code_dir / "app.py"}" Line 3\n    z = = 3\n']
    assert "[ERROR] Runtime.UserCodeSyntaxError: Syntax error in module 'app': invalid syntax" in log


def test_handler_not_found(start):
    _, err, _ = expect_init_error(start, {"app.py": "def other(e, c): pass\n"}, handler="app.h")
    assert err == {
        "errorMessage": "Handler 'h' missing on module 'app'",
        "errorType": "Runtime.HandlerNotFound",
        "requestId": "",
        "stackTrace": [],
    }


def test_builtin_module_conflict(start):
    _, err, _ = expect_init_error(start, {}, handler="sys.handler")
    assert err["errorType"] == "Runtime.BuiltInModuleConflict"
    assert err["errorMessage"] == "Cannot use built-in module sys as a handler module"


def test_exception_at_import_keeps_its_type(start, code_dir):
    _, err, log = expect_init_error(start, {"app.py": "x = 1\nraise RuntimeError('bad config')\n"})
    assert err["errorType"] == "RuntimeError"
    assert err["errorMessage"] == "bad config"
    assert err["requestId"] == ""
    assert not any("bootstrap.py" in f for f in err["stackTrace"])
    assert err["stackTrace"][-1] == (
        f'  File "{code_dir / "app.py"}", line 2, in <module>\n    raise RuntimeError(\'bad config\')\n'
    )
    assert "[ERROR] RuntimeError: bad config\rTraceback (most recent call last):\r" in log


def test_print_at_init_is_logged_before_ready(start):
    w = start({"app.py": "print('init output')\ndef handler(e, c):\n    return 1\n"})
    meta, _ = w.recv()
    assert meta["t"] == "ready"
    assert w.read_log() == "init output\n"


def test_max_rss_is_per_invocation(start):
    w = start_ready(start, {"app.py": """
        def handler(event, context):
            block = bytearray(event["mb"] << 20)
            return len(block)
    """})
    big = w.invoke({"mb": 64})[0]["max_rss_kb"]
    small = w.invoke({"mb": 1})[0]["max_rss_kb"]
    assert big > 64 * 1024
    if Path("/proc/self/clear_refs").exists():
        assert small < big - 32 * 1024  # the peak was reset before the second call


# ---------------------------------------------------------------- rehearsal (spare sandboxes)

_REHEARSAL_SCRIPT = r"""
import importlib.util, json, logging, os, socket, struct, sys
spec = importlib.util.spec_from_file_location("bootstrap", sys.argv[1])
boot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(boot)
stand_in, task = sys.argv[2], sys.argv[3]
os.environ.update({"AWS_LAMBDA_FUNCTION_NAME": "stand-in", "LAMBDA_TASK_ROOT": "/nonexistent"})
before = (list(sys.path), list(logging.getLogger().handlers), logging.getLogger().level,
          {n: getattr(boot, n) for n in boot._PROCESS_STATE})
answered = boot.rehearse(stand_in, "stand_in")
after = (list(sys.path), list(logging.getLogger().handlers), logging.getLogger().level,
         {n: getattr(boot, n) for n in boot._PROCESS_STATE})
report = {"answered": answered, "restored": before == after, "module_gone": "stand_in" not in sys.modules,
          "finder_gone": stand_in not in sys.path_importer_cache}
# the real function, in the same process, afterwards
os.environ.update({"AWS_LAMBDA_FUNCTION_NAME": "real", "LAMBDA_TASK_ROOT": task, "_HANDLER": "app.handler"})
ours, theirs = socket.socketpair()
def frame(meta, body=b""):
    m = json.dumps(meta).encode()
    return struct.pack("!II", len(m), len(body)) + m + body
theirs.sendall(frame({"t": "invoke", "id": "r-1", "deadline_ms": 4102444800000}, b'{"k": 1}'))
theirs.shutdown(socket.SHUT_WR)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
report["exit"] = boot.main(ours.detach())
data = b""
while True:
    chunk = theirs.recv(65536)
    if not chunk:
        break
    data += chunk
frames = []
while data:
    ml, bl = struct.unpack_from("!II", data)
    frames.append((json.loads(data[8:8 + ml]), data[8 + ml:8 + ml + bl].decode()))
    data = data[8 + ml + bl:]
report["frames"] = frames
sys.stderr.write(json.dumps(report) + "\n")
"""


def _rehearse(tmp_path, stand_in_source):
    stand_in = tmp_path / "stand-in"
    stand_in.mkdir()
    (stand_in / "stand_in.py").write_text(stand_in_source)
    (stand_in / "marker").write_text("")
    task = tmp_path / "task"
    task.mkdir()
    (task / "app.py").write_text(
        "def handler(event, context):\n    return {'event': event, 'name': context.function_name, 'id': context.aws_request_id}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _REHEARSAL_SCRIPT, str(BOOTSTRAP), str(stand_in), str(task)],
        capture_output=True, timeout=30, env={"PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stderr.decode().strip().splitlines()[-1]), stand_in


def test_rehearsal_runs_a_stand_in_and_leaves_no_trace(tmp_path):
    report, stand_in = _rehearse(
        tmp_path,
        "import os\n"
        "def handler(event, context):\n"
        "    open(os.path.join(os.path.dirname(__file__), 'marker'), 'a').write(context.function_name + '\\n')\n"
        "    return event\n",
    )
    assert (stand_in / "marker").read_text() == "stand-in\n"  # it was imported and invoked
    assert report["answered"] and report["restored"] and report["module_gone"] and report["finder_gone"], report
    # the real function afterwards sees its own environment, not the stand-in's
    assert report["exit"] == 0
    (ready, _), (result, body) = report["frames"]
    assert ready["t"] == "ready" and result["ok"] is True
    assert json.loads(body) == {"event": {"k": 1}, "name": "real", "id": "r-1"}


def test_rehearsal_of_a_stand_in_that_fails_to_import_returns(tmp_path):
    report, _ = _rehearse(tmp_path, "raise RuntimeError('broken stand-in')\n")
    assert not report["answered"] and report["restored"] and report["module_gone"], report
    assert report["frames"][0][0]["t"] == "ready"
