"""Event source mappings through boto3, against real servers of each kind (moto's server mode
serves SQS, Kinesis and DynamoDB Streams on an ephemeral port).

The functions write one line per batch to a file the test reads (the server runs the
``process`` sandbox so that they can): a sink that survives the server being SIGKILLed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, start_server, unique_name

RECORDER = r'''
import base64, json, os, time

def handler(event, context):
    started = time.time()
    records = event.get("Records", [])
    seen = []
    for r in records:
        if "kinesis" in r:
            body = base64.b64decode(r["kinesis"]["data"]).decode()
            seen.append((r["kinesis"]["sequenceNumber"], body, r["kinesis"]["partitionKey"]))
        elif "dynamodb" in r:
            seen.append((r["dynamodb"]["SequenceNumber"], json.dumps(r["dynamodb"], sort_keys=True), r["eventName"]))
        else:
            seen.append((r["messageId"], r["body"], ""))
    delay = float(os.environ.get("DELAY", "0"))
    if delay:
        time.sleep(delay)
    line = {"rid": context.aws_request_id, "ids": [s[0] for s in seen], "bodies": [s[1] for s in seen],
            "keys": [s[2] for s in seen], "first": records[0] if records else None, "start": started,
            "end": time.time()}
    with open(os.environ["SINK"], "a") as sink:
        sink.write(json.dumps(line) + "\n")
    if any("boom" in s[1] for s in seen):
        raise ValueError("boom")
    if any("malformed" in s[1] for s in seen):
        return {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}
    bad = [s[0] for s in seen if "bad" in s[1]]
    if bad:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}
    return None
'''


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def moto(moto_endpoint):
    """moto's server for this module (tests/conftest.py's moto_endpoint)."""
    return moto_endpoint


def server_env(moto: str) -> dict[str, str]:
    return {"SQUALL_AWS_ENDPOINT": moto, "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture(scope="module")
def squall(tmp_path_factory, moto):
    running = start_server(tmp_path_factory.mktemp("squall-esm"), "--isolation", "process", env=server_env(moto))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


def aws(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


class Sink:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        path.chmod(0o666)

    def batches(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def bodies(self) -> list[str]:
        return [b for batch in self.batches() for b in batch["bodies"]]

    def wait(self, check, timeout: float = 30.0, what: str = "") -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = self.batches()
            if check(batches):
                return batches
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.batches()}")

    def wait_bodies(self, expected: set[str], timeout: float = 30.0) -> list[dict]:
        return self.wait(lambda bs: expected <= {b for batch in bs for b in batch["bodies"]}, timeout,
                         f"{len(expected)} bodies")


def recorder(lam, tmp_path: Path, timeout: int = 3, delay: float = 0.0) -> tuple[str, Sink]:
    sink = Sink(tmp_path / f"sink-{unique_name()}.jsonl")
    name = create_function(lam, RECORDER, Timeout=timeout,
                           Environment={"Variables": {"SINK": str(sink.path), "DELAY": str(delay)}})
    return name, sink


def wait_state(lam, uuid: str, state: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mapping = lam.get_event_source_mapping(UUID=uuid)
        if mapping["State"] == state:
            return mapping
        time.sleep(0.05)
    raise AssertionError(f"mapping {uuid} is {mapping['State']}, not {state}")


def make_queue(sqs, visibility: int = 30, dlq_after: int | None = None) -> tuple[str, str, str | None]:
    attributes = {"VisibilityTimeout": str(visibility)}
    dlq_url = None
    if dlq_after is not None:
        dlq_url = sqs.create_queue(QueueName=unique_name("dlq"))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(dlq_after)})
    url = sqs.create_queue(QueueName=unique_name("q"), Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq_url


def drain(sqs, url: str, expected: int, timeout: float = 30.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < expected and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def queue_depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                    "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def error_of(call, **kwargs) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    err = raised.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"]["Message"]


# ---------------------------------------------------------------- SQS
def test_sqs_happy_path_and_lambda_record_format(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10)
    assert created["State"] == "Creating" and created["BatchSize"] == 10
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["EventSourceMappingArn"].endswith(f":event-source-mapping:{created['UUID']}")
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    mapping = wait_state(lam, created["UUID"], "Enabled")
    assert mapping["MaximumBatchingWindowInSeconds"] == 0 and mapping["FunctionResponseTypes"] == []
    assert "StartingPosition" not in mapping and "ParallelizationFactor" not in mapping
    bodies = {f"message-{i}" for i in range(25)}
    for start in range(0, 25, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"message-{i}",
             "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}}}
            for i in range(start, min(start + 10, 25))])
    batches = sink.wait_bodies(bodies)
    assert all(len(b["ids"]) <= 10 for b in batches)
    record = batches[0]["first"]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn and record["awsRegion"] == "us-east-1"
    assert set(record) >= {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody"}
    assert record["attributes"]["ApproximateReceiveCount"] == "1" and "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"]["kind"] == {"stringValue": "test", "binaryValue": None, "stringListValues": [],
                                                   "binaryListValues": [], "dataType": "String"}
    deadline = time.monotonic() + 15
    while queue_depth(sqs, url) and time.monotonic() < deadline:  # deleted after success
        time.sleep(0.2)
    assert queue_depth(sqs, url) == 0
    assert sorted(sink.bodies()) == sorted(bodies)  # each once: nothing failed, nothing came back
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_sqs_filters_drop_and_delete_what_no_pattern_matches(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    patterns = [{"Pattern": json.dumps({"body": {"kind": ["keep"], "n": [{"numeric": [">", 5]}]}})},
                {"Pattern": json.dumps({"body": {"kind": [{"prefix": "vip-"}]}})}]
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, FilterCriteria={"Filters": patterns})
    assert created["FilterCriteria"] == {"Filters": patterns}
    wait_state(lam, created["UUID"], "Enabled")
    messages = [{"kind": "keep", "n": 6}, {"kind": "keep", "n": 2}, {"kind": "drop", "n": 9}, {"kind": "vip-1"},
                "plain text"]
    for m in messages:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(m) if isinstance(m, dict) else m)
    sink.wait_bodies({json.dumps(messages[0]), json.dumps(messages[3])})
    deadline = time.monotonic() + 15
    while queue_depth(sqs, url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queue_depth(sqs, url) == 0  # the filtered-out messages were deleted, as on Lambda
    assert sorted(sink.bodies()) == sorted([json.dumps(messages[0]), json.dumps(messages[3])])
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_sqs_partial_batch_failures_return_only_the_failed_messages(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, dlq = make_queue(sqs, visibility=3, dlq_after=2)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    assert created["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": ("bad-" if i in (2, 5) else "good-") + str(i)} for i in range(8)])
    # The bad ones are received twice (maxReceiveCount 2), then moved to the DLQ by the queue.
    assert sorted(drain(sqs, dlq, 2, timeout=40)) == ["bad-2", "bad-5"]
    counts: dict[str, int] = {}
    for body in sink.bodies():
        counts[body] = counts.get(body, 0) + 1
    assert all(counts[f"good-{i}"] == 1 for i in range(8) if i not in (2, 5)), counts
    assert counts["bad-2"] == 2 and counts["bad-5"] == 2, counts
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_sqs_a_malformed_batch_response_fails_the_whole_batch(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, dlq = make_queue(sqs, visibility=3, dlq_after=1)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "0", "MessageBody": "fine"}, {"Id": "1", "MessageBody": "malformed"}])
    assert sorted(drain(sqs, dlq, 2, timeout=40)) == ["fine", "malformed"]
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_disable_stops_invocations_and_enable_resumes_them(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)
    wait_state(lam, created["UUID"], "Enabled")
    sqs.send_message(QueueUrl=url, MessageBody="before")
    sink.wait_bodies({"before"})
    updated = lam.update_event_source_mapping(UUID=created["UUID"], Enabled=False)
    assert updated["State"] == "Disabling"
    started = time.monotonic()
    wait_state(lam, created["UUID"], "Disabled", timeout=10)
    assert time.monotonic() - started < 10
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"while-disabled-{i}")
    time.sleep(3)
    assert sink.bodies() == ["before"]
    assert queue_depth(sqs, url) == 3  # waiting in the queue, not in Squall
    assert lam.update_event_source_mapping(UUID=created["UUID"], Enabled=True)["State"] == "Enabling"
    wait_state(lam, created["UUID"], "Enabled")
    sink.wait_bodies({f"while-disabled-{i}" for i in range(3)})
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_squall_event_sources_shows_state_lag_counts_and_last_result(squall, lam, moto, tmp_path):
    from click.testing import CliRunner

    from squall.cli.main import cli

    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)
    wait_state(lam, created["UUID"], "Enabled")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"s{i}"} for i in range(3)]
                           + [{"Id": "9", "MessageBody": "boom"}])
    sink.wait_bodies({"s0", "s1", "s2", "boom"})
    result = CliRunner().invoke(cli, ["event-sources", "--endpoint", squall.endpoint],
                                env={"SQUALL_DATA_DIR": str(squall.data_dir)})
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split()[:4] == ["UUID", "FUNCTION", "SOURCE", "STATE"]
    line = next(line for line in lines if line.startswith(created["UUID"]))
    assert name in line and "Enabled" in line and "sqs:" in line
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_a_mapping_outlives_its_function_and_takes_nothing_while_it_is_missing(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs, visibility=5)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)
    wait_state(lam, created["UUID"], "Enabled")
    lam.delete_function(FunctionName=name)
    for i in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f"orphan-{i}")
    time.sleep(4)
    assert lam.get_event_source_mapping(UUID=created["UUID"])["State"] == "Enabled"
    peek = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                               AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    # Still in the queue, received at most once by the poller (released at once): never burnt toward a DLQ.
    assert sorted(m["Body"] for m in peek) == ["orphan-0", "orphan-1"]
    assert all(int(m["Attributes"]["ApproximateReceiveCount"]) <= 3 for m in peek)
    create_function(lam, RECORDER, FunctionName=name, Environment={"Variables": {"SINK": str(sink.path), "DELAY": "0"}})
    sink.wait_bodies({"orphan-0", "orphan-1"})
    lam.delete_event_source_mapping(UUID=created["UUID"])


def most_at_once(batches: list[dict]) -> int:
    edges = sorted([(b["start"], 1) for b in batches] + [(b["end"], -1) for b in batches])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_sqs_pollers_scale_out_with_backlog_within_maximum_and_reserved_concurrency(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    name, sink = recorder(lam, tmp_path, delay=0.4)
    url, arn, _ = make_queue(sqs)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"a{i}"} for i in range(10)])
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"a{i + 10}"} for i in range(10)])
    capped = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=1,
                                             ScalingConfig={"MaximumConcurrency": 2})
    assert capped["ScalingConfig"] == {"MaximumConcurrency": 2}
    batches = sink.wait_bodies({f"a{i}" for i in range(20)}, timeout=60)
    assert most_at_once(batches) == 2  # scaled out, and no further than MaximumConcurrency
    lam.delete_event_source_mapping(UUID=capped["UUID"])

    other, other_sink = recorder(lam, tmp_path, delay=0.4)
    lam.put_function_concurrency(FunctionName=other, ReservedConcurrentExecutions=3)
    url, arn, _ = make_queue(sqs)
    for start in (0, 10, 20):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"b{start + i}"} for i in range(10)])
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=other, BatchSize=1)
    batches = other_sink.wait_bodies({f"b{i}" for i in range(30)}, timeout=60)
    assert 2 <= most_at_once(batches) <= 3  # many pollers, but never beyond the reserved concurrency
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_update_batch_size_takes_effect(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    url, arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1)
    wait_state(lam, created["UUID"], "Enabled")
    updated = lam.update_event_source_mapping(UUID=created["UUID"], BatchSize=2)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 2
    wait_state(lam, created["UUID"], "Enabled")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
    batches = sink.wait_bodies({f"m{i}" for i in range(10)})
    assert max(len(b["ids"]) for b in batches) <= 2
    assert lam.get_event_source_mapping(UUID=created["UUID"])["BatchSize"] == 2
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_mappings_are_listed_filtered_paged_and_deleted(lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    name, _ = recorder(lam, tmp_path)
    made = []
    for _ in range(3):
        _, arn, _ = make_queue(sqs)
        made.append(lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False))
    for m in made:
        wait_state(lam, m["UUID"], "Disabled")
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert sorted(m["UUID"] for m in listed) == sorted(m["UUID"] for m in made)
    assert [m["UUID"] for m in lam.list_event_source_mappings(EventSourceArn=made[1]["EventSourceArn"])[
        "EventSourceMappings"]] == [made[1]["UUID"]]
    first = lam.list_event_source_mappings(FunctionName=name, MaxItems=2)
    assert len(first["EventSourceMappings"]) == 2 and first["NextMarker"]
    rest = lam.list_event_source_mappings(FunctionName=name, Marker=first["NextMarker"])
    assert len(rest["EventSourceMappings"]) == 1 and "NextMarker" not in rest
    paginated = [m["UUID"] for page in lam.get_paginator("list_event_source_mappings").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}) for m in page["EventSourceMappings"]]
    assert sorted(paginated) == sorted(m["UUID"] for m in made)
    deleted = lam.delete_event_source_mapping(UUID=made[0]["UUID"])
    assert deleted["State"] == "Deleting" and deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            lam.get_event_source_mapping(UUID=made[0]["UUID"])
        except ClientError as gone:
            assert gone.response["Error"]["Code"] == "ResourceNotFoundException"
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the deleted mapping is still there")
    for m in made[1:]:
        lam.delete_event_source_mapping(UUID=m["UUID"])


def test_bad_input_gets_lambdas_errors(squall, lam, moto, tmp_path):
    sqs = aws("sqs", moto)
    kinesis = aws("kinesis", moto)
    _, arn, _ = make_queue(sqs)
    name, _ = recorder(lam, tmp_path)
    create = lam.create_event_source_mapping
    unchecked = squall.client("lambda", parameter_validation=False).create_event_source_mapping
    status, code, message = error_of(create, EventSourceArn="arn:aws:sns:us-east-1:123456789012:topic", FunctionName=name)
    assert (status, code) == (400, "InvalidParameterValueException") and "Unrecognized event source" in message
    status, code, message = error_of(create, EventSourceArn="arn:aws:kafka:us-east-1:123456789012:cluster/c/1",
                                     FunctionName=name, Topics=["orders"])
    assert code == "InvalidParameterValueException" and "Kafka" in message
    status, code, message = error_of(create, FunctionName=name, Topics=["orders"], SelfManagedEventSource={
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092"]}})
    assert code == "InvalidParameterValueException" and "Kafka" in message
    assert error_of(unchecked, EventSourceArn=arn, FunctionName=name, BatchSize=0)[:2] == (400, "ValidationException")
    assert error_of(unchecked, EventSourceArn=arn, FunctionName=name, BatchSize=10001)[:2] == (400, "ValidationException")
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=name, BatchSize=11)
    assert code == "InvalidParameterValueException" and "Maximum batch window" in message
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=name, TumblingWindowInSeconds=60)
    assert code == "InvalidParameterValueException" and "TumblingWindowInSeconds" in message
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=name, StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "StartingPosition" in message
    missing = "arn:aws:sqs:us-east-1:123456789012:no-such-queue"
    status, code, message = error_of(create, EventSourceArn=missing, FunctionName=name)
    assert code == "InvalidParameterValueException" and "no-such-queue" in message
    assert error_of(create, EventSourceArn=arn, FunctionName="no-such-function")[:2] == (404, "ResourceNotFoundException")
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=name,
                                     FilterCriteria={"Filters": [{"Pattern": "{not json"}]})
    assert code == "InvalidParameterValueException" and "filter" in message.lower()
    slow = create_function(lam, RECORDER, Timeout=60)
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=slow)
    assert message == "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds"
    kinesis.create_stream(StreamName=(stream := unique_name("s")), ShardCount=1)
    stream_arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    status, code, message = error_of(create, EventSourceArn=stream_arn, FunctionName=name)
    assert code == "InvalidParameterValueException" and "startingPosition" in message
    status, code, message = error_of(create, EventSourceArn=stream_arn, FunctionName=name, StartingPosition="LATEST",
                                     ScalingConfig={"MaximumConcurrency": 5})
    assert code == "InvalidParameterValueException" and "ScalingConfig" in message
    mapping = create(EventSourceArn=arn, FunctionName=name, Enabled=False)
    status, code, message = error_of(create, EventSourceArn=arn, FunctionName=name)
    assert (status, code) == (409, "ResourceConflictException") and mapping["UUID"] in message
    assert error_of(lam.get_event_source_mapping, UUID="00000000-0000-0000-0000-000000000000")[:2] == (
        404, "ResourceNotFoundException")
    assert error_of(lam.update_event_source_mapping, UUID=mapping["UUID"], BatchSize=11)[1] == "InvalidParameterValueException"
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


# ---------------------------------------------------------------- Kinesis and DynamoDB Streams
def make_stream(kinesis, shards: int = 1) -> str:
    name = unique_name("stream")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]


def test_kinesis_in_order_per_partition_key_with_lambdas_record_format(lam, moto, tmp_path):
    kinesis = aws("kinesis", moto)
    arn = make_stream(kinesis, shards=2)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON",
                                              BatchSize=5, ParallelizationFactor=2)
    assert created["StartingPosition"] == "TRIM_HORIZON" and created["ParallelizationFactor"] == 2
    assert created["MaximumRetryAttempts"] == -1 and created["MaximumRecordAgeInSeconds"] == -1
    wait_state(lam, created["UUID"], "Enabled")
    sent = {}
    for i in range(40):
        key = f"key-{i % 4}"
        sent.setdefault(key, []).append(f"{key}:{i}")
        kinesis.put_record(StreamName=arn.rsplit("/", 1)[1], Data=f"{key}:{i}".encode(), PartitionKey=key)
    batches = sink.wait_bodies({b for bodies in sent.values() for b in bodies})
    delivered: dict[str, list[str]] = {}
    for batch in batches:
        for body, key in zip(batch["bodies"], batch["keys"]):
            delivered.setdefault(key, []).append(body)
    assert delivered == sent  # each once, in order per partition key
    record = batches[0]["first"]
    assert record["eventSource"] == "aws:kinesis" and record["eventSourceARN"] == arn
    assert record["eventName"] == "aws:kinesis:record" and record["eventID"].startswith("shardId-")
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert base64.b64decode(record["kinesis"]["data"]).decode().startswith("key-")
    deadline = time.monotonic() + 10
    while lam.get_event_source_mapping(UUID=created["UUID"])["LastProcessingResult"] != "OK":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_kinesis_bisect_isolates_the_bad_record_and_it_goes_to_the_on_failure_queue(lam, moto, tmp_path):
    kinesis, sqs = aws("kinesis", moto), aws("sqs", moto)
    arn = make_stream(kinesis)
    failures_url, failures_arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    stream = arn.rsplit("/", 1)[1]
    for i in range(8):
        kinesis.put_record(StreamName=stream, Data=(b"boom" if i == 5 else f"r{i}".encode()), PartitionKey="k")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=8,
        MaximumBatchingWindowInSeconds=1, BisectBatchOnFunctionError=True, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}})
    assert created["BisectBatchOnFunctionError"] is True
    assert created["DestinationConfig"] == {"OnFailure": {"Destination": failures_arn}}
    records = drain(sqs, failures_url, 1, timeout=40)
    assert len(records) == 1
    failure = json.loads(records[0])
    info = failure["KinesisBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == arn and info["shardId"].startswith("shardId-")
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["functionArn"].endswith(f":function:{name}")
    assert failure["responseContext"]["functionError"] == "Unhandled"
    # Every other record got through, and records after the bad one are not held back.
    kinesis.put_record(StreamName=stream, Data=b"after", PartitionKey="k")
    sink.wait_bodies({f"r{i}" for i in range(8) if i != 5} | {"after"})
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_kinesis_partial_failures_retry_from_the_first_failed_record(lam, moto, tmp_path):
    kinesis = aws("kinesis", moto)
    arn = make_stream(kinesis)
    name, sink = recorder(lam, tmp_path)
    stream = arn.rsplit("/", 1)[1]
    for body in ("a", "b", "bad-c", "d"):
        kinesis.put_record(StreamName=stream, Data=body.encode(), PartitionKey="k")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"], MaximumRetryAttempts=2)
    batches = sink.wait(lambda bs: len(bs) >= 3, what="three invocations")
    assert batches[0]["bodies"] == ["a", "b", "bad-c", "d"]
    assert batches[1]["bodies"] == ["bad-c", "d"] and batches[2]["bodies"] == ["bad-c", "d"]
    time.sleep(1.5)
    assert len(sink.batches()) == 3  # two retries, then given up (no destination: dropped)
    lam.delete_event_source_mapping(UUID=created["UUID"])


WINDOWED = r'''
import json, os

def handler(event, context):
    state = dict(event.get("state") or {})
    state["count"] = state.get("count", 0) + len(event["Records"])
    line = {k: event[k] for k in ("window", "state", "shardId", "isFinalInvokeForWindow", "isWindowTerminatedEarly")}
    line["records"] = len(event["Records"])
    with open(os.environ["SINK"], "a") as sink:
        sink.write(json.dumps(line) + "\n")
    return {"state": state}
'''


def test_kinesis_tumbling_windows_carry_state_and_end_with_a_final_invocation(lam, moto, tmp_path):
    kinesis = aws("kinesis", moto)
    arn = make_stream(kinesis)
    sink = Sink(tmp_path / "windows.jsonl")
    name = create_function(lam, WINDOWED, Environment={"Variables": {"SINK": str(sink.path)}})
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON",
                                              BatchSize=2, TumblingWindowInSeconds=2)
    assert created["TumblingWindowInSeconds"] == 2
    wait_state(lam, created["UUID"], "Enabled")
    for i in range(5):
        kinesis.put_record(StreamName=arn.rsplit("/", 1)[1], Data=f"w{i}".encode(), PartitionKey="k")
    lines = sink.wait(lambda ls: sum(line["state"].get("count", 0) for line in ls if line["isFinalInvokeForWindow"]) >= 5,
                      timeout=30, what="the final invocations of the windows")
    finals = [line for line in lines if line["isFinalInvokeForWindow"]]
    assert all(line["records"] == 0 for line in finals) and sum(f["state"]["count"] for f in finals) == 5
    for line in lines:
        assert line["shardId"].startswith("shardId-") and line["isWindowTerminatedEarly"] is False
        assert line["window"]["end"] > line["window"]["start"]
    regular = [line for line in lines if not line["isFinalInvokeForWindow"]]
    assert sum(line["records"] for line in regular) == 5
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_dynamodb_stream_records(lam, moto, tmp_path):
    ddb = aws("dynamodb", moto)
    table = unique_name("t")
    described = ddb.create_table(
        TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    stream_arn = described["TableDescription"]["LatestStreamArn"]
    name, sink = recorder(lam, tmp_path)
    status, code, message = error_of(lam.create_event_source_mapping, EventSourceArn=stream_arn, FunctionName=name,
                                     StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=time.time())
    assert code == "InvalidParameterValueException"
    created = lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10)
    wait_state(lam, created["UUID"], "Enabled")
    ddb.put_item(TableName=table, Item={"id": {"S": "1"}, "v": {"N": "1"}})
    ddb.put_item(TableName=table, Item={"id": {"S": "1"}, "v": {"N": "2"}})
    ddb.delete_item(TableName=table, Key={"id": {"S": "1"}})
    batches = sink.wait(lambda bs: sum(len(b["ids"]) for b in bs) >= 3, what="three changes")
    names = [k for b in batches for k in b["keys"]]
    assert names == ["INSERT", "MODIFY", "REMOVE"]
    changes = [json.loads(body) for b in batches for body in b["bodies"]]
    assert changes[1]["OldImage"] == {"id": {"S": "1"}, "v": {"N": "1"}}
    assert changes[1]["NewImage"] == {"id": {"S": "1"}, "v": {"N": "2"}}
    assert changes[2]["Keys"] == {"id": {"S": "1"}} and "NewImage" not in changes[2]
    record = batches[0]["first"]
    assert record["eventSource"] == "aws:dynamodb" and record["eventSourceARN"] == stream_arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- a crash
def test_sigkill_with_batches_in_flight_loses_nothing_and_keeps_shard_order(moto, tmp_path):
    """SIGKILL the server while batches run; after a restart every record arrives (at least
    once), and each partition key's records arrive in order (a restart goes back, never skips)."""
    sqs, kinesis = aws("sqs", moto), aws("kinesis", moto)
    data_dir = tmp_path / "data"
    first = start_server(data_dir, "--isolation", "process", env=server_env(moto))
    lam = first.client("lambda")
    queue_url, queue_arn, _ = make_queue(sqs, visibility=2)
    stream_arn = make_stream(kinesis)
    stream = stream_arn.rsplit("/", 1)[1]
    name, sink = recorder(lam, tmp_path, timeout=2, delay=0.3)
    for arn, extra in ((queue_arn, {}), (stream_arn, {"StartingPosition": "TRIM_HORIZON"})):
        made = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=5, **extra)
        wait_state(lam, made["UUID"], "Enabled")
    expected_queue = {f"q{i}" for i in range(60)}
    for start in range(0, 60, 10):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": f"q{i}"} for i in range(start, start + 10)])
    for i in range(60):
        kinesis.put_record(StreamName=stream, Data=f"k{i % 3}:{i}".encode(), PartitionKey=f"k{i % 3}")
    sink.wait(lambda bs: len(bs) >= 4, what="some batches before the crash")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    time.sleep(1.5)  # an invocation already running (its own process group) may still write its line
    crashed_at = len(sink.batches())
    second = start_server(data_dir, "--isolation", "process", env=server_env(moto))
    try:
        expected_stream = {f"k{i % 3}:{i}" for i in range(60)}
        sink.wait_bodies(expected_queue | expected_stream, timeout=90)
        batches = sink.batches()
        for part in (batches[:crashed_at], batches[crashed_at:]):
            per_key: dict[str, list[int]] = {}
            for b in part:
                for body in b["bodies"]:
                    if body.startswith("k"):
                        key, n = body.split(":")
                        per_key.setdefault(key, []).append(int(n))
            for key, numbers in per_key.items():
                assert numbers == sorted(numbers), (key, numbers)  # in order within each run
    finally:
        second.stop()
