"""Admission: whether an invocation may run now, by Lambda's concurrency rules, in one place.

Every invoker — the sync API, the async dispatcher, event-source pollers — takes a
:class:`Slot` here before it leases an environment, and gives it back when the invocation
is over (the slot is a context manager). Over a limit the invoke fails at once with 429
``TooManyRequestsException`` and Lambda's ``Reason``: there is never an unbounded queue.

* **Account concurrency** (``account_limit``): all invocations at once.
* **Reserved concurrency** (PutFunctionConcurrency): a function with N reserved may run N
  at once, and those N are taken out of the account's pool; 0 turns it off.
* **Provisioned concurrency** (per version or alias): an invocation of that qualifier
  takes a provisioned slot while fewer than the allocation run, and spills over to the
  function's reserved or the unreserved pool beyond it. Provisioned concurrency counts
  against the account: for a function without reserved concurrency its allocation is set
  aside from the unreserved pool; with reserved concurrency it lies within it.

``available(name)`` tells a poller how many more of a function's invocations would be
admitted now. The counts come from events on the bus (reserved and provisioned concurrency
changed, function deleted), so every node of a cluster can keep its own.
"""

from __future__ import annotations

from typing import Mapping

from squall.engine.bus import (
    EventBus,
    FunctionDeleted,
    ProvisionedConcurrencyChanged,
    ReservedConcurrencyChanged,
    VersionDeleted,
)
from squall.cluster.permits import ACCOUNT, ClusterPermits, NeedPermits, function_scope
from squall.errors import InvalidParameterValue, TooManyRequests

MIN_UNRESERVED = 100  # Lambda keeps 100 executions unreserved


class Slot:
    """One running invocation's place; leaving the ``with`` block (or ``release``) frees it."""

    __slots__ = ("_admission", "function", "reserved", "provisioned_qualifier")

    def __init__(self, admission: Admission, function: str, reserved: bool, provisioned_qualifier: str | None) -> None:
        self._admission: Admission | None = admission
        self.function = function
        self.reserved = reserved  # counted in the function's reserved concurrency
        self.provisioned_qualifier = provisioned_qualifier  # runs on that qualifier's provisioned concurrency

    @property
    def provisioned(self) -> bool:
        return self.provisioned_qualifier is not None

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    def __init__(self, account_limit: int, bus: EventBus | None = None) -> None:
        self.account_limit = account_limit
        self.reserved: dict[str, int] = {}
        self.provisioned: dict[str, dict[str, int]] = {}  # function → qualifier → allocation
        self._in_flight: dict[str, int] = {}  # every slot of a function
        self._provisioned_in_flight: dict[tuple[str, str], int] = {}
        self._unreserved_in_flight = 0  # standard slots of functions without reserved concurrency
        # several front ends: what this one may run of each limit (squall/cluster/permits.py); None: all
        self.permits: ClusterPermits | None = None
        if bus is not None:
            bus.subscribe(ReservedConcurrencyChanged, lambda e: self.set_reserved(e.name, e.reserved))
            bus.subscribe(ProvisionedConcurrencyChanged, lambda e: self.set_provisioned(e.name, e.qualifier, e.requested))
            bus.subscribe(FunctionDeleted, lambda e: self.forget(e.name))
            bus.subscribe(VersionDeleted, lambda e: self.set_provisioned(e.name, e.version, None))

    # ---- the numbers ---------------------------------------------------------------
    @property
    def min_unreserved(self) -> int:
        """Lambda's 100, scaled down for small configured accounts."""
        return min(MIN_UNRESERVED, self.account_limit // 10)

    @property
    def unreserved_limit(self) -> int:
        """UnreservedConcurrentExecutions: the account minus every reservation."""
        return self.account_limit - sum(self.reserved.values())

    def provisioned_total(self, function: str) -> int:
        return sum(self.provisioned.get(function, {}).values())

    @property
    def _shared_limit(self) -> int:
        """What on-demand invocations of functions without reserved concurrency share."""
        set_aside = sum(sum(q.values()) for name, q in self.provisioned.items() if name not in self.reserved)
        return self.unreserved_limit - set_aside

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def in_flight_by_function(self) -> dict[str, int]:
        return dict(self._in_flight)

    def in_flight_of(self, function: str) -> int:
        return self._in_flight.get(function, 0)

    def available(self, function: str, pending: Mapping[str, int] | None = None) -> int:
        """How many more invocations of ``function`` would be admitted now (on-demand ones;
        ``pending``: slots callers are about to take, per function)."""
        pending = pending or {}
        reserved = self.reserved.get(function)
        if reserved is not None:
            return reserved - self.in_flight_of(function) - pending.get(function, 0)
        waiting = sum(n for name, n in pending.items() if name not in self.reserved)
        return self._shared_limit - self._unreserved_in_flight - waiting

    def usage(self, scope: str) -> tuple[int, int | None]:
        """(invocations of ``scope`` running here, its limit; None: no such limit any more), for the
        cluster's permits: ``account`` (functions without reserved concurrency) or ``function:<name>``."""
        if scope == ACCOUNT:
            return self._unreserved_in_flight, self._shared_limit
        name = scope.removeprefix("function:")
        return self._in_flight.get(name, 0), self.reserved.get(name)

    def reserved_of(self, function: str) -> int | None:
        return self.reserved.get(function)

    def turned_off(self, function: str) -> bool:
        """Reserved concurrency 0: every invocation of the function is throttled."""
        return self.reserved.get(function) == 0

    # ---- slots -----------------------------------------------------------------------
    def try_acquire(self, function: str, qualifier: str | None = None) -> Slot:
        """A slot for one invocation of ``function`` called with ``qualifier``, or 429."""
        allocations = self.provisioned.get(function)
        if allocations and qualifier is not None:
            allocation = allocations.get(qualifier, 0)
            key = (function, qualifier)
            running = self._provisioned_in_flight.get(key, 0)
            if running < allocation:
                self._provisioned_in_flight[key] = running + 1
                self._in_flight[function] = self._in_flight.get(function, 0) + 1
                return Slot(self, function, function in self.reserved, qualifier)
        reserved = self.reserved.get(function)
        if reserved is not None:
            running = self._in_flight.get(function, 0)
            if running >= reserved:
                raise TooManyRequests("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")
            if self.permits is not None and not self.permits.has(function_scope(function), running):
                raise NeedPermits(function_scope(function), reserved, running, TooManyRequests(
                    "Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded"))
        else:
            if self._unreserved_in_flight >= self._shared_limit:
                raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
            if self.permits is not None and not self.permits.has(ACCOUNT, self._unreserved_in_flight):
                raise NeedPermits(ACCOUNT, self._shared_limit, self._unreserved_in_flight,
                                  TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded"))
            self._unreserved_in_flight += 1
        self._in_flight[function] = self._in_flight.get(function, 0) + 1
        return Slot(self, function, reserved is not None, None)

    def _release(self, slot: Slot) -> None:
        left = self._in_flight.get(slot.function, 0) - 1
        if left > 0:
            self._in_flight[slot.function] = left
        else:
            self._in_flight.pop(slot.function, None)
        if slot.provisioned_qualifier is not None:
            key = (slot.function, slot.provisioned_qualifier)
            running = self._provisioned_in_flight.get(key, 0) - 1
            if running > 0:
                self._provisioned_in_flight[key] = running
            else:
                self._provisioned_in_flight.pop(key, None)
        elif not slot.reserved:
            self._unreserved_in_flight -= 1

    # ---- settings (from the bus) -------------------------------------------------------
    def set_reserved(self, function: str, value: int | None) -> None:
        if value is None:
            self.reserved.pop(function, None)
        else:
            self.reserved[function] = value

    def set_provisioned(self, function: str, qualifier: str, value: int | None) -> None:
        allocations = self.provisioned.setdefault(function, {})
        if value is None:
            allocations.pop(qualifier, None)
        else:
            allocations[qualifier] = value
        if not allocations:
            del self.provisioned[function]

    def forget(self, function: str) -> None:
        self.reserved.pop(function, None)
        self.provisioned.pop(function, None)

    # ---- validation of new settings (before they are stored) ---------------------------
    def check_reservation(self, function: str, value: int) -> None:
        """PutFunctionConcurrency: Lambda's two refusals."""
        others = sum(v for k, v in self.reserved.items() if k != function)
        if self.account_limit - others - value < self.min_unreserved:
            raise InvalidParameterValue(
                f"Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{self.min_unreserved}]."
            )
        provisioned = self.provisioned_total(function)
        if value < provisioned:
            raise InvalidParameterValue(
                f" ReservedConcurrentExecutions  {value} should not be lower than function's total "
                f"provisioned concurrency [{provisioned}]."
            )

    def check_provisioning(self, function: str, qualifier: str, value: int) -> None:
        """PutProvisionedConcurrencyConfig: within the reservation, or within the account."""
        others = sum(v for q, v in self.provisioned.get(function, {}).items() if q != qualifier)
        reserved = self.reserved.get(function)
        if reserved is not None:
            if others + value > reserved:
                raise InvalidParameterValue(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
                )
            return
        if value > self.account_limit:
            raise InvalidParameterValue(
                f"Specified ConcurrentExecutions for function is greater than account's unreserved concurrency "
                f"[{self.account_limit}]."
            )
        set_aside = sum(
            v for name, q in self.provisioned.items() if name not in self.reserved for k, v in q.items()
            if not (name == function and k == qualifier)
        )
        if self.unreserved_limit - set_aside - value < self.min_unreserved:
            raise InvalidParameterValue(
                f"Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                f"below its minimum value of [{self.min_unreserved}]."
            )
