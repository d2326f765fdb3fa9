"""CloudWatch's per-minute series (squall/observe/metric_series.py): statistic sets over periods,
Lambda's dimension sets for invocations, retention and the series bound."""

from __future__ import annotations

from squall.observe.metric_series import MetricSeries, dimensions

T0 = 1_700_000_040.0  # a minute boundary
FN = (("FunctionName", "fn"),)


def test_invocations_roll_up_to_lambdas_dimension_sets():
    s = MetricSeries()
    s.record_invocation("fn", None, "$LATEST", 10.0, False, T0)
    s.record_invocation("fn", "live", "3", 30.0, True, T0 + 5)
    s.record_invocation("fn", "live", "3", 20.0, False, T0 + 65)
    s.record_invocation("other", None, "$LATEST", 1.0, False, T0 + 1)
    (first, second) = s.statistics("Invocations", FN, T0, T0 + 120, 60)
    assert (first.timestamp, first.sum, second.sum) == (T0, 2.0, 1.0)
    (everything,) = s.statistics("Invocations", (), T0, T0 + 120, 120)
    assert everything.sum == 4.0
    (errors,) = s.statistics("Errors", FN, T0, T0 + 120, 120)
    assert (errors.sum, errors.sample_count, errors.average) == (1.0, 3, 1 / 3)
    (duration,) = s.statistics("Duration", dimensions(FunctionName="fn", Resource="fn:live"), T0, T0 + 120, 300)
    assert (duration.minimum, duration.maximum, duration.average, duration.unit) == (20.0, 30.0, 25.0, "Milliseconds")
    executed = s.statistics("Invocations", dimensions(FunctionName="fn", ExecutedVersion="3"), T0, T0 + 120, 60)
    assert [d.sum for d in executed] == [1.0, 1.0]
    assert s.statistics("Invocations", FN, T0 + 120, T0 + 240, 60) == []  # nothing then


def test_list_filters_by_metric_and_dimensions():
    s = MetricSeries()
    s.record_invocation("fn", "live", "3", 1.0, False, T0)
    s.record("Throttles", FN, 1.0, T0)
    listed = s.list(wanted=[("FunctionName", "fn")])
    assert ("Throttles", FN) in listed and ("Invocations", FN) in listed
    assert ("Duration", dimensions(FunctionName="fn", Resource="fn:live")) in listed
    assert s.list("Errors", [("Resource", None)]) == [("Errors", dimensions(FunctionName="fn", Resource="fn:live"))]
    assert s.list(wanted=[("FunctionName", "nosuch")]) == []


def test_old_minutes_are_dropped_and_series_are_bounded():
    s = MetricSeries(retention=120, max_series=2)
    s.record("Throttles", FN, 1.0, T0)
    s.record("Throttles", FN, 1.0, T0 + 300)  # the first minute is past the retention now
    assert [d.timestamp for d in s.statistics("Throttles", FN, 0, T0 + 600, 60)] == [T0 + 300]
    s.record("Throttles", (), 1.0, T0)
    s.record("AsyncEventsReceived", FN, 1.0, T0)  # a third series: refused
    assert s.refused == 1 and s.list("AsyncEventsReceived") == []
    s.forget("fn")
    assert s.list(wanted=[("FunctionName", "fn")]) == []


def test_duration_percentiles_are_estimated_within_a_few_per_cent():
    import random

    rng = random.Random(7)
    s = MetricSeries()
    values = sorted(rng.lognormvariate(2, 1) for _ in range(4000))
    for i, v in enumerate(values):
        s.record_invocation("fn", None, "$LATEST", v, False, T0 + (i % 120))
    (point,) = s.statistics("Duration", FN, T0, T0 + 180, 180)  # two minutes' histograms merged
    for p in (50, 90, 99):
        truth = values[int(p / 100 * len(values)) - 1]
        assert abs(point.percentile(p) - truth) <= 0.06 * truth, (p, point.percentile(p), truth)
    assert point.percentile(100) == point.maximum
    (throttles,) = [s.record("Throttles", FN, 1.0, T0)] or [None]
    assert s.statistics("Throttles", FN, T0, T0 + 60, 60)[0].percentile(99) is None  # no histogram: no percentile
