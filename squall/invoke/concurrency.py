"""Concurrency: Lambda's account limit and per-function reserved concurrency.

Every invocation holds a slot while it runs. A function with reserved concurrency N may
run N at once, and those N are taken out of the account's pool; the other functions
share what is left (the unreserved pool). Over a limit the invoke fails at once with 429
— there is never an unbounded queue.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from squall.errors import InvalidParameterValue, TooManyRequests

MIN_UNRESERVED = 100  # Lambda keeps 100 executions unreserved


class ConcurrencyLimits:
    def __init__(self, account_limit: int, reserved: dict[str, int] | None = None) -> None:
        self.account_limit = account_limit
        self.reserved: dict[str, int] = dict(reserved or {})
        self._in_flight: dict[str, int] = {}
        self._unreserved_in_flight = 0

    @property
    def min_unreserved(self) -> int:
        """Lambda's 100, scaled down for small configured accounts."""
        return min(MIN_UNRESERVED, self.account_limit // 10)

    @property
    def unreserved_limit(self) -> int:
        return self.account_limit - sum(self.reserved.values())

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def in_flight_of(self, function_name: str) -> int:
        return self._in_flight.get(function_name, 0)

    def check_reservation(self, function_name: str, value: int) -> None:
        """Validate PutFunctionConcurrency before it is stored."""
        others = sum(v for k, v in self.reserved.items() if k != function_name)
        if self.account_limit - others - value < self.min_unreserved:
            raise InvalidParameterValue(
                f"Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{self.min_unreserved}]."
            )

    def reserve(self, function_name: str, value: int | None) -> None:
        if value is None:
            self.reserved.pop(function_name, None)
        else:
            self.reserved[function_name] = value

    @contextmanager
    def slot(self, function_name: str) -> Iterator[None]:
        """Hold one concurrent execution of a function for the duration of an invocation."""
        reserved = self.reserved.get(function_name)
        running = self._in_flight.get(function_name, 0)
        if reserved is not None:
            if running >= reserved:
                raise TooManyRequests("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")
        elif self._unreserved_in_flight >= self.unreserved_limit:
            raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
        self._in_flight[function_name] = running + 1
        if reserved is None:
            self._unreserved_in_flight += 1
        try:
            yield
        finally:
            left = self._in_flight[function_name] - 1
            if left:
                self._in_flight[function_name] = left
            else:
                del self._in_flight[function_name]
            if reserved is None:
                self._unreserved_in_flight -= 1
