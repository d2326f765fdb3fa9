"""Versions, aliases and provisioned concurrency through boto3 and the AWS CLI (issue 10)."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import math
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, make_zip, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function"


def code(tag: str) -> bytes:
    return make_zip({"app.py": f"""
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {{"tag": {tag!r}, "version": context.function_version, "arn": context.invoked_function_arn,
            "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}}
"""})


def invoke(lam, name, payload=None, **kwargs):
    response = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}), **kwargs)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return response, body


def error_of(excinfo) -> tuple[str, int, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"], error.get("Message", "")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda", max_pool_connections=16)


@pytest.fixture(scope="module")
def published(lam):
    """A function with versions 1 (tag v1) and 2 (tag v2), and $LATEST at v2."""
    name = unique_name("ver")
    created = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                                  Code={"ZipFile": code("v1")}, Publish=True)
    assert (created["Version"], created["FunctionArn"], created["State"]) == ("1", f"{ACCOUNT_ARN}:{name}", "Pending")
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1", WaiterConfig={"Delay": 0.1})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})  # never updated: Successful
    lam.update_function_code(FunctionName=name, ZipFile=code("v2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
    second = lam.publish_version(FunctionName=name, Description="second")
    assert (second["Version"], second["FunctionArn"], second["State"]) == ("2", f"{ACCOUNT_ARN}:{name}:2", "Active")
    return name


def test_publishing_unchanged_code_returns_the_existing_version(lam, published):
    again = lam.publish_version(FunctionName=published, Description="ignored")
    assert again["Version"] == "2" and again["Description"] == "second"
    versions = lam.list_versions_by_function(FunctionName=published)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[0]["FunctionArn"].endswith(":$LATEST")
    assert "State" not in versions[1]  # list items leave the states out, as on AWS


def test_invoke_by_version_partial_and_full_arn_and_latest(lam, published):
    for name, qualifier, tag, version in [
        (published, "1", "v1", "1"),
        (f"{published}:2", None, "v2", "2"),
        (f"123456789012:function:{published}:1", None, "v1", "1"),
        (f"{ACCOUNT_ARN}:{published}:1", None, "v1", "1"),
        (published, "$LATEST", "v2", "$LATEST"),
        (published, None, "v2", "$LATEST"),
    ]:
        extra = {"Qualifier": qualifier} if qualifier else {}
        response, body = invoke(lam, name, **extra)
        assert (body["tag"], body["version"], response["ExecutedVersion"]) == (tag, version, version), name
    config = lam.get_function_configuration(FunctionName=published, Qualifier="1")
    assert (config["Version"], config["FunctionArn"]) == ("1", f"{ACCOUNT_ARN}:{published}:1")


def test_aliases_move_and_the_next_invoke_follows(lam, published):
    alias = lam.create_alias(FunctionName=published, Name="live", FunctionVersion="1")
    assert alias["AliasArn"] == f"{ACCOUNT_ARN}:{published}:live"
    response, body = invoke(lam, published, Qualifier="live")
    assert (body["tag"], response["ExecutedVersion"], body["arn"]) == ("v1", "1", f"{ACCOUNT_ARN}:{published}:live")
    updated = lam.update_alias(FunctionName=published, Name="live", FunctionVersion="2", RevisionId=alias["RevisionId"])
    assert updated["RevisionId"] != alias["RevisionId"]
    response, body = invoke(lam, f"{published}:live")
    assert (body["tag"], response["ExecutedVersion"]) == ("v2", "2")
    got = lam.get_function(FunctionName=published, Qualifier="live")["Configuration"]
    assert (got["Version"], got["FunctionArn"]) == ("2", f"{ACCOUNT_ARN}:{published}:live")
    names = [a["Name"] for a in lam.list_aliases(FunctionName=published, FunctionVersion="2")["Aliases"]]
    assert names == ["live"]
    with pytest.raises(ClientError) as excinfo:
        lam.delete_function(FunctionName=published, Qualifier="2")
    assert error_of(excinfo) == (
        "ResourceConflictException", 409, "Unable to delete version because the following aliases reference it: [live]"
    )
    lam.delete_alias(FunctionName=published, Name="live")


def test_weighted_routing_matches_the_weight(lam, published):
    lam.create_alias(FunctionName=published, Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    n = 2000

    def one(_):
        response = lam.invoke(FunctionName=published, Qualifier="canary")
        response["Payload"].read()
        return response["ExecutedVersion"]

    with cf.ThreadPoolExecutor(8) as pool:
        executed = list(pool.map(one, range(n)))
    share = executed.count("2") / n
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert set(executed) == {"1", "2"}
    assert abs(share - 0.3) < 4.5 * sigma, share  # within statistical error
    lam.delete_alias(FunctionName=published, Name="canary")


def test_deleting_a_version_and_a_missing_one(lam, published):
    lam.delete_function(FunctionName=published, Qualifier="1")
    lam.delete_function(FunctionName=published, Qualifier="1")  # gone: 204 all the same, as on AWS
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=published, Qualifier="1")
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
    third = lam.update_function_code(FunctionName=published, ZipFile=code("v3"), Publish=True)
    assert (third["Version"], third["FunctionArn"]) == ("3", f"{ACCOUNT_ARN}:{published}:3")  # numbers are not reused
    lam.get_waiter("published_version_active").wait(FunctionName=published, Qualifier="3", WaiterConfig={"Delay": 0.1})
    assert invoke(lam, published, Qualifier="3")[1]["tag"] == "v3"


def test_provisioned_concurrency_ready_then_no_cold_start_and_spillover(lam):
    name = unique_name("pc")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": code("pc")}, Timeout=30, Publish=True)
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1", WaiterConfig={"Delay": 0.1})
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as excinfo:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
    assert error_of(excinfo)[:2] == ("InvalidParameterValueException", 400)
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2 and put["Status"] in ("IN_PROGRESS", "READY")
    deadline = time.monotonic() + 30
    while True:
        config = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
        if config["Status"] == "READY" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert config["Status"] == "READY" and config["AllocatedProvisionedConcurrentExecutions"] == 2, config
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ACCOUNT_ARN}:{name}:live"]
    response, body = invoke(lam, name, Qualifier="live", LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert body["init"] == "provisioned-concurrency" and "REPORT" in tail and "Init Duration" not in tail
    with cf.ThreadPoolExecutor(3) as pool:  # 3 at once on 2 provisioned: one spills over on demand
        results = list(pool.map(lambda _: invoke(lam, name, {"sleep": 1}, Qualifier="live", LogType="Tail"), range(3)))
    inits = sorted(b["init"] for _, b in results)
    assert inits == ["on-demand", "provisioned-concurrency", "provisioned-concurrency"]
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    with pytest.raises(ClientError) as excinfo:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_of(excinfo) == (
        "ProvisionedConcurrencyConfigNotFoundException", 404, "No Provisioned Concurrency Config found for this function"
    )


def test_the_aws_cli_publishes_aliases_and_invokes_by_qualifier(server, tmp_path):
    name = unique_name("cli")
    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(code("cli"))
    env = server.aws_env()

    def aws(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "awscli", "lambda", *args, "--endpoint-url", server.endpoint],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    aws("create-function", "--function-name", name, "--runtime", "python3.11", "--role", ROLE,
        "--handler", "app.handler", "--zip-file", f"fileb://{zip_path}")
    aws("wait", "function-active-v2", "--function-name", name)
    assert aws("publish-version", "--function-name", name)["Version"] == "1"
    assert aws("create-alias", "--function-name", name, "--name", "prod", "--function-version", "1")["FunctionVersion"] == "1"
    out = tmp_path / "out.json"
    result = aws("invoke", "--function-name", name, "--qualifier", "prod", str(out))
    assert result["ExecutedVersion"] == "1" and json.loads(out.read_text())["tag"] == "cli"
    versions = aws("list-versions-by-function", "--function-name", name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
