"""Lambda's CloudWatch metrics (namespace ``AWS/Lambda``) as per-minute aggregates in memory.

Each recorded value lands in the minute it happened in, under one metric name and one set of
dimensions: the sum, the count, the minimum and the maximum of what was recorded there (a
CloudWatch "statistic set"). Statistics over any period of whole minutes are sums, counts,
minima and maxima of those. A series keeps ``retention`` seconds (default 24 hours); older
minutes are dropped as new ones come, and at most ``max_series`` series exist (new ones beyond
that are not kept: the count of refused series is reported).

Durations also go into a logarithmic histogram per minute (``bucket_of``), from which a period's
percentiles are estimated (``Datapoint.percentile``) within about 5 %.

Invocations, Errors and Duration, recorded once per invocation, have a faster path
(``record_invocation``): one cell per (function, qualifier, executed version) and minute; the
dimension sets CloudWatch offers for them (all functions, ``FunctionName``, ``FunctionName`` +
``Resource``, ``ExecutedVersion`` + ``FunctionName``) are summed from those cells when read.

The clock is the caller's (``at`` in epoch seconds). Nothing here does I/O; the recorder and the
readers run on the event loop, so there is no lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

NAMESPACE = "AWS/Lambda"
Dimensions = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


# Durations are also counted in logarithmic buckets (each 10 % wider than the last, from 0.01 ms),
# so that percentiles (p50, p99…) can be estimated per period within about 5 %.
_BUCKET_BASE, _BUCKET_GROWTH = 0.01, 1.1
_LOG_GROWTH = math.log(_BUCKET_GROWTH)


def bucket_of(value: float) -> int:
    return 0 if value <= _BUCKET_BASE else int(math.log(value / _BUCKET_BASE) / _LOG_GROWTH) + 1


def bucket_bounds(index: int) -> tuple[float, float]:
    if index == 0:
        return 0.0, _BUCKET_BASE
    return _BUCKET_BASE * _BUCKET_GROWTH ** (index - 1), _BUCKET_BASE * _BUCKET_GROWTH ** index


@dataclass
class Aggregate:
    sum: float = 0.0
    count: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    buckets: dict[int, int] | None = None  # the values' histogram, where one is kept (Duration)

    def add(self, value: float, count: int = 1) -> None:
        self.sum += value
        self.count += count
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Aggregate) -> None:
        self.sum += other.sum
        self.count += other.count
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other.buckets:
            if self.buckets is None:
                self.buckets = {}
            for index, count in other.buckets.items():
                self.buckets[index] = self.buckets.get(index, 0) + count

    def percentile(self, p: float) -> float | None:
        """An estimate of the p-th percentile (0 < p <= 100) of the values; None without a histogram."""
        if not self.buckets or not self.count:
            return None
        rank = p / 100 * self.count
        seen = 0
        for index in sorted(self.buckets):
            count = self.buckets[index]
            if seen + count >= rank:
                low, high = bucket_bounds(index)
                value = low + (high - low) * ((rank - seen) / count if count else 0.5)
                return min(max(value, self.minimum), self.maximum)
            seen += count
        return self.maximum


@dataclass(frozen=True)
class Datapoint:
    timestamp: float  # the start of its period, epoch seconds
    sample_count: int
    sum: float
    minimum: float
    maximum: float
    unit: str
    aggregate: Aggregate | None = field(default=None, compare=False, repr=False)

    def percentile(self, p: float) -> float | None:
        return None if self.aggregate is None else self.aggregate.percentile(p)

    @property
    def average(self) -> float:
        return self.sum / self.sample_count if self.sample_count else 0.0

    def statistic(self, name: str) -> float:
        return {"SampleCount": float(self.sample_count), "Sum": self.sum, "Minimum": self.minimum,
                "Maximum": self.maximum, "Average": self.average}[name]


STATISTICS = ("SampleCount", "Sum", "Minimum", "Maximum", "Average")


def dimensions(**pairs: str | None) -> Dimensions:
    return tuple(sorted((k, v) for k, v in pairs.items() if v is not None))


INVOCATION_METRICS = {"Invocations": "Count", "Errors": "Count", "Duration": "Milliseconds"}
InvocationKey = tuple[str, "str | None", str]  # function, qualifier it was invoked with, executed version


class _Cell:
    """One minute of one (function, qualifier, executed version): count, errors, durations."""

    __slots__ = ("count", "errors", "total", "shortest", "longest", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.shortest = float("inf")
        self.longest = 0.0
        self.buckets: dict[int, int] = {}

    def aggregate(self, metric: str) -> Aggregate:
        if metric == "Invocations":
            return Aggregate(float(self.count), self.count, 1.0, 1.0)
        if metric == "Errors":
            return Aggregate(float(self.errors), self.count, 0.0 if self.errors < self.count else 1.0,
                             1.0 if self.errors else 0.0)
        return Aggregate(self.total, self.count, self.shortest, self.longest, dict(self.buckets))


def _invocation_dimensions(key: InvocationKey) -> list[Dimensions]:
    function, qualifier, executed = key
    found: list[Dimensions] = [(), (("FunctionName", function),)]
    if qualifier:
        found.append((("FunctionName", function), ("Resource", f"{function}:{qualifier}")))
        if executed != qualifier:
            found.append((("ExecutedVersion", executed), ("FunctionName", function)))
    return found


class MetricSeries:
    def __init__(self, retention: float = 86400.0, max_series: int = 20000) -> None:
        self.retention = retention
        self.max_series = max_series
        self.refused = 0  # series not created: max_series reached
        self._series: dict[tuple[str, Dimensions], dict[int, Aggregate]] = {}
        self._invocations: dict[InvocationKey, dict[int, _Cell]] = {}
        self._units: dict[str, str] = dict(INVOCATION_METRICS)

    def record_invocation(self, function: str, qualifier: str | None, executed: str, duration_ms: float,
                          error: bool, at: float) -> None:
        key = (function, qualifier, executed)
        minutes = self._invocations.get(key)
        if minutes is None:
            if len(self._invocations) + len(self._series) >= self.max_series:
                self.refused += 1
                return
            minutes = self._invocations[key] = {}
        minute = int(at // 60)
        cell = minutes.get(minute)
        if cell is None:
            cell = minutes[minute] = _Cell()
            oldest = minute - int(self.retention // 60)
            for stale in [m for m in minutes if m <= oldest]:
                del minutes[stale]
        cell.count += 1
        if error:
            cell.errors += 1
        cell.total += duration_ms
        if duration_ms < cell.shortest:
            cell.shortest = duration_ms
        if duration_ms > cell.longest:
            cell.longest = duration_ms
        index = 0 if duration_ms <= _BUCKET_BASE else int(math.log(duration_ms / _BUCKET_BASE) / _LOG_GROWTH) + 1
        cell.buckets[index] = cell.buckets.get(index, 0) + 1

    def _invocation_minutes(self, metric: str, dims: Dimensions) -> dict[int, Aggregate]:
        merged: dict[int, Aggregate] = {}
        for key, minutes in self._invocations.items():
            if dims not in _invocation_dimensions(key):
                continue
            for minute, cell in minutes.items():
                merged.setdefault(minute, Aggregate()).merge(cell.aggregate(metric))
        return merged

    def forget(self, function: str) -> None:
        """A deleted function's series go."""
        for key in [k for k in self._invocations if k[0] == function]:
            del self._invocations[key]
        for key in [k for k in self._series if ("FunctionName", function) in k[1]]:
            del self._series[key]

    def record(self, metric: str, dims: Dimensions, value: float, at: float, unit: str = "Count") -> None:
        key = (metric, dims)
        minutes = self._series.get(key)
        if minutes is None:
            if len(self._series) >= self.max_series:
                self.refused += 1
                return
            minutes = self._series[key] = {}
            self._units.setdefault(metric, unit)
        minute = int(at // 60)
        aggregate = minutes.get(minute)
        if aggregate is None:
            aggregate = minutes[minute] = Aggregate()
            oldest = minute - int(self.retention // 60)
            for stale in [m for m in minutes if m <= oldest]:  # at most a few: one per new minute
                del minutes[stale]
        aggregate.add(value)

    def statistics(self, metric: str, dims: Dimensions, start: float, end: float, period: int) -> list[Datapoint]:
        """Datapoints of one series, one per period (whole minutes) in [start, end) that has data,
        oldest first. ``period`` is rounded up to a multiple of 60 seconds."""
        if metric in INVOCATION_METRICS:
            minutes = self._invocation_minutes(metric, dims)
        else:
            minutes = self._series.get((metric, dims)) or {}
        if not minutes:
            return []
        period = max(60, -(-int(period) // 60) * 60)
        buckets: dict[int, Aggregate] = {}
        for minute, aggregate in minutes.items():
            moment = minute * 60
            if start <= moment < end:
                slot = int(start + ((moment - start) // period) * period)
                buckets.setdefault(slot, Aggregate()).merge(aggregate)
        unit = self._units.get(metric, "None")
        return [Datapoint(float(slot), a.count, a.sum, a.minimum, a.maximum, unit, a) for slot, a in sorted(buckets.items())]

    def list(self, metric: str | None = None, wanted: Iterable[tuple[str, str | None]] = ()) -> list[tuple[str, Dimensions]]:
        """The series (metric name, dimensions) matching ``metric`` and every (name, value or
        None for any value) of ``wanted``, as ListMetrics filters them."""
        wanted = list(wanted)
        candidates = {(name, dims) for (name, dims), minutes in self._series.items() if minutes}
        for key, minutes in self._invocations.items():
            if minutes:
                candidates.update((name, dims) for name in INVOCATION_METRICS for dims in _invocation_dimensions(key))
        found = []
        for name, dims in candidates:
            if metric is not None and name != metric:
                continue
            held = dict(dims)
            if all(key in held and (value is None or held[key] == value) for key, value in wanted):
                found.append((name, dims))
        return sorted(found)

    def unit(self, metric: str) -> str:
        return self._units.get(metric, "None")
