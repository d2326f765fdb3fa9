"""Account and reserved concurrency."""

from __future__ import annotations

import pytest

from squall.invoke.concurrency import ConcurrencyLimits
from squall.errors import InvalidParameterValue, TooManyRequests


def test_account_limit_throttles_with_reason():
    limits = ConcurrencyLimits(2)
    with limits.slot("a"), limits.slot("b"):
        with pytest.raises(TooManyRequests) as excinfo:
            with limits.slot("c"):
                pass
        assert excinfo.value.reason == "ConcurrentInvocationLimitExceeded"
        assert limits.in_flight == 2
    assert limits.in_flight == 0
    with limits.slot("c"):
        pass


def test_reserved_concurrency_caps_a_function_and_is_taken_from_the_pool():
    limits = ConcurrencyLimits(1000)
    limits.reserve("r", 2)
    assert limits.unreserved_limit == 998
    with limits.slot("r"), limits.slot("r"):
        with pytest.raises(TooManyRequests) as excinfo:
            with limits.slot("r"):
                pass
        assert excinfo.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        with limits.slot("other"):  # other functions are unaffected
            assert limits.in_flight_of("other") == 1


def test_zero_disables_and_delete_restores():
    limits = ConcurrencyLimits(1000)
    limits.reserve("off", 0)
    with pytest.raises(TooManyRequests) as excinfo:
        with limits.slot("off"):
            pass
    assert excinfo.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    limits.reserve("off", None)
    with limits.slot("off"):
        pass


def test_reservation_must_leave_unreserved_minimum():
    limits = ConcurrencyLimits(1000)
    limits.check_reservation("a", 900)
    with pytest.raises(InvalidParameterValue, match=r"minimum value of \[100\]"):
        limits.check_reservation("a", 901)
    limits.reserve("a", 500)
    with pytest.raises(InvalidParameterValue):
        limits.check_reservation("b", 401)
    limits.check_reservation("a", 900)  # replacing its own reservation is measured without the old one
    assert ConcurrencyLimits(50).min_unreserved == 5


def test_slot_released_on_error():
    limits = ConcurrencyLimits(1)
    with pytest.raises(RuntimeError):
        with limits.slot("a"):
            raise RuntimeError("boom")
    assert limits.in_flight == 0
    limits.reserve("r", 1)
    with pytest.raises(RuntimeError):
        with limits.slot("r"):
            raise RuntimeError("boom")
    assert limits.in_flight_of("r") == 0
