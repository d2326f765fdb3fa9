"""EventBridge rules, targets, PutEvents, custom buses and schedules, through boto3's ``events``
client against a real ``squall server``. Invocations are observed through an OnSuccess webhook
destination (each record's ``requestPayload`` is what the function received) and the server's
``/health`` counters (``eventbridge``)."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from urllib.request import urlopen

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, start_server, unique_name
from tests.e2e.test_async import Webhook
from tests.e2e.test_control_plane import error_of

ACCOUNT, REGION = "123456789012", "us-east-1"
ECHO = "def handler(event, context):\n    return event\n"


@pytest.fixture(scope="module")
def hook():
    webhook = Webhook()
    yield webhook
    webhook.server.shutdown()


@pytest.fixture(scope="module")
def events(server):
    return server.client("events")


def counters(server) -> dict[str, int]:
    with urlopen(server.endpoint + "/health") as response:
        return json.loads(response.read())["eventbridge"]


def rule_arn(name: str, bus: str = "default") -> str:
    middle = "" if bus == "default" else f"{bus}/"
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{middle}{name}"


def observed_function(lam, hook, rule: str | None = None, bus: str = "default") -> tuple[str, str]:
    """A function whose successful invocations go to the webhook; allowed for ``rule`` if given."""
    name = create_function(lam, ECHO)
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
    if rule:
        allow(lam, name, rule, bus)
    return name, lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def allow(lam, name: str, rule: str, bus: str = "default") -> None:
    lam.add_permission(FunctionName=name, StatementId=f"eb-{rule}", Action="lambda:InvokeFunction",
                       Principal="events.amazonaws.com", SourceArn=rule_arn(rule, bus))


def test_matching_events_reach_the_function_in_eventbridge_shape_and_transformed(server, lam, events, hook):
    rule = unique_name("orders")
    pattern = {"source": [{"prefix": "shop."}], "detail": {"order": {"total": [{"numeric": [">", 100]}]}}}
    assert events.put_rule(Name=rule, EventPattern=json.dumps(pattern))["RuleArn"] == rule_arn(rule)
    name, arn = observed_function(lam, hook, rule)
    answer = events.put_targets(Rule=rule, Targets=[
        {"Id": "whole", "Arn": arn},
        {"Id": "path", "Arn": arn, "InputPath": "$.detail.order"},
        {"Id": "shaped", "Arn": arn, "InputTransformer": {
            "InputPathsMap": {"id": "$.detail.order.id", "src": "$.source", "total": "$.detail.order.total"},
            "InputTemplate": '{"text": "order <id> from <src>", "total": <total>, "target": "shaped"}'}},
    ])
    assert answer["FailedEntryCount"] == 0
    assert {t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]} == {"whole", "path", "shaped"}
    before = counters(server)
    miss = events.put_events(Entries=[{"Source": "shop.orders", "DetailType": "Order Placed",
                                       "Detail": json.dumps({"order": {"id": "small", "total": 3}})}])
    hit = events.put_events(Entries=[{"Source": "shop.orders", "DetailType": "Order Placed", "Resources": ["res-1"],
                                      "Time": datetime(2024, 5, 6, 7, 8, 9),
                                      "Detail": json.dumps({"order": {"id": "big", "total": 250}})}])
    assert miss["FailedEntryCount"] == 0 and hit["FailedEntryCount"] == 0
    assert counters(server)["delivered"] - before["delivered"] == 3  # the three targets of the one matching event
    payloads = [r["requestPayload"] for r in hook.wait(name, 3)]
    whole = next(p for p in payloads if "detail-type" in p)
    assert whole == {"version": "0", "id": hit["Entries"][0]["EventId"], "detail-type": "Order Placed",
                     "source": "shop.orders", "account": ACCOUNT, "time": whole["time"], "region": REGION,
                     "resources": ["res-1"], "detail": {"order": {"id": "big", "total": 250}}}
    assert whole["time"].startswith("2024-05-06T") and whole["time"].endswith(":08:09Z")
    assert {"id": "big", "total": 250} in payloads
    assert {"text": "order big from shop.orders", "total": 250, "target": "shaped"} in payloads
    assert len(hook.records[name]) == 3


def test_custom_bus_routes_only_its_own_events(server, lam, events, hook):
    bus = unique_name("bus")
    assert events.create_event_bus(Name=bus)["EventBusArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"
    assert bus in [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert events.describe_event_bus(Name=bus)["Name"] == bus
    assert events.describe_event_bus()["Name"] == "default"
    rule = unique_name("on-bus")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"detail-type": ["ping"]}))
    name, arn = observed_function(lam, hook, rule, bus)
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "t", "Arn": arn, "Input": '{"fixed": 1}'}])
    before = counters(server)
    events.put_events(Entries=[{"Source": "x", "DetailType": "ping", "Detail": "{}"}])  # the default bus
    events.put_events(Entries=[{"Source": "x", "DetailType": "ping", "Detail": "{}", "EventBusName": bus}])
    assert counters(server)["delivered"] - before["delivered"] == 1
    assert hook.wait(name, 1)[0]["requestPayload"] == {"fixed": 1}
    with pytest.raises(ClientError) as caught:
        events.delete_event_bus(Name="default")
    assert error_of(caught)[0] == "ValidationException"


def test_put_events_answers_each_entry(events):
    good = {"Source": "a", "DetailType": "b", "Detail": "{}"}
    answer = events.put_events(Entries=[good, {"Source": "a", "DetailType": "b", "Detail": "{not json"}, good])
    assert answer["FailedEntryCount"] == 1
    first, bad, last = answer["Entries"]
    assert "EventId" in first and "EventId" in last and first["EventId"] != last["EventId"]
    assert bad == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    with pytest.raises(ClientError) as caught:
        events.put_events(Entries=[good] * 11)
    code, status, message = error_of(caught)
    assert (code, status) == ("ValidationException", 400) and "less than or equal to 10" in message
    with pytest.raises(ClientError) as caught:
        events.put_events(Entries=[{**good, "Detail": json.dumps({"x": "y" * 262144})}])
    assert error_of(caught)[0] == "ValidationException"


def test_a_target_without_the_events_permission_is_not_invoked(server, lam, events, hook):
    rule = unique_name("perm")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["perm.test"]}))
    name, arn = observed_function(lam, hook)  # no statement for events.amazonaws.com yet
    events.put_targets(Rule=rule, Targets=[{"Id": "t", "Arn": arn}])
    before = counters(server)
    denied = events.put_events(Entries=[{"Source": "perm.test", "DetailType": "d", "Detail": '{"n": 1}'}])
    after = counters(server)
    assert denied["FailedEntryCount"] == 0  # accepted, as on AWS: the delivery is what fails
    assert (after["denied"] - before["denied"], after["delivered"] - before["delivered"]) == (1, 0)
    allow(lam, name, rule)
    events.put_events(Entries=[{"Source": "perm.test", "DetailType": "d", "Detail": '{"n": 2}'}])
    assert counters(server)["delivered"] - after["delivered"] == 1
    records = hook.wait(name, 1)
    assert [r["requestPayload"]["detail"] for r in records] == [{"n": 2}]
    from tests.e2e.test_pubsub_triggers import call

    status, report = call(server, "GET", f"/squall/triggers?function={name}")  # squall triggers' rows
    (row,) = report["triggers"]
    assert status == 200 and (row["kind"], row["id"]) == ("eventbridge-rule", f"default/{rule}/t")
    assert (row["delivered"], row["failed"]) == (1, 1) and row["last_error"].startswith("AccessDeniedException")


def test_bad_input_is_refused_as_aws_does(lam, events):
    for expression in ("rate(0 minutes)", "cron(* * * * * *)"):
        with pytest.raises(ClientError) as caught:
            events.put_rule(Name=unique_name("bad"), ScheduleExpression=expression)
        assert error_of(caught) == ("ValidationException", 400, "Parameter ScheduleExpression is not valid.")
    with pytest.raises(ClientError) as caught:
        events.put_rule(Name=unique_name("bad"), EventPattern='{"source": "not-an-array"}')
    code, _, message = error_of(caught)
    assert code == "InvalidEventPatternException" and message.startswith("Event pattern is not valid.")
    rule = unique_name("targets")
    events.put_rule(Name=rule, EventPattern='{"source": ["x"]}')
    answer = events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"}])
    assert answer["FailedEntryCount"] == 1 and answer["FailedEntries"][0]["TargetId"] == "queue"
    name = create_function(lam, ECHO)
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]}])
    with pytest.raises(ClientError) as caught:
        events.delete_rule(Name=rule)
    assert error_of(caught) == ("ValidationException", 400, "Rule can't be deleted since it has targets.")
    events.remove_targets(Rule=rule, Ids=["fn"])
    events.delete_rule(Name=rule)
    with pytest.raises(ClientError) as caught:
        events.describe_rule(Name=rule)
    assert error_of(caught) == ("ResourceNotFoundException", 400, f"Rule {rule} does not exist on EventBus default.")


def test_rule_state_and_listing(events):
    prefix = unique_name("list")
    for i in range(3):
        events.put_rule(Name=f"{prefix}-{i}", ScheduleExpression="rate(5 minutes)", Description=f"n{i}")
    first = events.list_rules(NamePrefix=prefix, Limit=2)
    rest = events.list_rules(NamePrefix=prefix, Limit=2, NextToken=first["NextToken"])
    assert [r["Name"] for r in first["Rules"] + rest["Rules"]] == [f"{prefix}-{i}" for i in range(3)]
    events.disable_rule(Name=f"{prefix}-1")
    described = events.describe_rule(Name=f"{prefix}-1")
    assert (described["State"], described["ScheduleExpression"], described["Description"]) == ("DISABLED", "rate(5 minutes)", "n1")
    events.enable_rule(Name=f"{prefix}-1")
    assert events.describe_rule(Name=f"{prefix}-1")["State"] == "ENABLED"


def test_a_schedule_fires_once_per_tick_and_skips_ticks_missed_across_a_restart(tmp_path, hook):
    """The test-only SQUALL_TEST_SCHEDULE_CLOCK runs the schedule clock 60 times faster (a minute a
    second) from a fixed anchor, so both server processes share one simulated clock."""
    env = {"SQUALL_TEST_SCHEDULE_CLOCK": f"{time.time():.3f},60"}
    data_dir = tmp_path / "data"
    first = start_server(data_dir, env=env)
    lam, events = first.client("lambda"), first.client("events")
    rule = unique_name("tick")
    events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")
    name, arn = observed_function(lam, hook, rule)
    events.put_targets(Rule=rule, Targets=[{"Id": "t", "Arn": arn}])
    hook.wait(name, 2, timeout=60)
    assert first.stop(signal.SIGTERM) == 0
    before_restart = len(hook.records[name])
    time.sleep(3)  # three simulated minutes down: those ticks are missed
    second = start_server(data_dir, env=env)
    try:
        records = hook.wait(name, before_restart + 2, timeout=60)
        assert counters(second)["ticks_missed"] >= 1
    finally:
        second.stop()
    events_seen = [r["requestPayload"] for r in records]
    for event in events_seen:
        assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
        assert event["resources"] == [rule_arn(rule)] and event["account"] == ACCOUNT and event["region"] == REGION
    ticks = sorted(datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%SZ").timestamp() for e in events_seen)
    assert len(set(ticks)) == len(ticks)  # no tick fired twice
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(gap % 60 == 0 for gap in gaps)  # on the rate's lattice
    assert max(gaps) >= 180  # the ticks missed while down were not replayed
