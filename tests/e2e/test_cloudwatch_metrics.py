"""The CloudWatch metrics subset against a real server: boto3's ``cloudwatch`` client and the AWS CLI,
unchanged (Smithy RPC v2 CBOR), read the AWS/Lambda metrics of invocations made through the Lambda API."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import urllib.request

import botocore.exceptions
import pytest

from tests.conftest import create_function, signed_headers, start_server

pytestmark = pytest.mark.e2e

CODE = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""
N, K = 5, 2  # invocations, of which failures


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("squall-cloudwatch"))
    lam = server.client("lambda")
    name = create_function(lam, CODE)
    for i in range(N):
        payload = json.dumps({"fail": i < K}).encode()
        result = lam.invoke(FunctionName=name, Payload=payload)
        assert ("FunctionError" in result) == (i < K)
    yield server, name
    server.stop()


def _window() -> dict:
    now = datetime.datetime.now(datetime.UTC)
    return {"StartTime": now - datetime.timedelta(minutes=10), "EndTime": now + datetime.timedelta(minutes=1)}


def _sum(cloudwatch, name: str, metric: str) -> float:
    out = cloudwatch.get_metric_statistics(Namespace="AWS/Lambda", MetricName=metric,
                                           Dimensions=[{"Name": "FunctionName", "Value": name}],
                                           Period=60, Statistics=["Sum"], **_window())
    assert out["Label"] == metric
    return sum(p["Sum"] for p in out["Datapoints"])


def _eventually(read, expected, timeout: float = 10.0):
    """Metrics are recorded as an invocation's end is published, just after its answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_get_metric_statistics(setup):
    server, name = setup
    cloudwatch = server.client("cloudwatch")
    assert _eventually(lambda: _sum(cloudwatch, name, "Invocations"), N) == N
    assert _eventually(lambda: _sum(cloudwatch, name, "Errors"), K) == K
    out = cloudwatch.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Duration",
                                           Dimensions=[{"Name": "FunctionName", "Value": name}],
                                           Period=600, Statistics=["SampleCount", "Average", "Maximum"], **_window())
    assert sum(p["SampleCount"] for p in out["Datapoints"]) == N
    assert all(p["Unit"] == "Milliseconds" and p["Maximum"] >= p["Average"] > 0 for p in out["Datapoints"])


def test_get_metric_data(setup):
    server, name = setup
    cloudwatch = server.client("cloudwatch")
    metric = {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName", "Value": name}]}

    def totals() -> tuple[float, float]:
        out = cloudwatch.get_metric_data(MetricDataQueries=[
            {"Id": "inv", "MetricStat": {"Metric": {**metric, "MetricName": "Invocations"}, "Period": 60, "Stat": "Sum"}},
            {"Id": "err", "MetricStat": {"Metric": {**metric, "MetricName": "Errors"}, "Period": 60, "Stat": "Sum"}},
        ], **_window())
        results = {r["Id"]: r for r in out["MetricDataResults"]}
        assert all(r["StatusCode"] == "Complete" for r in results.values())
        assert results["inv"]["Label"] == "Invocations" and len(results["inv"]["Timestamps"]) == len(results["inv"]["Values"])
        return sum(results["inv"]["Values"]), sum(results["err"]["Values"])

    assert _eventually(totals, (N, K)) == (N, K)


def test_list_metrics(setup):
    server, name = setup
    cloudwatch = server.client("cloudwatch")
    out = cloudwatch.list_metrics(Namespace="AWS/Lambda", Dimensions=[{"Name": "FunctionName", "Value": name}])
    names = {m["MetricName"] for m in out["Metrics"]}
    assert {"Invocations", "Errors", "Duration"} <= names
    assert all({"Name": "FunctionName", "Value": name} in m["Dimensions"] for m in out["Metrics"])
    paginated = [m for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace="AWS/Lambda") for m in page["Metrics"]]
    assert any(m["MetricName"] == "Invocations" and m["Dimensions"] == [] for m in paginated)


def test_errors_reach_boto3_as_modelled_exceptions(setup):
    server, _ = setup
    cloudwatch = server.client("cloudwatch")
    with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException, match="not supported by Squall"):
        cloudwatch.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Invocations", Period=60,
                                         ExtendedStatistics=["p99"], **_window())
    key_id, _ = server.credentials
    forged = server.client("cloudwatch", credentials=(key_id, "not-the-secret"))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        forged.list_metrics(Namespace="AWS/Lambda")
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_aws_cli_get_metric_statistics(setup):
    server, name = setup
    now = datetime.datetime.now(datetime.UTC)
    start = (now - datetime.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now + datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _eventually(lambda: _sum(server.client("cloudwatch"), name, "Invocations"), N)
    result = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", server.endpoint, "--output", "json",
         "cloudwatch", "get-metric-statistics", "--namespace", "AWS/Lambda", "--metric-name", "Invocations",
         "--dimensions", f"Name=FunctionName,Value={name}", "--start-time", start, "--end-time", end,
         "--period", "60", "--statistics", "Sum"],
        check=False, capture_output=True, text=True, env=server.aws_env(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["Label"] == "Invocations"
    assert sum(p["Sum"] for p in out["Datapoints"]) == N


def test_json_protocol(setup):
    """awsJson1.0 (``X-Amz-Target``), the model's other protocol, signed as ``monitoring``."""
    server, name = setup
    _eventually(lambda: _sum(server.client("cloudwatch"), name, "Invocations"), N)
    now = time.time()
    body = json.dumps({"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Period": 60, "Statistics": ["Sum"],
                       "Dimensions": [{"Name": "FunctionName", "Value": name}],
                       "StartTime": now - 600, "EndTime": now + 60}).encode()
    headers = signed_headers(server, "POST", "/", body, {
        "X-Amz-Target": "GraniteServiceVersion20100801.GetMetricStatistics",
        "Content-Type": "application/x-amz-json-1.0"}, service="monitoring")
    request = urllib.request.Request(server.endpoint + "/", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/x-amz-json-1.0"
        out = json.loads(response.read())
    assert sum(p["Sum"] for p in out["Datapoints"]) == N
    assert all(isinstance(p["Timestamp"], (int, float)) for p in out["Datapoints"])


def test_percentiles_of_duration(setup):
    server, name = setup
    cloudwatch = server.client("cloudwatch")
    dims = [{"Name": "FunctionName", "Value": name}]
    out = cloudwatch.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Duration", Dimensions=dims,
                                           Period=3600, ExtendedStatistics=["p50", "p99"], Statistics=["Maximum"],
                                           **_window())
    (point,) = out["Datapoints"]
    p50, p99 = point["ExtendedStatistics"]["p50"], point["ExtendedStatistics"]["p99"]
    assert 0 < p50 <= p99 <= point["Maximum"]
    data = cloudwatch.get_metric_data(MetricDataQueries=[
        {"Id": "p99", "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Dimensions": dims},
                                     "Period": 3600, "Stat": "p99"}}], **_window())
    assert data["MetricDataResults"][0]["Values"] == [p99]
