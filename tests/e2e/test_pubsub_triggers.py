"""Pub/sub subjects as triggers (MQTT topic filters, core NATS subjects, Redis channels) and
``squall triggers``, against the machine's Mosquitto (127.0.0.1:1883), nats-server (4222) and
Redis (6379). The recorder function appends each event it gets to a file (``process`` sandbox).

Each test waits until its listener says ``listening`` (``GET /squall/triggers``) before it
publishes: these are at-most-once subscriptions, a message published before is not for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from tests.conftest import require, signed_headers, start_server, unique_name
from tests.e2e.test_notifications import events, recorder, run_cli, wait_events

MQTT = ("127.0.0.1", 1883)
NATS = ("127.0.0.1", 4222)
REDIS = ("127.0.0.1", 6379)


def port_open(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BROKERS = {"mq": "mqtt://127.0.0.1:1883", "nt": "nats://127.0.0.1:4222", "rd": "redis://127.0.0.1:6379/0",
           "mqdown": f"mqtt://127.0.0.1:{closed_port()}"}


def brokers_env() -> dict[str, str]:
    return {"SQUALL_EVENT_SOURCE_BROKERS": json.dumps(BROKERS)}


@pytest.fixture(scope="module")
def squall(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("squall-pubsub"), "--isolation", "process", env=brokers_env())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


def call(server, method: str, path: str, document: dict | None = None) -> tuple[int, dict]:
    body = json.dumps(document).encode() if document is not None else b""
    headers = signed_headers(server, method, path, body, {"Content-Type": "application/json"} if body else {})
    try:
        with urlopen(Request(server.endpoint + path, data=body or None, headers=headers, method=method),
                     timeout=20) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def make(server, kind: str, function: str, broker: str, topic: str) -> dict:
    status, made = call(server, "POST", f"/squall/triggers/{kind}",
                        {"FunctionName": function, "Broker": broker, "Topic": topic})
    assert status == 200, made
    return made


def listed(server, function: str | None = None) -> list[dict]:
    status, report = call(server, "GET", "/squall/triggers" + (f"?function={function}" if function else ""))
    assert status == 200, report
    return report["triggers"]


def wait_row(server, trigger_id: str, check, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    row: dict = {}
    while time.monotonic() < deadline:
        row = next((r for r in listed(server) if r["id"] == trigger_id), {})
        if row and check(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"trigger {trigger_id}: {row}")


def listening(server, made: dict) -> dict:
    return wait_row(server, made["TriggerId"], lambda r: r["state"] == "listening")


def mqtt_publish(topic: str, payload: bytes | str) -> None:
    from paho.mqtt import publish

    publish.single(topic, payload, qos=1, hostname=MQTT[0], port=MQTT[1])


def nats_publish(subject: str, *payloads: bytes) -> None:
    async def run() -> None:
        import nats

        nc = await nats.connect(servers=[BROKERS["nt"]], connect_timeout=5)
        for payload in payloads:
            await nc.publish(subject, payload)
        await nc.flush(timeout=5)
        await nc.close()

    asyncio.run(run())


def redis_client():
    import redis

    return redis.Redis.from_url(BROKERS["rd"], socket_timeout=5)


def records(sink) -> list[dict]:
    out = []
    for event in events(sink):
        assert len(event["Records"]) == 1  # one message, one invocation
        out.append(event["Records"][0])
    return out


# ---------------------------------------------------------------- MQTT
def test_mqtt_plus_wildcard_each_matching_message_once_with_the_event_shape(squall, lam, tmp_path):
    require(port_open(MQTT), "an MQTT broker (Mosquitto) on 127.0.0.1:1883")
    name, sink = recorder(lam, tmp_path)
    base = f"squall-test/{unique_name('m')}"
    made = make(squall, "mqtt", name, "mq", f"{base}/+/temp")
    assert made["EventSourceArn"] == f"arn:aws:mqtt:us-east-1:123456789012:mq/topic/{base}/+/temp"
    listening(squall, made)
    mqtt_publish(f"{base}/kitchen/temp", "21.5")
    mqtt_publish(f"{base}/kitchen/humidity", "40")  # not matched
    mqtt_publish(f"{base}/a/b/temp", "x")  # + is one level only
    mqtt_publish(f"{base}/hall/temp", "19")
    wait_events(sink, 2)
    mqtt_publish(f"{base}/last/temp", "end")  # after the others: when it is in, they would be
    wait_events(sink, 3)
    got = records(sink)
    assert sorted((r["topic"], r["payload"]) for r in got) == sorted([  # async invocations: any order
        (f"{base}/kitchen/temp", "21.5"), (f"{base}/hall/temp", "19"), (f"{base}/last/temp", "end")])
    first = next(r for r in got if r["payload"] == "21.5")
    assert first["eventSource"] == "squall:mqtt" and first["eventSourceARN"] == made["EventSourceArn"]
    assert first["subscription"] == f"{base}/+/temp" and first["broker"] == "mq"
    assert first["isBase64Encoded"] is False and first["qos"] == 1 and first["retain"] is False
    assert first["receivedAt"].endswith("Z") and first["receivedAt"][:2] == "20"
    row = wait_row(squall, made["TriggerId"], lambda r: r["delivered"] == 3)
    assert row["failed"] == 0 and row["last_delivery"] and row["kind"] == "mqtt"


def test_mqtt_hash_wildcard_and_a_binary_payload(squall, lam, tmp_path):
    require(port_open(MQTT), "an MQTT broker (Mosquitto) on 127.0.0.1:1883")
    name, sink = recorder(lam, tmp_path)
    base = f"squall-test/{unique_name('h')}"
    made = make(squall, "mqtt", name, "mq", f"{base}/#")
    listening(squall, made)
    binary = bytes([0xFF, 0x00, 0xFE, 0x80])
    mqtt_publish(f"{base}/deep/er/topic", binary)
    mqtt_publish(f"{base}", "the parent level matches # too")
    wait_events(sink, 2)
    got = records(sink)
    by_topic = {r["topic"]: r for r in got}
    deep = by_topic[f"{base}/deep/er/topic"]
    assert deep["isBase64Encoded"] is True and base64.b64decode(deep["payload"]) == binary
    assert by_topic[base]["payload"] == "the parent level matches # too"
    assert len(got) == 2


# ---------------------------------------------------------------- NATS
def test_nats_subject_with_a_wildcard_invokes_once_per_message(squall, lam, tmp_path):
    require(port_open(NATS), "a NATS server on 127.0.0.1:4222")
    name, sink = recorder(lam, tmp_path)
    base = f"squall.test.{unique_name('n')}"
    made = make(squall, "nats", name, "nt", f"{base}.*")
    listening(squall, made)
    nats_publish(f"{base}.a", b"one", b"two")
    nats_publish(f"{base}.a.too.deep", b"no")
    nats_publish(f"{base}.b", b"\x00\xff")
    wait_events(sink, 3)
    nats_publish(f"{base}.z", b"end")
    wait_events(sink, 4)
    got = records(sink)
    assert sorted(r["topic"] for r in got) == [f"{base}.a", f"{base}.a", f"{base}.b", f"{base}.z"]
    texts = sorted(r["payload"] for r in got if not r["isBase64Encoded"])
    assert texts == ["end", "one", "two"]
    (binary,) = [r for r in got if r["isBase64Encoded"]]
    assert binary["topic"] == f"{base}.b" and base64.b64decode(binary["payload"]) == b"\x00\xff"
    assert got[0]["eventSource"] == "squall:nats" and got[0]["subscription"] == f"{base}.*"
    wait_row(squall, made["TriggerId"], lambda r: r["delivered"] == 4)


# ---------------------------------------------------------------- Redis
def test_redis_channel_publish_invokes_the_function(squall, lam, tmp_path):
    require(port_open(REDIS), "a Redis server on 127.0.0.1:6379")
    name, sink = recorder(lam, tmp_path)
    channel = f"squall-test-{unique_name('r')}"
    made = make(squall, "redis-pubsub", name, "rd", channel)
    listening(squall, made)
    client = redis_client()
    try:
        assert client.publish(channel, "hello") == 1  # exactly one subscriber: Squall's listener
        assert client.publish(channel + "-other", "not ours") == 0
        assert client.publish(channel, b"\xc3\x28") == 1  # invalid UTF-8
    finally:
        client.close()
    wait_events(sink, 2)
    got = records(sink)
    text = next(r for r in got if not r["isBase64Encoded"])
    binary = next(r for r in got if r["isBase64Encoded"])
    assert text["eventSource"] == "squall:redis-pubsub" and text["topic"] == channel and text["payload"] == "hello"
    assert base64.b64decode(binary["payload"]) == b"\xc3\x28"
    assert text["eventSourceARN"] == f"arn:aws:redis:us-east-1:123456789012:rd/channel/{channel}"
    # Deleting the trigger (`squall unsubscribe`) stops its listener: nobody subscribes any more.
    status, gone = call(squall, "DELETE", f"/squall/triggers/{made['TriggerId']}")
    assert status == 200 and gone["Deleted"] is True and gone["Kind"] == "redis-pubsub"
    assert made["TriggerId"] not in [r["id"] for r in listed(squall, name)]
    client = redis_client()
    try:
        assert client.publish(channel, "after") == 0
    finally:
        client.close()
    status, missing = call(squall, "DELETE", f"/squall/triggers/{made['TriggerId']}")
    assert status == 404 and "squall triggers" in missing["Message"]


def test_stored_triggers_listen_again_after_a_restart(tmp_path_factory, tmp_path):
    require(port_open(REDIS), "a Redis server on 127.0.0.1:6379")
    data_dir = tmp_path_factory.mktemp("squall-pubsub-restart")
    first = start_server(data_dir, "--isolation", "process", env=brokers_env())
    try:
        name, sink = recorder(first.client("lambda"), tmp_path)
        channel = f"squall-test-{unique_name('r')}"
        made = make(first, "redis-pubsub", name, "rd", channel)
        listening(first, made)
    finally:
        assert first.stop() == 0
    second = start_server(data_dir, "--isolation", "process", env=brokers_env())
    try:
        listening(second, made)
        client = redis_client()
        try:
            assert client.publish(channel, "after the restart") == 1
        finally:
            client.close()
        wait_events(sink, 1)
        got = records(sink)
        assert [r["payload"] for r in got] == ["after the restart"]
    finally:
        second.stop()


# ---------------------------------------------------------------- errors, reconnects
def test_an_unknown_broker_a_wrong_scheme_and_a_bad_filter_are_clear_errors(squall, lam, tmp_path):
    name, _ = recorder(lam, tmp_path)
    status, error = call(squall, "POST", "/squall/triggers/mqtt", {"FunctionName": name, "Broker": "nosuch",
                                                                  "Topic": "a/b"})
    assert status == 400 and "No broker named 'nosuch'" in error["message"] and "mq" in error["message"]
    status, error = call(squall, "POST", "/squall/triggers/nats", {"FunctionName": name, "Broker": "rd",
                                                                  "Topic": "a.b"})
    assert status == 400 and "not a nats broker" in error["message"]
    status, error = call(squall, "POST", "/squall/triggers/mqtt", {"FunctionName": name, "Broker": "mq",
                                                                  "Topic": "a/#/b"})
    assert status == 400 and "'#'" in error["message"]
    status, error = call(squall, "POST", "/squall/triggers/mqtt", {"FunctionName": unique_name("missing"),
                                                                  "Broker": "mq", "Topic": "a"})
    assert status == 404
    done = run_cli(squall, "subscribe", name, "--mqtt", "nosuch:a/b")
    assert done.returncode != 0 and "No broker named 'nosuch'" in done.stderr
    assert not [r for r in listed(squall, name)]


def test_a_listener_whose_broker_is_down_reconnects_and_says_so(squall, lam, tmp_path):
    name, _ = recorder(lam, tmp_path)
    made = make(squall, "mqtt", name, "mqdown", "anything/#")
    row = wait_row(squall, made["TriggerId"], lambda r: r["reconnects"] >= 2)
    assert row["state"] in ("reconnecting", "connecting") and row["last_error"]
    with urlopen(f"{squall.endpoint}/health", timeout=10) as response:
        health = json.loads(response.read())
    assert health["pubsub"]["reconnects"] >= 2
    assert health["status"] == "degraded"  # /health tells the truth: a broker is away, and why
    assert health["problems"]["brokers"][f"trigger {made['TriggerId']}"]
    status, _ = call(squall, "DELETE", f"/squall/triggers/{made['TriggerId']}")  # the problem goes with it
    assert status in (200, 204)
    with urlopen(f"{squall.endpoint}/health", timeout=10) as response:
        assert "brokers" not in json.loads(response.read())["problems"]


# ---------------------------------------------------------------- squall triggers
def test_squall_subscribe_and_squall_triggers_list_a_functions_triggers(squall, lam, tmp_path):
    require(port_open(REDIS), "a Redis server on 127.0.0.1:6379")
    name, sink = recorder(lam, tmp_path)
    other, _ = recorder(lam, tmp_path)
    channel = f"squall-test-{unique_name('c')}"
    done = run_cli(squall, "subscribe", name, "--redis-channel", f"rd:{channel}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"arn:aws:redis:us-east-1:123456789012:rd/channel/{channel}"
    make(squall, "redis-pubsub", other, "rd", channel + "-other")
    events_client = squall.client("events")
    rule = unique_name("rule")
    events_client.put_rule(Name=rule, EventPattern=json.dumps({"source": ["squall.test"]}))
    function_arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    events_client.put_targets(Rule=rule, Targets=[{"Id": "t1", "Arn": function_arn}])
    (row,) = [r for r in listed(squall, name) if r["kind"] == "redis-pubsub"]
    listening(squall, {"TriggerId": row["id"]})
    client = redis_client()
    try:
        assert client.publish(channel, "counted") == 1
    finally:
        client.close()
    wait_events(sink, 1)
    wait_row(squall, row["id"], lambda r: r["delivered"] == 1)
    rows = listed(squall, name)
    assert {r["kind"] for r in rows} == {"redis-pubsub", "eventbridge-rule"}
    assert all(r["function"].startswith(function_arn) for r in rows)
    assert any(r["id"].endswith(f"{rule}/t1") and r["state"] == "ENABLED" for r in rows)
    assert len(listed(squall)) > len(rows)  # the other function's trigger is there without the filter
    shown = run_cli(squall, "triggers", name)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("redis-pubsub"))
    assert f"rd:{channel}" in line and "listening" in line and " 1 " in f"{line} "
    assert "eventbridge-rule" in shown.stdout and (other not in shown.stdout)
    gone = run_cli(squall, "unsubscribe", row["id"])
    assert gone.returncode == 0 and f"Deleted redis-pubsub trigger {row['id']}" in gone.stderr
    assert [r["kind"] for r in listed(squall, name)] == ["eventbridge-rule"]
    again = run_cli(squall, "unsubscribe", row["id"])
    assert again.returncode != 0 and "squall triggers" in again.stderr
