"""Synchronous invoke through boto3: results, context, logs, errors, limits, hostile handlers."""

from __future__ import annotations

import base64
import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, processes_with_arg, unique_name
from tests.e2e.test_control_plane import error_of


def invoke(lam, name, payload=None, **kwargs):
    args = {"FunctionName": name, **kwargs}
    if payload is not None:
        args["Payload"] = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    response = lam.invoke(**args)
    body = response["Payload"].read()
    return response, body


def test_echo_and_headers(lam):
    name = create_function(lam, "def handler(event, context):\n    return {'got': event}\n")
    response, body = invoke(lam, name, {"n": 1})
    assert response["StatusCode"] == 200
    assert json.loads(body) == {"got": {"n": 1}}
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    # Lambda uses the API request id as the invocation's request id.
    assert response["ResponseMetadata"]["RequestId"]


def test_context_and_environment(lam):
    code = """
import os
def handler(event, context):
    keys = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_EXECUTION_ENV",
            "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER", "TZ", "LANG", "PATH", "MY_VAR"]
    return {
        "env": {k: os.environ.get(k) for k in keys},
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "group": context.log_group_name,
        "stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client": context.client_context and context.client_context.custom,
        "cwd": os.getcwd(),
        "tmp_writable": os.access("/tmp", os.W_OK),
    }
"""
    name = create_function(lam, code, MemorySize=256, Timeout=7, Environment={"Variables": {"MY_VAR": "mine"}})
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response, body = invoke(lam, name, {}, ClientContext=client_context)
    result = json.loads(body)
    env = result["env"]
    assert result["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert result["function_name"] == name == env["AWS_LAMBDA_FUNCTION_NAME"]
    assert result["function_version"] == "$LATEST" == env["AWS_LAMBDA_FUNCTION_VERSION"]
    assert result["arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert result["memory"] == "256" == env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    assert result["group"] == f"/aws/lambda/{name}" == env["AWS_LAMBDA_LOG_GROUP_NAME"]
    assert result["stream"] == env["AWS_LAMBDA_LOG_STREAM_NAME"] and "[$LATEST]" in result["stream"]
    assert 0 < result["remaining"] <= 7000
    assert result["identity"] == [None, None]
    assert result["client"] == {"k": "v"}
    assert env["AWS_REGION"] == "us-east-1" and env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["_HANDLER"] == "app.handler" and env["MY_VAR"] == "mine"
    assert env["TZ"] == ":UTC" and env["LANG"] == "en_US.UTF-8" and env["PATH"]
    assert result["cwd"] == env["LAMBDA_TASK_ROOT"]
    assert result["tmp_writable"]


def test_module_state_persists_when_warm(lam):
    code = "count = 0\ndef handler(event, context):\n    global count\n    count += 1\n    return count\n"
    name = create_function(lam, code)
    assert [json.loads(invoke(lam, name)[1]) for _ in range(3)] == [1, 2, 3]


def test_log_tail(lam):
    code = """
import logging, sys
def handler(event, context):
    print("hello from print")
    print("to stderr", file=sys.stderr)
    logging.getLogger().warning("a warning")
    return 1
"""
    name = create_function(lam, code)
    response, _ = invoke(lam, name, LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id} Version: $LATEST" in tail
    assert "hello from print" in tail and "to stderr" in tail
    assert "[WARNING]" in tail and "a warning" in tail
    assert f"END RequestId: {request_id}" in tail
    report = [line for line in tail.splitlines() if line.startswith("REPORT")][0]
    for field in ("Duration:", "Billed Duration:", "Memory Size: 128 MB", "Max Memory Used:", "Init Duration:"):
        assert field in report
    # Warm: no Init Duration.
    response, _ = invoke(lam, name, LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "Init Duration" not in tail
    # Without LogType there is no log header.
    response, _ = invoke(lam, name)
    assert "LogResult" not in response


def test_log_tail_is_last_4kb(lam):
    name = create_function(lam, "def handler(e, c):\n    print('x' * 100000)\n    return 1\n")
    response, _ = invoke(lam, name, LogType="Tail")
    tail = base64.b64decode(response["LogResult"])
    assert len(tail) <= 4096 and b"REPORT RequestId" in tail


def test_unhandled_error(lam):
    code = "def handler(event, context):\n    raise ValueError('boom')\n"
    name = create_function(lam, code)
    response, body = invoke(lam, name, LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(body)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom"
    assert error["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any("raise ValueError('boom')" in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: boom" in base64.b64decode(response["LogResult"]).decode()
    # The environment survives a handled error.
    assert invoke(lam, name)[0]["FunctionError"] == "Unhandled"


@pytest.mark.parametrize(
    "files, handler, error_type",
    [
        ({"app.py": "import not_a_module\ndef handler(e, c): pass\n"}, "app.handler", "Runtime.ImportModuleError"),
        ({"app.py": "def handler(e, c): pass\n"}, "app.missing", "Runtime.HandlerNotFound"),
        ({"app.py": "def handler(e, c): pass\n"}, "nodot", "Runtime.MalformedHandlerName"),
        ({"app.py": "def handler(e, c):\n  return (\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
        ({"app.py": "def handler(e, c):\n    return {1, 2}\n"}, "app.handler", "Runtime.MarshalError"),
        ({"lib/deep/mod.py": "def fn(e, c):\n    return 'deep'\n"}, "lib/deep/mod.fn", None),
    ],
)
def test_runtime_errors(lam, files, handler, error_type):
    name = create_function(lam, files, handler=handler)
    response, body = invoke(lam, name)
    if error_type is None:
        assert json.loads(body) == "deep"
        return
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(body)["errorType"] == error_type


def test_invalid_json_payload(lam):
    name = create_function(lam, "def handler(e, c):\n    return e\n")
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    code, status, message = error_of(excinfo)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert message.startswith("Could not parse request body into json")


def test_request_too_large(lam):
    name = create_function(lam, "def handler(e, c):\n    return 1\n")
    payload = json.dumps("x" * (6 * 1024 * 1024 + 10))
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Payload=payload)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("RequestEntityTooLargeException", 413)
    assert message == "Request must be smaller than 6291456 bytes for the InvokeFunction operation"


def test_response_too_large(lam):
    name = create_function(lam, "def handler(e, c):\n    return 'x' * (7 * 1024 * 1024)\n", MemorySize=512)
    response, body = invoke(lam, name)
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(body)["errorType"] == "Function.ResponseSizeTooLarge"


def test_dry_run(lam):
    name = create_function(lam, "def handler(e, c):\n    raise Exception('must not run')\n")
    response = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert response["StatusCode"] == 204


def test_bad_client_context(lam):
    name = create_function(lam, "def handler(e, c):\n    return 1\n")
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, ClientContext="%%%not-base64")
    assert error_of(excinfo)[:2] == ("InvalidParameterValueException", 400)


def test_timeout_kills_everything(lam, server):
    code = """
import subprocess, time
def handler(event, context):
    subprocess.Popen(["sleep", "3071"])
    subprocess.Popen(["setsid", "sleep", "3072"])
    time.sleep(60)
"""
    name = create_function(lam, code, Timeout=1)
    started = time.monotonic()
    response, body = invoke(lam, name, LogType="Tail")
    assert time.monotonic() - started < 10
    error = json.loads(body)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in base64.b64decode(response["LogResult"]).decode()
    time.sleep(0.3)
    assert processes_with_arg("3071", "3072") == []
    # The next invoke gets a fresh environment.
    assert json.loads(invoke(lam, name)[1])["errorType"] == "Sandbox.Timedout"


@pytest.mark.parametrize(
    "code, expected",
    [
        ("import os\ndef handler(e, c):\n    os._exit(3)\n", "exit status 3"),
        ("import os, signal\ndef handler(e, c):\n    os.kill(os.getpid(), signal.SIGSEGV)\n", "signal: segmentation fault"),
        ("import sys\ndef handler(e, c):\n    sys.stdout.flush(); import ctypes; ctypes.string_at(0)\n", "signal: segmentation fault"),
    ],
)
def test_crashes_are_runtime_exit_errors(lam, server, code, expected):
    name = create_function(lam, code)
    response, body = invoke(lam, name)
    error = json.loads(body)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(f"Runtime exited with error: {expected}")
    # The server stays healthy and the function works again on a new environment.
    assert _health(server)["status"] == "ok"


def test_huge_output_does_not_hurt_the_server(lam, server):
    code = "import sys\ndef handler(e, c):\n    for _ in range(100):\n        sys.stdout.write('y' * (1 << 20))\n    return 'done'\n"
    # a whole vCPU (Lambda's 1,769 MB): at 128 MB the CPU quota alone makes 100 MB of output take seconds
    name = create_function(lam, code, MemorySize=1769, Timeout=30)
    response, body = invoke(lam, name, LogType="Tail")
    assert json.loads(body) == "done"
    assert "dropped" in base64.b64decode(response["LogResult"]).decode()
    assert _health(server)["status"] == "ok"


def test_parallel_invokes_use_parallel_environments(lam):
    import concurrent.futures

    code = "import os, time\ndef handler(e, c):\n    time.sleep(0.5)\n    return os.getpid()\n"
    name = create_function(lam, code)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(lambda _: json.loads(invoke(lam, name)[1]), range(4)))
    assert len(set(pids)) == 4


def test_unknown_function_invoke(lam):
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=unique_name("nope"))
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)


def _health(server):
    import urllib.request

    with urllib.request.urlopen(f"{server.endpoint}/health") as response:
        return json.loads(response.read())


def test_deployed_modules_are_imported_from_bytecode_compiled_at_deploy(lam):
    """/var/task is read-only: the bytecode must exist before the first cold start."""
    code = {
        "app.py": "import helpers.util\n"
        "import os, sys\n"
        "def handler(event, context):\n"
        "    mods = [sys.modules['app'], helpers.util]\n"
        "    return {m.__name__: os.path.isfile(m.__cached__) for m in mods}\n",
        "helpers/__init__.py": "",
        "helpers/util.py": "VALUE = 42\n",
        "broken_py2.py": "print 'not imported, not compilable'\n",  # does not stop the deploy
    }
    name = create_function(lam, code)
    response, body = invoke(lam, name, {})
    assert "FunctionError" not in response, body
    assert json.loads(body) == {"app": True, "helpers.util": True}


def test_a_custom_log_group_is_where_the_logs_go(lam, server):
    group = f"custom/{unique_name('group')}"
    name = create_function(lam, "def handler(e, c):\n    print('to the custom group')\n    return 1\n",
                           LoggingConfig={"LogGroup": group})
    config = lam.get_function_configuration(FunctionName=name)
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": group}
    invoke(lam, name)
    logs = server.client("logs")
    messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
    assert any("to the custom group" in m for m in messages), messages
    from tests.e2e.test_cli import squall

    shown = squall(server.endpoint, "logs", name, "--since", "5m")
    assert shown.returncode == 0 and "to the custom group" in shown.stdout, shown.stderr
