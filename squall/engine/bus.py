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

import asyncio
import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, TypeVar

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
class StateChanged:
    """Something a cache mirrors changed in the database: ``kind`` names the cache (``"permissions"``,
    ``"iam"``, ``"function_urls"``, …), ``name`` what changed in it ("" : anything of that kind).

    Published by the code that made the change (after it committed), for the caches of the other
    front ends: a front end's own cache is kept current by that code already."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class CachesReset:
    """Every cache drops everything it holds (a front end may have missed other front ends' changes)."""

    reason: str = ""


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
        # True while an event another front end sent is being published (squall/cluster/relay.py), or
        # while a cache publishes what it re-read because of one: such events are not sent on again,
        # and caches reload only for them (their own front end's changes kept them current).
        self.from_remote = False
        self._deferred: set[asyncio.Task[None]] = set()

    @contextmanager
    def remote(self) -> Iterator[None]:
        """Publish (synchronously, inside the block) as the echo of another front end's change."""
        before, self.from_remote = self.from_remote, True
        try:
            yield
        finally:
            self.from_remote = before

    def mirror(self, kind: str, reload: Callable[[str], Awaitable[None]], what: str) -> None:
        """A cache of the database's ``kind`` rows: ``reload(name)`` runs (deferred) when another front
        end changed ``name`` (``StateChanged(kind, name)``), ``reload("")`` when caches are reset."""

        def changed(event: StateChanged) -> None:
            if event.kind == kind and self.from_remote:
                self.defer(lambda: reload(event.name), f"{what} {event.name}".rstrip())

        def reset(event: CachesReset) -> None:
            if self.from_remote:
                self.defer(lambda: reload(""), f"every {what}")

        self.subscribe(StateChanged, changed)
        self.subscribe(CachesReset, reset)

    def defer(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``work()`` as a task of the running loop (a subscriber that must read the database);
        failures are logged with ``what``. Without a running loop (tests, shutdown) nothing runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def run() -> None:
            try:
                await work()
            except Exception:
                log.exception("refreshing %s failed", what)

        task = loop.create_task(run())
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

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
