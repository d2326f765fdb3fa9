"""Per-trigger delivery counts, for ``squall triggers``.

Every trigger that hands events to the durable queue (EventBridge rule targets, Scheduler
schedules, SNS subscriptions and object-store webhooks) records here, under its own key, each
delivery and each failure with its reason. Pub/sub listeners and event source mappings keep
their own counters. The counts live in this process, since its start: they are an operator's
view, not an audit trail (the durable queue and the logs are that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Counts:
    delivered: int = 0
    failed: int = 0
    last_delivery: float | None = None
    last_error: str | None = None


class Deliveries:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[str, Counts] = {}

    def delivered(self, key: str) -> None:
        counts = self._counts.setdefault(key, Counts())
        counts.delivered += 1
        counts.last_delivery = self.clock()

    def failed(self, key: str, reason: str) -> None:
        counts = self._counts.setdefault(key, Counts())
        counts.failed += 1
        counts.last_error = reason

    def of(self, key: str) -> dict[str, Any]:
        counts = self._counts.get(key) or Counts()
        return {"delivered": counts.delivered, "failed": counts.failed, "last_delivery": counts.last_delivery,
                "last_error": counts.last_error}
