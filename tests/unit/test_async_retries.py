"""Lambda's retry and age rules for asynchronous events (no clock needed: pure decisions)."""

from __future__ import annotations

import pytest

from squall.async_invoke.retries import Condition, Limits, Outcome, RetryPolicy
from squall.store.events import QueuedEvent

T0 = 1_700_000_000.0


def ev(attempts: int = 0, deferrals: int = 0, enqueued_at: float = T0) -> QueuedEvent:
    return QueuedEvent("r", "fn", None, b"{}", enqueued_at, attempts=attempts, deferrals=deferrals)


def test_function_error_backoff_is_base_times_two_to_the_n_minus_one():
    policy = RetryPolicy(60.0)
    assert [policy.function_error_delay(n) for n in (1, 2)] == [60.0, 120.0]  # Lambda: ~1 min, then ~2
    assert [RetryPolicy(0.2).function_error_delay(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]


def test_throttle_backoff_grows_from_one_second_to_five_minutes():
    assert [RetryPolicy.throttle_delay(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert RetryPolicy.throttle_delay(40) == 300


def test_success_is_final():
    assert RetryPolicy().decide(ev(attempts=1), Outcome.SUCCESS, Limits(), T0).condition == Condition.SUCCESS


def test_function_errors_are_retried_then_exhausted():
    policy, limits = RetryPolicy(60.0), Limits(maximum_retry_attempts=2)
    first = policy.decide(ev(attempts=1), Outcome.FUNCTION_ERROR, limits, T0 + 1)
    assert first.condition is None and first.retry_at == T0 + 61
    second = policy.decide(ev(attempts=2), Outcome.FUNCTION_ERROR, limits, T0 + 62)
    assert second.condition is None and second.retry_at == T0 + 62 + 120
    third = policy.decide(ev(attempts=3), Outcome.FUNCTION_ERROR, limits, T0 + 183)
    assert third == type(third)(Condition.RETRIES_EXHAUSTED)


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_maximum_retry_attempts_bounds_the_invocations(retries):
    policy, limits = RetryPolicy(1.0), Limits(maximum_retry_attempts=retries)
    attempts = 0
    while True:
        attempts += 1
        decision = policy.decide(ev(attempts=attempts), Outcome.FUNCTION_ERROR, limits, T0)
        if decision.condition is not None:
            break
    assert decision.condition == Condition.RETRIES_EXHAUSTED and attempts == retries + 1


def test_a_retry_past_the_event_age_gives_up_at_once():
    # Age 60 s and Lambda's 60 s delay: the retry could only start when the event is too old.
    decision = RetryPolicy(60.0).decide(ev(attempts=1), Outcome.FUNCTION_ERROR, Limits(2, 60), T0 + 0.5)
    assert decision.condition == Condition.EVENT_AGE_EXCEEDED


@pytest.mark.parametrize("outcome", [Outcome.THROTTLED, Outcome.SYSTEM_ERROR])
def test_throttles_do_not_count_as_attempts_and_last_until_the_age(outcome):
    policy, limits = RetryPolicy(60.0), Limits(0, 3600)
    now, deferrals = T0, 0
    while True:
        deferrals += 1
        decision = policy.decide(ev(deferrals=deferrals), outcome, limits, now)
        if decision.condition is not None:
            break
        assert decision.retry_at == now + RetryPolicy.throttle_delay(deferrals)
        now = decision.retry_at
    # Even with MaximumRetryAttempts 0 a throttled event keeps trying for its whole age.
    assert decision.condition == Condition.EVENT_AGE_EXCEEDED
    assert now > T0 + 3600 - 300 and deferrals > 10


def test_expiry_is_measured_from_the_first_enqueue():
    policy = RetryPolicy()
    assert not policy.expired(ev(), Limits(2, 60), T0 + 59.9)
    assert policy.expired(ev(), Limits(2, 60), T0 + 60)
    assert not policy.expired(ev(), Limits(), T0 + 21599)
    assert policy.expired(ev(), Limits(), T0 + 21600)


def test_condition_counters():
    assert {c.value: c.counter for c in Condition} == {
        "Success": "succeeded",
        "RetriesExhausted": "retries_exhausted",
        "EventAgeExceeded": "age_exceeded",
        "RecursiveInvocationDetected": "recursive_loops",
    }
