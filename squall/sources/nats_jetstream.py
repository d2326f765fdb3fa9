"""NATS JetStream streams as an ordered event source (nats-py, on the server's event loop).

A mapping reads one stream, ``arn:aws:nats:<region>:<account>:<broker>/stream/<stream>``, where
``<broker>`` names a URL (``nats://host:4222``) in the ``event_source_brokers`` setting. The
stream is one shard, ``shardId-000000000000``; a record's position is its stream sequence
number, its partition key its subject (so each subject keeps its order across the lanes of
ParallelizationFactor). Records are Kinesis-shaped (``eventSource`` ``squall:nats``).

Each mapping has its own durable pull consumer, ``squall-<mapping UUID>`` (explicit acks). A
message is acknowledged once its batch is done: the function succeeded, or the message was
given up (retries, record age) and recorded. Each time a poller starts, the consumer is made
anew from the first message not known to be done, so that what was delivered but never
acknowledged comes back first and in order (JetStream alone would redeliver it only after the
ack wait, behind newer messages). That point is the first message after Squall's checkpoint;
without one, after the consumer's ack floor; without acks, the consumer's own start; without a
consumer, StartingPosition (TRIM_HORIZON: the stream's first message; LATEST: the message after
the stream's last one when the poller first runs; AT_TIMESTAMP: the first message stored then).

Within a run the consumer's delivery sequence must have no gap: a gap (a delivery lost while
the connection dropped) or a lost connection makes the consumer anew from the first message
handed out and not yet acknowledged. Messages delivered twice are handed out once: a run's
stream sequence never goes back. Messages held longer than a while get "in progress" acks, so
JetStream does not redeliver them meanwhile. The consumer is deleted with the mapping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from squall.errors import InvalidParameterValue
from squall.sources.brokers import Brokers
from squall.sources.filters import kinesis_view
from squall.sources.mapping import EventSourceMapping, Source
from squall.sources.poller import PollerDeps
from squall.sources.streams import (
    IteratorExpired,
    StreamClient,
    StreamPoller,
    StreamRecord,
)

log = logging.getLogger("squall.sources")

SHARD = "shardId-000000000000"  # a stream is one shard
FETCH_SECONDS = 0.5  # the longest one read waits for new messages (a stopping poller waits no longer)
CONNECT_SECONDS = 2  # per connection attempt (two attempts)
API_SECONDS = 5.0  # JetStream API requests (stream and consumer info, creating consumers)
ACK_WAIT_SECONDS = 600.0  # JetStream redelivers what is not acknowledged after this long …
PROGRESS_SECONDS = 120.0  # … so what is held longer is marked "in progress" this often
MAX_READ = 1000


def consumer_name(mapping_uuid: str) -> str:
    return f"squall-{mapping_uuid}"


def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> StreamPoller:
    s = mapping.settings
    # Enough un-acknowledged messages for the read-ahead StreamPoller keeps (4 × batch × lanes, plus a read).
    max_ack_pending = max(1000, s.batch_size * s.parallelization * 5 + MAX_READ)
    stream = JetStream(mapping.source, deps.brokers, consumer_name(mapping.uuid), deps.role_arn(), max_ack_pending)
    return StreamPoller(mapping, deps, stream)


def _nats() -> Any:
    try:
        import nats
        import nats.js.errors
    except ImportError:
        raise InvalidParameterValue(
            "NATS JetStream event sources need the nats-py package (pip install nats-py) in Squall's environment."
        ) from None
    return nats


def redact(url: str) -> str:
    """A broker URL fit for messages: its password (or token) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***" if parts.password is not None else "***"
    return urlunsplit((parts.scheme, f"{user}@{host}{port}", parts.path, parts.query, parts.fragment))


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _connect(url: str) -> Any:
    """One connection, no automatic reconnection (a dropped connection is closed, and the
    client makes a new one and its consumer anew). At most two short attempts."""
    nats = _nats()
    errors: list[BaseException] = []

    async def error_cb(error: Exception) -> None:
        errors.append(error)
        log.debug("nats %s: %r", redact(url), error)

    try:
        return await nats.connect(url, connect_timeout=CONNECT_SECONDS, allow_reconnect=False,
                                  max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=error_cb,
                                  name="squall-event-source")
    except nats.errors.NoServersError:
        if errors:  # the reason the attempts failed says more than "no servers"
            raise ConnectionError(_describe(errors[-1])) from None
        raise


async def check(source: Source, deps: PollerDeps, function_timeout: int | None) -> None:
    """As Lambda does for a stream: the broker must be configured and answer with JetStream,
    and the stream must exist."""
    url = deps.brokers.url(source.broker)
    nats = _nats()
    where = f"the NATS broker {source.broker!r} ({redact(url)})"
    try:
        nc = await _connect(url)
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: cannot reach {where}: {_describe(error)}. "
            "Check its URL (nats://host:port) in the event_source_brokers setting.") from None
    try:
        await nc.jetstream(timeout=API_SECONDS).stream_info(source.name)
    except nats.js.errors.NotFoundError:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: the JetStream stream {source.name!r} does not exist on "
            f"{where}. Create the stream first (nats stream add).") from None
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: JetStream is not enabled on {where} "
            "(start nats-server with -js, or enable jetstream in its configuration).") from None
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: cannot read the stream {source.name!r} on {where}: "
            f"{_describe(error)}.") from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _epoch(moment: datetime) -> float:
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=UTC).timestamp()


class JetStream(StreamClient):
    """One stream through one durable pull consumer. Every method is a coroutine."""

    batch_info_key = "KinesisBatchInfo"  # on-failure records look like Kinesis's
    max_read = MAX_READ
    supports_timestamp = True  # LATEST: from the mapping's creation (AT_TIMESTAMP), so nothing published meanwhile is skipped

    def __init__(self, source: Source, brokers: Brokers, durable: str, role_arn: str, max_ack_pending: int) -> None:
        self.source = source
        self.brokers = brokers
        self.durable = durable
        self.role_arn = role_arn
        self.max_ack_pending = max_ack_pending
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None  # the pull subscription of the consumer's current incarnation
        self._made = False  # the consumer was made by this client (so its own position decides)
        self._expired = False  # a lost delivery or a lost connection: make the consumer anew
        self._held: dict[int, Any] = {}  # stream sequence → message handed out, not acknowledged
        self._last_seq = 0  # the last stream sequence handed out
        self._last_delivery = 0  # the consumer sequence of the last delivery seen (this incarnation)
        self._keeper: asyncio.Task[None] | None = None

    # ---- the connection -----------------------------------------------------------------------
    async def _connection(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            url = self.brokers.url(self.source.broker)
            self._nc = await _connect(url)
            self._js = self._nc.jetstream(timeout=API_SECONDS)
            self._sub = None
        return self._js

    # ---- StreamClient -------------------------------------------------------------------------
    async def shards(self) -> list[str]:
        js = await self._connection()
        await js.stream_info(self.source.name)  # the stream must still exist
        return [SHARD]

    async def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> Any:
        js = await self._connection()
        api = _nats().js.api
        if self._held:  # made anew within a run: from the first message not yet acknowledged
            config = self._config(api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=min(self._held))
        elif self._made and self._last_seq:
            config = self._config(api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._last_seq + 1)
        else:
            config = await self._first_config(js, after, start, timestamp)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        with contextlib.suppress(_nats().js.errors.NotFoundError):
            await js.delete_consumer(self.source.name, self.durable)
        await js.add_consumer(self.source.name, config)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.source.name)
        self._made = True
        self._expired = False
        self._last_delivery = 0
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep_held())
        return self._sub

    async def read(self, shard: str, iterator: Any, limit: int) -> tuple[list[StreamRecord], Any, float | None]:
        if self._expired or iterator is not self._sub or self._nc is None or not self._nc.is_connected:
            raise IteratorExpired()
        try:
            messages = await iterator.fetch(limit, timeout=FETCH_SECONDS)
        except TimeoutError:  # nats' timeouts are asyncio's: nothing new
            return [], iterator, 0.0
        records: list[StreamRecord] = []
        done_again: list[Any] = []
        behind: float | None = None
        for msg in messages:
            meta = msg.metadata
            if meta.sequence.consumer != self._last_delivery + 1:
                # A delivery went missing (a connection dropped): what follows waits for the consumer anew.
                self._expired = True
                break
            self._last_delivery = meta.sequence.consumer
            seq = meta.sequence.stream
            if seq <= self._last_seq:  # delivered again: handed out already
                if seq in self._held:
                    self._held[seq] = msg  # its newest delivery is the one to acknowledge
                else:
                    done_again.append(msg)
                continue
            self._held[seq] = msg
            self._last_seq = seq
            records.append(self._record(msg, seq, meta))
            behind = 0.0 if meta.num_pending == 0 else max(0.0, (time.time() - _epoch(meta.timestamp)) * 1000)
        for msg in done_again:
            await self._ack(msg)
        return records, iterator, behind if behind is not None else (None if messages else 0.0)

    async def acknowledge(self, shard: str, positions: list[str]) -> None:
        for position in positions:
            msg = self._held.pop(int(position), None)
            if msg is not None:
                await self._ack(msg)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = self._sub = None

    async def forget(self) -> None:
        try:
            js = await self._connection()
            with contextlib.suppress(_nats().js.errors.NotFoundError):
                await js.delete_consumer(self.source.name, self.durable)
        finally:
            await self.close()

    # ---- helpers ------------------------------------------------------------------------------
    def _config(self, policy: Any, **start: Any) -> Any:
        api = _nats().js.api
        return api.ConsumerConfig(
            name=self.durable, durable_name=self.durable, description=f"Squall event source mapping {self.source.arn}",
            deliver_policy=policy, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_SECONDS,
            max_ack_pending=self.max_ack_pending, replay_policy=api.ReplayPolicy.INSTANT, **start)

    async def _first_config(self, js: Any, after: str | None, start: str, timestamp: float | None) -> Any:
        """Where a poller's first consumer starts: see the module's docstring."""
        api = _nats().js.api
        if after is not None and after.isdigit():
            return self._config(api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=int(after) + 1)
        try:
            info = await js.consumer_info(self.source.name, self.durable)
        except _nats().js.errors.NotFoundError:
            info = None
        if info is not None:
            floor = info.ack_floor
            if floor is not None and floor.consumer_seq and floor.stream_seq:
                return self._config(api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=floor.stream_seq + 1)
            old = info.config
            return self._config(old.deliver_policy or api.DeliverPolicy.ALL, opt_start_seq=old.opt_start_seq,
                                opt_start_time=old.opt_start_time)
        if start == "AT_TIMESTAMP" and timestamp is not None:
            return self._config(api.DeliverPolicy.BY_START_TIME,
                                opt_start_time=datetime.fromtimestamp(timestamp, UTC))
        if start == "LATEST":
            state = (await js.stream_info(self.source.name)).state
            return self._config(api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=state.last_seq + 1)
        return self._config(api.DeliverPolicy.ALL)

    def _record(self, msg: Any, seq: int, meta: Any) -> StreamRecord:
        data = msg.data or b""
        arrival = _epoch(meta.timestamp)
        event = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": msg.subject,
                "sequenceNumber": str(seq),
                "data": base64.b64encode(data).decode(),
                "approximateArrivalTimestamp": round(arrival, 3),
            },
            "eventSource": "squall:nats",
            "eventVersion": "1.0",
            "eventID": f"{self.source.name}:{seq}",
            "eventName": "squall:nats:record",
            "invokeIdentityArn": self.role_arn,
            "awsRegion": self.source.region,
            "eventSourceARN": self.source.arn,
        }
        return StreamRecord(str(seq), msg.subject, arrival, event, kinesis_view(event),
                            len(data) * 4 // 3 + len(msg.subject) + 400)

    async def _ack(self, msg: Any) -> None:
        """Fire and forget: an acknowledgement lost with its connection only means the message
        may come again after a restart (Squall's checkpoint decides where a restart begins)."""
        try:
            await msg.ack()
        except Exception as error:
            log.debug("nats ack of %s failed: %r", self.source.arn, error)

    async def _keep_held(self) -> None:
        """Keep JetStream from redelivering messages whose batches still run (or wait)."""
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            for msg in list(self._held.values()):
                try:
                    await msg.in_progress()
                except Exception:
                    break
