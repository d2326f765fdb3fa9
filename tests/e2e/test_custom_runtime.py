"""Custom runtimes (``provided.al2023`` & co.): a function's own ``bootstrap`` against the Runtime API.

Driven through boto3 against a real server, on both sandbox backends: the shell bootstrap of
Lambda's custom-runtime tutorial (curl), one in Go built with the machine's toolchain, and the
failure modes (missing / non-executable bootstrap, exits, init errors, timeouts).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess

import pytest

from tests.conftest import create_function, require, start_server
from tests.contract import linux_unavailable

pytestmark = pytest.mark.timeout(180)

# The pattern of Lambda's custom runtime tutorial: curl against $AWS_LAMBDA_RUNTIME_API.
SHELL_BOOTSTRAP = r"""#!/bin/sh
set -eu
. "$LAMBDA_TASK_ROOT/$(echo "$_HANDLER" | cut -d. -f1).sh"
echo "init of $_HANDLER"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  DEADLINE=$(grep -Fi Lambda-Runtime-Deadline-Ms "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  ARN=$(grep -Fi Lambda-Runtime-Invoked-Function-Arn "$HEADERS" | tr -d '[:space:]' | cut -d: -f2-)
  case "$EVENT" in *exit*) exit 3 ;; esac
  if RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT" "$DEADLINE" "$ARN"); then
    curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$RESPONSE" >/dev/null
  else
    curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/error" \
      -H "Lambda-Runtime-Function-Error-Type: Shell.Failure" -d "$RESPONSE" >/dev/null
  fi
  rm -f "$HEADERS"
done
"""

SHELL_FUNCTION = r"""
handler () {
  echo "handling $1" 1>&2
  case "$1" in
    *fail*) echo "it failed"; return 1 ;;
    *sleep*) sleep 30 ;;
  esac
  printf '{"event": %s, "deadline": "%s", "arn": "%s", "api": "%s", "task": "%s", "uid": %s}' \
    "$1" "$2" "$3" "$AWS_LAMBDA_RUNTIME_API" "$LAMBDA_TASK_ROOT" "$(id -u)"
}
"""

GO_BOOTSTRAP = r"""
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	count := 0
	for {
		resp, err := http.Get(api + "next")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var event map[string]interface{}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Post(api+id+"/error", "application/json", bytes.NewBufferString(`{"errorType":"Go.Unmarshal","errorMessage":"bad event"}`))
			continue
		}
		count++
		fmt.Printf("go handled %d\n", count)
		out, _ := json.Marshal(map[string]interface{}{"go": true, "count": count, "echo": event, "id": id})
		r, err := http.Post(api+id+"/response", "application/json", bytes.NewReader(out))
		if err == nil {
			r.Body.Close()
		}
	}
}
"""


@pytest.fixture(scope="module", params=["process", "linux"])
def server(request, tmp_path_factory):
    if request.param == "linux":
        reason = linux_unavailable()
        require(reason is None, f"linux sandbox unavailable: {reason}")
    require(shutil.which("curl") is not None, "curl is not installed (apt install curl)")
    running = start_server(tmp_path_factory.mktemp(f"squall-provided-{request.param}"), "--isolation", request.param)
    running.isolation = request.param
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def invoke(lam, name, payload=None):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload if payload is not None else {}), LogType="Tail")
    body = response["Payload"].read()
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return json.loads(body) if body else None, response.get("FunctionError"), log


def shell_function(lam, **kwargs):
    return create_function(
        lam,
        {"bootstrap": SHELL_BOOTSTRAP, "function.sh": SHELL_FUNCTION},
        handler="function.handler",
        Runtime="provided.al2023",
        modes={"bootstrap": 0o755},
        **kwargs,
    )


def test_shell_bootstrap_serves_invocations(lam, server):
    name = shell_function(lam)
    body, error, log = invoke(lam, name, {"hello": "world"})
    assert error is None, (body, log)
    assert body["event"] == {"hello": "world"}
    assert int(body["deadline"]) > 0 and body["arn"].endswith(f":function:{name}")
    assert body["task"] == ("/var/task" if server.isolation == "linux" else body["task"])
    if server.isolation == "linux":
        assert body["api"] == "127.0.0.1:" + body["api"].rsplit(":", 1)[1] and body["uid"] != 0
    assert "init of function.handler" in log and 'handling {"hello": "world"}' in log
    assert "Init Duration" in log
    body, error, log = invoke(lam, name, {"second": 2})  # warm: the same bootstrap process
    assert error is None and body["event"] == {"second": 2}
    assert "init of" not in log and "Init Duration" not in log


def test_function_error_posted_by_the_runtime(lam):
    name = shell_function(lam)
    body, error, log = invoke(lam, name, {"please": "fail"})
    assert error == "Unhandled"
    assert body == {"errorMessage": "it failed", "errorType": "Shell.Failure"}
    body, error, _ = invoke(lam, name, {"ok": 1})  # the environment goes on
    assert error is None and body["event"] == {"ok": 1}


def test_bootstrap_that_exits_is_a_runtime_exit_error(lam):
    name = shell_function(lam)
    body, error, log = invoke(lam, name, {"please": "exit"})
    assert error == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")
    body, error, _ = invoke(lam, name, {"again": 1})  # a new environment
    assert error is None and body["event"] == {"again": 1}


def test_timeout_kills_the_bootstrap(lam):
    name = shell_function(lam, Timeout=1)
    body, error, log = invoke(lam, name, {"please": "sleep"})
    assert error == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in log
    body, error, _ = invoke(lam, name, {"after": 1})
    assert error is None and body["event"] == {"after": 1}


def test_missing_or_unusable_bootstrap_is_an_invalid_entrypoint(lam):
    missing = create_function(lam, {"function.sh": SHELL_FUNCTION}, handler="function.handler", Runtime="provided.al2023")
    body, error, log = invoke(lam, missing)
    assert error == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"
    assert "bootstrap" in body["errorMessage"]
    assert "Phase: init\tStatus: error\tError Type: Runtime.InvalidEntrypoint" in log
    not_executable = create_function(lam, {"bootstrap": SHELL_BOOTSTRAP, "function.sh": SHELL_FUNCTION},
                                     handler="function.handler", Runtime="provided.al2")
    body, error, _ = invoke(lam, not_executable)
    assert error == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"
    bad_interpreter = create_function(lam, {"bootstrap": "#!/no/such/shell\necho hi\n"}, handler="x",
                                      Runtime="provided", modes={"bootstrap": 0o755})
    body, error, _ = invoke(lam, bad_interpreter)
    assert error == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"


def test_init_error_posted_by_the_bootstrap(lam):
    bootstrap = r"""#!/bin/sh
echo "cannot start"
curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \
  -H "Lambda-Runtime-Function-Error-Type: Runtime.ConfigError" -d '{"errorMessage":"no config","errorType":"Runtime.ConfigError"}'
exit 1
"""
    name = create_function(lam, {"bootstrap": bootstrap}, handler="x", Runtime="provided.al2023", modes={"bootstrap": 0o755})
    body, error, log = invoke(lam, name)
    assert error == "Unhandled" and body == {"errorMessage": "no config", "errorType": "Runtime.ConfigError"}
    assert "cannot start" in log and "Error Type: Runtime.ConfigError" in log


def test_bootstrap_that_exits_during_init(lam):
    name = create_function(lam, {"bootstrap": "#!/bin/sh\necho bye\nexit 4\n"}, handler="x", Runtime="provided.al2023",
                           modes={"bootstrap": 0o755})
    body, error, log = invoke(lam, name)
    assert error == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("exit status 4") and "bye" in log


def test_runtime_api_refuses_other_processes(lam, server):
    """The Runtime API listens on the loopback of the environment's own network namespace, at
    Lambda's address: nothing outside the environment (the host, other functions) reaches it."""
    if server.isolation != "linux":
        pytest.skip("the process backend does not isolate functions")
    name = shell_function(lam)
    body, error, _ = invoke(lam, name, {"first": 1})
    assert error is None
    assert body["api"] == "127.0.0.1:9001"
    try:
        with socket.create_connection(("127.0.0.1", 9001), timeout=5) as intruder:  # the host's own 9001
            intruder.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            intruder.settimeout(2)
            try:
                answer = intruder.recv(4096)
            except OSError:
                answer = b""
            assert b"lambda-runtime-aws-request-id" not in answer.lower()
    except ConnectionRefusedError:
        pass  # nothing listens there on the host
    body, error, _ = invoke(lam, name, {"still": "works"})
    assert error is None and body["event"] == {"still": "works"}


def test_runtime_api_reachable_without_network(lam, server):
    if server.isolation != "linux":
        pytest.skip("only the linux backend cuts the network")
    name = shell_function(lam, Tags={"squall:network": "none"})
    body, error, log = invoke(lam, name, {"offline": True})
    assert error is None, (body, log)
    assert body["event"] == {"offline": True} and body["api"] == "127.0.0.1:9001"  # Lambda's own address


def test_go_bootstrap(lam, server, tmp_path):
    go = shutil.which("go")
    require(go is not None, "Go is not installed (apt install golang-go)")
    (tmp_path / "main.go").write_text(GO_BOOTSTRAP)
    (tmp_path / "go.mod").write_text("module bootstrap\n\ngo 1.19\n")
    env = {**os.environ, "GOPROXY": "off", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOCACHE": str(tmp_path / "cache"),
           "GOPATH": str(tmp_path / "gopath"), "HOME": str(tmp_path)}
    subprocess.run([go, "build", "-o", "bootstrap", "."], cwd=tmp_path, env=env, check=True, timeout=170)
    binary = (tmp_path / "bootstrap").read_bytes()
    name = create_function(lam, {"bootstrap": binary}, handler="unused", Runtime="provided.al2023", modes={"bootstrap": 0o755})
    for count in (1, 2):
        body, error, log = invoke(lam, name, {"n": count})
        assert error is None, (body, log)
        assert body["go"] is True and body["count"] == count and body["echo"] == {"n": count}
        assert f"go handled {count}" in log
        used = int(re.search(r"Max Memory Used: (\d+) MB", log).group(1))
        if server.isolation == "process":  # without cgroups: the runtime process's VmHWM (a Go binary: MBs)
            assert used >= 2, log


def _package_files(*names: str) -> dict[str, bytes]:
    """The installed packages ``names`` (with their .so files) as zip entries, like `pip install -t`."""
    import importlib.util
    from pathlib import Path

    files: dict[str, bytes] = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        require(spec is not None and spec.origin is not None, f"{name} is not installed (pip install awslambdaric)")
        origin = Path(spec.origin)
        root = origin.parent if origin.name == "__init__.py" else origin
        base = root.parent
        paths = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else [root]
        for path in paths:
            if "__pycache__" not in path.parts:
                files[str(path.relative_to(base))] = path.read_bytes()
    return files


def test_awslambdaric_packaged_in_a_zip(lam):
    """The official Python runtime interface client, shipped in the function's zip with a bootstrap."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    require(python is not None, "no python3 on the default PATH for a custom runtime")
    files = _package_files("awslambdaric", "runtime_client", "simplejson", "snapshot_restore_py")
    files["bootstrap"] = '#!/bin/sh\nexec python3 -m awslambdaric "$_HANDLER"\n'
    files["app.py"] = (
        "def ok(event, context):\n"
        "    print('from the ric', context.aws_request_id)\n"
        "    return {'echo': event, 'rid': context.aws_request_id, 'left': context.get_remaining_time_in_millis() > 0}\n"
        "def fail(event, context):\n"
        "    raise ValueError('ric boom')\n"
    )
    modes = {"bootstrap": 0o755}
    ok = create_function(lam, files, handler="app.ok", Runtime="provided.al2023", modes=modes, Timeout=30)
    for n in (1, 2):
        response = lam.invoke(FunctionName=ok, Payload=json.dumps({"n": n}), LogType="Tail")
        body = json.loads(response["Payload"].read())
        log = base64.b64decode(response["LogResult"]).decode()
        assert "FunctionError" not in response, (body, log[:3000])
        assert body == {"echo": {"n": n}, "rid": response["ResponseMetadata"]["RequestId"], "left": True}
        assert f"from the ric {body['rid']}" in log
    failing = create_function(lam, files, handler="app.fail", Runtime="provided.al2023", modes=modes, Timeout=30)
    body, error, _ = invoke(lam, failing)
    assert error == "Unhandled" and body["errorType"] == "ValueError" and body["errorMessage"] == "ric boom"
