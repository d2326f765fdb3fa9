"""The pure rules of poll-based invocation: what a batch response means, when a failed stream
batch is retried, split or given up, and how far a shard may be checkpointed.

No I/O here; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import orjson

MAX_BATCH_BYTES = 6 * 1024 * 1024  # a batch is one synchronous invocation: its payload limit


# ---- the function's answer ------------------------------------------------------------------
@dataclass(frozen=True)
class BatchResponse:
    """``failed`` is None when the whole batch failed, else the identifiers that failed
    (empty: every record succeeded)."""

    failed: frozenset[str] | None
    reason: str = ""

    @property
    def whole_batch_failed(self) -> bool:
        return self.failed is None


ALL_OK = BatchResponse(frozenset())


def read_response(function_error: str | None, payload: bytes, report_item_failures: bool,
                  identifiers: Iterable[str]) -> BatchResponse:
    """Lambda's reading of a batch invocation's result.

    A function error fails the whole batch. Without ``ReportBatchItemFailures`` any other
    answer is success. With it: an empty or null answer, or an empty/null ``batchItemFailures``,
    is success; a list of ``{"itemIdentifier": id}`` fails those items; anything malformed (not
    JSON, an identifier empty, null or not in the batch) fails the whole batch.
    """
    if function_error:
        return BatchResponse(None, "Function call failed")
    if not report_item_failures:
        return ALL_OK
    text = payload.strip()
    if not text or text == b"null":
        return ALL_OK
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return BatchResponse(None, "Invalid batch item failures response: not JSON")
    if document is None or not isinstance(document, dict):
        return ALL_OK if document in (None, "", []) else BatchResponse(None, "Invalid batch item failures response")
    failures = document.get("batchItemFailures")
    if failures is None or failures == []:
        return ALL_OK
    if not isinstance(failures, list):
        return BatchResponse(None, "Invalid batch item failures response: batchItemFailures is not a list")
    known = set(identifiers)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in known:
            return BatchResponse(None, f"Invalid batch item failures response: unknown itemIdentifier {identifier!r}")
        failed.add(identifier)
    return BatchResponse(frozenset(failed))


# ---- streams: retry, record age, bisect -------------------------------------------------------
RETRY = "retry"
BISECT = "bisect"
RETRIES_EXHAUSTED = "retries exhausted"
RECORD_TOO_OLD = "record age exceeded"


@dataclass(frozen=True)
class StreamFailurePolicy:
    max_retries: int  # -1: until the records expire
    max_record_age: int  # seconds; -1: no limit
    bisect: bool

    def expired(self, oldest_arrival: float, now: float) -> bool:
        return self.max_record_age != -1 and now - oldest_arrival > self.max_record_age

    def after_failure(self, size: int, retries_done: int, oldest_arrival: float, now: float) -> str:
        """What to do with a batch of ``size`` records that just failed, after ``retries_done``
        earlier retries of it. Splitting a batch does not count as a retry (as on Lambda)."""
        if self.expired(oldest_arrival, now):
            return RECORD_TOO_OLD
        if self.bisect and size > 1:
            return BISECT
        if self.max_retries != -1 and retries_done >= self.max_retries:
            return RETRIES_EXHAUSTED
        return RETRY


def retry_delay(retries_done: int) -> float:
    """Backoff between retries of one stream batch: 0.5 s doubling to at most 30 s."""
    return min(30.0, 0.5 * (2 ** min(retries_done, 8)))


def halves(items: Sequence[object]) -> tuple[Sequence[object], Sequence[object]]:
    middle = (len(items) + 1) // 2
    return items[:middle], items[middle:]


# ---- checkpoints with parallel lanes ---------------------------------------------------------
class Watermark:
    """How far a shard may be checkpointed when batches of it finish out of order.

    Records are registered in the order they were read; each is marked done when its batch
    succeeded or was given up. The watermark is the last record before the first not done.
    """

    def __init__(self) -> None:
        self._order: list[str] = []
        self._done: set[str] = set()
        self._start = 0

    def register(self, positions: Iterable[str]) -> None:
        self._order.extend(positions)

    def done(self, positions: Iterable[str]) -> str | None:
        """Mark ``positions`` done; return the new checkpoint, or None when it did not move."""
        self._done.update(positions)
        moved = None
        while self._start < len(self._order) and self._order[self._start] in self._done:
            moved = self._order[self._start]
            self._done.discard(moved)
            self._start += 1
        if self._start > 4096:  # keep the list short
            del self._order[: self._start]
            self._start = 0
        return moved

    @property
    def pending(self) -> int:
        return len(self._order) - self._start
