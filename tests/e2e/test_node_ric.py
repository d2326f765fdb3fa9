"""AWS's own Node.js runtime interface client (npm ``aws-lambda-ric``) as a custom runtime's ``bootstrap``.

The RIC is what Lambda's container images for Node run: its native client (aws-lambda-cpp over a
bundled libcurl, compiled by npm's install scripts) talks to the Runtime API, so this checks Squall's
Runtime API against a client that Squall did not write. The npm install (about 1-2 minutes of C/C++
compiling) is cached per RIC version and Node ABI under ``~/.cache/squall-tests/node-ric``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import create_function, require

pytestmark = pytest.mark.timeout(900)  # the first run compiles the RIC

RIC_VERSION = "4.0.2"

BOOTSTRAP = """#!/bin/sh
exec node "$LAMBDA_TASK_ROOT/node_modules/aws-lambda-ric/index.mjs" "$_HANDLER"
"""

HANDLER = """\
let count = 0;

export const handler = async (event, context) => {
  count += 1;
  console.log("ric handling", JSON.stringify(event));
  if (event.fail) {
    const error = new Error(`failing on purpose: ${event.fail}`);
    error.name = "CustomNodeError";
    throw error;
  }
  return {
    event,
    count,
    pid: process.pid,
    node: process.version,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext ?? null,
    traceId: process.env._X_AMZN_TRACE_ID ?? null,
  };
};
"""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "squall-tests" / "node-ric"


def _install_ric() -> Path:
    """``npm install aws-lambda-ric`` once per RIC version and Node ABI; the ``node_modules`` folder."""
    require(shutil.which("node") is not None, "node is not installed (apt install nodejs)")
    require(shutil.which("npm") is not None, "npm is not installed (apt install npm)")
    for tool in ("make", "cmake", "g++"):
        require(shutil.which(tool) is not None, f"{tool} is needed to build aws-lambda-ric (apt install build-essential cmake)")
    abi = subprocess.run(["node", "-p", "process.versions.modules"], capture_output=True, text=True, check=True).stdout.strip()
    target = _cache_root() / f"{RIC_VERSION}-abi{abi}"
    addon = target / "node_modules" / "aws-lambda-ric" / "rapid-client.node"
    if addon.is_file():
        return target / "node_modules"
    shutil.rmtree(target, ignore_errors=True)  # a broken copy
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        (work / "package.json").write_text(json.dumps({"name": "squall-node-ric-test", "version": "1.0.0", "private": True}))
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--foreground-scripts", f"aws-lambda-ric@{RIC_VERSION}"],
            cwd=work, capture_output=True, text=True, timeout=840,
        )
        built = (work / "node_modules" / "aws-lambda-ric" / "rapid-client.node").is_file()
        require(result.returncode == 0 and built,
                f"npm install aws-lambda-ric@{RIC_VERSION} failed (exit {result.returncode}):\n"
                + (result.stdout + result.stderr)[-3000:])
        try:
            work.rename(target)  # another session may have won the race: then use its copy
        except OSError:
            pass
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    assert addon.is_file()
    return target / "node_modules"


@pytest.fixture(scope="module")
def ric_files() -> dict[str, bytes]:
    """The function's zip contents besides its handler: the bootstrap and the installed node_modules."""
    node_modules = _install_ric()
    files: dict[str, bytes] = {"bootstrap": BOOTSTRAP.encode()}
    for path in sorted(node_modules.rglob("*")):
        rel = path.relative_to(node_modules)
        if rel.parts[0] == ".bin" or path.is_symlink() or not path.is_file():
            continue  # .bin holds symlinks; the bootstrap starts index.mjs by its path
        files[f"node_modules/{rel.as_posix()}"] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def lam(strongest_server):
    return strongest_server.client("lambda")


def ric_function(lam, ric_files, handler: str = "index.handler", code: str = HANDLER, **kwargs) -> str:
    return create_function(
        lam,
        {**ric_files, "index.mjs": code},
        handler=handler,
        Runtime="provided.al2023",
        modes={"bootstrap": 0o755},
        **kwargs,
    )


def invoke(lam, name, payload, **kwargs):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload), LogType="Tail", **kwargs)
    body = response["Payload"].read()
    log = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return response, (json.loads(body) if body else None), log


@pytest.mark.parametrize("next_client", ["native", "node-http"])
def test_ric_serves_invocations_with_context(lam, ric_files, next_client):
    # "node-http": the RIC's alternative client, node:http instead of aws-lambda-cpp for .../invocation/next
    env = {"AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1": "true"} if next_client == "node-http" else {}
    name = ric_function(lam, ric_files, MemorySize=256, Timeout=30, Environment={"Variables": env})
    client_context = base64.b64encode(json.dumps({"custom": {"who": "squall"}}).encode()).decode()
    response, body, log = invoke(lam, name, {"hello": "ric"}, ClientContext=client_context)
    assert response.get("FunctionError") is None, (body, log)
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body["event"] == {"hello": "ric"} and body["count"] == 1
    assert body["awsRequestId"] == request_id
    assert body["invokedFunctionArn"].endswith(f":function:{name}")
    assert body["functionName"] == name and body["functionVersion"] == "$LATEST"
    assert body["memoryLimitInMB"] == "256"
    assert body["logGroupName"] == f"/aws/lambda/{name}" and body["logStreamName"]
    assert 0 < body["remaining"] <= 30_000
    assert body["clientContext"]["custom"] == {"who": "squall"}
    # The RIC's console: "<time>\t<request id>\tINFO\t<message>"
    assert f"\t{request_id}\tINFO\tric handling {{\"hello\":\"ric\"}}" in log, log
    assert f"START RequestId: {request_id}" in log and f"END RequestId: {request_id}" in log

    response2, body2, log2 = invoke(lam, name, {"again": 2})  # warm: the same RIC process
    assert response2.get("FunctionError") is None, (body2, log2)
    assert body2["event"] == {"again": 2} and body2["count"] == 2 and body2["pid"] == body["pid"]
    assert body2["awsRequestId"] == response2["ResponseMetadata"]["RequestId"] != request_id
    assert "Init Duration" not in log2


def test_handler_error_reported_by_the_ric(lam, ric_files):
    name = ric_function(lam, ric_files)
    response, body, log = invoke(lam, name, {"fail": "boom"})
    assert response["FunctionError"] == "Unhandled", (body, log)
    assert body["errorType"] == "CustomNodeError"
    assert body["errorMessage"] == "failing on purpose: boom"
    assert isinstance(body["trace"], list) and body["trace"][0].startswith("CustomNodeError: failing on purpose")
    assert "Invoke Error" in log and "CustomNodeError" in log
    response, body, _ = invoke(lam, name, {"after": "error"})  # the environment goes on
    assert response.get("FunctionError") is None and body["event"] == {"after": "error"} and body["count"] == 2


def test_missing_handler_module_is_an_init_error(lam, ric_files):
    name = ric_function(lam, ric_files, handler="nosuchmodule.handler")
    response, body, log = invoke(lam, name, {})
    assert response["FunctionError"] == "Unhandled", (body, log)
    assert body["errorType"] == "Runtime.ImportModuleError", body
    assert "nosuchmodule" in body["errorMessage"]
