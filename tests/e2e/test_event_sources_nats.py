"""NATS JetStream event source mappings through boto3, against the machine's nats-server
(127.0.0.1:4222, with JetStream). Each test makes its own stream (and subjects) and deletes it.

The recorder function (tests/e2e/test_event_sources.py) writes one line per batch to a file:
a sink that survives the server being SIGKILLed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import ROLE, require, start_server, unique_name, wait_for
from tests.e2e.test_event_sources import (  # noqa: F401  (moto is a fixture)
    Sink,
    aws,
    drain,
    error_of,
    make_queue,
    moto,
    recorder,
    server_env,
    wait_state,
)

NATS_URL = "nats://127.0.0.1:4222"
BROKERS = {"local": NATS_URL, "down": "nats://127.0.0.1:1"}
ACCOUNT = "123456789012"


def nats_arn(stream: str, broker: str = "local") -> str:
    return f"arn:aws:nats:us-east-1:{ACCOUNT}:{broker}/stream/{stream}"


def nats_env(moto_url: str) -> dict[str, str]:
    return {**server_env(moto_url), "SQUALL_EVENT_SOURCE_BROKERS": json.dumps(BROKERS)}


class JetStreamAdmin:
    """What the tests do to NATS: each call its own short connection (the tests are synchronous)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    def _run(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(self.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1,
                                    reconnect_time_wait=0.2)
            try:
                return await work(nc.jetstream(timeout=5))
            finally:
                await nc.close()

        return asyncio.run(go())

    def make_stream(self) -> str:
        name = unique_name("squall-nats")

        async def work(js: Any) -> None:
            await js.add_stream(name=name, subjects=[f"{name}.>"])

        self._run(work)
        self.made.append(name)
        return name

    def publish(self, stream: str, messages: list[tuple[str, bytes]]) -> list[int]:
        """(subject suffix, data) → their stream sequence numbers."""

        async def work(js: Any) -> list[int]:
            return [(await js.publish(f"{stream}.{suffix}", data)).seq for suffix, data in messages]

        return self._run(work)

    def consumer(self, stream: str, name: str) -> Any:
        import nats.js.errors

        async def work(js: Any) -> Any:
            try:
                return await js.consumer_info(stream, name)
            except nats.js.errors.NotFoundError:
                return None

        return self._run(work)

    def delete_stream(self, stream: str) -> None:
        import nats.js.errors

        async def work(js: Any) -> None:
            try:
                await js.delete_stream(stream)
            except nats.js.errors.NotFoundError:
                pass

        self._run(work)

    def jetstream_enabled(self) -> bool:
        async def work(js: Any) -> bool:
            await js.account_info()
            return True

        try:
            return self._run(work)
        except Exception:
            return False


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def jet():
    try:
        import nats  # noqa: F401
    except ImportError:
        require(False, "nats-py is not installed")
    require(_listening("127.0.0.1", 4222), "NATS (with JetStream) listening on 127.0.0.1:4222")
    admin = JetStreamAdmin(NATS_URL)
    require(admin.jetstream_enabled(), "JetStream enabled on the NATS server at 127.0.0.1:4222")
    yield admin
    for stream in admin.made:
        admin.delete_stream(stream)


@pytest.fixture
def stream(jet):
    name = jet.make_stream()
    yield name
    jet.delete_stream(name)


@pytest.fixture(scope="module")
def squall(tmp_path_factory, jet, moto):  # noqa: F811
    running = start_server(tmp_path_factory.mktemp("squall-nats"), "--isolation", "process", env=nats_env(moto))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")




def all_acknowledged(jet: JetStreamAdmin, stream: str, uuid: str, last: int) -> Any:
    """The mapping's durable consumer has acknowledged everything up to ``last``."""
    def check() -> Any:
        info = jet.consumer(stream, f"squall-{uuid}")
        return info if info is not None and info.ack_floor.stream_seq >= last and info.num_ack_pending == 0 else None

    return wait_for(check, f"the consumer of {uuid} to acknowledge up to {last}")


def numbers_by_key(batches: list[dict]) -> dict[str, list[int]]:
    """Bodies "<key>:<n>" in the order the function saw them, per key."""
    out: dict[str, list[int]] = {}
    for batch in batches:
        for body in batch["bodies"]:
            key, n = body.rsplit(":", 1)
            out.setdefault(key, []).append(int(n))
    return out


def subjects_over_lanes(stream: str, lanes: int = 2, each: int = 2) -> list[str]:
    """Subject suffixes, ``each`` for every lane of ParallelizationFactor ``lanes`` (as StreamPoller
    spreads partition keys), so that the lanes really run side by side."""
    chosen: dict[int, list[str]] = {lane: [] for lane in range(lanes)}
    for i in range(500):
        lane = zlib.crc32(f"{stream}.s{i}".encode()) % lanes
        if len(chosen[lane]) < each:
            chosen[lane].append(f"s{i}")
    assert all(len(c) == each for c in chosen.values())
    return [s for lane in sorted(chosen) for s in chosen[lane]]


# ---------------------------------------------------------------- the happy path
def test_nats_records_in_order_per_subject_with_kinesis_shaped_records(jet, stream, lam, tmp_path):
    arn = nats_arn(stream)
    name, sink = recorder(lam, tmp_path)
    subjects = subjects_over_lanes(stream)
    early = jet.publish(stream, [(subjects[i % 4], f"{subjects[i % 4]}:{i}".encode()) for i in range(20)])
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON",
                                              BatchSize=5, ParallelizationFactor=2)
    assert created["EventSourceArn"] == arn and created["StartingPosition"] == "TRIM_HORIZON"
    assert created["ParallelizationFactor"] == 2 and created["BatchSize"] == 5
    uuid = created["UUID"]
    wait_state(lam, uuid, "Enabled")
    late = jet.publish(stream, [(subjects[i % 4], f"{subjects[i % 4]}:{i}".encode()) for i in range(20, 40)])
    sequences = early + late
    expected = {f"{subjects[i % 4]}:{i}" for i in range(40)}
    batches = sink.wait_bodies(expected)
    assert all(len(b["ids"]) <= 5 for b in batches)
    per_key = numbers_by_key(batches)
    for index, key in enumerate(subjects):
        assert per_key[key] == list(range(index, 40, 4)), (key, per_key[key])  # in order, each once
    assert sorted(int(i) for b in batches for i in b["ids"]) == sorted(sequences)
    lanes = set()
    for batch in batches:  # each record's partition key is its subject; a batch is of one lane
        assert all(key == f"{stream}.{body.split(':')[0]}" for key, body in zip(batch["keys"], batch["bodies"]))
        lanes.add(frozenset(zlib.crc32(key.encode()) % 2 for key in batch["keys"]))
    assert lanes == {frozenset({0}), frozenset({1})}
    record = next(b["first"] for b in batches if b["first"]["kinesis"]["sequenceNumber"] == str(sequences[0]))
    assert record["eventSource"] == "squall:nats" and record["eventName"] == "squall:nats:record"
    assert record["eventVersion"] == "1.0" and record["eventSourceARN"] == arn and record["awsRegion"] == "us-east-1"
    assert record["eventID"] == f"{stream}:{sequences[0]}" and record["invokeIdentityArn"] == ROLE
    kinesis = record["kinesis"]
    assert kinesis["kinesisSchemaVersion"] == "1.0" and kinesis["partitionKey"] == f"{stream}.{subjects[0]}"
    assert base64.b64decode(kinesis["data"]) == f"{subjects[0]}:0".encode()
    assert isinstance(kinesis["approximateArrivalTimestamp"], float)
    assert abs(kinesis["approximateArrivalTimestamp"] - time.time()) < 3600
    # Acknowledged at the broker once done; the durable consumer goes with the mapping.
    all_acknowledged(jet, stream, uuid, max(sequences))
    assert len(sink.batches()) == len(batches)  # nothing was delivered twice
    lam.delete_event_source_mapping(UUID=uuid)
    wait_for(lambda: jet.consumer(stream, f"squall-{uuid}") is None, "the consumer to be deleted with the mapping")


def test_nats_starting_positions_latest_and_at_timestamp(jet, stream, lam, tmp_path):
    jet.publish(stream, [("k", b"old-0"), ("k", b"old-1")])
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    jet.publish(stream, [("k", b"since-0")])
    name, sink = recorder(lam, tmp_path)
    latest = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=name,
                                             StartingPosition="LATEST")
    wait_state(lam, latest["UUID"], "Enabled")
    wait_for(lambda: jet.consumer(stream, f"squall-{latest['UUID']}"), "the LATEST mapping's consumer")
    jet.publish(stream, [("k", b"new-0")])
    sink.wait_bodies({"new-0"})
    other, other_sink = recorder(lam, tmp_path)
    at = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=other,
                                         StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=moment)
    assert at["StartingPosition"] == "AT_TIMESTAMP"
    other_sink.wait_bodies({"since-0", "new-0"})
    jet.publish(stream, [("k", b"new-1")])
    sink.wait_bodies({"new-1"})
    other_sink.wait_bodies({"new-1"})
    assert sink.bodies() == ["new-0", "new-1"]
    assert other_sink.bodies() == ["since-0", "new-0", "new-1"]
    for mapping in (latest, at):
        lam.delete_event_source_mapping(UUID=mapping["UUID"])


# ---------------------------------------------------------------- filters
def test_nats_filters_see_data_and_subject_and_drop_the_rest(jet, stream, lam, tmp_path):
    name, sink = recorder(lam, tmp_path)
    patterns = [{"Pattern": json.dumps({"data": {"kind": ["keep"], "n": [{"numeric": [">", 5]}]}})},
                {"Pattern": json.dumps({"partitionKey": [{"suffix": ".vip"}]})}]
    created = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10,
                                              FilterCriteria={"Filters": patterns})
    assert created["FilterCriteria"] == {"Filters": patterns}
    wait_state(lam, created["UUID"], "Enabled")
    messages = [("plain", {"kind": "keep", "n": 6}), ("plain", {"kind": "keep", "n": 2}),
                ("plain", {"kind": "drop", "n": 9}), ("vip", "any text"), ("plain", "not json")]
    sequences = jet.publish(stream, [(s, (json.dumps(m) if isinstance(m, dict) else m).encode()) for s, m in messages])
    kept = {json.dumps(messages[0][1]), "any text"}
    sink.wait_bodies(kept)
    # Filtered-out messages are acknowledged too (they are done), and were never invoked.
    all_acknowledged(jet, stream, created["UUID"], max(sequences))
    assert sorted(sink.bodies()) == sorted(kept)
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- failures
def test_nats_partial_failures_retry_from_the_first_failed_record_then_give_up_and_go_on(jet, stream, lam, tmp_path):
    name, sink = recorder(lam, tmp_path)
    sequences = jet.publish(stream, [("k", body.encode()) for body in ("a", "b", "bad-c", "d")])
    created = lam.create_event_source_mapping(
        EventSourceArn=nats_arn(stream), FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"], MaximumRetryAttempts=2)
    assert created["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and created["MaximumRetryAttempts"] == 2
    batches = sink.wait(lambda bs: len(bs) >= 3, what="three invocations")
    assert batches[0]["bodies"] == ["a", "b", "bad-c", "d"]
    assert batches[0]["ids"] == [str(s) for s in sequences]
    assert batches[1]["bodies"] == ["bad-c", "d"] and batches[2]["bodies"] == ["bad-c", "d"]
    # Given up after two retries (no destination: dropped), so what comes next on the subject gets through.
    after = jet.publish(stream, [("k", b"after")])
    batches = sink.wait_bodies({"after"})
    assert [b["bodies"] for b in batches] == [["a", "b", "bad-c", "d"], ["bad-c", "d"], ["bad-c", "d"], ["after"]]
    all_acknowledged(jet, stream, created["UUID"], after[0])  # given up counts as done at the broker
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_nats_bisect_then_the_bad_record_goes_to_the_on_failure_queue(jet, stream, lam, moto, tmp_path):  # noqa: F811
    sqs = aws("sqs", moto)
    failures_url, failures_arn, _ = make_queue(sqs)
    name, sink = recorder(lam, tmp_path)
    sequences = jet.publish(stream, [("k", b"boom" if i == 5 else f"r{i}".encode()) for i in range(8)])
    arn = nats_arn(stream)
    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=8,
        MaximumBatchingWindowInSeconds=1, BisectBatchOnFunctionError=True, MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}})
    records = drain(sqs, failures_url, 1, timeout=40)
    assert len(records) == 1
    failure = json.loads(records[0])
    info = failure["KinesisBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == arn and info["shardId"] == "shardId-000000000000"
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == str(sequences[5])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    after = jet.publish(stream, [("k", b"after")])
    sink.wait_bodies({f"r{i}" for i in range(8) if i != 5} | {"after"})
    all_acknowledged(jet, stream, created["UUID"], after[0])
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- updates
def test_nats_disable_stops_reading_and_enable_goes_on_where_it_stopped(jet, stream, lam, tmp_path):
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON")
    uuid = created["UUID"]
    wait_state(lam, uuid, "Enabled")
    first = jet.publish(stream, [("k", b"before")])
    sink.wait_bodies({"before"})
    all_acknowledged(jet, stream, uuid, first[0])
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    wait_state(lam, uuid, "Disabled")
    jet.publish(stream, [("k", f"while-disabled-{i}".encode()) for i in range(3)])
    time.sleep(2)
    info = jet.consumer(stream, f"squall-{uuid}")
    assert info is not None and info.num_pending == 3 and info.num_ack_pending == 0  # not taken while disabled
    assert sink.bodies() == ["before"]
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    wait_state(lam, uuid, "Enabled")
    sink.wait_bodies({f"while-disabled-{i}" for i in range(3)})
    assert sink.bodies() == ["before"] + [f"while-disabled-{i}" for i in range(3)]
    lam.delete_event_source_mapping(UUID=uuid)


def test_nats_update_batch_size_takes_effect(jet, stream, lam, tmp_path):
    name, sink = recorder(lam, tmp_path)
    jet.publish(stream, [("k", f"big-{i}".encode()) for i in range(6)])
    created = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1)
    uuid = created["UUID"]
    batches = sink.wait_bodies({f"big-{i}" for i in range(6)})
    assert max(len(b["ids"]) for b in batches) > 2  # read at once: more than the new size
    updated = lam.update_event_source_mapping(UUID=uuid, BatchSize=2)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 2
    wait_state(lam, uuid, "Enabled")
    seen = len(batches)
    jet.publish(stream, [("k", f"m{i}".encode()) for i in range(10)])
    batches = sink.wait_bodies({f"m{i}" for i in range(10)})[seen:]
    assert max(len(b["ids"]) for b in batches) <= 2
    assert [body for b in batches for body in b["bodies"]] == [f"m{i}" for i in range(10)]  # nothing again, in order
    assert lam.get_event_source_mapping(UUID=uuid)["BatchSize"] == 2
    lam.delete_event_source_mapping(UUID=uuid)


# ---------------------------------------------------------------- bad input
def test_nats_bad_input_gets_lambdas_errors(jet, stream, lam, tmp_path):
    name, _ = recorder(lam, tmp_path)
    create = lam.create_event_source_mapping
    status, code, message = error_of(create, EventSourceArn=nats_arn(stream, broker="nowhere"), FunctionName=name,
                                     StartingPosition="TRIM_HORIZON")
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "nowhere" in message and "event_source_brokers" in message
    missing = unique_name("no-such-stream")
    status, code, message = error_of(create, EventSourceArn=nats_arn(missing), FunctionName=name,
                                     StartingPosition="TRIM_HORIZON")
    assert (status, code) == (400, "InvalidParameterValueException") and missing in message
    assert "does not exist" in message
    status, code, message = error_of(create, EventSourceArn=nats_arn(stream, broker="down"), FunctionName=name,
                                     StartingPosition="TRIM_HORIZON")
    assert code == "InvalidParameterValueException" and "cannot reach" in message and "down" in message
    status, code, message = error_of(create, EventSourceArn=nats_arn("bad.name"), FunctionName=name,
                                     StartingPosition="TRIM_HORIZON")
    assert code == "InvalidParameterValueException" and "bad.name" in message
    status, code, message = error_of(create, EventSourceArn=nats_arn(stream), FunctionName=name)
    assert code == "InvalidParameterValueException" and "startingPosition" in message
    assert lam.list_event_source_mappings(EventSourceArn=nats_arn(stream))["EventSourceMappings"] == []


# ---------------------------------------------------------------- a crash
def test_nats_sigkill_with_batches_in_flight_loses_nothing_and_keeps_subject_order(jet, stream, moto, tmp_path):  # noqa: F811
    """SIGKILL the server while batches run; after a restart every message arrives (at least
    once), and each subject's messages arrive in order within each run (a restart goes back to
    the first message not done, never skips)."""
    data_dir = tmp_path / "data"
    first = start_server(data_dir, "--isolation", "process", env=nats_env(moto))
    lam = first.client("lambda")
    name, sink = recorder(lam, tmp_path, timeout=2, delay=0.3)
    made = lam.create_event_source_mapping(EventSourceArn=nats_arn(stream), FunctionName=name, BatchSize=5,
                                           ParallelizationFactor=2, StartingPosition="TRIM_HORIZON")
    wait_state(lam, made["UUID"], "Enabled")
    sequences = jet.publish(stream, [(f"k{i % 3}", f"k{i % 3}:{i}".encode()) for i in range(60)])
    sink.wait(lambda bs: len(bs) >= 4, what="some batches before the crash")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    time.sleep(1.5)  # an invocation already running (its own process group) may still write its line
    crashed_at = len(sink.batches())
    assert sum(len(b["ids"]) for b in sink.batches()) < 60, "everything was done before the crash: nothing tested"
    second = start_server(data_dir, "--isolation", "process", env=nats_env(moto))
    try:
        sink.wait_bodies({f"k{i % 3}:{i}" for i in range(60)}, timeout=90)
        batches = sink.batches()
        for part in (batches[:crashed_at], batches[crashed_at:]):
            for key, numbers in numbers_by_key(part).items():
                assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), (key, numbers)
        all_acknowledged(jet, stream, made["UUID"], max(sequences))
        second.client("lambda").delete_event_source_mapping(UUID=made["UUID"])
    finally:
        second.stop()


# ---------------------------------------------------------------- the client on its own
def test_nats_client_goes_back_to_what_is_not_acknowledged_after_a_lost_connection_and_a_restart(jet, stream):
    """The StreamClient without a server: a dropped connection makes the consumer anew from the
    first message held, and hands out nothing twice; a new client (a restart) starts after the
    consumer's ack floor, or after Squall's checkpoint when there is one."""
    from squall.sources.brokers import Brokers
    from squall.sources.mapping import Source
    from squall.sources.nats_jetstream import SHARD, JetStream
    from squall.sources.streams import IteratorExpired

    source = Source.parse(nats_arn(stream))
    durable = unique_name("squall-test")
    brokers = Brokers({"local": NATS_URL})
    jet.publish(stream, [(f"k{i % 2}", f"m{i}".encode()) for i in range(6)])

    async def positions(client: JetStream, iterator: Any, limit: int = 20) -> tuple[list[str], Any]:
        records, iterator, behind = await client.read(SHARD, iterator, limit)
        assert behind is not None and behind >= 0
        return [r.position for r in records], iterator

    async def scenario() -> None:
        client = JetStream(source, brokers, durable, ROLE, 1000)
        assert await client.shards() == [SHARD]
        iterator = await client.iterator(SHARD, None, "TRIM_HORIZON", None)
        got, iterator = await positions(client, iterator, 3)
        assert got == ["1", "2", "3"]
        await client.acknowledge(SHARD, ["1"])
        await client._nc.flush()
        await client._nc.close()  # the connection drops while 2 and 3 are held
        with pytest.raises(IteratorExpired):
            await client.read(SHARD, iterator, 20)
        iterator = await client.iterator(SHARD, "3", "TRIM_HORIZON", None)
        got, iterator = await positions(client, iterator)
        assert got == ["4", "5", "6"]  # 2 and 3 came again, but were handed out already
        await client.acknowledge(SHARD, ["2", "3", "4"])
        await client._nc.flush()
        await client.close()

        restarted = JetStream(source, brokers, durable, ROLE, 1000)
        await restarted.shards()
        got, _ = await positions(restarted, await restarted.iterator(SHARD, None, "TRIM_HORIZON", None))
        assert got == ["5", "6"]  # after the ack floor (4)
        await restarted.close()

        checkpointed = JetStream(source, brokers, durable, ROLE, 1000)
        await checkpointed.shards()
        iterator = await checkpointed.iterator(SHARD, "5", "TRIM_HORIZON", None)
        got, iterator = await positions(checkpointed, iterator)
        assert got == ["6"]  # after Squall's checkpoint
        got, iterator = await positions(checkpointed, iterator)
        assert got == []
        await checkpointed.forget()

    asyncio.run(scenario())
    assert jet.consumer(stream, durable) is None
