"""The durable ticker of scheduled EventBridge rules.

Each scheduled rule stores its next due tick (``event_rules.next_tick``). Every ``interval``
seconds the ticker reads the due rules and claims each due tick with a compare-and-set UPDATE
(stored tick → the first tick after now); only the process whose UPDATE moved it fires it, so a
tick fires once even with several Squall processes on one database, and across restarts.

Missed ticks are not replayed: a tick claimed more than ``grace`` seconds after it was due
(Squall was down, or stopped for that long) is skipped and counted, and the next tick after now
is scheduled. The claim is committed before the invocations are queued: a crash between the
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


class Ticker:
    def __init__(self, repo: EventRuleRepository, fire: Callable[[StoredRule, float], Awaitable[None]],
                 clock: Clock, interval: float = DEFAULT_INTERVAL, grace: float = DEFAULT_GRACE) -> None:
        self.repo = repo
        self.fire = fire
        self.clock = clock
        self.interval = interval
        self.grace = grace
        self.fired = 0
        self.skipped = 0  # missed ticks (not replayed)
        self._task: asyncio.Task[None] | None = None

    def claim_due(self) -> list[tuple[StoredRule, float]]:
        """Claim every due tick this process wins; the ticks to fire (blocking: database)."""
        now = self.clock()
        claimed: list[tuple[StoredRule, float]] = []
        for rule in self.repo.due_rules(now):
            assert rule.next_tick is not None
            expression = rule.document.get("ScheduleExpression")
            try:
                following = next_tick(expression, rule.created_at, now) if expression else None
            except ScheduleError:
                following = None
            if not self.repo.claim_tick(rule.bus, rule.name, rule.next_tick, following):
                continue  # another process claimed it
            if rule.document.get("State", "ENABLED") == "DISABLED":
                continue
            if now - rule.next_tick > self.grace:
                self.skipped += 1
                log.warning("rule %s: the tick due at %s was missed (Squall was not running); not replayed",
                            rule.name, _at(rule.next_tick).isoformat())
                continue
            claimed.append((rule, rule.next_tick))
        return claimed

    async def run_once(self) -> int:
        claimed = await asyncio.to_thread(self.claim_due)
        for rule, tick in claimed:
            self.fired += 1
            try:
                await self.fire(rule, tick)
            except Exception:  # one rule's failure never stops the ticker
                log.exception("rule %s: firing the tick at %s failed", rule.name, _at(tick).isoformat())
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
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="squall-eventbridge-ticker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
