"""The engine's in-process event bus: what changed, told to whoever subscribed.

Caches (the resolver's targets), the executor (which environments to retire), admission
(reserved and provisioned concurrency), provisioned environments and, later, metrics and
cross-node invalidation (PostgreSQL LISTEN/NOTIFY bridged onto this bus) subscribe to these
events instead of being called by the code that made the change.

Delivery is synchronous, in subscription order, in the publisher's turn of the event loop:
when ``publish`` returns, every cache has dropped what the change made stale. A subscriber
that raises is logged and skipped; the publisher never sees it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

log = logging.getLogger("squall.bus")


@dataclass(frozen=True)
class FunctionUpdated:
    """``$LATEST`` has a new invocable configuration (revision), or is no longer invocable (None)."""

    name: str
    revision: str | None


@dataclass(frozen=True)
class FunctionDeleted:
    name: str


@dataclass(frozen=True)
class SandboxSettingsChanged:
    """A setting every environment of the function is built with changed (the network tag)."""

    name: str


@dataclass(frozen=True)
class VersionPublished:
    name: str
    version: str


@dataclass(frozen=True)
class VersionDeleted:
    name: str
    version: str


@dataclass(frozen=True)
class AliasChanged:
    """An alias was created, moved, re-weighted or deleted."""

    name: str
    alias: str


@dataclass(frozen=True)
class ReservedConcurrencyChanged:
    name: str
    reserved: int | None


@dataclass(frozen=True)
class ProvisionedConcurrencyChanged:
    """A provisioned concurrency config was put (``requested``) or deleted (None)."""

    name: str
    qualifier: str
    requested: int | None


@dataclass(frozen=True)
class EnvironmentStarted:
    function: str
    version: str
    environment_id: str
    provisioned: bool


@dataclass(frozen=True)
class EnvironmentStopped:
    function: str
    version: str
    environment_id: str
    reason: str


@dataclass(slots=True)  # built once per invocation: not frozen (a frozen __init__ costs µs)
class InvocationFinished:
    function: str
    version: str
    request_id: str
    duration_ms: float
    init_duration_ms: float | None
    error_type: str | None
    qualifier: str | None = None  # what the caller named (an alias, a version), None: nothing
    runtime: str = ""
    concurrency: int = 0  # the function's invocations in flight as it ended (itself included)
    trace: str | None = None  # the X-Amzn-Trace-Id it ran with
    started_at: float = 0.0  # epoch seconds: the request reached the engine …
    finished_at: float = 0.0  # … and its result was there
    queued_at: float | None = None  # an asynchronous event: when it was accepted


@dataclass(frozen=True)
class InvocationThrottled:
    function: str
    qualifier: str | None
    reason: str


@dataclass(frozen=True)
class AsyncEventAccepted:
    function: str


@dataclass(frozen=True)
class AsyncEventSettled:
    function: str
    condition: str  # Lambda's condition (Success, RetriesExhausted, EventAgeExceeded, …)
    age_ms: float


@dataclass(frozen=True)
class DeliveryFinished:
    function: str
    kind: str  # "destination" or "dlq"
    ok: bool


E = TypeVar("E")


class EventBus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        self._subscribers[kind].append(handler)

    def wants(self, kind: type) -> bool:
        """Whether anyone listens (so a hot path can skip building the event)."""
        return bool(self._subscribers.get(kind))

    def publish(self, event: object) -> None:
        for handler in self._subscribers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("a subscriber to %s failed", type(event).__name__)
