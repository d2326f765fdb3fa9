"""RabbitMQ event source mappings through boto3, against the machine's RabbitMQ (127.0.0.1:5672,
guest/guest), with Lambda's Amazon MQ for RabbitMQ event shape.

Each test declares queues of its own and deletes them. What Squall acknowledged is read from
the queue itself: once a mapping is gone (no consumer), every message it did not acknowledge
is back in the queue. A mapping settles one batch before it takes the next, so ``finish``
sends a last message, waits until the function has seen it and deletes the mapping: then at
most that last message may be back in the queue, and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import create_function, require, start_server, unique_name
from tests.e2e.test_event_sources import Sink, error_of, wait_state

HOST, PORT = "127.0.0.1", 5672
BROKER_URL = f"amqp://{HOST}:{PORT}/%2F"  # what Squall is configured with: no credentials
ADMIN_URL = f"amqp://guest:guest@{HOST}:{PORT}/%2F"  # what the tests publish with
ACCOUNT = "123456789012"
ARN = f"arn:aws:mq:us-east-1:{ACCOUNT}:broker:rabbit:b-0f1e2d3c-squall"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:rabbit-login"
WRONG_SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:wrong-login"
AUTH = [{"Type": "BASIC_AUTH", "URI": SECRET}]

RMQ_RECORDER = r'''
import base64, json, os, time

def handler(event, context):
    messages = [m for ms in event["rmqMessagesByQueue"].values() for m in ms]
    bodies = [base64.b64decode(m["data"]).decode() for m in messages]
    redelivered = [m["redelivered"] for m in messages]
    delay = float(os.environ.get("DELAY", "0"))
    if delay:
        time.sleep(delay)
    if os.environ.get("HALT") and os.path.exists(os.environ["HALT"]):
        return None  # the server was killed while this ran: its work counts as lost
    line = {"rid": context.aws_request_id, "ids": bodies, "bodies": bodies, "redelivered": redelivered,
            "eventSource": event["eventSource"], "eventSourceArn": event["eventSourceArn"],
            "queues": list(event["rmqMessagesByQueue"]), "first": messages[0] if messages else None}
    with open(os.environ["SINK"], "a") as sink:
        sink.write(json.dumps(line) + "\n")
    if any(b.startswith("boom") and not r for b, r in zip(bodies, redelivered)):
        raise ValueError("boom (fails until redelivered)")
    return None
'''


# ---------------------------------------------------------------- the broker
def rabbit_up() -> bool:
    try:
        import aiormq  # noqa: F401
    except ImportError:
        return False
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return True
    except OSError:
        return False


def _on_channel(work):
    async def run():
        import aiormq

        connection = await aiormq.connect(ADMIN_URL)
        try:
            return await work(await connection.channel())
        finally:
            await connection.close()

    return asyncio.run(run())


def declare() -> str:
    name = unique_name("rmq")

    async def work(channel):
        await channel.queue_declare(name)

    _on_channel(work)
    return name


def delete(queue: str) -> None:
    async def work(channel):
        await channel.queue_delete(queue)

    _on_channel(work)


def publish(queue: str, bodies: list[str], **properties) -> None:
    async def work(channel):
        import aiormq

        for body in bodies:
            await channel.basic_publish(body.encode(), routing_key=queue,
                                        properties=aiormq.spec.Basic.Properties(**properties))

    _on_channel(work)


def depth(queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of ``queue``."""
    async def work(channel):
        declared = await channel.queue_declare(queue, passive=True)
        return declared.message_count, declared.consumer_count

    return _on_channel(work)


def wait_depth(queue: str, check, timeout: float = 15.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = depth(queue)
        if check(found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"queue {queue}: {depth(queue)}")


def settled(queue: str) -> tuple[int, int]:
    """The queue once no mapping consumes it: what was never acknowledged is back in it."""
    return wait_depth(queue, lambda d: d[1] == 0)


def take_all(queue: str) -> list[str]:
    """Every message ready in ``queue`` (taken out of it)."""
    async def work(channel):
        import aiormq

        bodies = []
        for _ in range(10000):
            message = await channel.basic_get(queue, no_ack=True)
            if isinstance(message.delivery, aiormq.spec.Basic.GetEmpty):
                break
            bodies.append(message.body.decode())
        return bodies

    return _on_channel(work)


# ---------------------------------------------------------------- Squall
def server_env() -> dict[str, str]:
    return {
        "SQUALL_EVENT_SOURCE_BROKERS": json.dumps({"rabbit": BROKER_URL}),
        "SQUALL_EVENT_SOURCE_SECRETS": json.dumps({"rabbit-login": {"username": "guest", "password": "guest"},
                                                   "wrong-login": {"username": "guest", "password": "not-it"}}),
    }


@pytest.fixture(scope="module")
def broker():
    require(rabbit_up(), f"a RabbitMQ broker on {HOST}:{PORT} (guest/guest) and the aiormq package")


@pytest.fixture(scope="module")
def squall(tmp_path_factory, broker):
    running = start_server(tmp_path_factory.mktemp("squall-rabbitmq"), "--isolation", "process", env=server_env())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


@pytest.fixture
def queue(broker):
    name = declare()
    yield name
    delete(name)


def recorder(lam, tmp_path: Path, timeout: int = 3, delay: float = 0.0, halt: Path | None = None) -> tuple[str, Sink]:
    """A function that records each batch in a sink; it fails a batch with a ``boom…`` message not
    marked redelivered; once ``halt`` exists it records nothing (its work is lost)."""
    sink = Sink(tmp_path / f"sink-{unique_name()}.jsonl")
    name = create_function(lam, RMQ_RECORDER, Timeout=timeout, Environment={"Variables": {
        "SINK": str(sink.path), "DELAY": str(delay), "HALT": str(halt or "")}})
    return name, sink


def create(lam, name: str, queue: str, **params) -> dict:
    return lam.create_event_source_mapping(EventSourceArn=ARN, FunctionName=name, Queues=[queue],
                                           SourceAccessConfigurations=AUTH, **params)


def refused(lam, name: str, queue: str, **params) -> tuple[int, str, str]:
    return error_of(lambda **kwargs: create(lam, name, queue, **kwargs), **params)


def finish(lam, uuid: str, queue: str, sink: Sink, prefix: str = "tail") -> str:
    """Send a last message, wait until the function saw it, delete the mapping and check that
    nothing but that last message came back to the queue (every earlier batch was acknowledged)."""
    tail = f"{prefix}-{unique_name()}"
    publish(queue, [tail])
    sink.wait_bodies({tail})
    lam.delete_event_source_mapping(UUID=uuid)
    settled(queue)
    returned = take_all(queue)
    assert set(returned) <= {tail}, returned
    return tail


# ---------------------------------------------------------------- tests
def test_happy_path_with_lambdas_amazon_mq_rabbitmq_event(lam, queue, tmp_path):
    name, sink = recorder(lam, tmp_path)
    created = create(lam, name, queue, BatchSize=10)
    assert created["State"] == "Creating" and created["EventSourceArn"] == ARN
    assert created["Queues"] == [queue] and created["SourceAccessConfigurations"] == AUTH
    assert created["BatchSize"] == 10 and created["MaximumBatchingWindowInSeconds"] == 0
    assert created["FunctionResponseTypes"] == [] and "StartingPosition" not in created
    wait_state(lam, created["UUID"], "Enabled")
    bodies = [f"message-{i}" for i in range(25)]
    publish(queue, bodies, content_type="text/plain", delivery_mode=2, priority=3, correlation_id="corr",
            reply_to="replies", expiration="60000", message_id="mid", message_type="greeting", app_id="tests",
            timestamp=dt.datetime(2024, 1, 2, 15, 4, 5, tzinfo=dt.UTC),
            headers={"text": "value1", "number": 10, "flag": True})
    batches = sink.wait_bodies(set(bodies))
    assert all(len(b["bodies"]) <= 10 for b in batches)
    first = batches[0]
    assert first["eventSource"] == "aws:rmq" and first["eventSourceArn"] == ARN
    assert first["queues"] == [f"{queue}::/"]  # <queue>::<virtual host>
    message = first["first"]
    assert set(message) == {"basicProperties", "redelivered", "data"} and message["redelivered"] is False
    assert base64.b64decode(message["data"]).decode() == first["bodies"][0]
    assert message["basicProperties"] == {
        "contentType": "text/plain", "contentEncoding": None,
        "headers": {"text": {"bytes": list(b"value1")}, "number": 10, "flag": True},
        "deliveryMode": 2, "priority": 3, "correlationId": "corr", "replyTo": "replies", "expiration": "60000",
        "messageId": "mid", "timestamp": "Jan 2, 2024, 3:04:05 PM", "type": "greeting", "userId": None,
        "appId": "tests", "clusterId": None, "bodySize": len(first["bodies"][0]),
    }
    assert all(not r for b in batches for r in b["redelivered"])
    tail = finish(lam, created["UUID"], queue, sink)
    assert sorted(sink.bodies()) == sorted(bodies + [tail])  # each once: nothing came back


def test_filters_on_data_and_unmatched_messages_are_acknowledged(lam, queue, tmp_path):
    name, sink = recorder(lam, tmp_path)
    patterns = [{"data": {"kind": ["keep"]}}, {"data": [{"prefix": "Result: "}]}]
    created = create(lam, name, queue, BatchSize=5,
                     FilterCriteria={"Filters": [{"Pattern": json.dumps(p)} for p in patterns]})
    wait_state(lam, created["UUID"], "Enabled")
    kept = [json.dumps({"kind": "keep", "n": i}) for i in range(4)] + ["Result: fine"]
    dropped = [json.dumps({"kind": "drop", "n": i}) for i in range(4)] + ["no result", "[1, 2]"]
    publish(queue, [m for pair in zip(kept, dropped) for m in pair] + dropped[len(kept):])
    sink.wait_bodies(set(kept))
    tail = finish(lam, created["UUID"], queue, sink, prefix="Result: tail")  # the dropped ones were acknowledged
    assert sorted(sink.bodies()) == sorted(kept + [tail])


def test_a_failed_batch_is_returned_and_redelivered_marked_redelivered(lam, queue, tmp_path):
    name, sink = recorder(lam, tmp_path)
    publish(queue, ["ok-1", "boom-2", "ok-3"])
    created = create(lam, name, queue, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    batches = sink.wait(lambda bs: len(bs) >= 2, what="a failed batch and its retry")
    assert batches[0]["bodies"] == ["ok-1", "boom-2", "ok-3"] and batches[0]["redelivered"] == [False] * 3
    assert sorted(batches[1]["bodies"]) == ["boom-2", "ok-1", "ok-3"] and batches[1]["redelivered"] == [True] * 3
    tail = finish(lam, created["UUID"], queue, sink)
    assert [b["bodies"] for b in sink.batches()[2:]] == [[tail]]  # the retry succeeded: acknowledged


def test_disable_leaves_messages_in_the_queue_and_enable_resumes(lam, queue, tmp_path):
    name, sink = recorder(lam, tmp_path)
    created = create(lam, name, queue)
    wait_state(lam, created["UUID"], "Enabled")
    publish(queue, ["before"])
    sink.wait_bodies({"before"})
    assert lam.update_event_source_mapping(UUID=created["UUID"], Enabled=False)["State"] == "Disabling"
    wait_state(lam, created["UUID"], "Disabled")
    assert settled(queue) == (0, 0)  # the consumer is gone
    publish(queue, [f"while-disabled-{i}" for i in range(3)])
    time.sleep(2)
    assert sink.bodies() == ["before"]
    assert depth(queue) == (3, 0)  # waiting in the queue, not in Squall
    assert lam.update_event_source_mapping(UUID=created["UUID"], Enabled=True)["State"] == "Enabling"
    wait_state(lam, created["UUID"], "Enabled")
    sink.wait_bodies({f"while-disabled-{i}" for i in range(3)})
    finish(lam, created["UUID"], queue, sink)


def test_update_batch_size_takes_effect(lam, queue, tmp_path):
    name, sink = recorder(lam, tmp_path)
    created = create(lam, name, queue, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    wait_state(lam, created["UUID"], "Enabled")
    updated = lam.update_event_source_mapping(UUID=created["UUID"], BatchSize=2)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 2
    wait_state(lam, created["UUID"], "Enabled")
    publish(queue, [f"m{i}" for i in range(10)])
    batches = sink.wait_bodies({f"m{i}" for i in range(10)})
    assert max(len(b["bodies"]) for b in batches) == 2  # a window of 1 s fills each batch of 2
    assert lam.get_event_source_mapping(UUID=created["UUID"])["BatchSize"] == 2
    finish(lam, created["UUID"], queue, sink)


def test_bad_input_gets_lambdas_errors(lam, queue, tmp_path):
    name, _ = recorder(lam, tmp_path)
    call = lam.create_event_source_mapping
    status, code, message = error_of(call, EventSourceArn=f"arn:aws:mq:us-east-1:{ACCOUNT}:broker:nope:b-1",
                                     FunctionName=name, Queues=[queue], SourceAccessConfigurations=AUTH)
    assert (status, code) == (400, "InvalidParameterValueException") and "'nope'" in message
    status, code, message = error_of(call, EventSourceArn=ARN, FunctionName=name, SourceAccessConfigurations=AUTH)
    assert code == "InvalidParameterValueException" and "Queues" in message
    status, code, message = error_of(call, EventSourceArn=ARN, FunctionName=name, Queues=[queue, queue])
    assert code == "ValidationException" and "queues" in message.lower()  # the API allows one queue
    status, code, message = refused(lam, name, queue, FunctionResponseTypes=["ReportBatchItemFailures"])
    assert code == "InvalidParameterValueException" and "FunctionResponseTypes" in message
    status, code, message = refused(lam, name, queue, StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "StartingPosition" in message
    assert lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []


def test_missing_queue_unknown_secret_and_wrong_password_are_refused_at_create(lam, queue, tmp_path):
    name, _ = recorder(lam, tmp_path)
    try:
        status, code, message = refused(lam, name, "no-such-queue-" + unique_name())
        assert (status, code) == (400, "InvalidParameterValueException") and "no-such-queue" in message
        unknown = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:not-configured"
        status, code, message = error_of(lam.create_event_source_mapping, EventSourceArn=ARN, FunctionName=name,
                                         Queues=[queue],
                                         SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": unknown}])
        assert code == "InvalidParameterValueException" and "not-configured" in message
        status, code, message = error_of(lam.create_event_source_mapping, EventSourceArn=ARN, FunctionName=name,
                                         Queues=[queue],
                                         SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": WRONG_SECRET}])
        assert code == "InvalidParameterValueException" and "refused" in message and "not-it" not in message
    finally:  # a mapping made by mistake would poll on: delete it
        made = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        for mapping in made:
            lam.delete_event_source_mapping(UUID=mapping["UUID"])
    assert made == []


def test_sigkill_with_batches_in_flight_loses_nothing(broker, queue, tmp_path):
    """SIGKILL the server while batches run; after a restart every message arrives at least
    once (a queue makes no ordering promise), and the ones in flight come back redelivered.
    Invocations still running at the crash record nothing (``halt``): what they had must come
    back, so a message acknowledged before its function finished would be missed."""
    data_dir = tmp_path / "data"
    halt = tmp_path / "halted"
    first = start_server(data_dir, "--isolation", "process", env=server_env())
    lam = first.client("lambda")
    name, sink = recorder(lam, tmp_path, timeout=2, delay=0.3, halt=halt)
    made = create(lam, name, queue, BatchSize=5)
    wait_state(lam, made["UUID"], "Enabled")
    expected = {f"q{i}" for i in range(60)}
    publish(queue, sorted(expected))
    sink.wait(lambda bs: len(bs) >= 4, what="some batches before the crash")
    halt.touch()
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    time.sleep(1.5)  # an invocation already running (its own process group) ends meanwhile
    crashed_at = len(sink.batches())
    assert not expected <= set(sink.bodies())
    halt.unlink()
    second = start_server(data_dir, "--isolation", "process", env=server_env())
    try:
        sink.wait_bodies(expected, timeout=90)
        after = sink.batches()[crashed_at:]
        assert any(r for b in after for r in b["redelivered"])  # unacknowledged at the crash: back in the queue
        finish(second.client("lambda"), made["UUID"], queue, sink)
    finally:
        second.stop()
