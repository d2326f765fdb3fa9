"""RabbitMQ queues as an event source, in the shape of Lambda's Amazon MQ for RabbitMQ events.

A mapping names a broker from the ``event_source_brokers`` setting in its EventSourceArn
(``arn:aws:mq:<region>:<account>:broker:<broker>:<id>``), the queue in ``Queues`` and, through
a ``BASIC_AUTH`` SourceAccessConfiguration, the secret (``event_source_secrets``) to log in with.

As on Lambda, one batch runs at a time per mapping (Lambda gives a RabbitMQ mapping one
execution environment). The poller consumes with manual acknowledgements and a prefetch of
BatchSize, so the broker never hands Squall more than one batch of unacknowledged messages;
it waits for a concurrency slot before it takes a batch. A batch is acknowledged only after
the function succeeded; when the function fails (or cannot be invoked) the batch is returned
to the queue (``basic.nack`` with requeue), and the broker delivers it again with
``redelivered: true``. Messages that no filter matches are acknowledged (dropped), as on
Lambda. Whatever is unacknowledged when the poller stops or Squall dies goes back to the
queue when the connection closes, so every message is delivered at least once.

``MaximumBatchingWindowInSeconds`` counts from the first message of a batch. Lambda's default
window for Amazon MQ is 500 ms, which the API (whole seconds) shows as 0: a window of 0
gathers for at most ``DEFAULT_WINDOW`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import orjson

from squall.errors import InvalidParameterValue
from squall.sources.aws import describe
from squall.sources.batches import MAX_BATCH_BYTES
from squall.sources.brokers import Brokers
from squall.sources.mapping import EventSourceMapping, Settings, Source
from squall.sources.poller import PROBLEM_RETRY_SECONDS, Poller, PollerDeps, log

DEFAULT_WINDOW = 0.5  # seconds: Lambda's default batching window for Amazon MQ
FIRST_MESSAGE_WAIT = 1.0  # longest single wait for a message; a stop is noticed within this
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
LAG_EVERY = 5.0
MAX_RETRY_DELAY = 5.0  # between retries of a failed batch: 0.5 s doubling up to this

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---- the broker's address --------------------------------------------------------------------
def _aiormq() -> Any:
    try:
        import aiormq
    except ImportError:
        raise InvalidParameterValue(
            "RabbitMQ event sources need the aiormq package in Squall's environment (pip install aiormq).") from None
    return aiormq


def connection_url(url: str, credentials: tuple[str, str] | None) -> Any:
    """The broker's URL (a yarl URL) with the secret's user and password, when there is a secret."""
    from yarl import URL

    parsed = URL(url)
    if credentials is not None:
        parsed = parsed.with_user(credentials[0]).with_password(credentials[1])
    return parsed


def virtual_host(url: str) -> str:
    """The virtual host an amqp:// URL names: its path without the leading slash ("/" when empty)."""
    from yarl import URL

    path = URL(url).raw_path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _credentials(brokers: Brokers, settings: Settings | None) -> tuple[str, str] | None:
    return brokers.credentials(settings.secret) if settings is not None else None


async def _connect(url: Any) -> Any:
    return await asyncio.wait_for(_aiormq().connect(url), CONNECT_TIMEOUT)


async def _close(connection: Any) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)


# ---- the API's entry points ------------------------------------------------------------------
def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> RabbitMqPoller:
    return RabbitMqPoller(mapping, deps)


async def check(source: Source, deps: PollerDeps, function_timeout: int | None,
                settings: Settings | None = None) -> None:
    """The broker must be configured and let the secret's user in, and the queue must exist
    (a passive declare). Without ``settings`` (the queue and the secret are not in the ARN) only
    the broker's address is checked: that it is configured and answers."""
    url = deps.brokers.url(source.broker)
    if settings is None:
        await _check_reachable(source, url)
        return
    aiormq = _aiormq()
    credentials = _credentials(deps.brokers, settings)
    try:
        connection = await _connect(connection_url(url, credentials))
    except (aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.AuthenticationError) as error:
        who = f"the user of {settings.secret}" if settings.secret else "the URL's user (no BASIC_AUTH secret given)"
        raise InvalidParameterValue(
            f"The RabbitMQ broker {source.broker!r} ({url}) refused {who}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any failure to connect is the user's to see
        raise InvalidParameterValue(
            f"Cannot connect to the RabbitMQ broker {source.broker!r} at {url}: {describe(error)}. Check the "
            f"event_source_brokers setting, the virtual host and that the broker is running.") from None
    try:
        for queue in settings.queues:
            channel = await connection.channel()
            try:
                await channel.queue_declare(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise InvalidParameterValue(
                    f"The queue {queue!r} does not exist in virtual host {virtual_host(url)!r} of the RabbitMQ broker "
                    f"{source.broker!r} ({url}). Declare it first.") from None
            except aiormq.exceptions.ChannelAccessRefused as error:
                raise InvalidParameterValue(
                    f"The broker's user may not read the queue {queue!r} on {source.broker!r}: {error}") from None
            await channel.close()
    finally:
        await _close(connection)


async def _check_reachable(source: Source, url: str) -> None:
    from yarl import URL

    parsed = URL(url)
    host, port = parsed.host or "localhost", parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - any failure to connect is the user's to see
        raise InvalidParameterValue(
            f"Cannot connect to the RabbitMQ broker {source.broker!r} at {url}: {describe(error)}.") from None
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


# ---- Lambda's event ------------------------------------------------------------------------
def _timestamp(value: Any) -> str | None:
    """A timestamp as Lambda's RabbitMQ events show it (``Jan 1, 1970, 12:33:41 AM``, UTC)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    hour = value.hour % 12 or 12
    return (f"{_MONTHS[value.month - 1]} {value.day}, {value.year}, {hour}:{value.minute:02d}:{value.second:02d} "
            f"{'AM' if value.hour < 12 else 'PM'}")


def _header(value: Any) -> Any:
    """A header value as Lambda shows it: strings as their UTF-8 bytes (``{"bytes": [...]}``)."""
    if isinstance(value, str):
        return {"bytes": list(value.encode("utf-8"))}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": list(bytes(value))}
    if isinstance(value, dict):
        return {str(k): _header(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_header(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return _timestamp(value)
    return value


def lambda_message(message: Any) -> dict[str, Any]:
    """One delivered message (aiormq's ``DeliveredMessage``) as Lambda's event shows it."""
    p = message.header.properties
    return {
        "basicProperties": {
            "contentType": p.content_type,
            "contentEncoding": p.content_encoding,
            "headers": _header(dict(p.headers or {})),
            "deliveryMode": p.delivery_mode,
            "priority": p.priority,
            "correlationId": p.correlation_id,
            "replyTo": p.reply_to,
            "expiration": p.expiration,
            "messageId": p.message_id,
            "timestamp": _timestamp(p.timestamp),
            "type": p.message_type,
            "userId": p.user_id,
            "appId": p.app_id,
            "clusterId": p.cluster_id or None,
            "bodySize": len(message.body),
        },
        "redelivered": bool(message.delivery.redelivered),
        "data": base64.b64encode(message.body).decode(),
    }


def lambda_event(source_arn: str, queue: str, vhost: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eventSource": "aws:rmq", "eventSourceArn": source_arn, "rmqMessagesByQueue": {f"{queue}::{vhost}": records}}


def filter_view(body: bytes) -> dict[str, Any]:
    """What filters see of a message: Lambda filters Amazon MQ messages on ``data`` only, the body
    decoded as UTF-8 and parsed when it is a JSON object or array, else the plain text (a body
    that is not UTF-8 stays base64)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"data": base64.b64encode(body).decode()}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"data": text}
    return {"data": parsed if isinstance(parsed, (dict, list)) else text}


# ---- the poller ------------------------------------------------------------------------------
class _Gone(ConnectionError):
    """The channel closed or the broker cancelled the consumer: connect again."""


class RabbitMqPoller(Poller):
    def __init__(self, mapping: EventSourceMapping, deps: PollerDeps) -> None:
        super().__init__(mapping, deps)
        self.brokers = deps.brokers
        self.queue = self.settings.queues[0]
        self._held: list[Any] = []  # delivered, not yet in a batch (a batch too big for one payload)
        self._failures = 0

    async def run(self) -> None:
        self.stats.pollers = 1
        try:
            while not self.stopping.is_set():
                try:
                    await self._session()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as error:  # noqa: BLE001 - reported, then connect again
                    if self.stopping.is_set():
                        break
                    reason = error.message if isinstance(error, InvalidParameterValue) else describe(error)
                    self.report(f"PROBLEM: RabbitMQ queue {self.queue!r} on broker {self.source.broker!r}: {reason}")
                    log.warning("event source mapping %s: %s", self.mapping.uuid, reason)
                    await self.pause(PROBLEM_RETRY_SECONDS)
        finally:
            self.stats.pollers = 0

    async def _session(self) -> None:
        """One connection: consume until stopped or the connection fails. Closing it (always, in
        ``finally``) returns every message not acknowledged yet to the queue."""
        url = self.brokers.url(self.source.broker)
        self.vhost = virtual_host(url)
        connection = await _connect(connection_url(url, _credentials(self.brokers, self.settings)))
        self._held = []
        lag: asyncio.Task[None] | None = None
        try:
            channel = await connection.channel()
            await channel.basic_qos(prefetch_count=self.settings.batch_size)
            declared = await channel.queue_declare(self.queue, passive=True)
            self.stats.lag = float(declared.message_count or 0)
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            consumer = (await channel.basic_consume(self.queue, inbox.put, no_ack=False)).consumer_tag
            lag = asyncio.get_running_loop().create_task(self._watch_lag(channel))
            while not self.stopping.is_set():
                self._alive(connection, channel, consumer)
                if not await self.invoker.wait_for_slot(self.ref.name, self.stopping):
                    continue
                batch = await self._collect(inbox, connection, channel, consumer)
                if self.stopping.is_set():
                    return
                if batch:
                    await self._process(channel, batch)
        finally:
            if lag is not None:
                lag.cancel()
            await _close(connection)

    def _alive(self, connection: Any, channel: Any, consumer: str) -> None:
        if connection.is_closed or channel.is_closed:
            raise _Gone("the connection to the broker closed")
        if consumer not in channel.consumers:
            raise _Gone("the broker cancelled the consumer (was the queue deleted?)")

    async def _watch_lag(self, channel: Any) -> None:
        while not self.stopping.is_set():
            await self.pause(LAG_EVERY)
            with contextlib.suppress(Exception):
                declared = await channel.queue_declare(self.queue, passive=True)
                self.stats.lag = float(declared.message_count or 0)

    async def _collect(self, inbox: asyncio.Queue[Any], connection: Any, channel: Any, consumer: str) -> list[Any]:
        """Up to BatchSize messages, gathered for at most the batching window after the first."""
        loop = asyncio.get_running_loop()
        window = self.settings.window_seconds or DEFAULT_WINDOW
        batch, self._held = self._held, []
        deadline = loop.time() + window if batch else None
        while len(batch) < self.settings.batch_size and not self.stopping.is_set():
            self._alive(connection, channel, consumer)
            if not inbox.empty():
                batch.append(inbox.get_nowait())
            else:
                wait = FIRST_MESSAGE_WAIT if deadline is None else min(FIRST_MESSAGE_WAIT, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(inbox.get(), wait))
                except TimeoutError:
                    if deadline is None:
                        return batch  # nothing yet: look at stopping and the concurrency slot again
                    continue
            if deadline is None:
                deadline = loop.time() + window
        return batch

    async def _process(self, channel: Any, batch: list[Any]) -> None:
        keep: list[tuple[Any, dict[str, Any]]] = []
        filters = self.settings.filters
        for message in batch:
            if filters.empty or filters.matches(filter_view(message.body)):
                keep.append((message, lambda_message(message)))
            else:  # as on Lambda: a message no filter matches is acknowledged and gone
                self.stats.filtered += 1
                await channel.basic_ack(message.delivery_tag)
        if not keep:
            return
        payload = orjson.dumps(lambda_event(self.source.arn, self.queue, self.vhost, [r for _, r in keep]))
        while len(payload) > MAX_BATCH_BYTES and len(keep) > 1:  # the rest waits (unacknowledged) for the next batch
            keep, back = keep[: len(keep) // 2], keep[len(keep) // 2:]
            self._held = [m for m, _ in back] + self._held
            payload = orjson.dumps(lambda_event(self.source.arn, self.queue, self.vhost, [r for _, r in keep]))
        messages = [m for m, _ in keep]
        while True:
            outcome = await self.invoker.invoke(self.ref, payload, False, [str(m.delivery_tag) for m in messages])
            if not outcome.throttled or self.stopping.is_set():
                break
            self.stats.throttles += 1
            await self.invoker.wait_for_slot(self.ref.name, self.stopping, limit=5.0)
        response = outcome.response
        if response is not None:
            self.stats.invocations += 1
            self.stats.records += len(messages)
        if response is None or response.whole_batch_failed:
            # Back to the queue: the broker delivers the batch again, marked redelivered.
            if response is None:
                self.report(f"PROBLEM: {outcome.problem}")
            else:
                self.stats.failed_invocations += 1
                self.report(f"PROBLEM: {response.reason}")
            await self._settle(channel, messages, ack=False)
            self._failures += 1
            if not self.stopping.is_set():
                await self.pause(min(MAX_RETRY_DELAY, 0.5 * 2 ** min(self._failures - 1, 8)))
            return
        self._failures = 0
        await self._settle(channel, messages, ack=True)
        self.report("OK")

    async def _settle(self, channel: Any, messages: list[Any], ack: bool) -> None:
        """Acknowledge (or return to the queue) ``messages``: with one ``multiple`` frame when no
        other unsettled delivery has a lower tag than the last of them, else one by one. A
        failure here leaves them unacknowledged: they come back when the channel closes."""
        tags = sorted(m.delivery_tag for m in messages)
        last = tags[-1]
        together = all(m.delivery_tag > last for m in self._held)
        try:
            for tag in ([last] if together else tags):
                if ack:
                    await channel.basic_ack(tag, multiple=together)
                else:
                    await channel.basic_nack(tag, multiple=together, requeue=True)
        except Exception as error:
            self.report(f"PROBLEM: cannot {'acknowledge' if ack else 'return'} messages: {describe(error)}")
            raise _Gone(str(error)) from error
