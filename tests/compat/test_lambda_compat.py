"""The compatibility suite: each case of ``cases.py`` sent through boto3 (with its client-side
validation off, so that the server answers every case itself), and the status, error code and
message compared with what AWS answers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.compat.cases import CASES, Case
from tests.conftest import ROLE, make_zip, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

A = "arn:aws:lambda:us-east-1:123456789012:function"
ZIP = make_zip({"app.py": "def handler(event, context):\n    return 1\n"})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    server = start_server(tmp_path_factory.mktemp("compat"))
    lam = server.client(parameter_validation=False, retries={"total_max_attempts": 1}, read_timeout=60)
    fn = f"compat-{uuid.uuid4().hex[:8]}"
    quick = {"WaiterConfig": {"Delay": 0.05, "MaxAttempts": 400}}
    lam.create_function(FunctionName=fn, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": ZIP}, Publish=True)
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, **quick)
    lam.update_function_code(FunctionName=fn, ZipFile=make_zip({"app.py": "def handler(event, context):\n    return 2\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn, **quick)
    assert lam.publish_version(FunctionName=fn)["Version"] == "2"
    lam.update_function_configuration(FunctionName=fn, Description="three")
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn, **quick)
    assert lam.publish_version(FunctionName=fn)["Version"] == "3"
    for alias, version in (("live", "1"), ("two", "2"), ("pone", "3"), ("tolatest", "$LATEST")):
        lam.create_alias(FunctionName=fn, Name=alias, FunctionVersion=version)
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="2", ProvisionedConcurrentExecutions=1)
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="pone", ProvisionedConcurrentExecutions=1)
    values = {
        "fn": fn, "missing": f"missing-{uuid.uuid4().hex[:8]}", "A": A, "long": "a" * 65, "role": ROLE,
        "sha": lam.get_function_configuration(FunctionName=fn)["CodeSha256"],
    }
    yield {"lam": lam, "values": values}
    server.stop()


def expand(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value == "{zip}":
            return ZIP
        if value == "{new}":
            return f"new-{uuid.uuid4().hex[:10]}"
        for key, replacement in values.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, dict):
        return {expand(k, values): expand(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, values) for v in value]
    return value


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 80
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_lambda_answers_as_aws_does(world, case: Case) -> None:
    lam, values = world["lam"], world["values"]
    params = expand(case.params, values)
    try:
        response = getattr(lam, case.op)(**params)
    except ClientError as exc:
        got = (exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"])
        assert got == (case.status, case.code), exc.response["Error"]
        assert exc.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype") == case.code
        if case.message is not None:
            message = exc.response["Error"].get("Message", "")
            expected = expand(case.message, values)
            if case.match == "prefix":
                assert message.startswith(expected), message
            else:
                assert message == expected
        return
    assert case.code is None, f"expected {case.status} {case.code}, got a success: {response}"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == case.status
    for key, value in expand(case.expect, values).items():
        assert response.get(key) == value, (key, response.get(key))
    if "Payload" in response:
        response["Payload"].read()
