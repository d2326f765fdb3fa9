"""The CloudWatch metrics subset (squall/api/cloudwatch_api.py), driven with requests built by
botocore's own serializers (RPC v2 CBOR and awsJson1.0) and answers read by botocore's parsers."""

from __future__ import annotations

import asyncio
import datetime

import botocore.session
import cbor2
import pytest
from botocore import parsers, serialize

from squall.api.cloudwatch_api import CloudWatchRoute
from squall.api.middleware import Request
from squall.errors import AccessDenied, InvalidSignature
from squall.observe.metric_series import MetricSeries, dimensions

MODEL = botocore.session.get_session().get_service_model("cloudwatch")
T0 = 1_700_000_040  # a whole minute
UTC = datetime.UTC
CBOR = "smithy-rpc-v2-cbor"
JSON = "json"


class Allow:
    def __init__(self) -> None:
        self.checked: list[tuple[object, str, str]] = []

    def check(self, principal, action, resource, *args, **kwargs) -> None:
        self.checked.append((principal, action, resource))


class Deny:
    def check(self, principal, action, resource, *args, **kwargs) -> None:
        raise AccessDenied(f"not allowed to {action} on {resource}")


def at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(T0 + seconds, UTC)


def filled() -> MetricSeries:
    """f1: 3 invocations in minute 0 (one error; 10, 20, 30 ms), 2 in minute 1, 1 in minute 5;
    f2: 1 in minute 0."""
    series = MetricSeries()

    def invoke(function: str, second: float, ms: float, error: bool = False, qualifier: str | None = None) -> None:
        executed = "1" if qualifier else "$LATEST"
        series.record_invocation(function, qualifier, executed, ms, error, T0 + second)

    invoke("f1", 1, 10.0)
    invoke("f1", 20, 20.0, error=True)
    invoke("f1", 59, 30.0)
    invoke("f1", 61, 40.0, qualifier="live")
    invoke("f1", 119, 50.0)
    invoke("f1", 305, 60.0)
    invoke("f2", 5, 5.0)
    return series


def call(route: CloudWatchRoute, operation: str, params: dict, protocol: str = CBOR) -> dict:
    """Serialize as botocore does, hand to the route, parse as botocore does (errors included)."""
    op = MODEL.operation_model(operation)
    serializer = serialize.create_serializer(protocol, include_validation=False)  # errors are ours to find
    serialized = serializer.serialize_to_request(params, op)
    path = serialized["url_path"] if protocol == CBOR else "/"
    headers = {k.lower(): v for k, v in serialized["headers"].items()}
    request = Request("POST", path, {}, headers, serialized["body"], "req-1", "http://localhost")
    response = asyncio.run(route.handle(request))
    return parse(response, op, protocol)


def parse(response, op, protocol: str) -> dict:
    headers = {k.lower(): v for k, v in response.headers}
    if protocol == CBOR:
        assert headers["smithy-protocol"] == "rpc-v2-cbor" and headers["content-type"] == "application/cbor"
    raw = {"status_code": response.status, "headers": headers, "body": response.body}
    parsed = parsers.create_parser(protocol).parse(raw, op.output_shape)
    parsed["_status"] = response.status
    return parsed


def stats(route, protocol=CBOR, **params) -> dict:
    base = {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "f1"}],
            "StartTime": at(0), "EndTime": at(600), "Period": 60, "Statistics": ["Sum"]}
    return call(route, "GetMetricStatistics", {**base, **params}, protocol)


@pytest.fixture
def route() -> CloudWatchRoute:
    return CloudWatchRoute(filled(), Allow(), clock=lambda: T0 + 400)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [CBOR, JSON])
def test_statistics_per_minute(route, protocol):
    out = stats(route, protocol, Statistics=["Sum", "SampleCount", "Average", "Minimum", "Maximum"],
                MetricName="Duration")
    assert out["Label"] == "Duration"
    points = out["Datapoints"]
    assert [p["Timestamp"] for p in points] == [at(0), at(60), at(300)]
    first = points[0]
    assert (first["Sum"], first["SampleCount"], first["Average"], first["Minimum"], first["Maximum"]) == (60.0, 3.0, 20.0, 10.0, 30.0)
    assert first["Unit"] == "Milliseconds"
    assert points[1]["Sum"] == 90.0 and points[2]["Maximum"] == 60.0


def test_statistics_over_longer_periods_and_rounded_start(route):
    out = stats(route, Period=300, StartTime=at(30))  # rounded down to T0
    assert [(p["Timestamp"], p["Sum"]) for p in out["Datapoints"]] == [(at(0), 5.0), (at(300), 1.0)]
    out = stats(route, Period=600, Statistics=["Sum", "Average"], MetricName="Errors")
    assert [(p["Sum"], p["Average"]) for p in out["Datapoints"]] == [(1.0, 1 / 6)]
    assert out["Datapoints"][0]["Unit"] == "Count"


def test_time_window_is_start_inclusive_end_exclusive(route):
    out = stats(route, StartTime=at(60), EndTime=at(300))
    assert [(p["Timestamp"], p["Sum"]) for p in out["Datapoints"]] == [(at(60), 2.0)]


def test_dimensions_match_exactly(route):
    assert stats(route, Dimensions=[{"Name": "FunctionName", "Value": "f2"}])["Datapoints"][0]["Sum"] == 1.0
    everyone = stats(route, Dimensions=[], Period=600)["Datapoints"]
    assert everyone[0]["Sum"] == 7.0
    resource = [{"Name": "Resource", "Value": "f1:live"}, {"Name": "FunctionName", "Value": "f1"}]  # any order
    assert [p["Sum"] for p in stats(route, Dimensions=resource)["Datapoints"]] == [1.0]
    assert stats(route, Dimensions=[{"Name": "Resource", "Value": "f1:live"}])["Datapoints"] == []  # not a subset
    assert stats(route, Dimensions=[{"Name": "FunctionName", "Value": "nope"}])["Datapoints"] == []


def test_other_namespace_or_unit_has_no_data(route):
    assert stats(route, Namespace="AWS/EC2")["Datapoints"] == []
    assert stats(route, Unit="Seconds", MetricName="Duration")["Datapoints"] == []
    assert len(stats(route, Unit="Milliseconds", MetricName="Duration")["Datapoints"]) == 3


@pytest.mark.parametrize("protocol", [CBOR, JSON])
def test_statistics_errors(route, protocol):
    out = stats(route, protocol, Period=90)
    assert out["_status"] == 400 and out["Error"]["Code"] == "InvalidParameterValue"
    assert "multiple of 60" in out["Error"]["Message"]
    out = stats(route, protocol, Statistics=[], ExtendedStatistics=["p99"])
    assert out["Error"]["Code"] == "InvalidParameterValue" and "not supported by Squall" in out["Error"]["Message"]
    out = stats(route, protocol, Statistics=[])
    assert out["Error"]["Code"] == "InvalidParameterCombination"
    out = stats(route, protocol, StartTime=at(600), EndTime=at(0))
    assert out["Error"]["Code"] == "InvalidParameterValue" and "StartTime" in out["Error"]["Message"]
    out = stats(route, protocol, StartTime=at(-86400 * 2))
    assert out["Error"]["Code"] == "InvalidParameterCombination" and "1440" in out["Error"]["Message"]


def test_errors_are_the_modelled_exceptions(route):
    """botocore's error factory finds the class by the query code (x-amzn-query-error)."""
    client = botocore.session.get_session().create_client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    out = stats(route, Period=90)
    assert client.exceptions.from_code(out["Error"]["Code"]) is client.exceptions.InvalidParameterValueException


def test_get_metric_data(route):
    metric = {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "f1"}]}
    queries = [
        {"Id": "inv", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}},
        {"Id": "dur", "Label": "max ms", "MetricStat": {"Metric": {**metric, "MetricName": "Duration"}, "Period": 300,
                                                          "Stat": "Maximum"}},
        {"Id": "hidden", "ReturnData": False, "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}},
    ]
    out = call(route, "GetMetricData", {"MetricDataQueries": queries, "StartTime": at(0), "EndTime": at(600)})
    assert out["Messages"] == [] and "NextToken" not in out
    inv, dur = out["MetricDataResults"]
    assert inv["Id"] == "inv" and inv["Label"] == "Invocations" and inv["StatusCode"] == "Complete"
    assert inv["Timestamps"] == [at(300), at(60), at(0)] and inv["Values"] == [1.0, 2.0, 3.0]  # descending
    assert dur["Label"] == "max ms" and dur["Values"] == [60.0, 50.0]
    out = call(route, "GetMetricData", {"MetricDataQueries": queries[:1], "StartTime": at(0), "EndTime": at(600),
                                        "ScanBy": "TimestampAscending"}, JSON)
    assert out["MetricDataResults"][0]["Values"] == [3.0, 2.0, 1.0]


def test_get_metric_data_pages_by_max_datapoints(route):
    metric = {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "f1"}]}
    query = {"Id": "inv", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}}
    params = {"MetricDataQueries": [query], "StartTime": at(0), "EndTime": at(600), "MaxDatapoints": 2}
    first = call(route, "GetMetricData", params)
    assert first["MetricDataResults"][0]["Values"] == [1.0, 2.0]
    assert first["MetricDataResults"][0]["StatusCode"] == "PartialData"
    second = call(route, "GetMetricData", {**params, "NextToken": first["NextToken"]})
    assert second["MetricDataResults"][0]["Values"] == [3.0] and "NextToken" not in second
    assert second["MetricDataResults"][0]["StatusCode"] == "Complete"


def test_get_metric_data_refusals(route):
    metric = {"Namespace": "AWS/Lambda", "MetricName": "Invocations"}
    window = {"StartTime": at(0), "EndTime": at(600)}
    out = call(route, "GetMetricData", {"MetricDataQueries": [{"Id": "e1", "Expression": "SUM(METRICS())"}], **window})
    assert out["Error"]["Code"] == "InvalidParameterValue" and "expressions are not supported" in out["Error"]["Message"]
    out = call(route, "GetMetricData", {"MetricDataQueries": [{"Id": "p", "MetricStat": {"Metric": metric, "Period": 60,
                                                                                          "Stat": "p99"}}], **window})
    assert out["Error"]["Code"] == "InvalidParameterValue" and "not supported by Squall" in out["Error"]["Message"]
    out = call(route, "GetMetricData", {"MetricDataQueries": [{"Id": "a", "MetricStat": {"Metric": metric, "Period": 60,
                                                                                          "Stat": "Sum"}}],
                                        "NextToken": "garbage", **window})
    assert out["Error"]["Code"] == "InvalidNextToken"


def test_list_metrics(route):
    out = call(route, "ListMetrics", {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName", "Value": "f1"}]})
    found = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in out["Metrics"]}
    assert ("Invocations", (("FunctionName", "f1"),)) in found
    assert ("Duration", (("FunctionName", "f1"), ("Resource", "f1:live"))) in found
    assert ("Errors", (("ExecutedVersion", "1"), ("FunctionName", "f1"))) in found
    assert all(m["Namespace"] == "AWS/Lambda" for m in out["Metrics"]) and len(found) == 9
    out = call(route, "ListMetrics", {"MetricName": "Errors", "Dimensions": [{"Name": "Resource"}]})
    assert [m["Dimensions"] for m in out["Metrics"]] == [[{"Name": "FunctionName", "Value": "f1"},
                                                          {"Name": "Resource", "Value": "f1:live"}]]
    assert len(call(route, "ListMetrics", {})["Metrics"]) == 3 * 5  # {}, f1, f2, f1:live, f1 version 1
    assert call(route, "ListMetrics", {"Namespace": "AWS/EC2"})["Metrics"] == []
    recent = call(route, "ListMetrics", {"RecentlyActive": "PT3H", "MetricName": "Invocations"}, JSON)
    assert len(recent["Metrics"]) == 5
    later = CloudWatchRoute(route.api.series, Allow(), clock=lambda: T0 + 4 * 3600)  # type: ignore[arg-type]
    assert call(later, "ListMetrics", {"RecentlyActive": "PT3H"})["Metrics"] == []
    assert len(call(later, "ListMetrics", {})["Metrics"]) == 15


def test_list_metrics_pages_by_500():
    series = MetricSeries()
    for i in range(501):
        series.record("Throttles", dimensions(FunctionName=f"f{i:03}"), 1.0, T0)
    route = CloudWatchRoute(series, Allow())  # type: ignore[arg-type]
    first = call(route, "ListMetrics", {"MetricName": "Throttles"})
    assert len(first["Metrics"]) == 500 and first["NextToken"]
    second = call(route, "ListMetrics", {"MetricName": "Throttles", "NextToken": first["NextToken"]})
    assert [m["Dimensions"][0]["Value"] for m in second["Metrics"]] == ["f500"] and "NextToken" not in second


def test_authorization_per_operation():
    allow = Allow()
    route = CloudWatchRoute(filled(), allow)  # type: ignore[arg-type]
    call(route, "ListMetrics", {})
    stats(route)
    assert [a for _, a, _ in allow.checked] == ["cloudwatch:ListMetrics", "cloudwatch:GetMetricStatistics"]
    assert {r for _, _, r in allow.checked} == {"*"}
    denied = CloudWatchRoute(filled(), Deny())  # type: ignore[arg-type]
    with pytest.raises(AccessDenied):
        call(denied, "ListMetrics", {})


def test_render_error_in_the_request_protocol(route):
    op = MODEL.operation_model("ListMetrics")
    cbor_request = Request("POST", "/service/GraniteServiceVersion20100801/operation/ListMetrics", {},
                           {"smithy-protocol": "rpc-v2-cbor"}, b"", "r", "http://x")
    response = route.render_error(cbor_request, AccessDenied("no"))
    assert response.status == 403
    assert cbor2.loads(response.body)["__type"].endswith("#AccessDeniedException")
    assert parse(response, op, CBOR)["Error"]["Code"] == "AccessDenied"
    json_request = Request("POST", "/", {}, {"x-amz-target": "GraniteServiceVersion20100801.ListMetrics"}, b"", "r",
                           "http://x")
    response = route.render_error(json_request, InvalidSignature("bad"))
    assert parse(response, op, JSON)["Error"] == {"Code": "SignatureDoesNotMatch", "Message": "bad",
                                                  "QueryErrorCode": "InvalidSignatureException", "Type": "Sender"}


def test_claims_and_signing_name(route):
    assert route.service == "monitoring"
    assert route.claims(Request("POST", "/service/GraniteServiceVersion20100801/operation/ListMetrics", {}, {}, b"", "r", ""))
    assert route.claims(Request("POST", "/", {}, {"x-amz-target": "GraniteServiceVersion20100801.ListMetrics"}, b"", "r", ""))
    assert not route.claims(Request("POST", "/", {}, {"x-amz-target": "Logs_20140328.GetLogEvents"}, b"", "r", ""))
    assert not route.claims(Request("GET", "/2015-03-31/functions", {}, {}, b"", "r", ""))


def test_unknown_operation_and_bad_body(route):
    request = Request("POST", "/service/GraniteServiceVersion20100801/operation/PutMetricData", {},
                      {"smithy-protocol": "rpc-v2-cbor"}, cbor2.dumps({}), "r", "http://x")
    response = asyncio.run(route.handle(request))
    assert response.status == 400 and "PutMetricData" in cbor2.loads(response.body)["message"]
    request = Request("POST", "/service/GraniteServiceVersion20100801/operation/ListMetrics", {},
                      {"smithy-protocol": "rpc-v2-cbor"}, b"\xff\x00", "r", "http://x")
    response = asyncio.run(route.handle(request))
    assert response.status == 400 and cbor2.loads(response.body)["__type"].endswith("SerializationException")
