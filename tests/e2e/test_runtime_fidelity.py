"""Runtime fidelity through boto3 against a real server: a label served by an older interpreter is
accepted, and says so in RuntimeVersionConfig and /health."""

from __future__ import annotations

import json
from urllib.request import urlopen

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, require


def health(server) -> dict:
    with urlopen(f"{server.endpoint}/health", timeout=10) as response:
        return json.loads(response.read())


def test_an_older_interpreter_behind_a_label_is_said_at_create_and_get(server, lam):
    doc = health(server)
    warned = sorted(doc.get("runtimes_warnings") or {})
    served = [r for r in ("nodejs22.x", "nodejs20.x", "nodejs18.x") if r in doc["runtimes"]]
    require(bool(served), "no Node.js on this machine")
    for runtime in served:
        name = create_function(lam, {"index.js": "exports.handler = async () => process.version;\n"},
                               handler="index.handler", Runtime=runtime)
        config = lam.get_function_configuration(FunctionName=name)
        error = config["RuntimeVersionConfig"].get("Error")
        if runtime in warned:
            assert error == {"ErrorCode": "OlderInterpreter", "Message": doc["runtimes_warnings"][runtime]}
            answer = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
            assert isinstance(answer, str), answer
            major = answer.lstrip("v").split(".")[0]
            assert runtime.startswith(f"nodejs{major}") is False  # it does run, on the older Node.js
        else:
            assert error is None


def test_python_functions_run_on_a_clean_interpreter_with_the_sdk(server, lam):
    """As on Lambda: the standard library, the function's own code, and boto3 (with what it
    imports); none of the server's packages."""
    code = {
        "app.py": """
import os, sys
def handler(event, context):
    found = {}
    for name in ("squall", "sqlalchemy", "uvicorn", "orjson", "boto3", "botocore", "six"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__file__", "") or "builtin"
        except ImportError:
            found[name] = None
    import boto3
    from botocore.exceptions import ClientError
    client = boto3.client("lambda")  # the server's API, with the execution role's credentials
    try:
        found["me"] = client.get_function_configuration(FunctionName=context.function_name)["FunctionName"]
    except ClientError as exc:  # the role may not read functions: the server answered, as the role
        found["me"] = exc.response["Error"]["Code"]
    found["site_on_path"] = [p for p in sys.path if "site-packages" in p]
    return found
""",
    }
    name = create_function(lam, code, Timeout=60, MemorySize=512)
    answer = lam.invoke(FunctionName=name)
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    assert body["squall"] is None and body["sqlalchemy"] is None and body["uvicorn"] is None and body["orjson"] is None
    assert body["boto3"] and body["botocore"] and body["me"] in (name, "AccessDeniedException")
    assert body["six"] and body["site_on_path"] == []
    # a function's own copy of an SDK module wins over the runtime's
    vendored = create_function(lam, {"app.py": "import six\ndef handler(e, c):\n    return six.__file__\n",
                                     "six.py": "VENDORED = True\n"})
    assert json.loads(lam.invoke(FunctionName=vendored)["Payload"].read()) == "/var/task/six.py"
    sdk = health(server)["python_runtime_sdk"]
    assert sdk["boto3"] and sdk["botocore"]


MEMORY_CODE = """
def handler(event, context):
    block = bytearray(event["mb"] << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)
"""

PLAIN = """
import json, sys
block = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) // 1024)
"""


def test_max_memory_used_counts_what_the_environment_really_holds(strongest_server):
    """REPORT's Max Memory Used: the environment's own pages plus those it maps from the zygote,
    compared with the peak resident memory of a plain process doing the same (VmHWM)."""
    import base64
    import re
    import subprocess
    import sys

    require(strongest_server.isolation == "linux", "the linux sandbox measures memory with a cgroup")
    lam = strongest_server.client("lambda")
    name = create_function(lam, MEMORY_CODE, MemorySize=512, Timeout=30)
    reported = {}
    for mb in (0, 100):
        answer = lam.invoke(FunctionName=name, Payload=json.dumps({"mb": mb}).encode(), LogType="Tail")
        tail = base64.b64decode(answer["LogResult"]).decode()
        reported[mb] = int(re.search(r"Max Memory Used: (\d+) MB", tail).group(1))
    plain = {mb: int(subprocess.run([sys.executable, "-s", "-c", PLAIN, str(mb)], capture_output=True, text=True,
                                    check=True, timeout=60).stdout) for mb in (0, 100)}
    assert abs(reported[100] - plain[100]) <= 0.1 * plain[100], (reported, plain)
    assert reported[0] >= plain[0] // 2, (reported, plain)  # the interpreter counts, not 1 MB


LOOP_CODE = """
import json
import boto3

client = boto3.client("lambda")

def handler(event, context):
    n = event.get("n", 0)
    if n < event.get("stop", 20):
        client.invoke(FunctionName=context.function_name, InvocationType="Event",
                      Payload=json.dumps({**event, "n": n + 1}))
    return n
"""


def test_a_recursive_loop_of_async_invocations_is_stopped_unless_allowed(server, lam):
    """A function that invokes itself asynchronously (boto3 sends its _X_AMZN_TRACE_ID): the 17th
    time the chain reaches it, Squall stops it and the on-failure destination says why."""
    from tests.e2e.test_async import Webhook

    iam = server.client("iam")
    role = iam.create_role(RoleName="loop-invoker", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="loop-invoker", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    hook = Webhook()
    try:
        name = create_function(lam, LOOP_CODE, Role=role["Role"]["Arn"], MemorySize=512, Timeout=30)
        assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={
            "OnSuccess": {"Destination": hook.url("ok")}, "OnFailure": {"Destination": hook.url("stopped")}})
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 0, "stop": 40}')
        (stopped,) = hook.wait("stopped", 1, timeout=120)
        assert stopped["requestContext"]["condition"] == "RecursiveInvocationDetected", json.dumps(stopped)
        assert stopped["requestPayload"]["n"] == 16  # 16 hops ran (n = 0…15), the 17th was stopped
        assert sorted(r["responsePayload"] for r in hook.wait("ok", 16, timeout=30)) == list(range(16))
        # Allow: the loop runs on (this one ends by itself at n = 20)
        assert lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
        assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 0, "stop": 20, "round": 2}')
        records = hook.wait("ok", 16 + 21, timeout=120)
        assert sorted(r["responsePayload"] for r in records[16:]) == list(range(21))
        assert len(hook.wait("stopped", 1, timeout=1)) == 1  # nothing more was stopped
    finally:
        hook.server.shutdown()


def test_runtime_management_and_scaling_configurations(lam):
    name = create_function(lam, "def handler(e, c):\n    return 1\n")
    got = lam.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "Auto" and got["FunctionArn"].endswith(f":function:{name}")
    served = lam.get_function_configuration(FunctionName=name)["RuntimeVersionConfig"]["RuntimeVersionArn"]
    put = lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=served)
    assert (put["UpdateRuntimeOn"], put["RuntimeVersionArn"]) == ("Manual", served)
    assert lam.get_runtime_management_config(FunctionName=name)["RuntimeVersionArn"] == served
    for bad in ({"UpdateRuntimeOn": "Manual"},
                {"UpdateRuntimeOn": "Manual", "RuntimeVersionArn": served[:-4] + "0000"},
                {"UpdateRuntimeOn": "Auto", "RuntimeVersionArn": served}):
        with pytest.raises(ClientError) as caught:
            lam.put_runtime_management_config(FunctionName=name, **bad)
        assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as caught:
        lam.get_runtime_management_config(FunctionName=name, Qualifier="7")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        lam.get_function_scaling_config(FunctionName=name, Qualifier="1")
    assert caught.value.response["Error"]["Code"] in ("InvalidParameterValueException", "ValidationException")
    with pytest.raises(ClientError) as caught:
        lam.get_function_recursion_config(FunctionName="nosuch-function")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
