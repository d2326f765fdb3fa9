"""EventBridge Scheduler schedules (squall/triggers/schedules.py): validation, firing times with
an injected clock (time zones, DST, flexible windows, one-time schedules), the role check and the
dead-letter queue, on SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from squall.arn import FunctionRef
from squall.auth.policy import Policy
from squall.errors import ResourceNotFound
from squall.store.db import create_engine
from squall.store.schedules import ScheduleRepository
from squall.triggers.schedules import Schedules, SchedulerError, flex_offset

ACCOUNT, REGION = "123456789012", "us-east-1"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/scheduler"
DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"
ALLOW = Policy.parse({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [FN, FN.replace(":fn", ":gone")]}]})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


class Harness:
    def __init__(self, db_path, now: float, roles: dict[str, tuple[Policy, ...]] | None = None,
                 missing: frozenset[str] = frozenset()) -> None:
        self.clock = Clock(now)
        self.accepted: list[tuple[FunctionRef, Any]] = []
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        roles = {ROLE: (ALLOW,)} if roles is None else roles

        async def accept(ref: FunctionRef, payload: bytes, request_id: str) -> None:
            if ref.name in missing:
                raise ResourceNotFound(f"Function not found: {ref.name}")
            self.accepted.append((ref, orjson.loads(payload)))

        async def send(arn: str, body: bytes, attributes: dict[str, str]) -> None:
            self.sent.append((arn, body, attributes))

        repo = ScheduleRepository(create_engine(f"sqlite:///{db_path}"))
        self.schedules = Schedules(repo, REGION, ACCOUNT, accept, send, roles.get, self.clock, interval=1.0,
                                   grace=30.0, wall=lambda: 1.0)

    def create(self, name: str, expression: str, **extra: Any) -> None:
        target = {"Arn": FN, "RoleArn": ROLE, **extra.pop("Target", {})}
        self.schedules.create_schedule({"Name": name, "ScheduleExpression": expression, "Target": target,
                                        "FlexibleTimeWindow": extra.pop("FlexibleTimeWindow", {"Mode": "OFF"}),
                                        **extra})

    def fires_until(self, end: float, step: float = 30.0) -> list[float]:
        """Advance the clock in steps, running the ticker; the instants at which it fired."""
        fired = []
        while True:
            before = len(self.accepted)
            asyncio.run(self.schedules.ticker.run_once())
            fired += [self.clock.now] * (len(self.accepted) - before)
            if self.clock.now >= end:
                return fired
            self.clock.now = min(end, self.clock.now + step)


def test_rate_fires_at_creation_then_every_period_with_the_input(tmp_path):
    start = epoch("2024-03-01T12:00:00+00:00")
    h = Harness(tmp_path / "db.sqlite", start)
    h.create("every", "rate(5 minutes)", Target={"Input": '{"job": 7}'})
    assert asyncio.run(h.schedules.ticker.run_once()) == 1  # at creation (no StartDate)
    h.fires_until(start + 20 * 60, step=60)
    assert len(h.accepted) == 5  # 0, 5, 10, 15, 20 minutes
    assert all(payload == {"job": 7} and ref.name == "fn" for ref, payload in h.accepted)


def test_no_input_sends_an_empty_object(tmp_path):
    h = Harness(tmp_path / "db.sqlite", epoch("2024-03-01T12:00:00+00:00"))
    h.create("bare", "rate(1 minute)")
    asyncio.run(h.schedules.ticker.run_once())
    assert [payload for _, payload in h.accepted] == [{}]


def test_cron_in_a_time_zone_across_spring_forward_and_fall_back(tmp_path):
    # 02:30 every day in New York: 2024-03-10 has no 02:30 (skipped); 2024-11-03 has two 01:30s
    h = Harness(tmp_path / "db.sqlite", epoch("2024-03-08T00:00:00-05:00"))
    h.create("nightly", "cron(30 2 * * ? *)", ScheduleExpressionTimezone="America/New_York")
    fired = h.fires_until(epoch("2024-03-12T00:00:00-04:00"), step=60)
    assert fired == [epoch("2024-03-08T02:30:00-05:00"), epoch("2024-03-09T02:30:00-05:00"),
                     epoch("2024-03-11T02:30:00-04:00")]
    h2 = Harness(tmp_path / "db2.sqlite", epoch("2024-11-02T12:00:00-04:00"))
    h2.create("early", "cron(30 1 * * ? *)", ScheduleExpressionTimezone="America/New_York")
    fired = h2.fires_until(epoch("2024-11-04T12:00:00-05:00"), step=60)
    assert fired == [epoch("2024-11-03T01:30:00-04:00"), epoch("2024-11-04T01:30:00-05:00")]  # once, the first 01:30


def test_flexible_window_delays_each_fire_by_a_fixed_offset(tmp_path):
    offset = flex_offset("default", "flex", 10)
    assert 0 <= offset < 600 and offset == flex_offset("default", "flex", 10)
    assert flex_offset("default", "other", 10) != offset or flex_offset("default", "x", 10) != offset
    start = epoch("2024-03-01T12:00:00+00:00")
    h = Harness(tmp_path / "db.sqlite", start)
    h.create("flex", "cron(0 * * * ? *)", FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10})
    stored = h.schedules.repo.get("default", "flex")
    assert stored is not None and stored.next_tick == start + offset  # 12:00 is a fire: delayed by the offset
    fired = h.fires_until(start + 2 * 3600 + 1200, step=60)
    assert len(fired) == 3
    assert [f - (start + k * 3600 + offset) for k, f in enumerate(fired)] == [
        f - (start + k * 3600 + offset) for k, f in enumerate(fired) if 0 <= f - (start + k * 3600 + offset) < 60]
    assert h.schedules.repo.get("default", "flex").next_tick == start + 3 * 3600 + offset


def test_one_time_schedule_fires_once_and_delete_after_completion_removes_it(tmp_path):
    now = epoch("2024-06-01T08:00:00+00:00")
    h = Harness(tmp_path / "db.sqlite", now)
    h.create("once", "at(2024-06-01T10:15:00)", ScheduleExpressionTimezone="Europe/Paris",
             ActionAfterCompletion="DELETE")
    h.create("kept", "at(2024-06-01T10:15:00)", ScheduleExpressionTimezone="Europe/Paris")
    fired = h.fires_until(now + 3 * 3600, step=60)
    assert fired == [epoch("2024-06-01T08:15:00+00:00")] * 2  # 10:15 in Paris is 08:15 UTC
    names = [s["Name"] for s in h.schedules.list_schedules({})["Schedules"]]
    assert names == ["kept"]


def test_disabled_schedule_and_end_date_do_not_fire(tmp_path):
    now = epoch("2024-06-01T08:00:00+00:00")
    h = Harness(tmp_path / "db.sqlite", now)
    h.create("off", "rate(1 minute)", State="DISABLED")
    h.create("ends", "rate(10 minutes)", StartDate=now, EndDate=now + 15 * 60)
    fired = h.fires_until(now + 3600, step=60)
    assert len(fired) == 2  # "ends" at 0 and 10 minutes; "off" never


def test_a_role_that_does_not_allow_the_invocation_sends_to_the_dead_letter_queue(tmp_path):
    now = epoch("2024-06-01T08:00:00+00:00")
    other = f"arn:aws:iam::{ACCOUNT}:role/nothing"
    h = Harness(tmp_path / "db.sqlite", now, roles={ROLE: (ALLOW,), other: ()}, missing=frozenset({"gone"}))
    h.create("denied", "rate(1 minute)", Target={"RoleArn": other, "Input": '{"n": 1}',
                                                 "DeadLetterConfig": {"Arn": DLQ}})
    h.create("norole", "rate(1 minute)", Target={"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/absent"})
    h.create("gone", "rate(1 minute)", Target={"Arn": FN.replace(":fn", ":gone"), "DeadLetterConfig": {"Arn": DLQ}})
    asyncio.run(h.schedules.ticker.run_once())
    assert h.accepted == []
    assert h.schedules.stats["denied"] == 2 and h.schedules.stats["failed"] == 1
    by_code = {attrs["ERROR_CODE"]: (arn, body, attrs) for arn, body, attrs in h.sent}
    arn, body, attrs = by_code["AccessDeniedException"]
    assert arn == DLQ and body == b'{"n": 1}'
    assert attrs["SCHEDULE_ARN"] == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/denied"
    assert attrs["TARGET_ARN"] == FN
    assert by_code["ResourceNotFoundException"][2]["TARGET_ARN"].endswith(":gone")
    assert len(h.sent) == 2


@pytest.mark.parametrize(("params", "message"), [
    ({"ScheduleExpression": "rate(0 minutes)"}, "Invalid Schedule Expression rate(0 minutes)."),
    ({"ScheduleExpression": "cron(0 12 * * * *)"}, "Invalid Schedule Expression cron(0 12 * * * *)."),
    ({"ScheduleExpressionTimezone": "Mars/Olympus"}, "Invalid time zone Mars/Olympus."),
    ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "MaximumWindowInMinutes must be provided"),
    ({"Target": {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", "RoleArn": ROLE}}, "Lambda functions only"),
])
def test_bad_input_is_a_validation_error(tmp_path, params, message):
    h = Harness(tmp_path / "db.sqlite", 1_700_000_000.0)
    request = {"Name": "bad", "ScheduleExpression": "rate(1 minute)", "FlexibleTimeWindow": {"Mode": "OFF"},
               "Target": {"Arn": FN, "RoleArn": ROLE}, **params}
    with pytest.raises(SchedulerError) as caught:
        h.schedules.create_schedule(request)
    assert caught.value.code == "ValidationException" and message in caught.value.message
    assert h.schedules.list_schedules({})["Schedules"] == []


def test_create_get_update_conflict_and_delete(tmp_path):
    h = Harness(tmp_path / "db.sqlite", 1_700_000_000.0)
    h.create("s", "rate(1 hour)", Description="d")
    got = h.schedules.get_schedule({"Name": "s"})
    assert got["Arn"].endswith(":schedule/default/s") and got["State"] == "ENABLED" and got["Description"] == "d"
    with pytest.raises(SchedulerError) as caught:
        h.create("s", "rate(1 hour)")
    assert caught.value.code == "ConflictException"
    h.schedules.update_schedule({"Name": "s", "ScheduleExpression": "rate(2 hours)", "State": "DISABLED",
                                 "FlexibleTimeWindow": {"Mode": "OFF"}, "Target": {"Arn": FN, "RoleArn": ROLE}})
    got = h.schedules.get_schedule({"Name": "s"})
    assert (got["ScheduleExpression"], got["State"]) == ("rate(2 hours)", "DISABLED") and "Description" not in got
    h.schedules.delete_schedule({"Name": "s"})
    with pytest.raises(SchedulerError) as caught:
        h.schedules.get_schedule({"Name": "s"})
    assert caught.value.code == "ResourceNotFoundException"
