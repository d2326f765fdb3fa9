"""Reserved concurrency, account limits and tags through boto3."""

from __future__ import annotations

import concurrent.futures
import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, start_server
from tests.e2e.test_control_plane import error_of

SLOW = "import time\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return 'ok'\n"


def test_reserved_concurrency_api_and_throttling(lam):
    name = create_function(lam, SLOW)
    assert lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert put["ReservedConcurrentExecutions"] == 1
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    before = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert before <= 999

    def call(_):
        try:
            lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 1.5}))
            return "ok"
        except ClientError as exc:
            return exc.response

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(call, range(3)))
    throttled = [o for o in outcomes if o != "ok"]
    assert outcomes.count("ok") >= 1 and throttled
    for response in throttled:
        assert response["Error"]["Code"] == "TooManyRequestsException"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    # 0 disables the function; deleting the setting restores it.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name)
    assert error_of(excinfo)[:2] == ("TooManyRequestsException", 429)
    lam.delete_function_concurrency(FunctionName=name)
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "ok"
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == before + 1


def test_reservation_cannot_eat_the_unreserved_minimum(lam):
    name = create_function(lam, SLOW)
    with pytest.raises(ClientError) as excinfo:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=950)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("InvalidParameterValueException", 400) and "minimum value of [100]" in message


def test_account_limit(tmp_path):
    server = start_server(tmp_path / "data", env={"SQUALL_ACCOUNT_CONCURRENCY": "2"})
    try:
        lam = server.client()
        name = create_function(lam, SLOW)
        assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 2

        def call(_):
            try:
                lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 1.5}))
                return "ok"
            except ClientError as exc:
                return exc.response.get("Reason")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(call, range(4)))
        # At most two run at once: with all four sent within the 1.5 s, some are throttled.
        assert outcomes.count("ok") >= 2
        assert outcomes.count("ConcurrentInvocationLimitExceeded") >= 1
        assert set(outcomes) <= {"ok", "ConcurrentInvocationLimitExceeded"}
    finally:
        server.stop()


def test_tags(lam):
    name = create_function(lam, SLOW, Tags={"a": "1"})
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1"}
    lam.tag_resource(Resource=arn, Tags={"b": "2", "squall:network": "none"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2", "squall:network": "none"}
    lam.untag_resource(Resource=arn, TagKeys=["a", "squall:network"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    with pytest.raises(ClientError) as excinfo:
        lam.tag_resource(Resource=arn, Tags={"aws:x": "1"})
    assert error_of(excinfo)[:2] == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as excinfo:
        lam.list_tags(Resource=arn + "-missing")
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
