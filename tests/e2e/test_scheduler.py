"""EventBridge Scheduler through boto3's ``scheduler`` client against a real ``squall server`` whose
schedule clock runs 30 times faster (the test-only ``SQUALL_TEST_SCHEDULE_CLOCK``). Invocations are
observed through an OnSuccess webhook destination: the function returns the event it got and the
simulated instant it ran at; dead letters through a moto SQS server."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.request import urlopen
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, start_server, unique_name
from tests.e2e.test_async import Webhook, aws, make_queue, receive
from tests.e2e.test_control_plane import error_of

ACCOUNT, REGION = "123456789012", "us-east-1"
SPEED = 30
ANCHOR = time.time()
CLOCK_CODE = """
import os, time
def handler(event, context):
    anchor, speed = float(os.environ["ANCHOR"]), float(os.environ["SPEED"])
    return {"event": event, "sim": anchor + (time.time() - anchor) * speed}
"""
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@pytest.fixture(scope="module")
def hook():
    webhook = Webhook()
    yield webhook
    webhook.server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, moto_endpoint):
    running = start_server(tmp_path_factory.mktemp("squall-scheduler"), env={
        "SQUALL_TEST_SCHEDULE_CLOCK": f"{ANCHOR:.3f},{SPEED}",
        "SQUALL_AWS_ENDPOINT": moto_endpoint, "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
    })
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def scheduler(server):
    return server.client("scheduler")


@pytest.fixture(scope="module")
def roles(server):
    """(a role allowed to invoke every function, a role allowed nothing)."""
    iam = server.client("iam")
    arns = []
    for name, policy in (("sched-ok", {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}),
                         ("sched-none", None)):
        arns.append(iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"])
        if policy:
            iam.put_role_policy(RoleName=name, PolicyName="invoke",
                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [policy]}))
    return tuple(arns)


def sim_now() -> float:
    return ANCHOR + (time.time() - ANCHOR) * SPEED


def observed(lam, hook) -> tuple[str, str]:
    name = create_function(lam, CLOCK_CODE, Environment={"Variables": {"ANCHOR": f"{ANCHOR:.3f}", "SPEED": str(SPEED)}})
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
    lam.invoke(FunctionName=name, Payload=b"{}")  # warm (synchronous: no OnSuccess record)
    return name, lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def counters(server) -> dict[str, int]:
    with urlopen(server.endpoint + "/health") as response:
        return json.loads(response.read())["scheduler"]


def test_a_rate_schedule_fires_repeatedly_with_its_input(server, scheduler, lam, hook, roles):
    name, arn = observed(lam, hook)
    schedule = unique_name("rate")
    answer = scheduler.create_schedule(Name=schedule, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                                       Target={"Arn": arn, "RoleArn": roles[0], "Input": '{"job": "report"}'})
    assert answer["ScheduleArn"] == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{schedule}"
    records = hook.wait(name, 3, timeout=60)
    assert [r["requestPayload"] for r in records] == [{"job": "report"}] * len(records)
    got = scheduler.get_schedule(Name=schedule)
    assert (got["Name"], got["GroupName"], got["State"], got["ScheduleExpression"]) == (
        schedule, "default", "ENABLED", "rate(1 minute)")
    assert got["Target"]["Arn"] == arn and got["FlexibleTimeWindow"] == {"Mode": "OFF"}
    listed = scheduler.list_schedules(NamePrefix=schedule)["Schedules"]
    assert [(s["Name"], s["Target"]["Arn"]) for s in listed] == [(schedule, arn)]
    from tests.e2e.test_pubsub_triggers import call

    status, report = call(server, "GET", f"/squall/triggers?function={name}")
    (row,) = report["triggers"]
    assert status == 200 and row["kind"] == "schedule" and row["delivered"] >= 3 and row["failed"] == 0
    scheduler.delete_schedule(Name=schedule)
    with pytest.raises(ClientError) as caught:
        scheduler.get_schedule(Name=schedule)
    assert error_of(caught)[:2] == ("ResourceNotFoundException", 404)


def test_a_cron_schedule_fires_on_local_minutes_of_its_time_zone(scheduler, lam, hook, roles):
    """Kathmandu is UTC+5:45: its even minutes are odd minutes in UTC."""
    name, arn = observed(lam, hook)
    schedule = unique_name("cron")
    scheduler.create_schedule(Name=schedule, ScheduleExpression="cron(0/2 * * * ? *)",
                              ScheduleExpressionTimezone="Asia/Kathmandu", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": roles[0],
                                      "Input": '{"at": "<aws.scheduler.scheduled-time>", "arn": "<aws.scheduler.schedule-arn>"}'})
    records = hook.wait(name, 3, timeout=60)
    scheduler.delete_schedule(Name=schedule)
    # Each fire carries its tick (Scheduler's context attributes): even minutes in Kathmandu, odd in UTC.
    ticks = [datetime.strptime(r["requestPayload"]["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC"))
             for r in records]
    assert all(r["requestPayload"]["arn"].endswith(f":schedule/default/{schedule}") for r in records)
    local = [t.astimezone(ZoneInfo("Asia/Kathmandu")) for t in ticks]
    assert all(t.minute % 2 == 0 and t.second == 0 for t in local), local
    assert all(t.minute % 2 == 1 for t in ticks), ticks


def test_a_one_time_schedule_fires_once_and_is_deleted_after_completion(scheduler, lam, hook, roles):
    name, arn = observed(lam, hook)
    schedule = unique_name("once")
    zone = ZoneInfo("Europe/Paris")
    when = datetime.fromtimestamp(sim_now() + 120, zone).replace(tzinfo=None, microsecond=0)
    scheduler.create_schedule(Name=schedule, ScheduleExpression=f"at({when.isoformat()})", ScheduleExpressionTimezone="Europe/Paris",
                              FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
                              Target={"Arn": arn, "RoleArn": roles[0], "Input": '{"once": true}'})
    (record,) = hook.wait(name, 1, timeout=60)
    assert record["requestPayload"] == {"once": True}
    assert record["responsePayload"]["sim"] >= when.replace(tzinfo=zone).timestamp()
    for _ in range(100):  # the completed schedule is deleted (bounded wait)
        if not scheduler.list_schedules(NamePrefix=schedule)["Schedules"]:
            break
        time.sleep(0.1)
    assert scheduler.list_schedules(NamePrefix=schedule)["Schedules"] == []
    assert len(hook.records[name]) == 1  # one fire


def test_a_disabled_schedule_does_not_fire(scheduler, lam, hook, roles):
    quiet, quiet_arn = observed(lam, hook)
    busy, busy_arn = observed(lam, hook)
    off, on = unique_name("off"), unique_name("on")
    scheduler.create_schedule(Name=off, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                              State="DISABLED", Target={"Arn": quiet_arn, "RoleArn": roles[0]})
    scheduler.create_schedule(Name=on, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": busy_arn, "RoleArn": roles[0]})
    records = hook.wait(busy, 3, timeout=60)
    assert [r["requestPayload"] for r in records] == [{}] * len(records)  # no Input: {}
    assert quiet not in hook.records
    assert scheduler.get_schedule(Name=off)["State"] == "DISABLED"
    assert [s["Name"] for s in scheduler.list_schedules(State="DISABLED")["Schedules"]] == [off]
    scheduler.delete_schedule(Name=off)
    scheduler.delete_schedule(Name=on)


def test_a_role_without_permission_is_refused_and_the_dead_letter_queue_gets_the_input(server, scheduler, lam, hook, roles,
                                                                                       moto_endpoint):
    sqs = aws("sqs", moto_endpoint)
    dlq_url, dlq_arn = make_queue(sqs)
    name, arn = observed(lam, hook)
    before = counters(server)
    schedule = unique_name("denied")
    scheduler.create_schedule(Name=schedule, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": roles[1], "Input": '{"n": 1}',
                                      "DeadLetterConfig": {"Arn": dlq_arn}})
    (letter,) = receive(sqs, dlq_url)[:1]
    scheduler.delete_schedule(Name=schedule)
    assert letter["Body"] == '{"n": 1}'
    attributes = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "AccessDeniedException"
    assert attributes["SCHEDULE_ARN"] == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{schedule}"
    assert attributes["TARGET_ARN"] == arn
    assert counters(server)["denied"] > before["denied"]
    assert name not in hook.records  # never invoked by the schedule


@pytest.mark.parametrize(("change", "message"), [
    ({"ScheduleExpression": "rate(0 minutes)"}, "Invalid Schedule Expression rate(0 minutes)."),
    ({"ScheduleExpressionTimezone": "Mars/Olympus_Mons"}, "Invalid time zone Mars/Olympus_Mons."),
    ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "MaximumWindowInMinutes must be provided"),
    ({"Target": {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:queue", "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/sched-ok"}},
     "Lambda functions only"),
])
def test_bad_input_is_a_validation_exception(scheduler, change, message):
    request = {"Name": unique_name("bad"), "ScheduleExpression": "rate(5 minutes)", "FlexibleTimeWindow": {"Mode": "OFF"},
               "Target": {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:any",
                          "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/sched-ok"}, **change}
    with pytest.raises(ClientError) as caught:
        scheduler.create_schedule(**request)
    code, status, text = error_of(caught)
    assert (code, status) == ("ValidationException", 400) and message in text
    assert scheduler.list_schedules(NamePrefix=request["Name"])["Schedules"] == []
