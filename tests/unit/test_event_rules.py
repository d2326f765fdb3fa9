"""EventBridge rules (squall/triggers/event_rules.py, scheduler.py): input transformation, pattern
routing, permission checks and the durable ticker's claim logic (an injected clock, SQLite)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from squall.arn import FunctionRef
from squall.auth.policy import Policy
from squall.errors import ResourceNotFound
from squall.sources.filters import FilterError, Filters
from squall.store.db import create_engine
from squall.store.event_rules import EventRuleRepository
from squall.triggers.event_rules import EventRules, EventsError, compile_pattern, render_template, target_payload
from squall.triggers.scheduler import Ticker, schedule_clock

ACCOUNT, REGION = "123456789012", "us-east-1"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
EVENT = {"version": "0", "id": "e-1", "detail-type": "Order Placed", "source": "shop.orders", "account": ACCOUNT,
         "time": "2024-01-02T03:04:05Z", "region": REGION, "resources": ["r1"],
         "detail": {"order": {"id": "o-7", "total": 120.5, "items": [{"sku": "a"}, {"sku": "b"}]}, "note": 'say "hi"'}}


# ---- input transformation --------------------------------------------------------------------
def test_input_transformer_fills_json_and_string_positions():
    target = {"Id": "t", "Arn": FN, "InputTransformer": {
        "InputPathsMap": {"id": "$.detail.order.id", "total": "$.detail.order.total", "sku": "$.detail.order.items[1].sku",
                          "note": "$.detail.note", "gone": "$.detail.nothing", "order": "$.detail.order"},
        "InputTemplate": '{"id": <id>, "total": <total>, "text": "order <id> of <total>: <note>", "sku": "<sku>", '
                         '"gone": <gone>, "order": <order>, "rule": "<aws.events.rule-name>"}'}}
    out = orjson.loads(target_payload(target, EVENT, "arn:rule", "my-rule"))
    assert out == {"id": "o-7", "total": 120.5, "text": 'order o-7 of 120.5: say "hi"', "sku": "b", "gone": None,
                   "order": EVENT["detail"]["order"], "rule": "my-rule"}


def test_input_transformer_string_template_and_unknown_placeholders():
    assert render_template('"<kind> from <src> <unknown>"', {"kind": "Order Placed", "src": "shop"}) == \
        b'"Order Placed from shop <unknown>"'


def test_input_input_path_and_whole_event():
    assert target_payload({"Input": '{"fixed": true}'}, EVENT, "a", "r") == b'{"fixed": true}'
    assert orjson.loads(target_payload({"InputPath": "$.detail.order.items"}, EVENT, "a", "r")) == [{"sku": "a"}, {"sku": "b"}]
    assert orjson.loads(target_payload({}, EVENT, "a", "r")) == EVENT


# ---- patterns ------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern, matches", [
    ({"source": [{"prefix": "shop."}]}, True),
    ({"source": [{"prefix": "bank."}]}, False),
    ({"detail": {"order": {"total": [{"numeric": [">", 100, "<=", 200]}]}}}, True),
    ({"detail": {"order": {"total": [{"numeric": ["<", 100]}]}}}, False),
    ({"detail-type": ["Order Placed"], "detail": {"order": {"items": {"sku": ["b"]}}}}, True),
    ({"detail": {"missing": [{"exists": False}]}}, True),
])
def test_event_patterns_route_with_the_filter_grammar(pattern, matches):
    assert compile_pattern(orjson.dumps(pattern).decode()).matches(EVENT) is matches


@pytest.mark.parametrize("text", ['{"source": "shop"}', "not json", "{}", '{"a": [{"bogus": 1}]}', "[1]"])
def test_invalid_event_patterns(text):
    with pytest.raises(EventsError) as caught:
        compile_pattern(text)
    assert caught.value.code == "InvalidEventPatternException"
    assert caught.value.message.startswith("Event pattern is not valid. Reason: ")


def test_lambda_filters_still_refuse_wildcard():
    with pytest.raises(FilterError, match="not supported"):
        Filters.parse({"Filters": [{"Pattern": '{"a": [{"wildcard": "*.png"}]}'}]})


# ---- the service with fakes -------------------------------------------------------------------
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(db_path, clock: Clock, policies: dict[str, Any], accepted: list, missing: frozenset[str] = frozenset()) -> EventRules:
    async def accept(ref: FunctionRef, payload: bytes, request_id: str) -> None:
        if ref.name in missing:
            raise ResourceNotFound(f"Function not found: {ref.name}")
        accepted.append((ref, orjson.loads(payload)))

    repo = EventRuleRepository(create_engine(f"sqlite:///{db_path}"))
    return EventRules(repo, REGION, ACCOUNT, accept, policies.get, clock, interval=1.0, grace=30.0)


def allow_events(rule_name: str) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": [{
        "Sid": "eb", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "lambda:InvokeFunction",
        "Resource": FN, "Condition": {"ArnLike": {"AWS:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule_name}"}}}]},
        resource_policy=True)


def test_put_events_routes_matching_events_and_checks_the_resource_policy(tmp_path):
    accepted: list = []
    policies: dict[str, Any] = {}
    rules = service(tmp_path / "db.sqlite", Clock(1_700_000_000.0), policies, accepted)
    rules.put_rule({"Name": "big", "EventPattern": '{"detail": {"total": [{"numeric": [">=", 100]}]}}'})
    rules.put_targets({"Rule": "big", "Targets": [{"Id": "t", "Arn": FN, "InputPath": "$.detail"}]})

    def put(total: Any) -> dict[str, Any]:
        return asyncio.run(rules.put_events({"Entries": [
            {"Source": "s", "DetailType": "d", "Detail": orjson.dumps({"total": total}).decode()}]}))

    assert put(150)["FailedEntryCount"] == 0
    assert accepted == [] and rules.stats["denied"] == 1  # no statement for events.amazonaws.com
    policies[FN] = allow_events("other-rule")
    put(150)
    assert accepted == [] and rules.stats["denied"] == 2  # a statement for another rule's SourceArn
    policies[FN] = allow_events("big")
    put(150)
    put(5)  # does not match
    assert accepted == [(FunctionRef("fn", None), {"total": 150})]
    assert rules.stats["delivered"] == 1


def test_put_events_answers_per_entry(tmp_path):
    rules = service(tmp_path / "db.sqlite", Clock(1.0e9), {}, [])
    answer = asyncio.run(rules.put_events({"Entries": [
        {"Source": "s", "DetailType": "d", "Detail": "{}"},
        {"Source": "s", "DetailType": "d", "Detail": "{not json"},
        {"DetailType": "d", "Detail": "{}"},
        {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "nowhere"},
    ]}))
    assert answer["FailedEntryCount"] == 3
    first, malformed, no_source, no_bus = answer["Entries"]
    assert set(first) == {"EventId"}
    assert malformed == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert no_source["ErrorCode"] == "InvalidArgument" and "Source" in no_source["ErrorMessage"]
    assert no_bus["ErrorCode"] == "ResourceNotFoundException"
    with pytest.raises(EventsError, match="less than or equal to 10"):
        asyncio.run(rules.put_events({"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11}))
    with pytest.raises(EventsError, match="over the limit"):
        asyncio.run(rules.put_events({"Entries": [{"Source": "s", "DetailType": "d",
                                                   "Detail": orjson.dumps({"x": "y" * 256 * 1024}).decode()}]}))


def test_a_missing_target_function_is_counted_not_raised(tmp_path):
    accepted: list = []
    rules = service(tmp_path / "db.sqlite", Clock(1.0e9), {FN: allow_events("r")}, accepted, missing=frozenset({"fn"}))
    rules.put_rule({"Name": "r", "EventPattern": '{"source": ["s"]}'})
    rules.put_targets({"Rule": "r", "Targets": [{"Id": "t", "Arn": FN}]})
    answer = asyncio.run(rules.put_events({"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}))
    assert answer["FailedEntryCount"] == 0 and accepted == [] and rules.stats["failed"] == 1


# ---- the ticker ----------------------------------------------------------------------------
def test_two_tickers_on_one_database_fire_each_tick_once_and_skip_missed_ticks(tmp_path):
    created = 1_700_000_000.5
    clock = Clock(created)
    accepted: list = []
    policies = {FN: allow_events("every-minute")}
    db_path = tmp_path / "shared.sqlite"
    first = service(db_path, clock, policies, accepted)
    second = service(db_path, clock, policies, accepted)  # another "server" on the same database
    first.put_rule({"Name": "every-minute", "ScheduleExpression": "rate(1 minute)"})
    first.put_targets({"Rule": "every-minute", "Targets": [{"Id": "t", "Arn": FN}]})

    async def both() -> tuple[int, int]:
        return await first.ticker.run_once(), await second.ticker.run_once()

    assert asyncio.run(both()) == (0, 0)  # nothing due yet
    clock.now = created + 60
    assert asyncio.run(both()) == (1, 0)  # the second finds the tick claimed
    clock.now = created + 61
    assert asyncio.run(both()) == (0, 0)
    clock.now = created + 125  # the next tick, first claimed by the other instance this time
    assert asyncio.run(second.ticker.run_once()) == 1
    assert asyncio.run(first.ticker.run_once()) == 0
    assert [e["time"] for _, e in accepted] == ["2023-11-14T22:14:20Z", "2023-11-14T22:15:20Z"]
    event = accepted[0][1]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events" and event["detail"] == {}
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/every-minute"]
    assert event["account"] == ACCOUNT and event["region"] == REGION and event["version"] == "0"

    # both "servers" down for ten minutes: the missed ticks are not replayed
    clock.now = created + 725
    assert asyncio.run(both()) == (0, 0)
    assert first.ticker.skipped == 1 and len(accepted) == 2
    clock.now = created + 780  # the next tick after the restart fires once
    assert sum(asyncio.run(both())) == 1
    assert [e["time"] for _, e in accepted][-1] == "2023-11-14T22:26:20Z"
    assert len(accepted) == 3


def test_a_disabled_rule_does_not_tick_and_enabling_schedules_the_next(tmp_path):
    created = 1_700_000_000.0
    clock = Clock(created)
    accepted: list = []
    rules = service(tmp_path / "db.sqlite", clock, {FN: allow_events("r")}, accepted)
    rules.put_rule({"Name": "r", "ScheduleExpression": "cron(0/5 * * * ? *)", "State": "DISABLED"})
    rules.put_targets({"Rule": "r", "Targets": [{"Id": "t", "Arn": FN}]})
    clock.now = created + 3600
    assert asyncio.run(rules.ticker.run_once()) == 0
    rules.enable_rule({"Name": "r"})  # at 23:13:20; the next 5-minute tick is 23:15:00
    clock.now += 100
    assert asyncio.run(rules.ticker.run_once()) == 1
    assert len(accepted) == 1


@pytest.mark.parametrize("expression", ["rate(0 minutes)", "cron(* * * * * *)", "rate(1 minutes)", "at(2030-01-01T00:00:00)"])
def test_invalid_schedule_expressions(tmp_path, expression):
    rules = service(tmp_path / "db.sqlite", Clock(1.0e9), {}, [])
    with pytest.raises(EventsError) as caught:
        rules.put_rule({"Name": "r", "ScheduleExpression": expression})
    assert (caught.value.code, caught.value.message) == ("ValidationException", "Parameter ScheduleExpression is not valid.")


def test_rules_targets_and_buses(tmp_path):
    rules = service(tmp_path / "db.sqlite", Clock(1.0e9), {}, [])
    assert rules.create_event_bus({"Name": "orders"})["EventBusArn"].endswith(":event-bus/orders")
    with pytest.raises(EventsError, match="already exists"):
        rules.create_event_bus({"Name": "orders"})
    arn = rules.put_rule({"Name": "r", "EventBusName": "orders", "EventPattern": '{"source": ["s"]}'})["RuleArn"]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/orders/r"
    with pytest.raises(EventsError, match="only on the default event bus"):
        rules.put_rule({"Name": "s", "EventBusName": "orders", "ScheduleExpression": "rate(1 hour)"})
    answer = rules.put_targets({"Rule": "r", "EventBusName": "orders", "Targets": [
        {"Id": "ok", "Arn": FN}, {"Id": "sqs", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"}]})
    assert answer["FailedEntryCount"] == 1 and answer["FailedEntries"][0]["TargetId"] == "sqs"
    with pytest.raises(EventsError, match="since it has targets"):
        rules.delete_rule({"Name": "r", "EventBusName": "orders"})
    with pytest.raises(EventsError, match="delete its rules"):
        rules.delete_event_bus({"Name": "orders"})
    rules.remove_targets({"Rule": "r", "EventBusName": "orders", "Ids": ["ok"]})
    rules.delete_rule({"Name": "r", "EventBusName": "orders"})
    rules.delete_event_bus({"Name": "orders"})
    assert [b["Name"] for b in rules.list_event_buses({})["EventBuses"]] == ["default"]
    for i in range(5):
        rules.put_rule({"Name": f"p-{i}", "EventPattern": '{"source": ["s"]}'})
    page = rules.list_rules({"NamePrefix": "p-", "Limit": 3})
    rest = rules.list_rules({"NamePrefix": "p-", "Limit": 3, "NextToken": page["NextToken"]})
    assert [r["Name"] for r in page["Rules"] + rest["Rules"]] == [f"p-{i}" for i in range(5)] and "NextToken" not in rest
    with pytest.raises(EventsError) as caught:
        rules.describe_rule({"Name": "nope"})
    assert (caught.value.code, caught.value.message) == ("ResourceNotFoundException",
                                                        "Rule nope does not exist on EventBus default.")


def test_the_test_only_clock_runs_faster_from_its_anchor():
    clock, interval, _ = schedule_clock(lambda: 0.0, {"SQUALL_TEST_SCHEDULE_CLOCK": "1000,60"})
    assert clock() > 1000 + 60 * 60  # real time is long after the anchor
    assert interval < 1.0
    default, default_interval, _ = schedule_clock(lambda: 42.0, {})
    assert default() == 42.0 and default_interval == 1.0


def test_ticker_failure_in_one_rule_does_not_stop_the_others(tmp_path):
    repo = EventRuleRepository(create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    fired: list[str] = []

    async def fire(rule, tick):  # type: ignore[no-untyped-def]
        fired.append(rule.name)
        if rule.name == "a":
            raise RuntimeError("boom")

    for name in ("a", "b"):
        repo.put_rule("default", name, {"ScheduleExpression": "rate(1 minute)", "State": "ENABLED"}, 0.0, 60.0)
    ticker = Ticker(repo, fire, Clock(61.0), grace=30.0)
    assert asyncio.run(ticker.run_once()) == 2
    assert sorted(fired) == ["a", "b"]


def test_eventbridge_patterns_take_wildcards_and_lambda_filters_still_do_not():
    import json as _json

    from squall.sources.filters import FilterError, Filters, parse_pattern

    pattern = parse_pattern(_json.dumps({"source": [{"wildcard": "com.*.orders"}],
                                         "detail": {"key": [{"wildcard": "a\\*b*"}]}}))
    assert pattern.matches({"source": "com.shop.orders", "detail": {"key": "a*bzz"}})
    assert pattern.matches({"source": "com..orders", "detail": {"key": "a*b"}})
    assert not pattern.matches({"source": "com.shop.order", "detail": {"key": "a*b"}})
    assert not pattern.matches({"source": "com.x.orders", "detail": {"key": "axb"}})  # \* is a literal star
    assert not pattern.matches({"source": 5, "detail": {"key": "a*b"}})
    with pytest.raises(FilterError, match="consecutive"):
        parse_pattern(_json.dumps({"a": [{"wildcard": "x**"}]}))
    with pytest.raises(FilterError, match="not supported by Lambda"):
        Filters.parse({"Filters": [{"Pattern": _json.dumps({"a": [{"wildcard": "x*"}]})}]})
