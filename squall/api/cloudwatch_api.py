"""A read-only subset of the CloudWatch metrics API over Lambda's metrics (namespace ``AWS/Lambda``).

boto3's ``cloudwatch`` client and ``aws cloudwatch get-metric-statistics|get-metric-data|list-metrics``
work unchanged against Squall's endpoint. The data is the engine's per-minute aggregates
(:class:`~squall.observe.metric_series.MetricSeries`); nothing is stored here.

Protocols (one service model, ``GraniteServiceVersion20100801``):

* **Smithy RPC v2 CBOR** (what botocore speaks today): ``POST /service/GraniteServiceVersion20100801/
  operation/<Operation>`` with ``smithy-protocol: rpc-v2-cbor`` and a CBOR body; timestamps are CBOR
  tag 1 (epoch seconds).
* **awsJson1.0**: ``X-Amz-Target: GraniteServiceVersion20100801.<Operation>``, a JSON body,
  timestamps as epoch seconds.

The service is ``awsQueryCompatible``: an error's ``__type`` is its shape id
(``com.amazonaws.cloudwatch#InvalidParameterValueException``) and the ``x-amzn-query-error`` header
carries the query-protocol code (``InvalidParameterValue;Sender``), which botocore reports as the
error's ``Code`` (so ``client.exceptions.InvalidParameterValueException`` catches it).

Operations, each authorized as ``cloudwatch:<Operation>`` on ``*`` (signed as ``monitoring``):
GetMetricStatistics, GetMetricData (MetricStat queries, percentiles of Duration; metric math expressions are
refused), ListMetrics. Squall keeps one-minute resolution for 24 hours: periods are multiples of 60
seconds, and a start time is rounded down to its minute (as CloudWatch does for recent data).
"""

from __future__ import annotations

import datetime
import math
import re
import time
from collections.abc import Callable
from typing import Any

import cbor2
import orjson

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse
from squall.auth.access import Access
from squall.errors import LambdaError
from squall.observe.metric_series import NAMESPACE, STATISTICS, Datapoint, MetricSeries

SERVICE = "GraniteServiceVersion20100801"
_CBOR_PREFIX = f"/service/{SERVICE}/operation/"
_TARGET_PREFIX = f"{SERVICE}."
_SHAPE_PREFIX = "com.amazonaws.cloudwatch#"
_CBOR = "application/cbor"
_JSON = "application/x-amz-json-1.0"
OPERATIONS = ("GetMetricStatistics", "GetMetricData", "ListMetrics")
MAX_DATAPOINTS = 1440  # GetMetricStatistics' limit per call
MAX_DATA_POINTS_DEFAULT = 100_800  # GetMetricData's default MaxDatapoints
LIST_PAGE = 500
RECENTLY_ACTIVE = {"PT3H": 3 * 3600}
_UTC = datetime.UTC


class CloudWatchError(Exception):
    """An error of the CloudWatch API: its query-protocol ``code`` (what botocore reports) and the
    shape it is modelled by (``__type``)."""

    def __init__(self, code: str, message: str, shape: str | None = None, status: int = 400,
                 fault: str = "Sender") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.shape = shape or f"{code}Exception"
        self.status = status
        self.fault = fault


def invalid(message: str) -> CloudWatchError:
    return CloudWatchError("InvalidParameterValue", message)


def combination(message: str) -> CloudWatchError:
    return CloudWatchError("InvalidParameterCombination", message)


def missing(name: str) -> CloudWatchError:
    return CloudWatchError("MissingParameter", f"The parameter {name} is required.",
                           shape="MissingRequiredParameterException")


# Squall's own errors (authentication, authorization, shutdown) as CloudWatch's query codes
_SQUALL_ERRORS: dict[str, tuple[str, int, str]] = {
    "AccessDeniedException": ("AccessDenied", 403, "Sender"),
    "UnrecognizedClientException": ("InvalidClientTokenId", 403, "Sender"),
    "InvalidSignatureException": ("SignatureDoesNotMatch", 403, "Sender"),
    "IncompleteSignatureException": ("IncompleteSignature", 400, "Sender"),
    "MissingAuthenticationTokenException": ("MissingAuthenticationToken", 403, "Sender"),
    "ExpiredTokenException": ("ExpiredToken", 400, "Sender"),
    "ServiceUnavailableException": ("ServiceUnavailable", 503, "Receiver"),
    "ServiceException": ("InternalServiceError", 500, "Receiver"),
    "UnknownOperationException": ("InvalidAction", 400, "Sender"),
}


# ---- parameters -----------------------------------------------------------------------------
def _timestamp(params: dict[str, Any], name: str) -> float:
    value = params.get(name)
    if value is None:
        raise missing(name)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return value.timestamp()
    if isinstance(value, bool):
        raise invalid(f"The parameter {name} must be a timestamp.")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)  # "Z" too, since Python 3.11
        except ValueError:
            try:
                return float(value)
            except ValueError:
                pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)).timestamp()
    raise invalid(f"The parameter {name} must be a timestamp (epoch seconds or ISO 8601), not {value!r}.")


def _period(value: Any, name: str = "Period") -> int:
    if value is None:
        raise missing(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise invalid(f"The parameter {name} must be a positive whole number of seconds.")
    period = int(value)
    if period < 60 or period % 60:
        raise invalid(f"The parameter {name} must be a multiple of 60: Squall keeps Lambda's metrics at "
                      f"one-minute resolution (no high-resolution periods of 1, 5, 10 or 30 seconds); got {period}.")
    return period


def _string(params: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"The parameter {name} must be a string.")
    return value


def _dimensions(value: Any, name: str = "Dimensions") -> tuple[tuple[str, str], ...]:
    """A metric's exact dimensions, sorted as the series keys them."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"The parameter {name} must be a list of {{Name, Value}}.")
    pairs: dict[str, str] = {}
    for i, item in enumerate(value, 1):
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str) or not isinstance(item.get("Value"), str):
            raise invalid(f"The parameter {name}.member.{i} must have a Name and a Value (strings).")
        if item["Name"] in pairs:
            raise invalid(f"The collection {name} must not have a duplicate dimension name: {item['Name']}.")
        pairs[item["Name"]] = item["Value"]
    return tuple(sorted(pairs.items()))


def _window(params: dict[str, Any]) -> tuple[float, float]:
    start, end = _timestamp(params, "StartTime"), _timestamp(params, "EndTime")
    if start >= end:
        raise invalid("The parameter StartTime must be less than the parameter EndTime.")
    return float(math.floor(start / 60) * 60), end  # CloudWatch rounds a recent start down to its minute


def _stamp(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, _UTC)


def _dimension_list(dims: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in dims]


_NO_PERCENTILES = ("{what} is not supported by Squall: it keeps Lambda's metrics as per-minute statistic sets "
                   "(SampleCount, Sum, Minimum, Maximum), and a histogram for Duration only, from which its "
                   "percentiles (p50, p99, p99.9…) are estimated. Use one of SampleCount, Average, Sum, Minimum, "
                   "Maximum, or a percentile of Duration.")
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,2})?|100)")


def percentile_of(name: Any, metric: str) -> float | None:
    """The p of a percentile statistic ("p99" → 99.0) Squall can answer for ``metric``, else None."""
    if not isinstance(name, str) or metric != "Duration":
        return None
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        return None
    p = float(match.group(1))
    return p if 0 < p <= 100 else None


def _value(point: Datapoint, name: str, metric: str) -> float:
    p = percentile_of(name, metric)
    if p is not None:
        found = point.percentile(p)
        return float(found if found is not None else point.maximum)
    return point.statistic(name)


class CloudWatchApi:
    """The operations, on already decoded parameters (timestamps as datetimes or epoch numbers);
    results have datetimes for timestamps (the protocol layer encodes them)."""

    def __init__(self, series: MetricSeries, clock: Callable[[], float] = time.time) -> None:
        self.series = series
        self.clock = clock

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if operation not in OPERATIONS or handler is None:
            raise CloudWatchError("InvalidAction", f"Squall does not serve the CloudWatch operation {operation}; "
                                  f"it serves {', '.join(OPERATIONS)} (namespace {NAMESPACE}).",
                                  shape="UnknownOperationException")
        return handler(params)

    # ---- GetMetricStatistics ------------------------------------------------------------------
    def _op_GetMetricStatistics(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = _string(params, "Namespace")
        metric = _string(params, "MetricName")
        assert namespace is not None and metric is not None
        dims = _dimensions(params.get("Dimensions"))
        start, end = _window(params)
        period = _period(params.get("Period"))
        statistics = params.get("Statistics") or []
        extended = params.get("ExtendedStatistics") or []
        unanswerable = [e for e in extended if percentile_of(e, metric) is None]
        if unanswerable:
            raise invalid(_NO_PERCENTILES.format(what="ExtendedStatistics (" + ", ".join(map(str, unanswerable)) + ")"))
        if not statistics and not extended:
            raise combination("Must specify either Statistics or ExtendedStatistics.")
        if not isinstance(statistics, list):
            raise invalid("The parameter Statistics must be a list.")
        for i, name in enumerate(statistics, 1):
            if name not in STATISTICS:
                raise invalid(f"The parameter Statistics.member.{i} must be a value in the set "
                              f"[ {', '.join(STATISTICS)} ]; got {name!r}.")
        requested = math.ceil((end - start) / period)
        if requested > MAX_DATAPOINTS:
            raise combination(f"You have requested up to {requested} datapoints, which exceeds the limit of "
                              f"{MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, "
                              "or decreasing the time range.")
        points = self._points(namespace, metric, dims, start, end, period, params.get("Unit"))
        datapoints = []
        for point in points:
            entry: dict[str, Any] = {"Timestamp": _stamp(point.timestamp)}
            for name in dict.fromkeys(statistics):
                entry[name] = point.statistic(name)
            if extended:
                entry["ExtendedStatistics"] = {name: _value(point, name, metric) for name in dict.fromkeys(extended)}
            entry["Unit"] = point.unit
            datapoints.append(entry)
        return {"Label": metric, "Datapoints": datapoints}

    def _points(self, namespace: str, metric: str, dims: tuple[tuple[str, str], ...], start: float, end: float,
                period: int, unit: Any) -> list[Datapoint]:
        if namespace != NAMESPACE:
            return []  # CloudWatch's answer for a metric without data
        if unit is not None and unit != self.series.unit(metric):
            return []  # CloudWatch's answer for a unit the metric was not published with
        return self.series.statistics(metric, dims, start, end, period)

    # ---- GetMetricData ------------------------------------------------------------------------
    def _op_GetMetricData(self, params: dict[str, Any]) -> dict[str, Any]:
        queries = params.get("MetricDataQueries")
        if not queries:
            raise missing("MetricDataQueries")
        if not isinstance(queries, list) or len(queries) > 500:
            raise invalid("The parameter MetricDataQueries must be a list of 1 to 500 queries.")
        start, end = _window(params)
        descending = (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending"
        if params.get("ScanBy") not in (None, "TimestampDescending", "TimestampAscending"):
            raise invalid("The parameter ScanBy must be TimestampDescending or TimestampAscending.")
        limit = params.get("MaxDatapoints", MAX_DATA_POINTS_DEFAULT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise invalid("The parameter MaxDatapoints must be a positive integer.")
        ids: set[str] = set()
        series: list[tuple[str, str, list[tuple[datetime.datetime, float]]]] = []
        for i, query in enumerate(queries, 1):
            if not isinstance(query, dict):
                raise invalid(f"The parameter MetricDataQueries.member.{i} must be a structure.")
            query_id = _string(query, "Id")
            assert query_id is not None
            if not query_id[:1].islower() or not query_id.replace("_", "a").isalnum():
                raise invalid(f"The parameter MetricDataQueries.member.{i}.Id must start with a lower-case letter "
                              f"and hold only letters, digits and underscores; got {query_id!r}.")
            if query_id in ids:
                raise invalid(f"The value {query_id} for parameter MetricDataQueries.member.{i}.Id is not unique.")
            ids.add(query_id)
            if query.get("Expression") is not None:
                raise invalid(f"MetricDataQueries.member.{i} (Id {query_id}): metric math expressions are not "
                              "supported by Squall; query each metric with a MetricStat and combine the values "
                              "client-side.")
            stat = query.get("MetricStat")
            if not isinstance(stat, dict):
                raise invalid(f"MetricDataQueries.member.{i} (Id {query_id}) must have a MetricStat or an Expression.")
            metric_doc = stat.get("Metric")
            if not isinstance(metric_doc, dict):
                raise missing(f"MetricDataQueries.member.{i}.MetricStat.Metric")
            namespace = _string(metric_doc, "Namespace")
            metric = _string(metric_doc, "MetricName")
            assert namespace is not None and metric is not None
            dims = _dimensions(metric_doc.get("Dimensions"), f"MetricDataQueries.member.{i}.MetricStat.Metric.Dimensions")
            period = _period(stat.get("Period"), f"MetricDataQueries.member.{i}.MetricStat.Period")
            name = _string(stat, "Stat")
            if name not in STATISTICS and percentile_of(name, metric) is None:
                raise invalid(_NO_PERCENTILES.format(what=f"The statistic {name!r} (MetricDataQueries.member.{i})"))
            if query.get("ReturnData") is False:
                continue
            points = self._points(namespace, metric, dims, start, end, period, stat.get("Unit"))
            values = [(_stamp(p.timestamp), _value(p, name, metric)) for p in points]
            if descending:
                values.reverse()
            label = query.get("Label") if isinstance(query.get("Label"), str) else metric
            series.append((query_id, label, values))
        # One page of at most MaxDatapoints values, in query order; the token is where the next one starts.
        token = params.get("NextToken")
        offset = 0
        if token is not None:
            if not isinstance(token, str) or not token.isdigit():
                raise CloudWatchError("InvalidNextToken", "The NextToken is invalid.", shape="InvalidNextToken")
            offset = int(token)
        total = sum(len(values) for _, _, values in series)
        results = []
        position = 0
        for query_id, label, values in series:
            begin = min(max(offset - position, 0), len(values))
            stop = min(max(offset + limit - position, 0), len(values))
            page = values[begin:stop]
            position += len(values)
            results.append({"Id": query_id, "Label": label, "Timestamps": [t for t, _ in page],
                            "Values": [v for _, v in page],
                            "StatusCode": "PartialData" if stop < len(values) else "Complete"})
        answer: dict[str, Any] = {"MetricDataResults": results, "Messages": []}
        if offset + limit < total:
            answer["NextToken"] = str(offset + limit)
        return answer

    # ---- ListMetrics --------------------------------------------------------------------------
    def _op_ListMetrics(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = _string(params, "Namespace", required=False)
        metric = _string(params, "MetricName", required=False)
        filters = params.get("Dimensions") or []
        if not isinstance(filters, list):
            raise invalid("The parameter Dimensions must be a list of {Name, Value?}.")
        wanted: list[tuple[str, str | None]] = []
        for i, item in enumerate(filters, 1):
            if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
                raise invalid(f"The parameter Dimensions.member.{i} must have a Name.")
            value = item.get("Value")
            if value is not None and not isinstance(value, str):
                raise invalid(f"The parameter Dimensions.member.{i}.Value must be a string.")
            wanted.append((item["Name"], value))
        recent = params.get("RecentlyActive")
        if recent is not None and recent not in RECENTLY_ACTIVE:
            raise invalid("The parameter RecentlyActive must be PT3H.")
        token = params.get("NextToken")
        offset = 0
        if token is not None:
            if not isinstance(token, str) or not token.isdigit():
                raise invalid("The parameter NextToken is invalid.")
            offset = int(token)
        found = [] if namespace not in (None, NAMESPACE) else self.series.list(metric, wanted)
        if recent is not None:
            now = self.clock()
            since = math.floor((now - RECENTLY_ACTIVE[recent]) / 60) * 60
            span = int(now - since) // 60 * 60 + 120
            found = [(m, d) for m, d in found if self.series.statistics(m, d, since, since + span, span)]
        page = found[offset:offset + LIST_PAGE]
        answer: dict[str, Any] = {"Metrics": [{"Namespace": NAMESPACE, "MetricName": m, "Dimensions": _dimension_list(d)}
                                              for m, d in page]}
        if offset + LIST_PAGE < len(found):
            answer["NextToken"] = str(offset + LIST_PAGE)
        return answer


# ---- protocols --------------------------------------------------------------------------------
def _is_cbor(request: Request) -> bool:
    return request.path.startswith(_CBOR_PREFIX)


def _encode(cbor: bool, status: int, document: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    if cbor:
        body = cbor2.dumps(document, datetime_as_timestamp=True, timezone=_UTC)
        return HttpResponse(status, [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", _CBOR), *(headers or [])], body)
    body = orjson.dumps(document, default=_epoch, option=orjson.OPT_PASSTHROUGH_DATETIME)
    return HttpResponse(status, [("Content-Type", _JSON), *(headers or [])], body)


def _epoch(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds == int(seconds) else seconds
    raise TypeError(f"cannot encode {type(value).__name__}")


def _error(cbor: bool, error: CloudWatchError) -> HttpResponse:
    document = {"__type": _SHAPE_PREFIX + error.shape, "message": error.message}
    headers = [("x-amzn-query-error", f"{error.code};{error.fault}")]
    if not cbor:
        headers.append(("x-amzn-ErrorType", error.shape))
    return _encode(cbor, error.status, document, headers)


class CloudWatchRoute:
    """The router's route for the CloudWatch metrics subset: claimed by its RPC v2 CBOR path or its
    ``X-Amz-Target``, signed as ``monitoring``, authorized as ``cloudwatch:<Operation>`` on ``*``."""

    service = "monitoring"

    def __init__(self, series: MetricSeries, access: Access, clock: Callable[[], float] = time.time) -> None:
        self.api = CloudWatchApi(series, clock)
        self.access = access

    def claims(self, request: Request) -> bool:
        if request.path.startswith(_CBOR_PREFIX):
            return request.method == "POST"
        return request.headers.get("x-amz-target", "").startswith(_TARGET_PREFIX)

    async def handle(self, request: Request) -> HttpResponse:
        cbor = _is_cbor(request)
        if cbor:
            operation = request.path.removeprefix(_CBOR_PREFIX).strip("/")
        else:
            operation = request.headers["x-amz-target"].removeprefix(_TARGET_PREFIX)
        # the operation's own permission, whatever it is (an unknown one is then refused by name)
        self.access.check(request.state.get("principal"), f"cloudwatch:{operation}", "*")  # type: ignore[arg-type]
        try:
            params = self._decode(cbor, request.body)
            # on the event loop, as the recorder: the series have no lock, and these reads are short
            result = self.api.call(operation, params)
        except CloudWatchError as exc:
            return _error(cbor, exc)
        return _encode(cbor, 200, result)

    @staticmethod
    def _decode(cbor: bool, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            params = cbor2.loads(body) if cbor else orjson.loads(body)
        except Exception as exc:  # cbor2 raises several kinds of errors on bad input
            raise CloudWatchError("SerializationException", f"Could not parse the request body: {exc}",
                                  shape="SerializationException") from exc
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise CloudWatchError("SerializationException", "The request body must be a map (structure).",
                                  shape="SerializationException")
        return params

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        """Squall's own errors (signature, authorization, shutdown) in this API's protocol."""
        code, status, fault = _SQUALL_ERRORS.get(error.code, (error.code.removesuffix("Exception"), 400, "Sender"))
        return _error(_is_cbor(request), CloudWatchError(code, error.message, shape=error.code, status=status,
                                                         fault=fault))
