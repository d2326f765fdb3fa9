"""EventBridge rules' and Scheduler's schedule expressions (squall/triggers/schedule_expressions.py).

Expected values come from AWS's documentation (EventBridge "Cron expressions reference" and
"Rate expressions reference", Scheduler "Schedule types on EventBridge Scheduler"), from
expressions reported accepted or rejected by AWS in public issue threads, and from calendars
worked out by hand (the weekday of each date used is noted where it matters). Every expected
instant is UTC.
"""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from squall.triggers.schedule_expressions import Schedule, ScheduleError, parse


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fires(schedule: Schedule, after: datetime, count: int) -> list[str | None]:
    """The next ``count`` fires after ``after`` (stopping at the first None)."""
    out: list[str | None] = []
    current: datetime | None = after
    for _ in range(count):
        assert current is not None
        current = schedule.next_after(current)
        out.append(iso(current))
        if current is None:
            break
    return out


# ---------------------------------------------------------------------------------------------
# rate()

@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 7 * 86400),
        ("rate(1440 minutes)", 86400),
    ],
)
def test_valid_rates(expression: str, seconds: int) -> None:
    schedule = parse(expression)
    assert schedule.kind == "rate"
    assert schedule.period == timedelta(seconds=seconds)
    assert not schedule.is_one_time()


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("rate(1 minutes)", "singular"),  # AWS: "rate(1 hours) and rate(5 hour) aren't valid"
        ("rate(1 hours)", "singular"),
        ("rate(1 days)", "singular"),
        ("rate(5 minute)", "plural"),
        ("rate(5 hour)", "plural"),
        ("rate(2 day)", "plural"),
        ("rate(0 minutes)", "positive"),
        ("rate(0 minute)", "positive"),
        ("rate(-5 minutes)", "rate("),
        ("rate(1.5 hours)", "rate("),
        ("rate(30 seconds)", "rate("),
        ("rate(2 weeks)", "rate("),
        ("rate(5minutes)", "rate("),
        ("rate(minutes 5)", "rate("),
        ("rate(5 Minutes)", "rate("),
        ("rate()", "rate("),
        ("rate(5 minutes", "rate("),
        ("rate(5 minutes) ", "rate("),
    ],
)
def test_invalid_rates(expression: str, detail: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(expression)
    assert caught.value.parameter == "ScheduleExpression"
    assert str(caught.value).startswith("Parameter ScheduleExpression is not valid.")
    assert detail in caught.value.detail


def test_rule_rate_ticks_from_creation() -> None:
    # EventBridge rule: "A rate expression starts when you create the scheduled event rule".
    created = utc(2024, 5, 6, 10, 3, 17)
    schedule = parse("rate(5 minutes)", start=created)
    assert fires(schedule, created, 3) == [
        "2024-05-06T10:08:17Z", "2024-05-06T10:13:17Z", "2024-05-06T10:18:17Z"]
    # asked mid-period (a restart, say), it stays on the same lattice
    assert iso(schedule.next_after(utc(2024, 5, 6, 11, 0, 0))) == "2024-05-06T11:03:17Z"
    # before the rule existed: its creation instant is the lattice's first point
    assert iso(schedule.next_after(utc(2024, 5, 6, 9, 0))) == "2024-05-06T10:03:17Z"


def test_scheduler_rate_first_fire_is_start_date() -> None:
    # Scheduler: "you use the StartDate property to set the first occurrence of the schedule".
    start = utc(2024, 5, 6, 12, 0)
    schedule = parse("rate(2 hours)", start=start)
    assert iso(schedule.next_after(start, inclusive=True)) == "2024-05-06T12:00:00Z"
    assert iso(schedule.next_after(start)) == "2024-05-06T14:00:00Z"
    assert iso(schedule.next_after(utc(2024, 5, 6, 14, 0), inclusive=True)) == "2024-05-06T14:00:00Z"


def test_rate_without_start_is_anchored_at_the_epoch() -> None:
    schedule = parse("rate(1 hour)")
    assert iso(schedule.next_after(utc(2024, 5, 6, 10, 20, 30))) == "2024-05-06T11:00:00Z"
    assert iso(parse("rate(7 days)").next_after(utc(1970, 1, 1))) == "1970-01-08T00:00:00Z"


def test_rate_days_are_24_hours_across_dst() -> None:
    # Scheduler: "days represents a 24-hour duration on the clock" even when DST makes a day
    # 23 or 25 hours long: in New York the local time of day moves by an hour.
    start = utc(2024, 3, 9, 12, 0)  # 07:00 EST
    schedule = parse("rate(1 day)", "America/New_York", start=start)
    assert fires(schedule, start, 2) == ["2024-03-10T12:00:00Z", "2024-03-11T12:00:00Z"]
    fire = schedule.next_after(utc(2024, 3, 10, 12, 0))
    assert fire is not None and fire.astimezone(ZoneInfo("America/New_York")).hour == 8  # EDT


def test_rate_stops_at_end() -> None:
    schedule = parse("rate(1 hour)", start=utc(2024, 1, 1), end=utc(2024, 1, 1, 2, 0))
    assert fires(schedule, utc(2024, 1, 1), 4) == [
        "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z", None]


# ---------------------------------------------------------------------------------------------
# cron(): validation

@pytest.mark.parametrize(
    "expression",
    [
        # the EventBridge guide's examples
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0/30 20-2 ? * MON-FRI *)",
        "cron(5,35 14 * * ? *)",
        "cron(15 10 ? * 6L 2019-2022)",
        "cron(0 9 ? * 2#1 *)",
        # reported accepted by EventBridge Scheduler (localstack/localstack#13572)
        "cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)",
        "cron(30-30 13-13 ? * 2,4,6 *)",
        "cron(1-31/30 1-1 ? * 1,7 *)",
        # in deployed configurations; Quartz syntax
        "cron(*/5 * * * ? *)",
        "cron(0 10 ? jan-mar mon-fri *)",
        "cron(0 0 lw * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 ? * L *)",
        "cron(0 0 ? * FRI#3 *)",
        "cron(0 0 1 1 ? 1970-2199)",
    ],
)
def test_valid_crons(expression: str) -> None:
    schedule = parse(expression)
    assert schedule.kind == "cron"
    assert schedule.period is None
    assert not schedule.is_one_time()


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        # the two day fields
        ("cron(0 10 * * * *)", "exactly one of them must be '?'"),
        ("cron(0 10 1 * MON *)", "exactly one of them must be '?'"),
        ("cron(0 10 L * L *)", "exactly one of them must be '?'"),
        ("cron(0 10 ? * ? *)", "both be '?'"),
        # '?' elsewhere (cron(* ? * * * *) is refused by AWS's console)
        ("cron(* ? * * * *)", "Hours: '?'"),
        ("cron(? 10 * * ? *)", "Minutes: '?'"),
        ("cron(0 10 * ? ? *)", "Month: '?'"),
        ("cron(0 10 * * ? ?)", "Year: '?'"),
        ("cron(0 10 ?,1 * * *)", "exactly one of them"),
        # out of range
        ("cron(60 10 * * ? *)", "Minutes: 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "Hours: 24 is outside 0-23"),
        ("cron(0 0 0 * ? *)", "Day-of-month: 0 is outside 1-31"),
        ("cron(0 0 32 * ? *)", "Day-of-month: 32 is outside 1-31"),
        ("cron(0 0 1 13 ? *)", "Month: 13 is outside 1-12"),
        ("cron(0 0 1 0 ? *)", "Month: 0 is outside 1-12"),
        ("cron(0 0 ? * 0 *)", "Day-of-week: 0 is outside 1-7"),
        ("cron(0 0 ? * 8 *)", "Day-of-week: 8 is outside 1-7"),
        ("cron(0 0 1 1 ? 1969)", "Year: 1969 is outside 1970-2199"),
        ("cron(0 0 1 1 ? 2200)", "Year: 2200 is outside 1970-2199"),
        ("cron(0 0 1 1 ? 2020-2200)", "Year: 2200 is outside"),
        ("cron(0 0 32W * ? *)", "Day-of-month: 32 is outside"),
        # field count
        ("cron(0 10 * * ?)", "has 5"),
        ("cron(0 0 10 * * ? *)", "has 7"),
        ("cron()", "has 0"),
        # names
        ("cron(0 0 ? * MOM *)", "'MOM' is not a value"),
        ("cron(0 0 1 JANUARY ? *)", "'JANUARY' is not a value"),
        ("cron(0 0 ? * JAN *)", "Day-of-week: 'JAN'"),
        ("cron(0 0 1 MON ? *)", "Month: 'MON'"),
        ("cron(MON 0 * * ? *)", "Minutes: 'MON'"),
        # increments (cron(*/60 * * * ? *) is refused by AWS: aws/aws-sdk-js#4212)
        ("cron(*/60 * * * ? *)", "increment 60"),
        ("cron(0/0 * * * ? *)", "increment 0"),
        ("cron(0 0/24 * * ? *)", "increment 24"),
        # malformed items (cron(15 12 ? * -1 *) is refused by AWS: winglang/wing#7115)
        ("cron(15 12 ? * -1 *)", "'-1'"),
        ("cron(0,,5 0 * * ? *)", "''"),
        ("cron(1-2-3 0 * * ? *)", "'1-2-3'"),
        ("cron(0 0 1 * ? 2025-2020)", "ends before it starts"),
        # L, W, #
        ("cron(0 0 ? * 3#1,6#3 *)", "only one"),  # documented: "3#1,6#3" is not valid
        ("cron(0 0 ? * 3#6 *)", "#6"),
        ("cron(0 0 ? * 3#0 *)", "#0"),
        ("cron(0 0 ? * 8#1 *)", "8 is outside"),
        ("cron(0 0 L,15 * ? *)", "L and W"),
        ("cron(0 0 15W,20 * ? *)", "L and W"),
        ("cron(0 0 W * ? *)", "L and W"),
        ("cron(0 0 L-3 * ? *)", "L and W"),
        ("cron(0 0 ? * 1,6L *)", "L is used"),
        ("cron(0 0 * * 6W *)", "exactly one"),
        ("cron(0 0 ? * 6W *)", "'6W'"),
        ("cron(L 0 * * ? *)", "Minutes: 'L'"),
        # the envelope
        ("cron 0 10 * * ? *", "rate(...), cron(...) or at(...)"),
        ("cron(0 10 * * ? *", "cron(Minutes"),
        ("CRON(0 10 * * ? *)", "rate(...), cron(...) or at(...)"),
        ("cron(0 10 * * ? *) ", "cron(Minutes"),
        ("", "empty"),
        ("cron(0 10 * * ? *)" + " " * 240, "over 256 characters"),
        ("cron(0 10 * * ? ２０２４)", "ASCII"),
    ],
)
def test_invalid_crons(expression: str, detail: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(expression)
    assert str(caught.value).startswith("Parameter ScheduleExpression is not valid.")
    assert detail in caught.value.detail, caught.value.detail


# ---------------------------------------------------------------------------------------------
# cron(): next fire, UTC

NEXT_FIRES = [
    # every N minutes across hour / day / month / year boundaries
    ("cron(0/15 * * * ? *)", utc(2024, 12, 31, 23, 50),
     ["2025-01-01T00:00:00Z", "2025-01-01T00:15:00Z"]),
    ("cron(*/5 * * * ? *)", utc(2024, 5, 6, 10, 58, 30),
     ["2024-05-06T11:00:00Z", "2024-05-06T11:05:00Z"]),
    ("cron(0/20 * * * ? *)", utc(2024, 1, 31, 23, 45),
     ["2024-02-01T00:00:00Z", "2024-02-01T00:20:00Z"]),
    ("cron(0/20 * * * ? *)", utc(2024, 2, 29, 23, 59, 59, 999999),
     ["2024-03-01T00:00:00Z"]),
    # "1/10 ... every tenth minute, starting from the first minute of the hour"
    ("cron(1/10 * * * ? *)", utc(2024, 5, 6, 10, 5),
     ["2024-05-06T10:11:00Z", "2024-05-06T10:21:00Z", "2024-05-06T10:31:00Z"]),
    ("cron(10-40/15 * * * ? *)", utc(2024, 5, 6, 10, 41),
     ["2024-05-06T11:10:00Z", "2024-05-06T11:25:00Z", "2024-05-06T11:40:00Z",
      "2024-05-06T12:10:00Z"]),
    ("cron(50-10/10 9 * * ? *)", utc(2024, 5, 6, 9, 5),  # wrapping minutes: 50, 0, 10
     ["2024-05-06T09:10:00Z", "2024-05-06T09:50:00Z", "2024-05-07T09:00:00Z"]),
    ("cron(1-31/30 1-1 ? * 1,7 *)", utc(2024, 5, 3),  # Fri 3 May; Sat 4 and Sun 5 fire
     ["2024-05-04T01:01:00Z", "2024-05-04T01:31:00Z", "2024-05-05T01:01:00Z"]),
    # strictly after
    ("cron(0 10 * * ? *)", utc(2024, 5, 6, 10, 0),
     ["2024-05-07T10:00:00Z"]),
    # the guide's wrapping hours: "between 10:00 pm on the starting day to 2:00 am"
    ("cron(0/30 20-2 ? * MON-FRI *)", utc(2024, 1, 5, 23, 10),  # Fri 5 Jan, then Mon 8 Jan
     ["2024-01-05T23:30:00Z", "2024-01-08T00:00:00Z", "2024-01-08T00:30:00Z",
      "2024-01-08T01:00:00Z", "2024-01-08T01:30:00Z", "2024-01-08T02:00:00Z",
      "2024-01-08T02:30:00Z", "2024-01-08T20:00:00Z"]),
    # L in day-of-month, leap years
    ("cron(0 0 L * ? *)", utc(2024, 1, 31),
     ["2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z"]),
    ("cron(0 0 L 2 ? *)", utc(2023, 1, 1),
     ["2023-02-28T00:00:00Z", "2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"]),
    ("cron(0 0 29 2 ? *)", utc(2023, 1, 1), ["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"]),
    ("cron(0 0 29 2 ? 2025-2027)", utc(2024, 3, 1), [None]),
    ("cron(0 0 29 2 ? 2100)", utc(2024, 3, 1), [None]),  # 2100 is not a leap year
    ("cron(0 0 29 2 ? 2000)", utc(1999, 1, 1), ["2000-02-29T00:00:00Z", None]),  # 2000 is
    ("cron(0 0 31 * ? *)", utc(2024, 4, 1),
     ["2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z", "2024-08-31T00:00:00Z"]),
    # LW: Aug 31 2024 is a Saturday, Sep 30 a Monday, Oct 31 a Thursday, Nov 30 a Saturday
    ("cron(0 0 LW * ? *)", utc(2024, 8, 1),
     ["2024-08-30T00:00:00Z", "2024-09-30T00:00:00Z", "2024-10-31T00:00:00Z",
      "2024-11-29T00:00:00Z"]),
    ("cron(0 0 LW 3 ? 2024)", utc(2024, 1, 1), ["2024-03-29T00:00:00Z", None]),  # 31st: Sunday
    # nW: 15 Jun 2024 is a Saturday (-> Fri 14), 15 Sep 2024 a Sunday (-> Mon 16)
    ("cron(0 0 15W * ? *)", utc(2024, 6, 1),
     ["2024-06-14T00:00:00Z", "2024-07-15T00:00:00Z", "2024-08-15T00:00:00Z",
      "2024-09-16T00:00:00Z"]),
    # 1W never leaves the month: 1 Jun 2024 is a Saturday (-> Mon 3), 1 Sep a Sunday (-> Mon 2)
    ("cron(0 0 1W * ? *)", utc(2024, 5, 15),
     ["2024-06-03T00:00:00Z", "2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z",
      "2024-09-02T00:00:00Z"]),
    # 31W: 31 Mar 2024 is a Sunday (-> Fri 29, not Mon 1 Apr); no 31st in April or June;
    # 31 Aug is a Saturday (-> Fri 30)
    ("cron(0 0 31W * ? *)", utc(2024, 3, 1),
     ["2024-03-29T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z",
      "2024-08-30T00:00:00Z"]),
    ("cron(0 0 30W 2 ? *)", utc(2024, 1, 1), [None]),  # February never has a 30th
    # '#': 6#3 = third Friday
    ("cron(0 12 ? * 6#3 *)", utc(2024, 1, 1),
     ["2024-01-19T12:00:00Z", "2024-02-16T12:00:00Z", "2024-03-15T12:00:00Z"]),
    # 2#5 = fifth Monday, which most months lack
    ("cron(0 12 ? * 2#5 *)", utc(2024, 1, 1),
     ["2024-01-29T12:00:00Z", "2024-04-29T12:00:00Z", "2024-07-29T12:00:00Z"]),
    # the guide's "9:00 AM on the first Monday of each month"; 1 Jan 2024 is a Monday
    ("cron(0 9 ? * 2#1 *)", utc(2023, 12, 31),
     ["2024-01-01T09:00:00Z", "2024-02-05T09:00:00Z", "2024-03-04T09:00:00Z"]),
    # nL: 2L = last Monday
    ("cron(0 12 ? * 2L *)", utc(2024, 1, 1),
     ["2024-01-29T12:00:00Z", "2024-02-26T12:00:00Z", "2024-03-25T12:00:00Z"]),
    # the guide's "10:15am on the last Friday of each month during the years 2019 to 2022"
    ("cron(15 10 ? * 6L 2019-2022)", utc(2022, 11, 1),
     ["2022-11-25T10:15:00Z", "2022-12-30T10:15:00Z", None]),
    # day-of-week numbering: 1 = Sunday (7 Jan 2024), 7 = Saturday (6 Jan), L = Saturday too
    ("cron(0 12 ? * 1 *)", utc(2024, 1, 1), ["2024-01-07T12:00:00Z", "2024-01-14T12:00:00Z"]),
    ("cron(0 12 ? * SUN *)", utc(2024, 1, 1), ["2024-01-07T12:00:00Z", "2024-01-14T12:00:00Z"]),
    ("cron(0 12 ? * 2 *)", utc(2024, 1, 1, 13), ["2024-01-08T12:00:00Z"]),
    ("cron(0 12 ? * 7 *)", utc(2024, 1, 1), ["2024-01-06T12:00:00Z", "2024-01-13T12:00:00Z"]),
    ("cron(0 12 ? * L *)", utc(2024, 1, 1), ["2024-01-06T12:00:00Z", "2024-01-13T12:00:00Z"]),
    ("cron(0 12 ? * 2-6 *)", utc(2024, 1, 5, 13),  # Mon-Fri; Fri 5 Jan after noon
     ["2024-01-08T12:00:00Z"]),
    # wrapping day-of-week range FRI-MON; Tue 2 Jan 2024
    ("cron(0 10 ? * FRI-MON *)", utc(2024, 1, 2),
     ["2024-01-05T10:00:00Z", "2024-01-06T10:00:00Z", "2024-01-07T10:00:00Z",
      "2024-01-08T10:00:00Z", "2024-01-12T10:00:00Z"]),
    # wrapping months and lower-case names
    ("cron(0 0 1 nov-feb ? *)", utc(2024, 2, 15),
     ["2024-11-01T00:00:00Z", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z",
      "2025-02-01T00:00:00Z", "2025-11-01T00:00:00Z"]),
    ("cron(0 9 1 jan,Jul ? *)", utc(2024, 2, 1), ["2024-07-01T09:00:00Z", "2025-01-01T09:00:00Z"]),
    # the year field: limits, increments, before 1970
    ("cron(0 0 1 1 ? 2199)", utc(2198, 6, 1), ["2199-01-01T00:00:00Z", None]),
    ("cron(0 0 31 12 ? *)", utc(2199, 12, 31), [None]),
    ("cron(0 0 1 1 ? 1970)", utc(2024, 1, 1), [None]),
    ("cron(0 0 1 1 ? 2030/5)", utc(2024, 1, 1),
     ["2030-01-01T00:00:00Z", "2035-01-01T00:00:00Z"]),
    ("cron(0 0 1 1 ? *)", utc(1900, 1, 1), ["1970-01-01T00:00:00Z"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT_FIRES)
def test_next_fires_utc(expression: str, after: datetime, expected: list[str | None]) -> None:
    assert fires(parse(expression), after, len(expected)) == expected


def test_next_after_accepts_any_offset_and_returns_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    fire = parse("cron(0 10 * * ? *)").next_after(datetime(2024, 5, 6, 18, 30, tzinfo=tokyo))
    assert fire == utc(2024, 5, 6, 10, 0) and fire.tzinfo is UTC


def test_inclusive_cron() -> None:
    schedule = parse("cron(0 10 * * ? *)")
    assert iso(schedule.next_after(utc(2024, 5, 6, 10, 0), inclusive=True)) == "2024-05-06T10:00:00Z"
    assert iso(schedule.next_after(utc(2024, 5, 6, 10, 0, 0, 1), inclusive=True)) == "2024-05-07T10:00:00Z"


def test_cron_start_and_end_bound_the_fires() -> None:
    schedule = parse("cron(0 * * * ? *)", start=utc(2024, 5, 6, 10, 0), end=utc(2024, 5, 6, 12, 0))
    assert fires(schedule, utc(2024, 5, 1), 4) == [
        "2024-05-06T10:00:00Z", "2024-05-06T11:00:00Z", "2024-05-06T12:00:00Z", None]


# An independent oracle: test every minute of a window against a plain predicate.
ORACLES = [
    ("cron(0/5 8-17 ? * MON-FRI *)",
     lambda t: t.minute % 5 == 0 and 8 <= t.hour <= 17 and t.weekday() < 5),
    ("cron(10-40/5 * * * ? *)", lambda t: 10 <= t.minute <= 40 and t.minute % 5 == 0),
    ("cron(0 0/6 L * ? *)",
     lambda t: t.minute == 0 and t.hour % 6 == 0
     and t.day == calendar.monthrange(t.year, t.month)[1]),
    ("cron(7 3,15 ? * 1#2 *)",  # second Sunday
     lambda t: t.minute == 7 and t.hour in (3, 15) and t.weekday() == 6 and 8 <= t.day <= 14),
]


@pytest.mark.parametrize(("expression", "predicate"), ORACLES)
def test_matches_a_minute_by_minute_oracle(expression, predicate) -> None:  # type: ignore[no-untyped-def]
    first, last = utc(2024, 2, 1), utc(2024, 3, 20)
    expected = []
    t = first + timedelta(minutes=1)
    while t <= last:
        if predicate(t):
            expected.append(t)
        t += timedelta(minutes=1)
    schedule = parse(expression)
    got = []
    current = schedule.next_after(first)
    while current is not None and current <= last:
        got.append(current)
        current = schedule.next_after(current)
    assert expected, "the window must contain fires"
    assert got == expected


# ---------------------------------------------------------------------------------------------
# time zones and daylight saving (EventBridge Scheduler)
#
# 2024 transitions: America/New_York 10 Mar 02:00 EST -> 03:00 EDT (07:00Z) and 3 Nov 02:00 EDT
# -> 01:00 EST (06:00Z); America/Los_Angeles the same wall times three hours later;
# Europe/Berlin 31 Mar 02:00 CET -> 03:00 CEST (01:00Z) and 27 Oct 03:00 CEST -> 02:00 CET (01:00Z).

ZONED_FIRES = [
    # the Scheduler guide's example: 08:30 every day in New York (EST = UTC-5, EDT = UTC-4)
    ("cron(30 8 * * ? *)", "America/New_York", utc(2024, 3, 8),
     ["2024-03-08T13:30:00Z", "2024-03-09T13:30:00Z", "2024-03-10T12:30:00Z",
      "2024-03-11T12:30:00Z"]),
    # spring forward: 02:30 does not exist on 10 Mar: "your schedule invocation is skipped"
    ("cron(30 2 * * ? *)", "America/New_York", utc(2024, 3, 9, 12),
     ["2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"]),
    ("cron(0/30 * * * ? *)", "America/New_York", utc(2024, 3, 10, 6, 0),
     ["2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z", "2024-03-10T07:30:00Z"]),
    # fall back: 01:30 occurs twice on 3 Nov: "runs only once", at the first 01:30 (EDT)
    ("cron(30 1 * * ? *)", "America/New_York", utc(2024, 11, 2, 12),
     ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"]),
    ("cron(0 * * * ? *)", "America/New_York", utc(2024, 11, 3, 4, 0),
     ["2024-11-03T05:00:00Z", "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"]),
    # asked during the repeated hour's second pass (01:05 EST): nothing until 02:00 EST
    ("cron(*/15 * * * ? *)", "America/New_York", utc(2024, 11, 3, 6, 5),
     ["2024-11-03T07:00:00Z", "2024-11-03T07:15:00Z"]),
    # the guide's Los Angeles example cron(30 2 * * ? *): skipped on the spring-forward day
    ("cron(30 2 * * ? *)", "America/Los_Angeles", utc(2024, 3, 9),
     ["2024-03-09T10:30:00Z", "2024-03-11T09:30:00Z"]),
    ("cron(30 1 * * ? *)", "America/Los_Angeles", utc(2024, 11, 2, 12),
     ["2024-11-03T08:30:00Z", "2024-11-04T09:30:00Z"]),
    # Europe/Berlin
    ("cron(30 2 * * ? *)", "Europe/Berlin", utc(2024, 3, 30, 12),
     ["2024-04-01T00:30:00Z", "2024-04-02T00:30:00Z"]),
    ("cron(0/30 * * * ? *)", "Europe/Berlin", utc(2024, 3, 31, 0, 0),
     ["2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z", "2024-03-31T01:30:00Z"]),
    ("cron(30 2 * * ? *)", "Europe/Berlin", utc(2024, 10, 26, 12),
     ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]),
    ("cron(0/30 * * * ? *)", "Europe/Berlin", utc(2024, 10, 27, 0, 0),
     ["2024-10-27T00:30:00Z", "2024-10-27T02:00:00Z", "2024-10-27T02:30:00Z"]),
    # 02:00 on the last Sunday of March never exists in Berlin: the schedule never fires
    ("cron(0 2 ? 3 1L *)", "Europe/Berlin", utc(2024, 1, 1), [None]),
    # a zone without DST, with a half-hour offset
    ("cron(0 9 * * ? *)", "Asia/Kolkata", utc(2024, 6, 1), ["2024-06-01T03:30:00Z"]),
    # L in a zone: the last day of the month by local date (UTC is still on the 30th)
    ("cron(0 1 L * ? *)", "Asia/Tokyo", utc(2024, 4, 1),
     ["2024-04-29T16:00:00Z", "2024-05-30T16:00:00Z"]),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), ZONED_FIRES)
def test_next_fires_in_a_time_zone(
    expression: str, zone: str, after: datetime, expected: list[str | None]
) -> None:
    assert fires(parse(expression, zone), after, len(expected)) == expected


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus_Mons", "", "EST+5", "../etc/passwd", "America", "zone.tab", "localtime",
     "utc", "x" * 51],
)
def test_invalid_time_zones(zone: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse("cron(0 10 * * ? *)", zone)
    assert caught.value.parameter == "ScheduleExpressionTimezone"
    assert str(caught.value).startswith("Parameter ScheduleExpressionTimezone is not valid.")


def test_utc_aliases() -> None:
    assert iso(parse("cron(0 10 * * ? *)", "Etc/UTC").next_after(utc(2024, 1, 1))) == "2024-01-01T10:00:00Z"


# ---------------------------------------------------------------------------------------------
# at()

AT_FIRES = [
    # the Scheduler guide's example: "1pm UTC-8 on November 20, 2022"
    ("at(2022-11-20T13:00:00)", "America/Los_Angeles", "2022-11-20T21:00:00Z"),
    ("at(2024-07-01T12:00:00)", "Europe/Berlin", "2024-07-01T10:00:00Z"),
    ("at(2024-07-01T12:00:45)", "UTC", "2024-07-01T12:00:45Z"),
    # inside New York's spring-forward gap: moved forward by the gap (03:30 EDT)
    ("at(2024-03-10T02:30:00)", "America/New_York", "2024-03-10T07:30:00Z"),
    # inside the repeated hour: the first occurrence (01:30 EDT)
    ("at(2024-11-03T01:30:00)", "America/New_York", "2024-11-03T05:30:00Z"),
]


@pytest.mark.parametrize(("expression", "zone", "instant"), AT_FIRES)
def test_at_fires_once(expression: str, zone: str, instant: str) -> None:
    schedule = parse(expression, zone, allow_at=True)
    assert schedule.is_one_time() and schedule.kind == "at"
    assert fires(schedule, utc(2020, 1, 1), 2) == [instant, None]
    fire = datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert schedule.next_after(fire) is None
    assert schedule.next_after(fire, inclusive=True) == fire


def test_at_ignores_start_and_end() -> None:
    # Scheduler: "EventBridge Scheduler ignores the StartDate and EndDate" for one-time schedules.
    schedule = parse("at(2024-07-01T12:00:00)", allow_at=True,
                     start=utc(2025, 1, 1), end=utc(2024, 1, 1))
    assert iso(schedule.next_after(utc(2024, 1, 1))) == "2024-07-01T12:00:00Z"


def test_at_is_for_the_scheduler_only() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse("at(2024-07-01T12:00:00)")
    assert "EventBridge Scheduler only" in caught.value.detail
    assert Schedule("at(2024-07-01T12:00:00)").is_one_time()


@pytest.mark.parametrize(
    "expression",
    [
        "at(2024-02-30T00:00:00)",
        "at(2023-02-29T00:00:00)",
        "at(2024-07-01T24:00:00)",
        "at(2024-07-01 12:00:00)",
        "at(2024-07-01T12:00)",
        "at(2024-07-01T12:00:00Z)",
        "at(2024-07-01T12:00:00.000)",
        "at(24-07-01T12:00:00)",
        "at()",
    ],
)
def test_invalid_at(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse(expression, allow_at=True)


# ---------------------------------------------------------------------------------------------
# misc

def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("rate(5 minutes)").next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("rate(5 minutes)", start=datetime(2024, 1, 1))


def test_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse("every 5 minutes")


def test_schedules_compare_by_their_inputs() -> None:
    assert parse("cron(0 10 * * ? *)") == Schedule("cron(0 10 * * ? *)", "UTC")
    assert parse("cron(0 10 * * ? *)") != parse("cron(0 10 * * ? *)", "Europe/Berlin")
    assert len({parse("rate(1 hour)"), parse("rate(1 hour)")}) == 1


# ---------------------------------------------------------------------------------------------
# long runs

def test_ten_thousand_fires_across_a_fall_back_in_new_york() -> None:
    schedule = parse("cron(*/5 * * * ? *)", "America/New_York")
    current = utc(2024, 10, 20)
    steps = []
    began = time.perf_counter()
    for _ in range(10_000):
        following = schedule.next_after(current)
        assert following is not None and following > current
        steps.append(following - current)
        current = following
    elapsed = time.perf_counter() - began
    assert elapsed < 5.0, f"10,000 next_after calls took {elapsed:.2f}s"
    # every step is 5 minutes except one: 01:55 EDT -> 02:00 EST skips the repeated hour
    assert steps.count(timedelta(minutes=5)) == 9_999
    assert steps.count(timedelta(minutes=65)) == 1
    assert iso(current) == iso(utc(2024, 10, 20) + timedelta(minutes=5 * 10_000 + 60))


def test_ten_thousand_fires_over_years_utc() -> None:
    schedule = parse("cron(0 0/6 * * ? *)")
    current = utc(2024, 1, 1)
    began = time.perf_counter()
    for _ in range(10_000):
        following = schedule.next_after(current)
        assert following is not None and following - current == timedelta(hours=6)
        current = following
    assert time.perf_counter() - began < 5.0
    assert current == utc(2024, 1, 1) + timedelta(days=2_500)


def test_ten_thousand_rate_fires() -> None:
    start = utc(2024, 1, 1, 0, 0, 30)
    schedule = parse("rate(1 minute)", start=start)
    current = start
    for _ in range(10_000):
        following = schedule.next_after(current)
        assert following is not None and following - current == timedelta(minutes=1)
        current = following
    assert current == start + timedelta(minutes=10_000)
