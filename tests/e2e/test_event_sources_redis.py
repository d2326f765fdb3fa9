"""Redis Streams event source mappings through boto3, against the machine's Redis (127.0.0.1:6379).

Each test uses stream keys of its own and deletes them. A mapping reads through its own
consumer group (``squall-<UUID>``); the tests look at the group (pending entries, last
delivered id) to see what Squall acknowledged. The RECORDER function of the SQS/Kinesis tests
reads these records too: they are Kinesis-shaped.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time

import pytest

from tests.conftest import require, start_server, unique_name
from tests.e2e.test_event_sources import (  # noqa: F401  (moto is a fixture)
    aws,
    drain,
    error_of,
    make_queue,
    moto,
    recorder,
    server_env,
    wait_state,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
ACCOUNT = "123456789012"


def redis_up() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def brokers_env(moto_url: str) -> dict[str, str]:
    brokers = {"local": REDIS_URL, "down": f"redis://127.0.0.1:{closed_port()}/0"}
    return {**server_env(moto_url), "SQUALL_EVENT_SOURCE_BROKERS": json.dumps(brokers)}


def arn_of(key: str, broker: str = "local") -> str:
    return f"arn:aws:redis:us-east-1:{ACCOUNT}:{broker}/stream/{key}"


@pytest.fixture(scope="module")
def rds():
    require(redis_up(), "a Redis server on 127.0.0.1:6379 and the redis package")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="module")
def squall(tmp_path_factory, rds, moto):  # noqa: F811
    running = start_server(tmp_path_factory.mktemp("squall-redis"), "--isolation", "process", env=brokers_env(moto))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


@pytest.fixture
def keys(rds):
    """Makes unique stream keys (empty streams) and deletes them afterwards."""
    made: list[str] = []

    def make(empty: bool = True) -> str:
        key = unique_name("squall-test-stream")
        made.append(key)
        if empty:
            rds.xgroup_create(key, "setup", id="$", mkstream=True)
            rds.xgroup_destroy(key, "setup")
        return key

    yield make
    if made:
        rds.delete(*made)


def group_of(mapping_uuid: str) -> str:
    return f"squall-{mapping_uuid}"


def group_info(rds, key: str, uuid: str) -> dict:
    for group in rds.xinfo_groups(key):
        if group["name"].decode() == group_of(uuid):
            return group
    raise AssertionError(f"no consumer group {group_of(uuid)} on {key}: {rds.xinfo_groups(key)}")


def wait_all_acknowledged(rds, key: str, uuid: str, timeout: float = 15.0) -> dict:
    """Until the group has been given every entry of the stream and has none pending."""
    last = rds.xinfo_stream(key)["last-generated-id"].decode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = group_info(rds, key, uuid)
        except AssertionError:
            info = None
        if info and info["pending"] == 0 and info["last-delivered-id"].decode() == last:
            return info
        time.sleep(0.1)
    raise AssertionError(f"not all acknowledged: {info}")


def wait_result_ok(lam, uuid: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] != "OK":
        assert time.monotonic() < deadline, lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"]
        time.sleep(0.1)


def add(rds, key: str, data: str | None = None, partition: str | None = None, **fields: str) -> str:
    entry = dict(fields)
    if data is not None:
        entry["data"] = data
    if partition is not None:
        entry["partitionKey"] = partition
    return rds.xadd(key, entry).decode()


# ---------------------------------------------------------------- happy path and order
def wait_no_group(rds, key: str, uuid: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(uuid in (g["name"].decode() if isinstance(g["name"], bytes) else g["name"])
              for g in rds.xinfo_groups(key)):
        assert time.monotonic() < deadline, f"the group of {uuid} is still on {key}"
        time.sleep(0.05)


def test_redis_in_order_per_partition_key_with_kinesis_shaped_records(lam, rds, keys, tmp_path):
    key = keys()
    arn = arn_of(key)
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON",
                                              BatchSize=5, ParallelizationFactor=2)
    assert created["EventSourceArn"] == arn and created["ParallelizationFactor"] == 2
    assert created["StartingPosition"] == "TRIM_HORIZON" and created["MaximumRetryAttempts"] == -1
    uuid = created["UUID"]
    wait_state(lam, uuid, "Enabled")
    sent: dict[str, list[str]] = {}
    ids: dict[str, str] = {}
    for i in range(40):
        pk = f"key-{i % 4}"
        body = f"{pk}:{i}"
        sent.setdefault(pk, []).append(body)
        ids[body] = add(rds, key, data=body, partition=pk)
    plain_id = add(rds, key, kind="plain", n="7")  # no data field: the record's data is the fields as JSON
    plain = json.dumps({"kind": "plain", "n": "7"}, separators=(",", ":"))
    batches = sink.wait_bodies({b for bodies in sent.values() for b in bodies} | {plain})
    delivered: dict[str, list[str]] = {}
    for batch in batches:
        assert len(batch["ids"]) <= 5
        for seq, body, pk in zip(batch["ids"], batch["bodies"], batch["keys"]):
            delivered.setdefault(pk, []).append(body)
            assert seq == (plain_id if body == plain else ids[body])  # the sequence number is the entry id
    assert delivered == {**sent, key: [plain]}  # each once, in order per partition key; no key: the stream's
    record = next(b["first"] for b in batches if b["first"]["kinesis"]["partitionKey"] != key)
    entry_id = record["kinesis"]["sequenceNumber"]
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["kinesis"]["partitionKey"],
            "sequenceNumber": entry_id,
            "data": base64.b64encode(base64.b64decode(record["kinesis"]["data"])).decode(),
            "approximateArrivalTimestamp": int(entry_id.split("-")[0]) / 1000,
        },
        "eventSource": "squall:redis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{entry_id}",
        "eventName": "squall:redis:record",
        "invokeIdentityArn": record["invokeIdentityArn"],
        "awsRegion": "us-east-1",
        "eventSourceARN": arn,
    }
    assert record["invokeIdentityArn"].startswith("arn:aws:iam::")
    assert base64.b64decode(record["kinesis"]["data"]).decode().startswith("key-")
    wait_all_acknowledged(rds, key, uuid)  # XACKed after each batch
    wait_result_ok(lam, uuid)
    lam.delete_event_source_mapping(UUID=uuid)
    wait_no_group(rds, key, uuid)  # a deleted mapping's consumer group goes with it


def test_redis_starting_positions_latest_and_at_timestamp(lam, rds, keys, tmp_path):
    key = keys()
    now_ms = int(rds.time()[0] * 1000)
    rds.xadd(key, {"data": "old-1"}, id=f"{now_ms - 5000}-0")
    rds.xadd(key, {"data": "old-2"}, id=f"{now_ms - 3000}-0")
    latest_fn, latest = recorder(lam, tmp_path)
    stamped_fn, stamped = recorder(lam, tmp_path)
    made = [lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=latest_fn,
                                            StartingPosition="LATEST"),
            lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=stamped_fn,
                                            StartingPosition="AT_TIMESTAMP",
                                            StartingPositionTimestamp=(now_ms - 4000) / 1000)]
    for m in made:
        wait_state(lam, m["UUID"], "Enabled")
    add(rds, key, data="new-1")
    latest.wait_bodies({"new-1"})
    stamped.wait_bodies({"old-2", "new-1"})
    for m in made:
        wait_all_acknowledged(rds, key, m["UUID"])
        lam.delete_event_source_mapping(UUID=m["UUID"])
    assert latest.bodies() == ["new-1"]
    assert stamped.bodies() == ["old-2", "new-1"]


# ---------------------------------------------------------------- filters
def test_redis_filters_see_data_and_partition_key_and_drop_the_rest(lam, rds, keys, tmp_path):
    key = keys()
    name, sink = recorder(lam, tmp_path)
    patterns = [{"Pattern": json.dumps({"data": {"kind": ["keep"]}})},
                {"Pattern": json.dumps({"partitionKey": [{"prefix": "vip-"}]})}]
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10,
                                              FilterCriteria={"Filters": patterns})
    assert created["FilterCriteria"] == {"Filters": patterns}
    wait_state(lam, created["UUID"], "Enabled")
    add(rds, key, data=json.dumps({"kind": "keep", "n": 1}))
    add(rds, key, data=json.dumps({"kind": "drop", "n": 2}))
    add(rds, key, kind="keep", n="3")  # fields only: data is {"kind": "keep", "n": "3"}
    add(rds, key, kind="drop", n="4")
    add(rds, key, data="plain text for a vip", partition="vip-7")
    add(rds, key, data="plain text", partition="other")
    expected = [json.dumps({"kind": "keep", "n": 1}), json.dumps({"kind": "keep", "n": "3"}, separators=(",", ":")),
                "plain text for a vip"]
    sink.wait_bodies(set(expected))
    wait_all_acknowledged(rds, key, created["UUID"])  # the filtered-out entries were acknowledged too
    assert sink.bodies() == expected
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- failures
def test_redis_partial_failures_retry_from_the_first_failed_entry(lam, rds, keys, tmp_path):
    key = keys()
    name, sink = recorder(lam, tmp_path)
    for body in ("a", "b", "bad-c", "d"):
        add(rds, key, data=body, partition="k")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn_of(key), FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"], MaximumRetryAttempts=2)
    assert created["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    batches = sink.wait(lambda bs: len(bs) >= 3, what="three invocations")
    assert batches[0]["bodies"] == ["a", "b", "bad-c", "d"]
    assert batches[1]["bodies"] == ["bad-c", "d"] and batches[2]["bodies"] == ["bad-c", "d"]
    # Two retries, then given up (no destination: dropped) and acknowledged; later entries go on.
    add(rds, key, data="after", partition="k")
    batches = sink.wait(lambda bs: len(bs) >= 4, what="the entry after the failed ones")
    assert [b["bodies"] for b in batches] == [["a", "b", "bad-c", "d"], ["bad-c", "d"], ["bad-c", "d"], ["after"]]
    wait_all_acknowledged(rds, key, created["UUID"])
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_redis_retries_exhausted_go_to_the_on_failure_queue_and_the_stream_goes_on(lam, rds, keys, moto,  # noqa: F811
                                                                                   tmp_path):
    key = keys()
    sqs = aws("sqs", moto)
    failures_url, failures_arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    first = add(rds, key, data="x1")
    last = add(rds, key, data="boom")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn_of(key), FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=10,
        MaximumBatchingWindowInSeconds=1, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}})
    records = drain(sqs, failures_url, 1, timeout=30)
    assert len(records) == 1
    failure = json.loads(records[0])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000" and info["streamArn"] == arn_of(key)
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (first, last, 2)
    assert [b["bodies"] for b in sink.batches()] == [["x1", "boom"], ["x1", "boom"]]
    add(rds, key, data="after")
    sink.wait_bodies({"after"})
    wait_all_acknowledged(rds, key, created["UUID"])
    assert [b["bodies"] for b in sink.batches()] == [["x1", "boom"], ["x1", "boom"], ["after"]]
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- life cycle
def test_redis_disable_stops_reading_and_enable_resumes(lam, rds, keys, tmp_path):
    key = keys()
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON")
    uuid = created["UUID"]
    wait_state(lam, uuid, "Enabled")
    before = add(rds, key, data="before")
    sink.wait_bodies({"before"})
    wait_all_acknowledged(rds, key, uuid)
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    wait_state(lam, uuid, "Disabled", timeout=10)
    for i in range(3):
        add(rds, key, data=f"while-disabled-{i}")
    time.sleep(3)
    assert sink.bodies() == ["before"]
    info = group_info(rds, key, uuid)  # waiting in the stream, not taken by Squall
    assert info["last-delivered-id"].decode() == before and info["pending"] == 0
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    wait_state(lam, uuid, "Enabled")
    sink.wait_bodies({f"while-disabled-{i}" for i in range(3)})
    wait_all_acknowledged(rds, key, uuid)
    assert sink.bodies() == ["before"] + [f"while-disabled-{i}" for i in range(3)]
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_state(lam, uuid, "Disabled")
    lam.delete_event_source_mapping(UUID=uuid)
    wait_no_group(rds, key, uuid)  # deleted while disabled: cleaned up too


def test_redis_update_batch_size_takes_effect(lam, rds, keys, tmp_path):
    key = keys()
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1)
    wait_state(lam, created["UUID"], "Enabled")
    updated = lam.update_event_source_mapping(UUID=created["UUID"], BatchSize=2)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 2
    wait_state(lam, created["UUID"], "Enabled")
    for i in range(10):
        add(rds, key, data=f"m{i}")
    batches = sink.wait_bodies({f"m{i}" for i in range(10)})
    assert max(len(b["ids"]) for b in batches) <= 2
    assert sink.bodies() == [f"m{i}" for i in range(10)]
    assert lam.get_event_source_mapping(UUID=created["UUID"])["BatchSize"] == 2
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- bad input
def test_redis_bad_input_gets_lambdas_errors(lam, rds, keys, tmp_path):
    name, _ = recorder(lam, tmp_path)
    create = lam.create_event_source_mapping
    key = keys()
    status, code, message = error_of(create, EventSourceArn=arn_of(key, broker="nowhere"), FunctionName=name,
                                     StartingPosition="LATEST")
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "'nowhere'" in message and "event_source_brokers" in message
    missing = unique_name("squall-test-missing")
    status, code, message = error_of(create, EventSourceArn=arn_of(missing), FunctionName=name,
                                     StartingPosition="LATEST")
    assert (status, code) == (400, "InvalidParameterValueException")
    assert missing in message and "does not exist" in message
    text_key = keys(empty=False)
    rds.set(text_key, "not a stream")
    status, code, message = error_of(create, EventSourceArn=arn_of(text_key), FunctionName=name,
                                     StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "not a stream" in message
    status, code, message = error_of(create, EventSourceArn=arn_of(key, broker="down"), FunctionName=name,
                                     StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "cannot reach" in message and "'down'" in message
    status, code, message = error_of(create, EventSourceArn=arn_of(key), FunctionName=name)
    assert code == "InvalidParameterValueException" and "startingPosition" in message
    status, code, message = error_of(create, EventSourceArn=f"arn:aws:redis:us-east-1:{ACCOUNT}:local/{key}",
                                     FunctionName=name, StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "Unrecognized event source" in message
    assert lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []


# ---------------------------------------------------------------- a crash
def test_redis_sigkill_redelivers_what_was_not_acknowledged_in_order(rds, keys, moto, tmp_path):  # noqa: F811
    """SIGKILL the server while batches run; after a restart every entry arrives, each partition
    key's entries in order within each run (the pending ones before those added since), every
    entry pending at the crash comes again and none that had been acknowledged does."""
    key = keys()
    data_dir = tmp_path / "data"
    env = brokers_env(moto)
    first = start_server(data_dir, "--isolation", "process", env=env)
    lam = first.client("lambda")
    name, sink = recorder(lam, tmp_path, timeout=2, delay=0.3)
    made = lam.create_event_source_mapping(EventSourceArn=arn_of(key), FunctionName=name, BatchSize=5,
                                           ParallelizationFactor=2, StartingPosition="TRIM_HORIZON")
    uuid = made["UUID"]
    wait_state(lam, uuid, "Enabled")
    ids = [add(rds, key, data=f"k{i % 3}:{i}", partition=f"k{i % 3}") for i in range(60)]
    sink.wait(lambda bs: len(bs) >= 4, what="some batches before the crash")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    time.sleep(1.5)  # an invocation already running (its own process group) may still write its line
    crashed_at = len(sink.batches())
    group = group_info(rds, key, uuid)
    delivered = group["last-delivered-id"].decode()
    pending = {p["message_id"].decode() for p in rds.xpending_range(key, group_of(uuid), "-", "+", 1000)}
    acknowledged = {i for i in ids[: ids.index(delivered) + 1]} - pending
    assert acknowledged and pending, (acknowledged, pending)  # the crash came with batches in flight
    # More of each key while Squall is down: a restart must give the pending entries before these.
    ids += [add(rds, key, data=f"k{i % 3}:{i}", partition=f"k{i % 3}") for i in range(60, 75)]
    second = start_server(data_dir, "--isolation", "process", env=env)
    try:
        sink.wait_bodies({f"k{i % 3}:{i}" for i in range(75)}, timeout=60)
        wait_all_acknowledged(rds, key, uuid, timeout=30)
        batches = sink.batches()
        again = [i for b in batches[crashed_at:] for i in b["ids"]]
        assert not acknowledged & set(again)  # nothing acknowledged came again
        assert pending <= set(again)  # everything pending did
        for part in (batches[:crashed_at], batches[crashed_at:]):
            per_key: dict[str, list[int]] = {}
            for b in part:
                for body in b["bodies"]:
                    k, n = body.split(":")
                    per_key.setdefault(k, []).append(int(n))
            for k, numbers in per_key.items():
                assert numbers == sorted(numbers), (k, numbers)  # in order within each run
    finally:
        second.stop()
