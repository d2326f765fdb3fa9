"""Amazon SQS as an event source: long polling, batches, visibility kept while a batch runs,
delete on success, partial batch failures; the queue's redrive policy does the rest.

Pollers scale out while the queue has messages (a poll that brought a batch starts another
poller, up to ``ScalingConfig.MaximumConcurrency``, else up to what admission allows) and scale
back in when polls come back empty. No poller receives messages while its function has no free
concurrency slot, so messages wait in the queue, not in Squall.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import orjson

from squall.errors import InvalidParameterValue
from squall.sources.aws import LONG_POLL_SECONDS, describe
from squall.sources.batches import MAX_BATCH_BYTES
from squall.sources.filters import sqs_view
from squall.sources.mapping import EventSourceMapping, Source
from squall.sources.poller import PROBLEM_RETRY_SECONDS, Poller, PollerDeps, log

DEFAULT_MAX_POLLERS = 1000
RECEIVE_MAX = 10  # SQS gives at most 10 messages per ReceiveMessage


def lambda_record(message: dict[str, Any], source_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda's event shows it."""
    attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        binary = value.get("BinaryValue")
        attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> SqsPoller:
    return SqsPoller(mapping, deps)


async def check(source: Source, deps: PollerDeps, function_timeout: int | None) -> None:
    """As on Lambda: the queue must exist, and its visibility timeout must not be shorter than
    the function's timeout."""
    clients = deps.clients
    try:
        client = clients.client("sqs", source.region)
        url = (await clients.call(client.get_queue_url, QueueName=source.name,
                                  QueueOwnerAWSAccountId=source.account))["QueueUrl"]
        attrs = (await clients.call(client.get_queue_attributes, QueueUrl=url,
                                    AttributeNames=["VisibilityTimeout"]))["Attributes"]
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: {describe(error)}. Check that it exists at the "
            f"configured endpoint ({clients.endpoint or 'AWS'}).") from None
    visibility = int(attrs.get("VisibilityTimeout", 30))
    if function_timeout is not None and visibility < function_timeout:
        raise InvalidParameterValue(
            f"Queue visibility timeout: {visibility} seconds is less than Function timeout: {function_timeout} seconds")


class SqsPoller(Poller):
    async def run(self) -> None:
        client = self.clients.client("sqs", self.source.region)
        while not self.stopping.is_set():
            try:
                self.url = (await self.clients.call(
                    client.get_queue_url, QueueName=self.source.name, QueueOwnerAWSAccountId=self.source.account))["QueueUrl"]
                attrs = (await self.clients.call(client.get_queue_attributes, QueueUrl=self.url,
                                                 AttributeNames=["VisibilityTimeout"]))["Attributes"]
                self.visibility = int(attrs.get("VisibilityTimeout", 30))
                break
            except Exception as error:  # the queue is missing or the endpoint is down: say so, try again
                self.report(f"PROBLEM: Cannot read the queue {self.source.arn}: {describe(error)}")
                log.warning("event source mapping %s: %s", self.mapping.uuid, describe(error))
                await self.pause(PROBLEM_RETRY_SECONDS)
        self.client = client
        self._workers: set[asyncio.Task[None]] = set()
        self._limit = self.settings.max_concurrency or DEFAULT_MAX_POLLERS
        self._spawn()
        lag_task = asyncio.get_running_loop().create_task(self._watch_lag())
        try:
            await self.stopping.wait()
        finally:
            lag_task.cancel()
            for task in list(self._workers):
                task.cancel()
            await asyncio.gather(*self._workers, lag_task, return_exceptions=True)

    def _spawn(self) -> None:
        if len(self._workers) >= self._limit or self.stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._worker())
        self._workers.add(task)
        self.stats.pollers = len(self._workers)

        def done(t: asyncio.Task[None]) -> None:
            self._workers.discard(t)
            self.stats.pollers = len(self._workers)
            if not t.cancelled() and t.exception() is not None:
                log.error("event source mapping %s: poller failed: %r", self.mapping.uuid, t.exception())
                if not self.stopping.is_set() and not self._workers:
                    self._spawn()

        task.add_done_callback(done)

    async def _watch_lag(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):
                attrs = (await self.clients.call(self.client.get_queue_attributes, QueueUrl=self.url,
                                                 AttributeNames=["ApproximateNumberOfMessages"]))["Attributes"]
                self.stats.lag = float(attrs.get("ApproximateNumberOfMessages", 0))
            await self.pause(5.0)

    # ---- one poller -------------------------------------------------------------------------
    async def _worker(self) -> None:
        while not self.stopping.is_set():
            if not await self.invoker.wait_for_slot(self.ref.name, self.stopping):
                continue
            messages = await self._collect()
            if self.stopping.is_set():
                await self._release(messages)
                return
            if not messages:
                if len(self._workers) > 1:
                    return  # the queue is drained: scale in
                continue
            if len(messages) >= min(self.settings.batch_size, RECEIVE_MAX):
                self._spawn()  # there is a backlog: scale out
            await self._process(messages)

    async def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().run_in_executor(self.clients.executor, lambda: self.client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=count, WaitTimeSeconds=wait,
            AttributeNames=["All"], MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]))
        try:
            response = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stopped mid-poll: whatever the poll still brings goes straight back to the queue.
            future.add_done_callback(lambda f: self._release_later(f))
            raise
        except Exception as error:
            self.report(f"PROBLEM: ReceiveMessage failed: {describe(error)}")
            await self.pause(1.0)
            return []
        return list(response.get("Messages") or [])

    def _release_later(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        messages = future.result().get("Messages") or []
        if messages:
            self.clients.executor.submit(self._release_now, messages)

    async def _collect(self) -> list[dict[str, Any]]:
        """One batch: up to BatchSize messages, gathered for at most the batching window."""
        loop = asyncio.get_running_loop()
        window = self.settings.window_seconds
        deadline = loop.time() + window
        batch: list[dict[str, Any]] = []
        size = 0
        while len(batch) < self.settings.batch_size and not self.stopping.is_set():
            left = deadline - loop.time()
            wait = LONG_POLL_SECONDS if not batch and window == 0 else max(0, min(LONG_POLL_SECONDS, int(left)))
            if batch and (window == 0 or left <= 0):
                break
            got = await self._receive(min(RECEIVE_MAX, self.settings.batch_size - len(batch)), wait)
            for message in got:
                size += len(message.get("Body", "")) + 512
                batch.append(message)
            if size >= MAX_BATCH_BYTES * 0.9 or (not got and not batch and window == 0):
                break
            if not got and loop.time() >= deadline:
                break
        return batch

    async def _process(self, messages: list[dict[str, Any]]) -> None:
        arn, region = self.source.arn, self.source.region
        records = [lambda_record(m, arn, region) for m in messages]
        keep: list[dict[str, Any]] = []
        filtered: list[dict[str, Any]] = []
        filters = self.settings.filters
        for record in records:
            (keep if filters.empty or filters.matches(sqs_view(record)) else filtered).append(record)
        if filtered:  # as on Lambda: a message no filter matches is deleted
            self.stats.filtered += len(filtered)
            await self._delete(filtered)
        if not keep:
            return
        payload = orjson.dumps({"Records": keep})
        while len(payload) > MAX_BATCH_BYTES and len(keep) > 1:  # leave the rest for a later batch
            back, keep = keep[len(keep) // 2:], keep[: len(keep) // 2]
            await self._release_records(back)
            payload = orjson.dumps({"Records": keep})
        heartbeat = asyncio.get_running_loop().create_task(self._keep_invisible(keep))
        try:
            while True:
                outcome = await self.invoker.invoke(self.ref, payload, self.settings.report_item_failures,
                                                    [r["messageId"] for r in keep])
                if not outcome.throttled or self.stopping.is_set():
                    break
                self.stats.throttles += 1
                await self.invoker.wait_for_slot(self.ref.name, self.stopping, limit=5.0)
        finally:
            heartbeat.cancel()
        response = outcome.response
        if response is not None:
            self.stats.invocations += 1
            self.stats.records += len(keep)
        if response is None:  # never ran (the function is missing): back to the queue at once
            self.report(f"PROBLEM: {outcome.problem}")
            await self._release_records(keep)
            await self.invoker.wait_for_function(self.ref, self.stopping)
            return
        if response.whole_batch_failed:
            self.stats.failed_invocations += 1
            self.report(f"PROBLEM: {response.reason}")
            return  # every message comes back after its visibility timeout; the redrive policy counts
        done = [r for r in keep if r["messageId"] not in response.failed]  # type: ignore[operator]
        if response.failed:
            self.stats.failed_invocations += 1
        await self._delete(done)
        self.report("OK")

    async def _keep_invisible(self, records: list[dict[str, Any]]) -> None:
        """While the function runs, extend the messages' visibility before it lapses."""
        every = max(1.0, self.visibility / 2)
        while True:
            await asyncio.sleep(every)
            entries = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": self.visibility}
                       for i, r in enumerate(records)]
            for start in range(0, len(entries), 10):
                with contextlib.suppress(Exception):
                    await self.clients.call(self.client.change_message_visibility_batch, QueueUrl=self.url,
                                            Entries=entries[start:start + 10])

    async def _delete(self, records: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records)]
        for start in range(0, len(entries), 10):
            try:
                await self.clients.call(self.client.delete_message_batch, QueueUrl=self.url,
                                        Entries=entries[start:start + 10])
            except Exception as error:  # they come back after their visibility timeout: at least once
                self.report(f"PROBLEM: DeleteMessageBatch failed: {describe(error)}")

    async def _release_records(self, records: list[dict[str, Any]]) -> None:
        await self.clients.call(self._release_now, [{"ReceiptHandle": r["receiptHandle"]} for r in records])

    async def _release(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            await self.clients.call(self._release_now, messages)

    def _release_now(self, messages: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                   for i, m in enumerate(messages)]
        for start in range(0, len(entries), 10):
            with contextlib.suppress(Exception):
                self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries[start:start + 10])
