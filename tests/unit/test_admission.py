"""Admission: account, reserved and provisioned concurrency in one place (squall/invoke/admission.py)."""

from __future__ import annotations

import pytest

from squall.engine.bus import EventBus, FunctionDeleted, ProvisionedConcurrencyChanged, ReservedConcurrencyChanged
from squall.errors import InvalidParameterValue, TooManyRequests
from squall.invoke.admission import Admission


def throttled(admission: Admission, function: str, qualifier: str | None = None) -> str:
    with pytest.raises(TooManyRequests) as info:
        admission.try_acquire(function, qualifier)
    return info.value.reason


def test_account_limit_throttles_with_reason_and_slots_release():
    admission = Admission(2)
    with admission.try_acquire("a"), admission.try_acquire("b"):
        assert throttled(admission, "c") == "ConcurrentInvocationLimitExceeded"
        assert admission.in_flight == 2 and admission.available("c") == 0
    assert admission.in_flight == 0 and admission.available("c") == 2
    with admission.try_acquire("c"):
        pass


def test_reserved_concurrency_caps_a_function_and_is_taken_from_the_pool():
    admission = Admission(1000)
    admission.set_reserved("r", 2)
    assert admission.unreserved_limit == 998
    with admission.try_acquire("r"), admission.try_acquire("r"):
        assert throttled(admission, "r") == "ReservedFunctionConcurrentInvocationLimitExceeded"
        with admission.try_acquire("other"):  # other functions are unaffected
            assert admission.in_flight_of("other") == 1
    admission.set_reserved("r", 0)  # zero turns it off
    assert throttled(admission, "r") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    admission.set_reserved("r", None)
    with admission.try_acquire("r"):
        pass


def test_reservation_checks_use_lambdas_messages():
    admission = Admission(1000)
    admission.check_reservation("a", 900)
    with pytest.raises(InvalidParameterValue, match=r"below its minimum value of \[100\]"):
        admission.check_reservation("a", 901)
    admission.set_reserved("a", 500)
    admission.check_reservation("a", 900)  # its own reservation is measured without the old one
    admission.set_provisioned("a", "1", 2)
    with pytest.raises(InvalidParameterValue) as info:
        admission.check_reservation("a", 1)
    assert info.value.message == " ReservedConcurrentExecutions  1 should not be lower than function's total provisioned concurrency [2]."
    assert Admission(50).min_unreserved == 5


def test_provisioned_slots_first_then_spill_over_to_the_pool():
    admission = Admission(10)
    admission.set_provisioned("p", "live", 2)
    first, second = admission.try_acquire("p", "live"), admission.try_acquire("p", "live")
    assert first.provisioned and second.provisioned
    third = admission.try_acquire("p", "live")  # beyond the allocation: on demand
    assert not third.provisioned
    assert admission.try_acquire("p", "1").provisioned is False  # another qualifier has none
    # the allocation is set aside from the unreserved pool: 10 - 2 = 8 on-demand places, 2 taken
    assert admission.available("x") == 6
    for slot in (first, second, third):
        slot.release()
    assert admission.in_flight_of("p") == 1


def test_provisioned_within_reserved_counts_against_it():
    admission = Admission(100)
    admission.set_reserved("r", 2)
    admission.set_provisioned("r", "live", 1)
    held = [admission.try_acquire("r", "live"), admission.try_acquire("r", "live")]
    assert [s.provisioned for s in held] == [True, False]
    assert throttled(admission, "r", "live") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    for slot in held:
        slot.release()
    assert admission.in_flight == 0 and admission.available("r") == 2


def test_provisioning_checks():
    admission = Admission(1000)
    admission.set_reserved("r", 5)
    admission.check_provisioning("r", "1", 5)
    with pytest.raises(InvalidParameterValue, match="should not be greater than the reservedConcurrentExecution"):
        admission.check_provisioning("r", "1", 6)
    with pytest.raises(InvalidParameterValue, match=r"greater than account's unreserved concurrency \[1000\]"):
        admission.check_provisioning("u", "1", 1001)
    with pytest.raises(InvalidParameterValue, match=r"below its minimum value of \[100\]"):
        admission.check_provisioning("u", "1", 900)
    admission.check_provisioning("u", "1", 895)


def test_settings_come_from_the_bus():
    bus = EventBus()
    admission = Admission(100, bus)
    bus.publish(ReservedConcurrencyChanged("f", 3))
    bus.publish(ProvisionedConcurrencyChanged("f", "live", 2))
    assert admission.reserved == {"f": 3} and admission.provisioned == {"f": {"live": 2}}
    bus.publish(ProvisionedConcurrencyChanged("f", "live", None))
    assert admission.provisioned == {}
    bus.publish(ReservedConcurrencyChanged("f", 1))
    bus.publish(FunctionDeleted("f"))
    assert admission.reserved == {}


def test_release_is_idempotent_and_slots_free_on_errors():
    admission = Admission(1)
    with pytest.raises(RuntimeError):
        with admission.try_acquire("a"):
            raise RuntimeError("boom")
    slot = admission.try_acquire("a")
    slot.release()
    slot.release()
    assert admission.in_flight == 0 and admission.available("a") == 1
