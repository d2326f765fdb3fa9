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
from squall.errors import ResourceNotFound, TooManyRequests
from squall.store.db import create_engine
from squall.store.schedules import ScheduleRepository
from squall.triggers.schedules import DEFAULT_RETRY, Schedules, SchedulerError, flex_offset

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
                 missing: frozenset[str] = frozenset(), throttled: int = 0) -> None:
        self.clock = Clock(now)
        self.accepted: list[tuple[FunctionRef, Any]] = []
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.slept: list[float] = []
        self.throttled = throttled  # the next this many hand-overs are refused with a retryable error
        roles = {ROLE: (ALLOW,)} if roles is None else roles

        async def accept(ref: FunctionRef, payload: bytes, request_id: str) -> None:
            if ref.name in missing:
                raise ResourceNotFound(f"Function not found: {ref.name}")
            if self.throttled:
                self.throttled -= 1
                raise TooManyRequests("Rate exceeded", "ReservedFunctionConcurrentInvocationLimitExceeded")
            self.accepted.append((ref, orjson.loads(payload)))

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        async def send(arn: str, body: bytes, attributes: dict[str, str]) -> None:
            self.sent.append((arn, body, attributes))

        repo = ScheduleRepository(create_engine(f"sqlite:///{db_path}"))
        self.schedules = Schedules(repo, REGION, ACCOUNT, accept, send, roles.get, self.clock, interval=1.0,
                                   grace=30.0, wall=lambda: 1.0, sleep=sleep)

    def create(self, name: str, expression: str, **extra: Any) -> None:
        target = {"Arn": FN, "RoleArn": ROLE, **extra.pop("Target", {})}
        self.schedules.create_schedule({"Name": name, "ScheduleExpression": expression, "Target": target,
                                        "FlexibleTimeWindow": extra.pop("FlexibleTimeWindow", {"Mode": "OFF"}),
                                        **extra})

    async def run_once(self) -> int:
        """One ticker pass, and every retry it started run to its end."""
        count = await self.schedules.ticker.run_once()
        while self.schedules._retrying:
            await asyncio.gather(*self.schedules._retrying)
        return count

    def fires_until(self, end: float, step: float = 30.0) -> list[float]:
        """Advance the clock in steps, running the ticker; the instants at which it fired."""
        fired = []
        while True:
            before = len(self.accepted)
            asyncio.run(self.run_once())
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


def test_a_missed_fire_is_replayed_late_only_inside_its_flexible_window(tmp_path):
    start = epoch("2024-03-01T11:00:00+00:00")
    h = Harness(tmp_path / "db.sqlite", start)
    window = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    h.create("flex", "cron(0 * * * ? *)", FlexibleTimeWindow=window)
    offset = flex_offset("default", "flex", 15)
    asyncio.run(h.run_once())  # 11:00 + offset is the first fire: not due yet
    assert h.accepted == []
    # Squall "down" from 11:00 to 12:14:59: the 12:00 fire (due at 12:00 + offset) is still in its window
    h.clock.now = epoch("2024-03-01T12:14:59+00:00")
    asyncio.run(h.run_once())
    assert len(h.accepted) == 1 and h.schedules.ticker.skipped == 0  # 11:00's fire was beyond its window
    assert h.schedules.repo.get("default", "flex").next_tick == epoch("2024-03-01T13:00:00+00:00") + offset
    # down again past 13:15 and 14:15: nothing is replayed, the missed fire is counted
    h.clock.now = epoch("2024-03-01T14:16:00+00:00")
    asyncio.run(h.run_once())
    assert len(h.accepted) == 1 and h.schedules.ticker.skipped == 1


def test_a_missed_fire_without_a_flexible_window_is_not_replayed(tmp_path):
    start = epoch("2024-03-01T11:01:00+00:00")
    h = Harness(tmp_path / "db.sqlite", start)
    h.create("strict", "cron(0 * * * ? *)")
    asyncio.run(h.run_once())
    h.clock.now = epoch("2024-03-01T12:05:00+00:00")  # 12:00 missed by 5 minutes (more than the grace)
    asyncio.run(h.run_once())
    assert h.accepted == [] and h.schedules.ticker.skipped == 1


def test_retryable_refusals_are_retried_with_backoff_and_the_attempt_number(tmp_path):
    h = Harness(tmp_path / "db.sqlite", epoch("2024-06-01T08:00:00+00:00"), throttled=3)
    h.create("busy", "rate(1 hour)", Target={"Input": '{"attempt": "<aws.scheduler.attempt-number>"}'})
    asyncio.run(h.run_once())
    assert [payload for _, payload in h.accepted] == [{"attempt": "4"}]
    assert h.slept == [1.0, 2.0, 4.0] and h.schedules.stats["retried"] == 3 and h.sent == []
    assert h.schedules.deliveries.of("default/busy")["delivered"] == 1


def test_retries_stop_at_the_retry_policy_then_dead_letter(tmp_path):
    h = Harness(tmp_path / "db.sqlite", epoch("2024-06-01T08:00:00+00:00"), throttled=100)
    h.create("two", "rate(1 hour)", Target={"RetryPolicy": {"MaximumRetryAttempts": 2},
                                            "DeadLetterConfig": {"Arn": DLQ}})
    h.create("young", "rate(1 hour)", Target={"RetryPolicy": {"MaximumEventAgeInSeconds": 60},
                                              "DeadLetterConfig": {"Arn": DLQ}})
    h.create("never", "rate(1 hour)", Target={"RetryPolicy": {"MaximumRetryAttempts": 0},
                                              "DeadLetterConfig": {"Arn": DLQ}})
    asyncio.run(h.run_once())
    assert h.accepted == []
    by_schedule = {attrs["SCHEDULE_ARN"].rsplit("/", 1)[1]: attrs for _, _, attrs in h.sent}
    assert by_schedule["two"]["RETRY_ATTEMPTS"] == "2"
    assert by_schedule["two"]["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert by_schedule["young"]["RETRY_ATTEMPTS"] == "5"  # 1+2+4+8+16 s waited; 32 more would pass 60 s
    assert by_schedule["young"]["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeInSeconds"
    assert by_schedule["never"]["RETRY_ATTEMPTS"] == "0"
    assert {attrs["ERROR_CODE"] for attrs in by_schedule.values()} == {"TooManyRequestsException"}
    counts = h.schedules.deliveries.of("default/two")
    assert counts["failed"] == 1 and counts["last_error"].startswith("TooManyRequestsException")


def test_retry_policy_defaults_are_shown_and_out_of_range_values_refused(tmp_path):
    h = Harness(tmp_path / "db.sqlite", 1_700_000_000.0)
    h.create("s", "rate(1 hour)")
    assert h.schedules.get_schedule({"Name": "s"})["Target"]["RetryPolicy"] == DEFAULT_RETRY
    for policy, message in (({"MaximumRetryAttempts": 186}, "MaximumRetryAttempts"),
                            ({"MaximumEventAgeInSeconds": 86401}, "MaximumEventAgeInSeconds")):
        with pytest.raises(SchedulerError) as caught:
            h.create("bad", "rate(1 hour)", Target={"RetryPolicy": policy})
        assert caught.value.code == "ValidationException" and message in caught.value.message
