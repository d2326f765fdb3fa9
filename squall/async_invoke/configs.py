"""EventInvokeConfig: asynchronous invocation settings (retries, age, destinations) per
function qualifier — ``$LATEST`` (an unqualified name means it too), a version or an alias.

Put replaces the whole config (omitted settings are removed), Update merges into the
existing one, Get without a config is ResourceNotFoundException; the messages are AWS's
(which differ between a missing function and a function without a config). An event uses
the config of the qualifier it was sent to. The dispatcher reads configs from an in-memory
map kept in step with the store. Several front ends may share the database: a change is
published as ``StateChanged("event_invoke_configs", function)`` once committed, and the other
front ends re-read that function's configs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

from squall.arn import LATEST, Arns, FunctionRef
from squall.async_invoke.destinations import Destination, DestinationKind
from squall.async_invoke.retries import Limits
from squall.engine.bus import EventBus, StateChanged
from squall.errors import InvalidParameterValue, ResourceNotFound
from squall.store.event_invoke_configs import EventInvokeConfigRepository

KIND = "event_invoke_configs"  # the StateChanged kind of this cache
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600
RETRIES_RANGE = (0, 2)
AGE_RANGE = (60, 21600)


@dataclass(frozen=True)
class EventInvokeConfig:
    function_name: str
    qualifier: str = LATEST
    maximum_retry_attempts: int | None = None
    maximum_event_age: int | None = None
    on_success: str | None = None
    on_failure: str | None = None
    last_modified: float = 0.0

    @property
    def limits(self) -> Limits:
        return Limits(
            DEFAULT_RETRIES if self.maximum_retry_attempts is None else self.maximum_retry_attempts,
            DEFAULT_MAX_AGE if self.maximum_event_age is None else self.maximum_event_age,
        )

    def to_api(self, arns: Arns) -> dict[str, Any]:
        document: dict[str, Any] = {
            "LastModified": self.last_modified,
            "FunctionArn": arns.function(self.function_name, self.qualifier),
            "DestinationConfig": {
                "OnSuccess": {"Destination": self.on_success} if self.on_success else {},
                "OnFailure": {"Destination": self.on_failure} if self.on_failure else {},
            },
        }
        if self.maximum_retry_attempts is not None:
            document["MaximumRetryAttempts"] = self.maximum_retry_attempts
        if self.maximum_event_age is not None:
            document["MaximumEventAgeInSeconds"] = self.maximum_event_age
        return document

    def to_record(self) -> dict[str, Any]:
        return {
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumEventAgeInSeconds": self.maximum_event_age,
            "OnSuccess": self.on_success,
            "OnFailure": self.on_failure,
        }

    @classmethod
    def from_record(cls, name: str, qualifier: str, record: dict[str, Any], last_modified: float) -> "EventInvokeConfig":
        return cls(
            name,
            qualifier,
            record.get("MaximumRetryAttempts"),
            record.get("MaximumEventAgeInSeconds"),
            record.get("OnSuccess"),
            record.get("OnFailure"),
            last_modified,
        )


NO_SETTINGS = "You must specify at least one of error handling or destination setting."


def apply_params(base: EventInvokeConfig, params: dict[str, Any], merge: bool) -> EventInvokeConfig:
    """Validate Put/Update parameters and apply them (Put: onto an empty config)."""
    if not merge:
        base = EventInvokeConfig(base.function_name, base.qualifier)
        if not any(k in params for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")):
            raise InvalidParameterValue(NO_SETTINGS)
    changes: dict[str, Any] = {}
    if "MaximumRetryAttempts" in params:
        changes["maximum_retry_attempts"] = _in_range(params["MaximumRetryAttempts"], RETRIES_RANGE, "maximumRetryAttempts")
    if "MaximumEventAgeInSeconds" in params:
        changes["maximum_event_age"] = _in_range(params["MaximumEventAgeInSeconds"], AGE_RANGE, "maximumEventAgeInSeconds")
    destinations = params.get("DestinationConfig") or {}
    for key, attr in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
        if key in destinations:
            changes[attr] = _destination((destinations[key] or {}).get("Destination"))
    return replace(base, **changes)


def _in_range(value: int, bounds: tuple[int, int], name: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must have value between {low} and {high}"
        )
    return value


def _destination(value: str | None) -> str | None:
    if not value:
        return None  # an empty Destination removes it
    Destination.parse(value)
    return value


# does a function (and the version or alias it names) exist?
Exists = Callable[[FunctionRef], Awaitable[bool]]
PAGE_MAX = 50


class EventInvokeConfigs:
    """The configs, stored and cached; reads on the dispatch path do no I/O."""

    def __init__(self, repo: EventInvokeConfigRepository, arns: Arns, exists: Exists, clock: Callable[[], float] = time.time,
                 bus: EventBus | None = None) -> None:
        self.repo = repo
        self.arns = arns
        self.exists = exists
        self.clock = clock
        self._cache: dict[tuple[str, str], EventInvokeConfig] = {}  # (function, qualifier) → config
        self._changes = 0  # counts changes to _cache: a reload that one overtook reads again
        self.bus = bus or EventBus()  # none: a bus of its own (nobody else hears of its changes)
        self.bus.mirror(KIND, lambda name: self.reload(name), "EventInvokeConfig of")

    async def load(self) -> None:
        for name, qualifier, record, modified in await asyncio.to_thread(self.repo.all):
            self._cache[(name, qualifier)] = EventInvokeConfig.from_record(name, qualifier, record, modified)

    # ---- other front ends' changes (one database, several front ends) --------------------
    async def reload(self, name: str) -> None:
        """Re-read the configs of function ``name`` ("": of every function) from the database."""
        seen = -1
        while seen != self._changes:  # changed meanwhile (here): what was read may be older
            seen = self._changes
            rows = await asyncio.to_thread(self.repo.all)
        fresh = {(n, q): EventInvokeConfig.from_record(n, q, record, modified)
                 for n, q, record, modified in rows if not name or n == name}
        for key in [k for k in self._cache if (not name or k[0] == name) and k not in fresh]:
            del self._cache[key]
        self._cache.update(fresh)
        self._changes += 1

    def for_event(self, name: str, qualifier: str | None) -> EventInvokeConfig:
        """The config an event sent to ``name:qualifier`` is handled with (defaults if none)."""
        key = (name, qualifier or LATEST)
        return self._cache.get(key) or EventInvokeConfig(name, key[1])

    async def refresh(self, name: str) -> None:
        """Forget a deleted function's configs (the store's cascade removed them)."""
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]
        self._changes += 1

    # ---- the API -------------------------------------------------------------------
    async def store(self, ref: FunctionRef, params: dict[str, Any], merge: bool) -> EventInvokeConfig:
        """Put (``merge`` False: replace) or Update (merge into the existing one)."""
        if not merge and not any(k in params for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")):
            raise InvalidParameterValue(NO_SETTINGS)  # AWS checks this before the function exists
        name, qualifier = ref.name, ref.qualifier or LATEST
        if not await self.exists(ref):
            raise ResourceNotFound("The function doesn't exist.")
        current = EventInvokeConfig(name, qualifier)
        if merge:
            stored = await asyncio.to_thread(self.repo.get, name, qualifier)
            if stored is None:
                raise self._missing(name, qualifier)
            current = EventInvokeConfig.from_record(name, qualifier, stored[0], stored[1])
        config = replace(apply_params(current, params, merge), last_modified=round(self.clock(), 3))
        for destination in (config.on_success, config.on_failure):
            if destination:
                await self._check_destination(name, destination)
        if not await asyncio.to_thread(self.repo.put, name, qualifier, config.to_record(), config.last_modified):
            raise ResourceNotFound("The function doesn't exist.")
        self._cache[(name, qualifier)] = config
        self._changes += 1
        self.bus.publish(StateChanged(KIND, name))
        return config

    async def get(self, ref: FunctionRef) -> EventInvokeConfig:
        name, qualifier = ref.name, ref.qualifier or LATEST
        stored = await asyncio.to_thread(self.repo.get, name, qualifier)
        if stored is None:
            raise self._missing(name, qualifier)
        return EventInvokeConfig.from_record(name, qualifier, stored[0], stored[1])

    async def delete(self, ref: FunctionRef) -> None:
        name, qualifier = ref.name, ref.qualifier or LATEST
        if not await asyncio.to_thread(self.repo.delete, name, qualifier):
            raise self._missing(name, qualifier)
        self._cache.pop((name, qualifier), None)
        self._changes += 1
        self.bus.publish(StateChanged(KIND, name))

    async def page(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[EventInvokeConfig], str | None]:
        if not await self.exists(FunctionRef(ref.name)):
            raise ResourceNotFound("The function doesn't exist.")
        stored = sorted(
            (EventInvokeConfig.from_record(name, qualifier, record, modified)
             for name, qualifier, record, modified in await asyncio.to_thread(self.repo.all)
             if name == ref.name),
            key=lambda c: c.qualifier,
        )
        start = int(marker) if marker and marker.isdigit() else 0
        limit = min(max_items or PAGE_MAX, PAGE_MAX)
        page = stored[start:start + limit]
        return page, (str(start + limit) if start + limit < len(stored) else None)

    async def _check_destination(self, name: str, destination: str) -> None:
        target = Destination.parse(destination)
        if target.kind != DestinationKind.FUNCTION:
            return
        if target.name == name:
            raise InvalidParameterValue("You can't specify the function as a destination for itself.")
        if not await self.exists(FunctionRef(target.name, target.qualifier)):
            raise InvalidParameterValue(f"The destination ARN {destination} is invalid.")

    def _missing(self, name: str, qualifier: str) -> ResourceNotFound:
        return ResourceNotFound(f"The function {self.arns.function(name, qualifier)} doesn't have an EventInvokeConfig")
