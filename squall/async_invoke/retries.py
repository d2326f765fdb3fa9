"""What happens to an asynchronous event after an attempt: Lambda's retry and age rules.

- A **function error** (the handler raised, timed out or crashed) is retried up to
  ``MaximumRetryAttempts`` times (0-2, default 2); retry *n* waits ``base × 2^(n-1)``
  (Lambda: about 1 minute, then 2; ``base`` is ``SQUALL_ASYNC_RETRY_DELAY_SECONDS``).
- A **throttle** (429) or **system error** does not count as an attempt: the event goes back
  to the queue with exponential backoff from 1 s up to 5 min, for as long as its age allows.
- An event older than ``MaximumEventAgeInSeconds`` (60-21600, default 6 h) is not run any
  more: its condition is ``EventAgeExceeded``. A retry that could only start after the
  event's age runs out is given up at once with that condition instead of waiting for it.

Everything here is a pure function of the event, the outcome, the config and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from squall.store.events import QueuedEvent

THROTTLE_MIN_DELAY = 1.0
THROTTLE_MAX_DELAY = 300.0


class Outcome(StrEnum):
    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    THROTTLED = "throttled"
    SYSTEM_ERROR = "system_error"


class Condition(StrEnum):
    """``requestContext.condition`` of Lambda's invocation record."""

    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    RECURSIVE_LOOP = "RecursiveInvocationDetected"  # stopped: a recursive loop (RecursiveLoop Terminate)

    @property
    def counter(self) -> str:
        return {
            Condition.SUCCESS: "succeeded",
            Condition.RETRIES_EXHAUSTED: "retries_exhausted",
            Condition.EVENT_AGE_EXCEEDED: "age_exceeded",
            Condition.RECURSIVE_LOOP: "recursive_loops",
        }[self]


@dataclass(frozen=True)
class Limits:
    """The two retry settings of an EventInvokeConfig, defaults applied."""

    maximum_retry_attempts: int = 2
    maximum_event_age: int = 21600


@dataclass(frozen=True)
class Decision:
    """Either a final condition, or the time of the next attempt."""

    condition: Condition | None = None
    retry_at: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 60.0

    def function_error_delay(self, failures: int) -> float:
        """Wait before the retry that follows the ``failures``-th failed attempt (1, 2, …)."""
        return self.base_delay * 2 ** (failures - 1)

    @staticmethod
    def throttle_delay(deferrals: int) -> float:
        """Wait after the ``deferrals``-th throttle or system error: 1 s, 2 s, 4 s … 5 min."""
        return min(THROTTLE_MAX_DELAY, THROTTLE_MIN_DELAY * 2 ** (deferrals - 1))

    @staticmethod
    def expires_at(event: QueuedEvent, limits: Limits) -> float:
        return event.enqueued_at + limits.maximum_event_age

    def expired(self, event: QueuedEvent, limits: Limits, now: float) -> bool:
        return now >= self.expires_at(event, limits)

    def decide(self, event: QueuedEvent, outcome: Outcome, limits: Limits, now: float) -> Decision:
        """``event`` carries the counts *including* the attempt that just ended."""
        if outcome == Outcome.SUCCESS:
            return Decision(Condition.SUCCESS)
        if outcome == Outcome.FUNCTION_ERROR:
            if event.attempts > limits.maximum_retry_attempts:
                return Decision(Condition.RETRIES_EXHAUSTED)
            retry_at = now + self.function_error_delay(event.attempts)
        else:
            retry_at = now + self.throttle_delay(max(1, event.deferrals))
        if retry_at >= self.expires_at(event, limits):
            return Decision(Condition.EVENT_AGE_EXCEEDED)
        return Decision(retry_at=retry_at)
