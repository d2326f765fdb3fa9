"""EventInvokeConfig: a function's asynchronous invocation settings (retries, age, destinations).

Put replaces the whole config (omitted settings are removed), Update merges into the
existing one, Get without a config is ResourceNotFoundException. Squall has only
``$LATEST``, so the only qualifier is ``$LATEST`` (an unqualified name means it too). The
dispatcher reads configs from an in-memory map kept in step with the store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from squall.arn import LATEST, Arns, FunctionRef
from squall.async_invoke.destinations import Destination
from squall.async_invoke.retries import Limits
from squall.errors import InvalidParameterValue, ResourceNotFound
from squall.store.event_invoke_configs import EventInvokeConfigRepository

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


def apply_params(base: EventInvokeConfig, params: dict[str, Any], merge: bool) -> EventInvokeConfig:
    """Validate Put/Update parameters and apply them (Put: onto an empty config)."""
    if not merge:
        base = EventInvokeConfig(base.function_name, base.qualifier)
        if not any(k in params for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")):
            raise InvalidParameterValue("You must specify at least one of error handling or destination setting.")
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


class EventInvokeConfigs:
    """The configs, stored and cached; reads on the dispatch path do no I/O."""

    def __init__(
        self,
        repo: EventInvokeConfigRepository,
        arns: Arns,
        exists: Callable[[FunctionRef], Any],  # async: raises ResourceNotFound for unknown functions
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.arns = arns
        self.exists = exists
        self.clock = clock
        self._cache: dict[str, EventInvokeConfig] = {}  # function name → its $LATEST config

    async def load(self) -> None:
        for name, qualifier, record, modified in await asyncio.to_thread(self.repo.all):
            if qualifier == LATEST:
                self._cache[name] = EventInvokeConfig.from_record(name, qualifier, record, modified)

    def for_function(self, name: str) -> EventInvokeConfig:
        return self._cache.get(name) or EventInvokeConfig(name)

    async def refresh(self, name: str) -> None:
        """Re-read one function's config (after its deletion, the cascade removed it)."""
        stored = await asyncio.to_thread(self.repo.get, name, LATEST)
        if stored is None:
            self._cache.pop(name, None)
        else:
            self._cache[name] = EventInvokeConfig.from_record(name, LATEST, stored[0], stored[1])

    # ---- the API -------------------------------------------------------------------
    async def put(self, ref: FunctionRef, params: dict[str, Any]) -> EventInvokeConfig:
        return await self._store(ref, params, merge=False)

    async def update(self, ref: FunctionRef, params: dict[str, Any]) -> EventInvokeConfig:
        return await self._store(ref, params, merge=True)

    async def get(self, ref: FunctionRef) -> EventInvokeConfig:
        name = await self._function(ref)
        stored = await asyncio.to_thread(self.repo.get, name, LATEST)
        if stored is None:
            raise self._missing(name)
        return EventInvokeConfig.from_record(name, LATEST, stored[0], stored[1])

    async def delete(self, ref: FunctionRef) -> None:
        name = await self._function(ref)
        if not await asyncio.to_thread(self.repo.delete, name, LATEST):
            raise self._missing(name)
        self._cache.pop(name, None)

    async def page(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> list[EventInvokeConfig]:
        name = await self._function(FunctionRef(ref.name))
        if max_items is not None and not 1 <= max_items <= 50:
            raise InvalidParameterValue("MaxItems must be between 1 and 50")
        if marker:  # one qualifier at most: there is never a second page
            return []
        stored = await asyncio.to_thread(self.repo.get, name, LATEST)
        return [EventInvokeConfig.from_record(name, LATEST, stored[0], stored[1])] if stored else []

    async def _store(self, ref: FunctionRef, params: dict[str, Any], merge: bool) -> EventInvokeConfig:
        name = await self._function(ref)
        current = EventInvokeConfig(name)
        if merge:
            stored = await asyncio.to_thread(self.repo.get, name, LATEST)
            if stored is None:
                raise self._missing(name)
            current = EventInvokeConfig.from_record(name, LATEST, stored[0], stored[1])
        config = replace(apply_params(current, params, merge), last_modified=round(self.clock(), 3))
        if not await asyncio.to_thread(self.repo.put, name, LATEST, config.to_record(), config.last_modified):
            raise ResourceNotFound(f"Function not found: {self.arns.function(name)}")
        self._cache[name] = config
        return config

    async def _function(self, ref: FunctionRef) -> str:
        """The function's name, after checking that it (and the qualifier) exists."""
        await self.exists(ref)
        return ref.name

    def _missing(self, name: str) -> ResourceNotFound:
        return ResourceNotFound(f"The function {self.arns.function(name, LATEST)} doesn't have an EventInvokeConfig")
