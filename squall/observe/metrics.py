"""What Squall counts and measures, for ``GET /metrics`` (Prometheus' text format, through the
``prometheus-client`` library) and for the CloudWatch metrics subset (``metric_series``).

One recorder, fed from the engine: every finished invocation (``record_invocation``, subscribed
to the bus's ``InvocationFinished``), every throttle, every async event accepted and settled.
Gauges (concurrency, environments, queue depth, event-source lag) are read when scraped.

Label cardinality is bounded: ``function`` × ``qualifier`` (the version that ran, or the alias
it was invoked through) × ``runtime``; ``error_type`` keeps at most ``ERROR_TYPES_PER_FUNCTION``
distinct values per function (the rest count as ``other``); throttles carry Lambda's ``Reason``
(a handful of values). Deleting a function removes its series (``forget``).

Recording stays off the invoke's critical section: the engine publishes ``InvocationFinished``
after the result exists, and the numbers are plain integers and lists per (function, qualifier,
runtime), turned into Prometheus' families only when scraped (prometheus-client's own counter
objects take a lock per increment, several times slower), so a record is a few dictionary
lookups and additions (measured by ``bench/warm_latency.py``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from squall.observe.metric_series import MetricSeries, dimensions

ERROR_TYPES_PER_FUNCTION = 10
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Gauges:
    """Readers of the engine's live state, called at scrape time."""

    concurrency: Callable[[], dict[str, int]]  # function → invocations in flight
    environments: Callable[[], dict[str, int]]  # state → environments
    queue: Callable[[], list[Any]]  # squall.store.events.FunctionQueueStats (cached by the caller)
    event_sources: Callable[[], list[dict[str, Any]]]  # Engine.event_sources_report()


class _Histogram:
    """Bucket counts and a sum, kept as plain numbers (rendered by prometheus-client when scraped)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.counts):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return out


class _Cells:
    """One (function, qualifier, runtime)'s numbers."""

    __slots__ = ("invocations", "cold_starts", "duration", "init_duration", "errors")

    def __init__(self) -> None:
        self.invocations = 0
        self.cold_starts = 0
        self.duration = _Histogram()
        self.init_duration = _Histogram()
        self.errors: dict[str, int] = {}


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.time, series: MetricSeries | None = None) -> None:
        self.clock = clock
        self.series = series or MetricSeries()
        self.registry = CollectorRegistry(auto_describe=False)
        self._cells: dict[tuple[str, str, str], _Cells] = {}
        self.throttles: dict[tuple[str, str], int] = {}  # (function, reason) → count
        self.async_received: dict[str, int] = {}
        self.deliveries: dict[tuple[str, str], int] = {}  # (kind, outcome) → count
        self._gauges: Gauges | None = None
        self._account_sampled = 0.0
        self.registry.register(_Collector(self))

    # ---- recording ------------------------------------------------------------------------
    def record_invocation(self, function: str, qualifier: str | None, executed_version: str, runtime: str,
                          duration_ms: float, init_ms: float | None, error_type: str | None) -> None:
        key = (function, qualifier or executed_version, runtime)
        cells = self._cells.get(key)
        if cells is None:
            cells = self._cells[key] = _Cells()
        cells.invocations += 1
        cells.duration.observe(duration_ms / 1000)
        if init_ms is not None:
            cells.cold_starts += 1
            cells.init_duration.observe(init_ms / 1000)
        if error_type is not None:
            errors = cells.errors
            if error_type not in errors and len(errors) >= ERROR_TYPES_PER_FUNCTION:
                error_type = "other"
            errors[error_type] = errors.get(error_type, 0) + 1
        self.series.record_invocation(function, qualifier, executed_version, duration_ms, error_type is not None,
                                      self.clock())

    def record_concurrency(self, function: str, in_flight: int, account_in_flight: Callable[[], int]) -> None:
        """A function's concurrency as one of its invocations ends (CloudWatch keeps the maximum
        per minute); the account's, read at most once a second (it sums every function's)."""
        now = self.clock()
        self.series.record("ConcurrentExecutions", (("FunctionName", function),), float(in_flight), now)
        if now - self._account_sampled >= 1.0:
            self._account_sampled = now
            self.series.record("ConcurrentExecutions", (), float(account_in_flight()), now)

    def record_throttle(self, function: str, qualifier: str | None, reason: str) -> None:
        key = (function, reason)
        self.throttles[key] = self.throttles.get(key, 0) + 1
        now = self.clock()
        for dims in self._dimension_sets(function, qualifier):
            self.series.record("Throttles", dims, 1.0, now)

    def record_async_accepted(self, function: str) -> None:
        self.async_received[function] = self.async_received.get(function, 0) + 1
        self.series.record("AsyncEventsReceived", dimensions(FunctionName=function), 1.0, self.clock())

    def record_async_dropped(self, function: str) -> None:
        self.series.record("AsyncEventsDropped", dimensions(FunctionName=function), 1.0, self.clock())

    def record_delivery(self, function: str, kind: str, ok: bool) -> None:
        key = (kind, "delivered" if ok else "failed")
        self.deliveries[key] = self.deliveries.get(key, 0) + 1
        if not ok:
            metric = "DeadLetterErrors" if kind == "dlq" else "DestinationDeliveryFailures"
            self.series.record(metric, dimensions(FunctionName=function), 1.0, self.clock())

    @staticmethod
    def _dimension_sets(function: str, qualifier: str | None) -> Iterable[tuple[tuple[str, str], ...]]:
        yield ()
        yield (("FunctionName", function),)
        if qualifier:
            yield (("FunctionName", function), ("Resource", f"{function}:{qualifier}"))

    def forget(self, function: str) -> None:
        """A deleted function's series go (Prometheus' and CloudWatch's)."""
        self.series.forget(function)
        for key in [k for k in self._cells if k[0] == function]:
            del self._cells[key]
        for key in [k for k in self.throttles if k[0] == function]:
            del self.throttles[key]
        self.async_received.pop(function, None)

    # ---- reading --------------------------------------------------------------------------
    def connect(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    """Everything, rendered when scraped: the recorded numbers, then the gauges read from the engine."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        yield from self._recorded()
        if self.metrics._gauges is not None:
            yield from self._live(self.metrics._gauges)

    def _recorded(self) -> Iterable[Any]:
        m = self.metrics
        labels = ["function", "qualifier", "runtime"]
        invocations = CounterMetricFamily("squall_invocations", "Invocations that ran (synchronous and asynchronous).",
                                          labels=labels)
        errors = CounterMetricFamily("squall_invocation_errors", "Invocations that ended in an error, by its type.",
                                     labels=[*labels, "error_type"])
        cold = CounterMetricFamily("squall_cold_starts", "Invocations that started a new execution environment.",
                                   labels=labels)
        duration = HistogramMetricFamily("squall_invocation_duration_seconds", "The function's run time per invocation.",
                                         labels=labels)
        init = HistogramMetricFamily("squall_init_duration_seconds", "Init phases of new environments.", labels=labels)
        for key, cells in sorted(m._cells.items()):
            values = list(key)
            invocations.add_metric(values, cells.invocations)
            cold.add_metric(values, cells.cold_starts)
            duration.add_metric(values, cells.duration.buckets(), cells.duration.total)
            if cells.cold_starts:
                init.add_metric(values, cells.init_duration.buckets(), cells.init_duration.total)
            for error_type, count in sorted(cells.errors.items()):
                errors.add_metric([*values, error_type], count)
        yield from (invocations, errors, cold, duration, init)
        throttles = CounterMetricFamily("squall_throttles", "Invocations refused with 429, by Lambda's Reason.",
                                        labels=["function", "reason"])
        for (function, reason), count in sorted(m.throttles.items()):
            throttles.add_metric([function, reason], count)
        received = CounterMetricFamily("squall_async_events_received", "Asynchronous events accepted (202).",
                                       labels=["function"])
        for function, count in sorted(m.async_received.items()):
            received.add_metric([function], count)
        deliveries = CounterMetricFamily("squall_destination_deliveries", "Destination records and dead letters sent.",
                                         labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(m.deliveries.items()):
            deliveries.add_metric([kind, outcome], count)
        yield from (throttles, received, deliveries)

    def _live(self, gauges: Gauges) -> Iterable[Any]:
        concurrent = GaugeMetricFamily("squall_concurrent_executions", "Invocations running now.", labels=["function"])
        for function, count in sorted(gauges.concurrency().items()):
            concurrent.add_metric([function], count)
        yield concurrent
        environments = GaugeMetricFamily("squall_environments", "Execution environments, by state.", labels=["state"])
        for state, count in sorted(gauges.environments().items()):
            environments.add_metric([state], count)
        yield environments
        depth = GaugeMetricFamily("squall_async_queue_depth", "Asynchronous events waiting or running.",
                                  labels=["function"])
        oldest = GaugeMetricFamily("squall_async_oldest_event_age_seconds", "Age of the oldest queued event.",
                                   labels=["function"])
        settled = CounterMetricFamily("squall_async_events", "Asynchronous events settled, by outcome.",
                                      labels=["function", "outcome"])
        now = self.metrics.clock()
        for stats in gauges.queue():
            depth.add_metric([stats.name], stats.depth)
            if stats.oldest_enqueued_at is not None:
                oldest.add_metric([stats.name], max(0.0, now - stats.oldest_enqueued_at))
            for outcome, count in sorted(stats.counters.items()):
                settled.add_metric([stats.name, outcome], count)
        yield depth
        yield oldest
        yield settled
        lag = GaugeMetricFamily("squall_event_source_lag",
                                "How far an event source mapping is behind its source: messages waiting (queues) "
                                "or the oldest unread record's age in milliseconds (streams).",
                                labels=["mapping", "function", "kind"])
        invocations = CounterMetricFamily("squall_event_source_invocations", "Batches an event source mapping invoked.",
                                          labels=["mapping", "function", "kind"])
        for mapping in gauges.event_sources():
            labels = [str(mapping.get("uuid")), str(mapping.get("function", "")).split(":function:")[-1],
                      str(mapping.get("kind"))]
            if mapping.get("lag") is not None:
                lag.add_metric(labels, float(mapping["lag"]))
            invocations.add_metric(labels, float(mapping.get("invocations") or 0))
        yield lag
        yield invocations
