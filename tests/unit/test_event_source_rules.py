"""The pure rules of event source mappings: batch responses, stream failure handling with an
injected clock, checkpoint watermarks, and Lambda's setting checks per source kind."""

from __future__ import annotations

import pytest

from squall.errors import InvalidParameterValue
from squall.sources.batches import (
    BISECT,
    RECORD_TOO_OLD,
    RETRIES_EXHAUSTED,
    RETRY,
    StreamFailurePolicy,
    Watermark,
    halves,
    read_response,
    retry_delay,
)
from squall.sources.kinds import DYNAMODB, KINESIS, SQS
from squall.sources.mapping import (
    Source,
    settings_for,
    settings_from_json,
    settings_to_json,
)

IDS = ["1", "2", "3"]


@pytest.mark.parametrize(
    "error, payload, report, failed",
    [
        ("Unhandled", b'{"errorMessage": "x"}', True, None),  # a function error fails the whole batch
        ("Unhandled", b"null", False, None),
        (None, b"anything at all", False, frozenset()),  # without ReportBatchItemFailures: success
        (None, b"", True, frozenset()),
        (None, b"null", True, frozenset()),
        (None, b"{}", True, frozenset()),
        (None, b'{"batchItemFailures": []}', True, frozenset()),
        (None, b'{"batchItemFailures": null}', True, frozenset()),
        (None, b'[]', True, frozenset()),
        (None, b'{"batchItemFailures": [{"itemIdentifier": "2"}]}', True, frozenset({"2"})),
        (None, b'{"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]}', True, frozenset({"1", "3"})),
        (None, b'{"batchItemFailures": [{"itemIdentifier": "9"}]}', True, None),  # unknown id
        (None, b'{"batchItemFailures": [{"itemIdentifier": ""}]}', True, None),  # empty id
        (None, b'{"batchItemFailures": [{"itemIdentifier": null}]}', True, None),
        (None, b'{"batchItemFailures": [{"other": "2"}]}', True, None),
        (None, b'{"batchItemFailures": "2"}', True, None),
        (None, b'{"batchItemFailures": [', True, None),  # not JSON
        (None, b'"a string"', True, None),
    ],
)
def test_batch_responses_read_as_lambda_reads_them(error, payload, report, failed):
    assert read_response(error, payload, report, IDS).failed == failed


@pytest.mark.parametrize(
    "policy, size, retries, age, decision",
    [
        (StreamFailurePolicy(-1, -1, False), 10, 1000, 10_000, RETRY),  # -1, -1: retry until the stream drops it
        (StreamFailurePolicy(2, -1, False), 10, 0, 0, RETRY),
        (StreamFailurePolicy(2, -1, False), 10, 1, 0, RETRY),
        (StreamFailurePolicy(2, -1, False), 10, 2, 0, RETRIES_EXHAUSTED),
        (StreamFailurePolicy(0, -1, False), 10, 0, 0, RETRIES_EXHAUSTED),
        (StreamFailurePolicy(2, 60, False), 10, 0, 61, RECORD_TOO_OLD),  # age wins over retries left
        (StreamFailurePolicy(2, 60, False), 10, 0, 60, RETRY),  # not older than the limit yet
        (StreamFailurePolicy(2, -1, True), 10, 5, 0, BISECT),  # splitting does not count as a retry
        (StreamFailurePolicy(2, -1, True), 1, 1, 0, RETRY),  # one record cannot be split
        (StreamFailurePolicy(2, -1, True), 1, 2, 0, RETRIES_EXHAUSTED),
        (StreamFailurePolicy(-1, 60, True), 4, 0, 100, RECORD_TOO_OLD),
    ],
)
def test_stream_failures_with_an_injected_clock(policy, size, retries, age, decision):
    now = 1_000_000.0
    assert policy.after_failure(size, retries, now - age, now) == decision


def test_retry_delays_grow_and_are_bounded():
    delays = [retry_delay(n) for n in range(20)]
    assert delays[0] == 0.5 and delays == sorted(delays) and max(delays) == 30.0


def test_halves_split_in_order():
    assert halves([1, 2, 3, 4, 5]) == ([1, 2, 3], [4, 5])
    assert halves([1, 2]) == ([1], [2])


def test_the_watermark_moves_only_over_records_done():
    mark = Watermark()
    mark.register(["1", "2", "3", "4", "5"])
    assert mark.done(["2", "3"]) is None  # 1 is not done: nothing may be checkpointed
    assert mark.done(["1"]) == "3"
    assert mark.done(["5"]) is None
    assert mark.pending == 2
    assert mark.done(["4"]) == "5"
    assert mark.pending == 0


def test_the_watermark_stays_small_over_a_long_stream():
    mark = Watermark()
    for start in range(0, 20_000, 100):
        batch = [str(n) for n in range(start, start + 100)]
        mark.register(batch)
        assert mark.done(batch) == batch[-1]
    assert mark.pending == 0 and len(mark._order) < 5000


SQS_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
FIFO_ARN = "arn:aws:sqs:us-east-1:123456789012:orders.fifo"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
DDB_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/2024-01-01T00:00:00.000"


def test_sources_are_named_by_arn():
    assert Source.parse(SQS_ARN).kind == SQS and Source.parse(SQS_ARN).name == "orders"
    assert Source.parse(FIFO_ARN).fifo
    assert Source.parse(KINESIS_ARN).kind == KINESIS and Source.parse(KINESIS_ARN).name == "clicks"
    assert Source.parse(DDB_ARN).kind == DYNAMODB and Source.parse(DDB_ARN).name == "users"
    for bad in ("arn:aws:sqs:us-east-1:123456789012:", "arn:aws:kafka:us-east-1:123456789012:cluster/c/1",
                "arn:aws:kinesis:us-east-1:123456789012:table/x", "not an arn", "arn:aws:s3:::bucket"):
        with pytest.raises(InvalidParameterValue, match="Unrecognized event source"):
            Source.parse(bad)


def test_defaults_per_source_kind():
    sqs = settings_for(Source.parse(SQS_ARN), {})
    assert (sqs.batch_size, sqs.window_seconds, sqs.report_item_failures) == (10, 0, False)
    stream = settings_for(Source.parse(KINESIS_ARN), {"StartingPosition": "LATEST"})
    assert (stream.batch_size, stream.max_retries, stream.max_record_age, stream.parallelization) == (100, -1, -1, 1)


@pytest.mark.parametrize(
    "arn, params, message",
    [
        (SQS_ARN, {"BatchSize": 11}, "Maximum batch window"),
        (FIFO_ARN, {"BatchSize": 11, "MaximumBatchingWindowInSeconds": 1}, "FIFO"),
        (SQS_ARN, {"StartingPosition": "LATEST"}, "StartingPosition"),
        (SQS_ARN, {"TumblingWindowInSeconds": 10}, "TumblingWindowInSeconds"),
        (SQS_ARN, {"BisectBatchOnFunctionError": True}, "BisectBatchOnFunctionError"),
        (SQS_ARN, {"ParallelizationFactor": 2}, "ParallelizationFactor"),
        (SQS_ARN, {"DestinationConfig": {"OnFailure": {"Destination": SQS_ARN}}}, "DestinationConfig"),
        (SQS_ARN, {"Topics": ["t"]}, "Topics"),
        (KINESIS_ARN, {}, "startingPosition"),
        (KINESIS_ARN, {"StartingPosition": "AT_TIMESTAMP"}, "StartingPositionTimestamp"),
        (KINESIS_ARN, {"StartingPosition": "LATEST", "StartingPositionTimestamp": 5}, "StartingPositionTimestamp"),
        (DDB_ARN, {"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": 5}, "AT_TIMESTAMP"),
        (KINESIS_ARN, {"StartingPosition": "LATEST", "ScalingConfig": {"MaximumConcurrency": 2}}, "ScalingConfig"),
        (KINESIS_ARN, {"StartingPosition": "LATEST", "MaximumRecordAgeInSeconds": 59}, "MaximumRecordAgeInSeconds"),
        (KINESIS_ARN, {"StartingPosition": "LATEST",
                       "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:lambda:us-east-1:1:function:f"}}},
         "on-failure records go to"),
        (SQS_ARN, {"FilterCriteria": {"Filters": [{"Pattern": "{"}]}}, "filter"),
        (SQS_ARN, {"FilterCriteria": {"Filters": [{"Pattern": '{"a": ["x"]}'}] * 6}}, "filter"),
    ],
)
def test_settings_lambda_refuses(arn, params, message):
    with pytest.raises(InvalidParameterValue) as refused:
        settings_for(Source.parse(arn), params)
    assert message.lower() in refused.value.message.lower()


def test_an_update_changes_only_what_it_names_and_settings_survive_the_store():
    source = Source.parse(KINESIS_ARN)
    created = settings_for(source, {"StartingPosition": "TRIM_HORIZON", "BatchSize": 50,
                                    "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"a": [1]}}'}]}})
    updated = settings_for(source, {"BatchSize": 7, "MaximumRetryAttempts": 3}, created)
    assert (updated.batch_size, updated.max_retries, updated.starting_position) == (7, 3, "TRIM_HORIZON")
    assert updated.filter_criteria == created.filter_criteria and not updated.filters.empty
    cleared = settings_for(source, {"FilterCriteria": {}}, updated)
    assert cleared.filter_criteria is None and cleared.filters.empty
    again = settings_from_json(settings_to_json(updated))
    assert again == updated and again.filters.matches({"data": {"a": 1}}) and not again.filters.matches({"data": {"a": 2}})


def test_the_sources_pool_runs_work_on_daemon_threads_and_grows_to_its_limit():
    import threading
    import time as clock

    from squall.sources.aws import DaemonPool

    pool = DaemonPool(3, "test-pool")
    release = threading.Event()
    blocked = [pool.submit(release.wait, 10) for _ in range(3)]
    quick = pool.submit(lambda: threading.current_thread().daemon)
    clock.sleep(0.2)
    assert not quick.done()  # all three threads are busy: the fourth call waits for one
    release.set()
    assert quick.result(timeout=5) is True and all(f.result(timeout=5) for f in blocked)
    assert len(pool._threads) == 3
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=5)
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        pool.submit(print)


def test_tumbling_windows_split_records_by_aligned_windows_and_carry_state():
    from squall.sources.windows import MAX_STATE_BYTES, Window, split_by_window, window_start

    assert window_start(125.5, 60) == 120 and window_start(120.0, 60) == 120
    assert split_by_window([1.0, 2.0, 61.0, 62.0, 130.0], 60) == [(0.0, 0, 2), (60.0, 2, 4), (120.0, 4, 5)]
    assert split_by_window([], 60) == []
    window = Window(120.0, 60)
    envelope = window.envelope("shardId-1", "arn:s", final=False)
    assert envelope == {"window": {"start": "1970-01-01T00:02:00Z", "end": "1970-01-01T00:03:00Z"}, "state": {},
                        "shardId": "shardId-1", "eventSourceARN": "arn:s", "isFinalInvokeForWindow": False,
                        "isWindowTerminatedEarly": False}
    window.take_state(b'{"state": {"total": 3}, "batchItemFailures": []}')
    assert window.state == {"total": 3}
    for ignored in (b"not json", b"null", b'{"state": 5}', b'"text"', b""):
        window.take_state(ignored)
        assert window.state == {"total": 3}
    window.take_state(b'{"state": {"big": "' + b"x" * MAX_STATE_BYTES + b'"}}')
    assert window.state == {"total": 3} and window.terminated_early
    assert window.envelope("s", "a", final=True)["isWindowTerminatedEarly"] is True
