"""Schedule expressions of EventBridge rules and EventBridge Scheduler: parse, validate, next fire.

Pure: no I/O, no clock, no sleeping. The caller passes every instant; every instant returned is
an aware ``datetime`` in UTC.

Grammar (AWS "Cron expressions reference" and "Rate expressions reference" of the EventBridge
User Guide; "Schedule types on EventBridge Scheduler" of the Scheduler User Guide)::

    rate(<value> <unit>)     value a positive integer; unit minute|minutes|hour|hours|day|days,
                             singular exactly when value is 1 (rate(1 hours), rate(5 hour) invalid)
    cron(Min Hour DoM Month DoW Year)   exactly six fields, UTC for rules, a zone for Scheduler
    at(yyyy-mm-ddThh:mm:ss)  one-time, EventBridge Scheduler only (``allow_at=True``)

Cron fields: minutes 0-59, hours 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week
1-7 or SUN-SAT (1 = Sunday), year 1970-2199; ``, - * /`` everywhere; ``?`` only in the two day
fields and in exactly one of them (a value or ``*`` in one requires ``?`` in the other).
Day-of-month also takes ``L`` (last day), ``LW`` (last weekday) and ``nW`` (weekday nearest day
n, never leaving the month: a Saturday 1st moves to Monday the 3rd, a Sunday last day to Friday);
day-of-week takes ``L`` alone (the last day of the week, Saturday, every week), ``nL`` (the last
day n of the month, ``6L`` = last Friday) and ``n#k`` (the k-th day n of the month, ``3#2`` =
second Tuesday; alone in its field, k 1-5, no run in a month without a k-th one). A range whose
start is after its end wraps around (``20-2`` hours = 20..23,0..2, as in AWS's own example
``cron(0/30 20-2 ? * MON-FRI *)``), except in the year field. ``a/n`` runs from ``a`` to the end
of the field; ``*/n`` from its start. Names, ``L`` and ``W`` are case-insensitive.

Firing semantics of :meth:`Schedule.next_after` (the earliest fire strictly after ``after``;
``inclusive=True`` allows ``after`` itself):

* cron: whole minutes of wall-clock time in ``timezone``. Daylight saving follows the Scheduler
  guide: a wall time that does not exist (spring forward) is skipped, not moved; a wall time that
  occurs twice (fall back) fires once, at its first occurrence. This applies to every matching
  minute, so ``cron(0/15 * * * ? *)`` in America/New_York is silent during the repeated hour.
  ``start`` is a lower bound (fires at or after it), ``end`` an upper bound (at or before it).
* rate: a lattice ``start + k*period`` (k >= 0) of absolute durations (``days`` are 24 hours
  whatever the zone: Scheduler guide); the zone plays no part. An EventBridge rule's rate
  "starts when you create the scheduled event rule" (EventBridge guide): give ``start=created_at``
  and ask ``next_after(created_at)``, so it fires at created_at + k*period, k >= 1. A Scheduler
  rate schedule fires first at its StartDate, or immediately when it has none: give
  ``start=StartDate or created_at`` and ask ``next_after(start, inclusive=True)``. Without
  ``start`` the lattice is anchored at the Unix epoch (deterministic, not AWS behaviour).
* at: the single instant, its wall time read in ``timezone``; ``start`` and ``end`` are ignored
  (Scheduler: "ignores the StartDate and EndDate ... for one-time schedules"). A wall time in a
  spring-forward gap is moved forward by the gap and an ambiguous one takes its first occurrence
  (``fold=0``; not documented by AWS: chosen so that a one-time schedule is never lost).
* ``None`` once nothing is left: an at() already passed, the year field exhausted (2199 at most),
  past ``end``, or beyond ``datetime``'s range.

Why not a cron library: croniter 7.0.0 (the maintained Python one) was tried against AWS's
dialect and differs on five counts: it rejects ``LW``, ``6L`` and ``L`` in day-of-week, numbers
day-of-week from 0 = Sunday (its ``2#1`` is the first Tuesday, AWS's the first Monday), fires a
spring-forward gap time at 03:00 instead of skipping it and fires a fall-back time twice; it also
OR-s the two day fields (Vixie) where AWS requires one of them to be ``?``. Adapting it would mean
rewriting the fields and post-filtering its answers; a direct evaluator over the six fields is
smaller, and uses only the standard library (``zoneinfo`` with the system's IANA database).
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["INVALID_EXPRESSION", "Schedule", "ScheduleError", "parse"]

INVALID_EXPRESSION = "Parameter ScheduleExpression is not valid."
MAX_EXPRESSION_LENGTH = 256  # botocore models: events and scheduler ScheduleExpression, max 256
MAX_TIMEZONE_LENGTH = 50  # botocore model: scheduler ScheduleExpressionTimezone, 1..50

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_YEAR_MIN, _YEAR_MAX = 1970, 2199
# Before the earliest instant a wall time of 1970 can name anywhere (UTC+14 is the largest offset).
_CRON_FLOOR = datetime(1969, 12, 30, tzinfo=UTC)


class ScheduleError(ValueError):
    """An invalid schedule expression (or time zone): AWS's message plus what exactly is wrong."""

    def __init__(self, detail: str, *, parameter: str = "ScheduleExpression") -> None:
        self.parameter = parameter
        self.message = f"Parameter {parameter} is not valid."
        self.detail = detail
        super().__init__(f"{self.message} {detail}")


# ---------------------------------------------------------------------------------------------
# rate()

_RATE = re.compile(r"rate\(([0-9]+) +(minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _parse_rate(expression: str) -> timedelta:
    match = _RATE.fullmatch(expression)
    if match is None:
        raise ScheduleError(
            "A rate expression is rate(<positive integer> <minute|minutes|hour|hours|day|days>)."
        )
    value, unit = int(match.group(1)), match.group(2)
    if value < 1:
        raise ScheduleError("The value of a rate expression must be a positive integer.")
    plural = unit.endswith("s")
    if value == 1 and plural:
        raise ScheduleError(f"A rate of 1 takes a singular unit: rate(1 {unit[:-1]}).")
    if value > 1 and not plural:
        raise ScheduleError(f"A rate above 1 takes a plural unit: rate({value} {unit}s).")
    try:
        return timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")])
    except OverflowError:
        raise ScheduleError("The rate is too large.") from None


# ---------------------------------------------------------------------------------------------
# at()

_AT = re.compile(r"at\(([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\)")


def _parse_at(expression: str) -> datetime:
    match = _AT.fullmatch(expression)
    if match is None:
        raise ScheduleError("A one-time expression is at(yyyy-mm-ddThh:mm:ss).")
    try:
        return datetime(*(int(part) for part in match.groups()))
    except ValueError as exc:
        raise ScheduleError(f"The at() date and time do not exist: {exc}.") from None


# ---------------------------------------------------------------------------------------------
# cron(): fields

_MONTH_NAMES = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAY_NAMES = {name: i for i, name in enumerate(
    ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    max_step: int
    names: dict[str, int] | None = None
    wraps: bool = True


_MINUTES = _Field("Minutes", 0, 59, 59)
_HOURS = _Field("Hours", 0, 23, 23)
_DOM = _Field("Day-of-month", 1, 31, 31)
_MONTH = _Field("Month", 1, 12, 12, _MONTH_NAMES)
_DOW = _Field("Day-of-week", 1, 7, 7, _DAY_NAMES)
_YEAR = _Field("Year", _YEAR_MIN, _YEAR_MAX, _YEAR_MAX - _YEAR_MIN, wraps=False)

_ITEM = re.compile(r"(\*|[0-9A-Z]+(?:-[0-9A-Z]+)?)(?:/([0-9]+))?")


def _value(token: str, f: _Field) -> int:
    if token.isdigit():
        number = int(token)
    elif f.names is not None and token in f.names:
        number = f.names[token]
    else:
        raise ScheduleError(f"{f.label}: {token!r} is not a value of this field.")
    if not f.low <= number <= f.high:
        raise ScheduleError(f"{f.label}: {number} is outside {f.low}-{f.high}.")
    return number


def _list(text: str, f: _Field) -> tuple[int, ...]:
    """``, - * /`` over one field: the sorted values it selects."""
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ScheduleError(f"{f.label}: {item!r} is not a value, range, list or increment.")
        head, step_text = match.groups()
        step = 1
        if step_text is not None:
            step = int(step_text)
            if not 1 <= step <= f.max_step:
                raise ScheduleError(f"{f.label}: the increment {step} is outside 1-{f.max_step}.")
        if head == "*":
            first, last = f.low, f.high
        elif "-" in head:
            left, right = head.split("-")
            first, last = _value(left, f), _value(right, f)
        else:
            first = _value(head, f)
            last = f.high if step_text is not None else first
        if first <= last:
            values.update(range(first, last + 1, step))
        elif not f.wraps:
            raise ScheduleError(f"{f.label}: the range {head} ends before it starts.")
        else:  # wrap around the end of the field: 20-2 hours = 20..23, 0..2
            span = f.high - f.low + 1
            count = (last - first) % span + 1
            values.update(f.low + (first - f.low + i) % span for i in range(0, count, step))
    return tuple(sorted(values))


@dataclass(frozen=True)
class _Days:
    """Which days of a month fire (hashable, so the days of each month can be cached).

    kind: ``any``; ``days`` (values: days of the month); ``last``; ``lastweekday``; ``nearest``
    (n: the day of nW); ``weekdays`` (values: Python weekdays, Monday = 0); ``lastof`` (n: a
    Python weekday); ``nth`` (n: a Python weekday, k: which one).
    """

    kind: str
    values: tuple[int, ...] = ()
    n: int = 0
    k: int = 0


_ANY_DAY = _Days("any")
_NEAREST = re.compile(r"([0-9]+)W")
_LAST_OF = re.compile(r"([0-9]+|[A-Z]{3})L")
_NTH = re.compile(r"([0-9]+|[A-Z]{3})#([0-9]+)")


def _py_weekday(aws_day: int) -> int:
    """AWS day-of-week (1 = Sunday ... 7 = Saturday) -> Python's (0 = Monday ... 6 = Sunday)."""
    return (aws_day + 5) % 7


def _dom_rule(text: str) -> _Days:
    if text == "L":
        return _Days("last")
    if text == "LW":
        return _Days("lastweekday")
    nearest = _NEAREST.fullmatch(text)
    if nearest is not None:
        return _Days("nearest", n=_value(nearest.group(1), _DOM))
    if "L" in text or "W" in text:
        raise ScheduleError("Day-of-month: L and W are used as L, LW or <day>W, alone.")
    days = _list(text, _DOM)
    return _ANY_DAY if len(days) == 31 else _Days("days", days)


def _dow_rule(text: str) -> _Days:
    if text == "L":  # "the last day of the week": Saturday, every week
        return _Days("weekdays", (_py_weekday(7),))
    last_of = _LAST_OF.fullmatch(text)
    if last_of is not None:
        return _Days("lastof", n=_py_weekday(_value(last_of.group(1), _DOW)))
    nth = _NTH.fullmatch(text)
    if nth is not None:
        k = int(nth.group(2))
        if not 1 <= k <= 5:
            raise ScheduleError(f"Day-of-week: #{k} is outside #1-#5.")
        return _Days("nth", n=_py_weekday(_value(nth.group(1), _DOW)), k=k)
    if "#" in text:
        raise ScheduleError("Day-of-week: a '#' expression must be the only one in the field.")
    if "L" in text:  # no day name contains an L
        raise ScheduleError("Day-of-week: L is used alone or as <day>L, alone in the field.")
    weekdays = tuple(sorted({_py_weekday(d) for d in _list(text, _DOW)}))
    return _ANY_DAY if len(weekdays) == 7 else _Days("weekdays", weekdays)


@lru_cache(maxsize=8192)
def _month_days(rule: _Days, year: int, month: int) -> tuple[int, ...]:
    """The days of ``year-month`` that a day rule selects, ascending."""
    first_weekday, ndays = calendar.monthrange(year, month)  # weekday of the 1st, Monday = 0

    def weekday(day: int) -> int:
        return (first_weekday + day - 1) % 7

    kind, n = rule.kind, rule.n
    if kind == "any":
        return tuple(range(1, ndays + 1))
    if kind == "days":
        return tuple(d for d in rule.values if d <= ndays)
    if kind == "weekdays":
        return tuple(d for d in range(1, ndays + 1) if weekday(d) in rule.values)
    if kind == "last":
        return (ndays,)
    if kind == "lastweekday":
        wd = weekday(ndays)
        return (ndays - 1,) if wd == 5 else (ndays - 2,) if wd == 6 else (ndays,)
    if kind == "nearest":
        if n > ndays:  # 31W in a 30-day month: no such day, no run (like a plain 31)
            return ()
        wd = weekday(n)
        if wd == 5:  # Saturday: the Friday before, unless that leaves the month
            return (n - 1,) if n > 1 else (n + 2,)
        if wd == 6:  # Sunday: the Monday after, unless that leaves the month
            return (n + 1,) if n < ndays else (n - 2,)
        return (n,)
    if kind == "lastof":
        return (ndays - (weekday(ndays) - n) % 7,)
    if kind == "nth":
        day = 1 + (n - first_weekday) % 7 + 7 * (rule.k - 1)
        return (day,) if day <= ndays else ()
    raise AssertionError(rule)


@dataclass(frozen=True)
class _Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: _Days
    months: tuple[int, ...]
    years: tuple[int, ...]


_CRON = re.compile(r"cron\((.*)\)", re.DOTALL)


def _parse_cron(expression: str) -> _Cron:
    match = _CRON.fullmatch(expression)
    if match is None:
        raise ScheduleError(
            "A cron expression is cron(Minutes Hours Day-of-month Month Day-of-week Year)."
        )
    if not match.group(1).isascii():
        raise ScheduleError("A cron expression is written in ASCII.")
    fields = match.group(1).upper().split()
    if len(fields) != 6:
        raise ScheduleError(
            f"A cron expression has exactly six fields (Minutes Hours Day-of-month Month "
            f"Day-of-week Year); this one has {len(fields)}."
        )
    minute, hour, dom, month, dow, year = fields
    for text, f in ((minute, _MINUTES), (hour, _HOURS), (month, _MONTH), (year, _YEAR)):
        if "?" in text:
            raise ScheduleError(f"{f.label}: '?' is allowed only in Day-of-month or Day-of-week.")
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(
            "Day-of-month and Day-of-week can't both be specified: exactly one of them must be '?'."
            if dom != "?" else "Day-of-month and Day-of-week can't both be '?'."
        )
    for text, f in ((dom, _DOM), (dow, _DOW)):
        if "?" in text and text != "?":
            raise ScheduleError(f"{f.label}: '?' stands alone in its field.")
    days = _dow_rule(dow) if dom == "?" else _dom_rule(dom)
    return _Cron(
        minutes=_list(minute, _MINUTES),
        hours=_list(hour, _HOURS),
        days=days,
        months=_list(month, _MONTH),
        years=_list(year, _YEAR),
    )


def _wall_times(cron: _Cron, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock times matching ``cron``, ascending, from ``start`` (minute-aligned) on."""
    y0, mo0, d0, h0, mi0 = start.year, start.month, start.day, start.hour, start.minute
    for y in cron.years[bisect_left(cron.years, y0):]:
        on_y = y == y0
        for mo in cron.months[bisect_left(cron.months, mo0) if on_y else 0:]:
            on_mo = on_y and mo == mo0
            month_days = _month_days(cron.days, y, mo)
            for d in month_days[bisect_left(month_days, d0) if on_mo else 0:]:
                on_d = on_mo and d == d0
                for h in cron.hours[bisect_left(cron.hours, h0) if on_d else 0:]:
                    on_h = on_d and h == h0
                    for mi in cron.minutes[bisect_left(cron.minutes, mi0) if on_h else 0:]:
                        yield datetime(y, mo, d, h, mi)


# Names in the zoneinfo directory that are this host's settings, not time zones of the database.
_HOST_ZONES = frozenset({"localtime", "posixrules"})


def _load_zone(name: str) -> ZoneInfo:
    if not 1 <= len(name) <= MAX_TIMEZONE_LENGTH:
        raise ScheduleError(
            f"A time zone name has 1-{MAX_TIMEZONE_LENGTH} characters.",
            parameter="ScheduleExpressionTimezone",
        )
    try:
        if name in _HOST_ZONES:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"{name!r} is not a time zone of the IANA database.",
            parameter="ScheduleExpressionTimezone",
        ) from None


def _aware(value: datetime | None, what: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{what} must be a timezone-aware datetime")


# ---------------------------------------------------------------------------------------------
# the public type

Kind = Literal["rate", "cron", "at"]


@dataclass(frozen=True)
class Schedule:
    """A validated schedule expression, evaluated in ``timezone`` (an IANA name).

    Constructing one validates it (:class:`ScheduleError`); at() is accepted here, :func:`parse`
    gates it for EventBridge rules. ``start``/``end`` are StartDate/EndDate, or a rule's creation
    time as the anchor of a rate (see the module docstring).
    """

    expression: str
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    _kind: Kind = field(init=False, repr=False, compare=False)
    _rule: _Cron | timedelta | datetime = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.end, "end")
        expression = self.expression
        if not isinstance(expression, str) or not expression:
            raise ScheduleError("The expression is empty.")
        if len(expression) > MAX_EXPRESSION_LENGTH:
            raise ScheduleError(f"The expression is over {MAX_EXPRESSION_LENGTH} characters long.")
        zone = _load_zone(self.timezone)
        rule: _Cron | timedelta | datetime
        if expression.startswith("rate("):
            kind: Kind = "rate"
            rule = _parse_rate(expression)
        elif expression.startswith("cron("):
            kind = "cron"
            rule = _parse_cron(expression)
        elif expression.startswith("at("):
            kind = "at"
            try:
                rule = _first_occurrence(_parse_at(expression), zone)
            except OverflowError:
                raise ScheduleError("The at() date is out of range.") from None
        else:
            raise ScheduleError("An expression is rate(...), cron(...) or at(...).")
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_rule", rule)
        object.__setattr__(self, "_zone", zone)

    @property
    def kind(self) -> Kind:
        return self._kind

    @property
    def period(self) -> timedelta | None:
        """The interval of a rate expression; ``None`` for cron and at."""
        return self._rule if isinstance(self._rule, timedelta) else None

    def is_one_time(self) -> bool:
        return self._kind == "at"

    def next_after(self, after: datetime, *, inclusive: bool = False) -> datetime | None:
        """The first fire strictly after ``after`` (at or after it if ``inclusive``), in UTC.

        ``None`` when the schedule will not fire again.
        """
        _aware(after, "after")
        after = after.astimezone(UTC)
        if inclusive:  # every fire is a whole microsecond, so ">= t" is "> t - 1 µs"
            try:
                after = after - _ONE_MICROSECOND
            except OverflowError:
                after = after.replace(microsecond=0)
        rule = self._rule
        if isinstance(rule, datetime):  # at(): start and end do not apply
            return rule if rule > after else None
        if self.start is not None:
            start = self.start.astimezone(UTC)
            if after < start:
                after = start - _ONE_MICROSECOND
        try:
            if isinstance(rule, timedelta):
                fire: datetime | None = self._next_rate(rule, after)
            else:
                fire = self._next_cron(rule, after)
        except OverflowError:
            return None
        if fire is not None and self.end is not None and fire > self.end:
            return None
        return fire

    def _next_rate(self, period: timedelta, after: datetime) -> datetime:
        anchor = self.start.astimezone(UTC) if self.start is not None else _EPOCH
        if after < anchor:
            return anchor
        return anchor + period * ((after - anchor) // period + 1)

    def _next_cron(self, cron: _Cron, after: datetime) -> datetime | None:
        if after.year > _YEAR_MAX + 1:
            return None
        after = max(after, _CRON_FLOOR)
        local = after.astimezone(self._zone).replace(tzinfo=None, second=0, microsecond=0)
        zone = self._zone
        for wall in _wall_times(cron, local):
            fire = _first_occurrence(wall, zone)
            if fire > after and fire.astimezone(zone).replace(tzinfo=None) == wall:
                return fire  # (a wall time in a spring-forward gap does not round-trip: skipped)
        return None


def _first_occurrence(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall time in ``zone`` -> UTC, at its first occurrence when it occurs twice.

    ``fold=0`` (PEP 495): a wall time inside a spring-forward gap is read with the offset from
    before the transition, i.e. it names the instant the gap's length later.
    """
    return wall.replace(tzinfo=zone).astimezone(UTC)


def parse(
    expression: str,
    timezone: str = "UTC",
    *,
    allow_at: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Schedule:
    """Validate ``expression``; at() only with ``allow_at`` (EventBridge Scheduler, not rules)."""
    if not allow_at and isinstance(expression, str) and expression.startswith("at("):
        raise ScheduleError("at() one-time expressions are for EventBridge Scheduler only.")
    return Schedule(expression, timezone, start, end)
