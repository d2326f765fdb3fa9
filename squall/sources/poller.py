"""What every poller shares: its mapping, its invoker, its counters, how it reports."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from squall.arn import FunctionRef
from squall.sources.aws import AwsClients
from squall.sources.brokers import Brokers
from squall.sources.invoker import BatchInvoker
from squall.sources.mapping import EventSourceMapping

log = logging.getLogger("squall.sources")

PROBLEM_RETRY_SECONDS = 5.0  # a source that cannot be reached is tried again after this long


@dataclass
class PollerStats:
    """Counters shown by ``squall event-sources`` (since the server started)."""

    pollers: int = 0
    invocations: int = 0
    records: int = 0
    filtered: int = 0
    failed_invocations: int = 0
    throttles: int = 0
    records_to_destination: int = 0
    records_dropped: int = 0
    lag: float | None = None  # messages waiting (SQS) or the oldest unread record's age in ms (streams)
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pollers": self.pollers, "invocations": self.invocations, "records": self.records,
                "filtered": self.filtered, "failed_invocations": self.failed_invocations,
                "throttles": self.throttles, "records_to_destination": self.records_to_destination,
                "records_dropped": self.records_dropped, "lag": self.lag, "last_error": self.last_error}


Report = Callable[[str], None]  # sets the mapping's LastProcessingResult


@dataclass(frozen=True)
class PollerDeps:
    """What a poller is given besides its mapping."""

    invoker: BatchInvoker
    clients: AwsClients  # AWS-API sources, and the thread pool for every blocking client
    brokers: Brokers  # self-hosted sources: URLs and credentials
    report: Report
    stats: PollerStats
    function_arn: str
    role_arn: Callable[[], str]
    positions: Callable[[], Awaitable[dict[str, str]]]  # stream checkpoints: shard → last position done
    checkpoint: Callable[[str, str], Awaitable[bool]]  # (shard, position) → False when the mapping is gone
    send: Callable[[str, bytes], Awaitable[None]]  # an on-failure record to its destination


class Poller(ABC):
    """Runs one mapping until ``stop()``; subclasses implement ``run``."""

    def __init__(self, mapping: EventSourceMapping, deps: PollerDeps) -> None:
        self.mapping = mapping
        self.settings = mapping.settings
        self.source = mapping.source
        self.ref = FunctionRef(mapping.function_name, mapping.qualifier)
        self.deps = deps
        self.invoker = deps.invoker
        self.clients = deps.clients
        self.stats = deps.stats
        self.function_arn = deps.function_arn
        self.role_arn = deps.role_arn
        self._report = deps.report
        self._last_reported = ""
        self.stopping = asyncio.Event()

    def report(self, result: str) -> None:
        if result != self._last_reported:
            self._last_reported = result
            self._report(result)
        if result.startswith("PROBLEM"):
            self.stats.last_error = result

    @abstractmethod
    async def run(self) -> None:
        """Poll, invoke and acknowledge until ``stopping`` is set."""

    async def forget(self) -> None:
        """The mapping was deleted (the poller has stopped): remove what the source keeps for it."""

    async def pause(self, seconds: float) -> None:
        """Sleep, waking early when the poller is stopped."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass
