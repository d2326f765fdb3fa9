"""The durable ticker of scheduled EventBridge rules.

Each scheduled rule stores its next due tick (``event_rules.next_tick``). Every ``interval``
seconds the ticker reads the due rules and claims each due tick with a compare-and-set UPDATE
(stored tick → the first tick after now); only the process whose UPDATE moved it fires it, so a
tick fires once even with several Squall processes on one database, and across restarts.

Missed ticks are not replayed: a tick claimed more than ``grace`` seconds after it was due
(Squall was down, or stopped for that long) is skipped and counted, and the next tick after now
is scheduled. A source may replay one missed tick that is still inside its window
(``TickSource.replay``: Scheduler's ``FlexibleTimeWindow``); it fires once, late. The claim is committed before the invocations are queued: a crash between the
two loses that tick (at most once, never twice).

The clock is injected (``clock() -> epoch seconds``). ``SQUALL_TEST_SCHEDULE_CLOCK`` is a
TEST-ONLY setting, ``"<anchor epoch seconds>,<speed>"``: the schedule clock then runs ``speed``
times faster than real time from ``anchor`` (two processes given the same value agree), and the
ticker polls more often. Never set it outside tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from squall.store.event_rules import EventRuleRepository, StoredRule
from squall.triggers.schedule_expressions import ScheduleError, parse

log = logging.getLogger("squall.eventbridge")

Clock = Callable[[], float]
TEST_CLOCK_VARIABLE = "SQUALL_TEST_SCHEDULE_CLOCK"
DEFAULT_INTERVAL = 1.0
DEFAULT_GRACE = 30.0  # seconds late a tick may still fire


def schedule_clock(default: Clock, environ: Mapping[str, str]) -> tuple[Clock, float, float]:
    """(clock, poll interval, grace): ``default`` unless the test-only variable is set."""
    value = environ.get(TEST_CLOCK_VARIABLE)
    if not value:
        return default, DEFAULT_INTERVAL, DEFAULT_GRACE
    anchor_text, _, speed_text = value.partition(",")
    anchor, speed = float(anchor_text), float(speed_text or 1)
    if speed <= 0:
        raise ValueError(f"{TEST_CLOCK_VARIABLE}: the speed must be positive")
    log.warning("%s is set: the schedule clock runs %g times faster than real time (tests only)",
                TEST_CLOCK_VARIABLE, speed)

    def fast() -> float:
        return anchor + (time.time() - anchor) * speed

    return fast, max(0.02, min(DEFAULT_INTERVAL, 1.0 / speed)), DEFAULT_GRACE


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def next_tick(expression: str, created_at: float, after: float) -> float | None:
    """The first tick of ``expression`` strictly after ``after`` (a rate's lattice starts at
    ``created_at``, as on EventBridge); None when nothing is left."""
    found = parse(expression, "UTC", start=_at(created_at)).next_after(_at(after))
    return None if found is None else found.timestamp()


class TickSource(Protocol):
    """Things with a stored next tick (scheduled rules, Scheduler schedules), for :class:`Ticker`."""

    def due(self, now: float) -> list[Any]: ...
    def tick_of(self, item: Any) -> float: ...
    def following(self, item: Any, now: float) -> float | None: ...
    def claim(self, item: Any, following: float | None) -> bool: ...
    def active(self, item: Any) -> bool: ...
    def label(self, item: Any) -> str: ...
    def replay(self, item: Any, now: float) -> float | None: ...


class RuleTicks:
    """The scheduled EventBridge rules as a :class:`TickSource`."""

    def __init__(self, repo: EventRuleRepository) -> None:
        self.repo = repo

    def due(self, now: float) -> list[StoredRule]:
        return self.repo.due_rules(now)

    def tick_of(self, rule: StoredRule) -> float:
        assert rule.next_tick is not None
        return rule.next_tick

    def following(self, rule: StoredRule, now: float) -> float | None:
        expression = rule.document.get("ScheduleExpression")
        try:
            return next_tick(expression, rule.created_at, now) if expression else None
        except ScheduleError:
            return None

    def claim(self, rule: StoredRule, following: float | None) -> bool:
        return self.repo.claim_tick(rule.bus, rule.name, self.tick_of(rule), following)

    def active(self, rule: StoredRule) -> bool:
        return rule.document.get("State", "ENABLED") != "DISABLED"

    def label(self, rule: StoredRule) -> str:
        return f"rule {rule.name}"

    def replay(self, rule: StoredRule, now: float) -> float | None:
        return None  # a rule has no window: a missed tick is gone


class Ticker:
    def __init__(self, repo: EventRuleRepository | TickSource, fire: Callable[[Any, float], Awaitable[None]],
                 clock: Clock, interval: float = DEFAULT_INTERVAL, grace: float = DEFAULT_GRACE,
                 name: str = "squall-eventbridge-ticker") -> None:
        self.repo = repo
        self.source: TickSource = RuleTicks(repo) if isinstance(repo, EventRuleRepository) else repo
        self.name = name
        self.fire = fire
        self.clock = clock
        self.interval = interval
        self.grace = grace
        self.fired = 0
        self.skipped = 0  # missed ticks (not replayed)
        self._task: asyncio.Task[None] | None = None

    def claim_due(self) -> list[tuple[Any, float]]:
        """Claim every due tick this process wins; the ticks to fire (blocking: database)."""
        now = self.clock()
        source = self.source
        claimed: list[tuple[Any, float]] = []
        for item in source.due(now):
            tick = source.tick_of(item)
            if not source.claim(item, source.following(item, now)):
                continue  # another process claimed it
            if not source.active(item):
                continue
            if now - tick > self.grace:
                late = source.replay(item, now)
                if late is None:
                    self.skipped += 1
                    log.warning("%s: the tick due at %s was missed (Squall was not running); not replayed",
                                source.label(item), _at(tick).isoformat())
                    continue
                log.info("%s: the tick due at %s fires late, inside its flexible time window",
                         source.label(item), _at(late).isoformat())
                tick = late
            claimed.append((item, tick))
        return claimed

    async def run_once(self) -> int:
        claimed = await asyncio.to_thread(self.claim_due)
        for item, tick in claimed:
            self.fired += 1
            try:
                await self.fire(item, tick)
            except Exception:  # one item's failure never stops the ticker
                log.exception("%s: firing the tick at %s failed", self.source.label(item), _at(tick).isoformat())
        return len(claimed)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again at the next poll
                log.exception("the schedule ticker failed; retrying")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
