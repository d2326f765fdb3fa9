"""Ordered streams as event sources (Kinesis, DynamoDB Streams): one reader per shard, up to
``ParallelizationFactor`` batches of a shard at once (records of one partition key always in
the same lane, so in order), checkpoints after success, retries, record age, bisection and
on-failure records as on Lambda.

A shard's checkpoint is the last record before the first one not yet done (``Watermark``), so
a crash re-delivers from there: at least once, in order per key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from squall.async_invoke.destinations import DeliveryError
from squall.sources.aws import describe
from squall.sources.batches import (
    BISECT,
    MAX_BATCH_BYTES,
    RECORD_TOO_OLD,
    RETRY,
    StreamFailurePolicy,
    Watermark,
    halves,
    retry_delay,
)
from squall.sources.mapping import EventSourceMapping
from squall.sources.poller import PROBLEM_RETRY_SECONDS, Poller, PollerDeps, log
from squall.sources.windows import Window, split_by_window, window_start

CHECKPOINT_INTERVAL = 0.5  # under load a shard's checkpoint is written at most this often
IDLE_POLL_SECONDS = 0.25  # an empty shard is read again after this long (Kinesis allows 5 reads/s)
SHARD_SCAN_SECONDS = 10.0  # new shards (resharding) are looked for this often


@dataclass(frozen=True)
class StreamRecord:
    position: str  # the sequence number
    key: str  # what orders records (partition key, item key)
    arrival: float  # epoch seconds
    record: dict[str, Any]  # as Lambda's event shows it
    view: dict[str, Any]  # what filters see
    size: int


class StreamClient(ABC):
    """Reads of one stream. Each method may be blocking (it is then called in the sources'
    thread pool) or a coroutine function (awaited on the server's loop): override either way."""

    batch_info_key: str  # "KinesisBatchInfo" or "DDBStreamBatchInfo"
    max_read: int  # the most records one read may ask for
    supports_timestamp = False  # AT_TIMESTAMP iterators

    @abstractmethod
    def shards(self) -> list[str]: ...

    @abstractmethod
    def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> Any:
        """Where to read ``shard`` from: after the checkpoint ``after``, else at ``start``."""

    @abstractmethod
    def read(self, shard: str, iterator: Any, limit: int) -> tuple[list[StreamRecord], Any, float | None]:
        """(records, next iterator or None when the shard is closed and read, ms behind the tip)."""

    def acknowledge(self, shard: str, positions: list[str]) -> None:
        """A batch is done (succeeded, or given up and recorded): brokers that track their
        consumers (Redis consumer groups, JetStream durable consumers) are told here."""

    def checkpointed(self, shard: str, position: str) -> None:
        """Everything of ``shard`` up to ``position`` is done and checkpointed in Squall's store
        (the watermark over all lanes): a source that keeps its own position (a replication
        slot) may advance it here."""

    def close(self) -> None:
        """Release connections (called once, when the poller stops)."""

    def forget(self) -> None:
        """The mapping was deleted: remove what the source keeps for it (consumer groups,
        durable consumers, replication slots). Called after ``close``."""


class IteratorExpired(Exception):
    pass



def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Checkpoints:
    """A shard's checkpoint, written when its lanes go idle or at most every CHECKPOINT_INTERVAL
    under load (one database write per batch would bound a shard to a few hundred batches a
    second). What is not written yet is only delivered again after a crash: at least once."""

    def __init__(self, poller: StreamPoller, shard: str) -> None:
        self.poller = poller
        self.shard = shard
        self.pending: str | None = None
        self.written_at = 0.0

    def note(self, position: str) -> None:
        self.pending = position

    def due(self) -> bool:
        return self.pending is not None and time.monotonic() - self.written_at >= CHECKPOINT_INTERVAL

    async def flush(self) -> bool:
        """Write what is pending; False when the mapping is gone."""
        position, self.pending = self.pending, None
        if position is None:
            return True
        self.written_at = time.monotonic()
        if not await self.poller._checkpoint(self.shard, position):
            return False
        await self.poller._call(self.poller.stream.checkpointed, self.shard, position)
        return True


class StreamPoller(Poller):
    def __init__(self, mapping: EventSourceMapping, deps: PollerDeps, stream: StreamClient) -> None:
        super().__init__(mapping, deps)
        self.stream = stream
        self._positions = deps.positions
        self._checkpoint = deps.checkpoint
        self._send = deps.send
        self.policy = StreamFailurePolicy(self.settings.max_retries, self.settings.max_record_age, self.settings.bisect)
        self._behind: dict[str, float] = {}

    async def run(self) -> None:
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            while not self.stopping.is_set():
                try:
                    shards = await self._call(self.stream.shards)
                    known = await self._positions()
                except Exception as error:
                    self.report(f"PROBLEM: Cannot read the stream {self.source.arn}: {describe(error)}")
                    await self.pause(PROBLEM_RETRY_SECONDS)
                    continue
                for shard in shards:
                    task = tasks.get(shard)
                    if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
                        # A reader that failed unexpectedly starts again from the last checkpoint.
                        log.error("event source mapping %s: reading %s failed: %r", self.mapping.uuid, shard,
                                  task.exception())
                        self.report(f"PROBLEM: Internal error reading {shard}: {task.exception()!r}")
                        task = None
                    if task is None:
                        tasks[shard] = asyncio.get_running_loop().create_task(self._shard(shard, known.get(shard)))
                self.stats.pollers = sum(1 for t in tasks.values() if not t.done()) * self.settings.parallelization
                failed = any(t.done() and not t.cancelled() and t.exception() is not None for t in tasks.values())
                await self.pause(1.0 if failed else SHARD_SCAN_SECONDS)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await self._call(self.stream.close)

    # ---- one shard ---------------------------------------------------------------------------
    async def _shard(self, shard: str, checkpoint: str | None) -> None:
        lanes = [asyncio.Queue[StreamRecord | None]() for _ in range(self.settings.parallelization)]
        watermark = Watermark()
        marks = _Checkpoints(self, shard)
        workers = [asyncio.get_running_loop().create_task(self._lane(shard, q, watermark, marks)) for q in lanes]
        last_read = checkpoint
        iterator: Any = None
        try:
            while not self.stopping.is_set():
                if any(w.done() for w in workers):
                    break  # a lane stopped (its function error could not be resolved yet): stop reading
                if watermark.pending > self.settings.batch_size * self.settings.parallelization * 4:
                    await self.pause(0.05)  # enough read ahead
                    continue
                try:
                    if iterator is None:
                        start, at = self._start()
                        iterator = await self._call(self.stream.iterator, shard, last_read, start, at)
                        if iterator is None:
                            break
                    limit = min(self.stream.max_read, self.settings.batch_size * self.settings.parallelization)
                    records, iterator, behind = await self._call(self.stream.read, shard, iterator, limit)
                except IteratorExpired:
                    iterator = None
                    continue
                except Exception as error:
                    self.report(f"PROBLEM: Reading shard {shard} failed: {describe(error)}")
                    iterator = None
                    await self.pause(PROBLEM_RETRY_SECONDS)
                    continue
                if behind is not None:
                    self._behind[shard] = behind
                    self.stats.lag = max(self._behind.values())
                if records:
                    last_read = records[-1].position
                    watermark.register(r.position for r in records)
                    for record in records:
                        lanes[zlib.crc32(record.key.encode()) % len(lanes)].put_nowait(record)
                if iterator is None:  # the shard is closed and every record of it was read
                    for q in lanes:
                        q.put_nowait(None)
                    await asyncio.gather(*workers, return_exceptions=True)
                    return
                if not records:
                    await self.pause(IDLE_POLL_SECONDS)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            try:
                await marks.flush()  # what the lanes finished before they stopped
            except Exception as error:  # delivered again after a restart: at least once
                log.warning("event source mapping %s: checkpoint of %s not written: %r", self.mapping.uuid, shard, error)

    async def forget(self) -> None:
        await self._call(self.stream.forget)

    async def _call(self, fn: Any, *args: Any) -> Any:
        """A client method: awaited when it is a coroutine function, else run in the pool."""
        if asyncio.iscoroutinefunction(fn):
            return await fn(*args)
        return await self.clients.call(fn, *args)

    def _start(self) -> tuple[str, float | None]:
        """Where a shard without a checkpoint is read from. LATEST means "from when the mapping
        was created" where the stream can say so, so that a restart before the first checkpoint
        does not skip what arrived meanwhile."""
        start = self.settings.starting_position or "TRIM_HORIZON"
        if start == "LATEST" and self.settings.created_at is not None and self.stream.supports_timestamp:
            return "AT_TIMESTAMP", self.settings.created_at
        return start, self.settings.starting_timestamp

    async def _lane(self, shard: str, queue: asyncio.Queue[StreamRecord | None], watermark: Watermark,
                    marks: _Checkpoints) -> None:
        window: Window | None = None  # tumbling windows: the open one
        tumbling = self.settings.tumbling_window
        while not self.stopping.is_set():
            batch, ended = await self._gather(queue, window.end if window else None)
            if tumbling and window is not None and (ended or time.time() >= window.end or (
                    batch and window_start(batch[0].arrival, tumbling) > window.start)):
                if not await self._close_window(shard, window):
                    return
                window = None
            runs = split_by_window([r.arrival for r in batch], tumbling) if tumbling else [(0.0, 0, len(batch))]
            for start, first, end in runs if batch else ():
                part = batch[first:end]
                if tumbling:
                    if window is not None and window.start != start:
                        if not await self._close_window(shard, window):
                            return
                        window = None
                    window = window or Window(start, tumbling)
                if not await self._handle(shard, part, window):
                    return  # stopping: not done, so not checkpointed
                await self._call(self.stream.acknowledge, shard, [r.position for r in part])
                moved = watermark.done(r.position for r in part)
                if moved is not None:
                    marks.note(moved)
                if (queue.empty() or marks.due()) and not await marks.flush():
                    return
            if ended:
                if window is not None:
                    await self._close_window(shard, window)
                return

    async def _close_window(self, shard: str, window: Window) -> bool:
        """The last invocation of a window: no records, its state, isFinalInvokeForWindow."""
        retries = 0
        while not self.stopping.is_set():
            payload = orjson.dumps({"Records": [], **window.envelope(shard, self.source.arn, final=True)})
            outcome = await self.invoker.invoke(self.ref, payload, False, [])
            if outcome.response is not None and not outcome.response.whole_batch_failed:
                self.stats.invocations += 1
                return True
            if outcome.response is not None:
                self.stats.failed_invocations += 1
                if self.settings.max_retries != -1 and retries >= self.settings.max_retries:
                    log.warning("event source mapping %s: the final invocation of window %s of %s failed; "
                                "its state is dropped", self.mapping.uuid, window.start, shard)
                    return True
                retries += 1
            await self.pause(retry_delay(retries))
        return False

    async def _gather(self, queue: asyncio.Queue[StreamRecord | None],
                      until: float | None = None) -> tuple[list[StreamRecord], bool]:
        """The next batch of a lane; empty when ``until`` (epoch seconds) passes with none."""
        loop = asyncio.get_running_loop()
        if until is None:
            first = await queue.get()
        elif not queue.empty():
            first = queue.get_nowait()
        else:
            try:
                first = await asyncio.wait_for(queue.get(), max(0.001, until - time.time()))
            except asyncio.TimeoutError:
                return [], False
        if first is None:
            return [], True
        batch, size = [first], first.size
        deadline = loop.time() + self.settings.window_seconds
        while len(batch) < self.settings.batch_size:
            try:
                if queue.empty() and self.settings.window_seconds and loop.time() < deadline:
                    record = await asyncio.wait_for(queue.get(), deadline - loop.time())
                else:
                    record = queue.get_nowait()
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if record is None:
                return batch, True
            if size + record.size > MAX_BATCH_BYTES * 0.9:
                # Too big for this batch: it starts the next (put back at the front).
                rest = [record]
                while not queue.empty():
                    rest.append(queue.get_nowait())  # type: ignore[arg-type]
                for r in rest:
                    queue.put_nowait(r)
                break
            batch.append(record)
            size += record.size
        return batch, False

    async def _handle(self, shard: str, records: list[StreamRecord], window: Window | None = None) -> bool:
        """Run one batch to its end (success, or given up and recorded). False when stopped first.
        In a tumbling window, the event carries the window's state and the answer's state is kept."""
        filters = self.settings.filters
        kept = records if filters.empty else [r for r in records if filters.matches(r.view)]
        self.stats.filtered += len(records) - len(kept)
        work: list[tuple[list[StreamRecord], int]] = [(kept, 0)] if kept else []
        while work:
            batch, retries = work.pop(0)
            now = time.time()
            oldest = min(r.arrival for r in batch)
            if self.policy.expired(oldest, now):
                if not await self._give_up(shard, batch, RECORD_TOO_OLD, retries, None):
                    return False
                continue
            event: dict[str, Any] = {"Records": [r.record for r in batch]}
            if window is not None:
                event.update(window.envelope(shard, self.source.arn, final=False))
            payload = orjson.dumps(event)
            outcome = await self.invoker.invoke(self.ref, payload, self.settings.report_item_failures,
                                                [r.position for r in batch])
            if outcome.response is None:  # not invoked: throttled, or the function is missing
                if outcome.throttled:
                    self.stats.throttles += 1
                    await self.invoker.wait_for_slot(self.ref.name, self.stopping, limit=5.0)
                else:
                    self.report(f"PROBLEM: {outcome.problem}")
                    await self.invoker.wait_for_function(self.ref, self.stopping)
                if self.stopping.is_set():
                    return False
                work.insert(0, (batch, retries))
                continue
            self.stats.invocations += 1
            self.stats.records += len(batch)
            response = outcome.response
            if not response.whole_batch_failed and not response.failed:
                self.report("OK")
                if window is not None and outcome.result is not None:
                    window.take_state(outcome.result.payload)
                continue
            self.stats.failed_invocations += 1
            if not response.whole_batch_failed:
                # Partial: everything before the first failed record is done; retry from it.
                first = min(i for i, r in enumerate(batch) if r.position in response.failed)  # type: ignore[operator]
                batch = batch[first:]
            self.report(f"PROBLEM: {response.reason or 'Function call failed'}")
            decision = self.policy.after_failure(len(batch), retries, oldest, time.time())
            if decision == RETRY:
                await self.pause(retry_delay(retries))
                if self.stopping.is_set():
                    return False
                work.insert(0, (batch, retries + 1))
            elif decision == BISECT:
                first_half, second_half = halves(batch)
                work[0:0] = [(list(first_half), retries), (list(second_half), retries)]  # type: ignore[arg-type]
            elif not await self._give_up(shard, batch, decision, retries, outcome):
                return False
        return True

    async def _give_up(self, shard: str, batch: list[StreamRecord], condition: str, retries: int, outcome: Any) -> bool:
        """Send the on-failure record (when there is a destination), retrying until it is sent:
        the records count as done only then."""
        target = self.settings.on_failure
        if not target:
            self.stats.records_dropped += len(batch)
            log.warning("event source mapping %s: %d record(s) of %s dropped (%s)", self.mapping.uuid, len(batch),
                        shard, condition)
            return True
        body = orjson.dumps(self._failure_record(shard, batch, condition, retries, outcome))
        attempt = 0
        while not self.stopping.is_set():
            try:
                await self._send(target, body)
                self.stats.records_to_destination += len(batch)
                return True
            except DeliveryError as error:
                self.report(f"PROBLEM: On-failure destination {target}: {error}")
                attempt += 1
                await self.pause(retry_delay(attempt))
        return False

    def _failure_record(self, shard: str, batch: list[StreamRecord], condition: str, retries: int, outcome: Any) -> dict[str, Any]:
        result = outcome.result if outcome is not None else None
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": result.executed_version if result else "$LATEST"}
        if result is not None and result.function_error:
            response["functionError"] = result.function_error
        return {
            "requestContext": {
                "requestId": outcome.request_id if outcome is not None else str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": "RetryAttemptsExhausted" if condition != RECORD_TOO_OLD else "RecordAgeExceeded",
                "approximateInvokeCount": retries + 1,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(time.time()),
            self.stream.batch_info_key: {
                "shardId": shard,
                "startSequenceNumber": batch[0].position,
                "endSequenceNumber": batch[-1].position,
                "approximateArrivalOfFirstRecord": _iso(batch[0].arrival),
                "approximateArrivalOfLastRecord": _iso(batch[-1].arrival),
                "batchSize": len(batch),
                "streamArn": self.source.arn,
            },
        }
