"""Redis Streams as an ordered event source, read through a consumer group (redis-py).

A mapping reads one stream key, ``arn:aws:redis:<region>:<account>:<broker>/stream/<key>``,
where ``<broker>`` names a URL in the ``event_source_brokers`` setting. The key is one shard,
``shardId-000000000000``; records are Kinesis-shaped (``eventSource`` ``squall:redis``).

Each mapping has its own consumer group, ``squall-<mapping UUID>``, with one consumer,
``squall``. The group is created the first time the mapping's poller runs, where
StartingPosition says (TRIM_HORIZON: the stream's start; LATEST: when the mapping was made;
AT_TIMESTAMP: that moment), or after Squall's checkpoint when it has one. Entries are taken
with ``XREADGROUP``: first this consumer's pending entries (delivered before, never
acknowledged), in id order, then new ones (``>``, blocking at most a second). A batch's
entries are acknowledged (``XACK``) once the batch is done: the function succeeded, or the
entries were given up (retries, record age). So after a crash or a restart every entry not
acknowledged is delivered again, in order, and no acknowledged one is.

An entry's ``data`` field is the record's data; an entry without one gives the JSON object of
all its fields. Its ``partitionKey`` field is the partition key; without one the stream key is,
so the whole stream is one lane and keeps its order (ParallelizationFactor then does nothing).
Deleting a mapping destroys its consumer group.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from squall.errors import InvalidParameterValue
from squall.sources.filters import kinesis_view
from squall.sources.mapping import EventSourceMapping, Source
from squall.sources.poller import PollerDeps
from squall.sources.streams import StreamClient, StreamPoller, StreamRecord

log = logging.getLogger("squall.sources")

SHARD = "shardId-000000000000"  # a stream key is one shard
CONSUMER = "squall"  # the one consumer of a mapping's group
BLOCK_MS = 1000  # the longest a read for new entries waits (a stopping poller waits no longer)
SOCKET_TIMEOUT = BLOCK_MS / 1000 + 5.0
CONNECT_TIMEOUT = 3.0
MAX_SEQUENCE = 2**64 - 1  # the largest sequence part of an entry id
ACK_ATTEMPTS = 3
CLOCK_SKEW_SECONDS = 1.0  # a Redis clock this far from ours is allowed for when a group starts at a time


def group_name(mapping_uuid: str) -> str:
    return f"squall-{mapping_uuid}"


def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> StreamPoller:
    stream = RedisStream(mapping.source, group_name(mapping.uuid), deps, deps.role_arn())
    return StreamPoller(mapping, deps, stream)


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise InvalidParameterValue(
            "Redis Streams event sources need the redis package (pip install redis) in Squall's environment.") from None
    return redis


def redact(url: str) -> str:
    """A broker URL fit for messages: its password hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def _connect(url: str) -> Any:
    return _redis().Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
                                   health_check_interval=30)


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


async def check(source: Source, deps: PollerDeps, function_timeout: int | None) -> None:
    """As Lambda does for a stream: the broker must be configured and answer, and the key must
    be a stream that exists."""
    url = deps.brokers.url(source.broker)
    redis = _redis()

    def key_type() -> str:
        client = _connect(url)
        try:
            return _text(client.type(source.name))
        finally:
            client.close()

    where = f"the Redis broker {source.broker!r} ({redact(url)})"
    try:
        kind = await deps.clients.call(key_type)
    except ValueError as error:  # from_url: not a redis://, rediss:// or unix:// URL
        raise InvalidParameterValue(
            f"The event_source_brokers URL of {source.broker!r} is not a Redis URL ({error}). "
            "Use redis://[user:password@]host:port/db.") from None
    except redis.RedisError as error:
        raise InvalidParameterValue(f"Cannot use {source.arn} as an event source: cannot reach {where}: "
                                    f"{type(error).__name__}: {error}") from None
    if kind == "none":
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: the stream key {source.name!r} does not exist on {where}. "
            "Create the stream first (XADD, or XGROUP CREATE ... MKSTREAM).")
    if kind != "stream":
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: the key {source.name!r} on {where} is a {kind}, not a stream.")


@dataclass
class Cursor:
    """Where a read goes on: this consumer's pending entries after ``last``, then new ones."""

    pending: bool
    last: str


class RedisStream(StreamClient):
    batch_info_key = "KinesisBatchInfo"  # on-failure records look like Kinesis's
    max_read = 10000
    supports_timestamp = True

    def __init__(self, source: Source, group: str, deps: PollerDeps, role_arn: str) -> None:
        self.source = source
        self.key = source.name
        self.group = group
        self.brokers = deps.brokers
        self.role_arn = role_arn
        self._client: Any = None
        self._closed = False
        self._lock = threading.Lock()

    # ---- the connection -------------------------------------------------------------------------
    def _redis(self) -> Any:
        with self._lock:
            if self._closed:  # a call still running in the pool after the poller stopped
                raise RuntimeError(f"the poller of {self.source.arn} has stopped")
            if self._client is None:
                self._client = _connect(self.brokers.url(self.source.broker))
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            try:
                client.close()  # also wakes a read blocked in another thread
            except Exception as error:  # noqa: BLE001 - closing is best effort
                log.debug("closing Redis connection for %s: %r", self.source.arn, error)

    def forget(self) -> None:
        """The mapping was deleted: its consumer group goes too (a fresh connection: closed ones refuse)."""
        client = _connect(self.brokers.url(self.source.broker))
        try:
            client.xgroup_destroy(self.key, self.group)
        except Exception as error:  # noqa: BLE001 - the key may be gone already
            log.debug("removing group %s of %s: %r", self.group, self.source.arn, error)
        finally:
            client.close()

    # ---- StreamClient ---------------------------------------------------------------------------
    def shards(self) -> list[str]:
        kind = _text(self._redis().type(self.key))
        if kind == "none":
            raise LookupError(f"the stream key {self.key!r} does not exist on broker {self.source.broker!r}")
        if kind != "stream":
            raise LookupError(f"the key {self.key!r} on broker {self.source.broker!r} is a {kind}, not a stream")
        return [SHARD]

    def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> Cursor:
        """Make the group when it is not there yet (after Squall's checkpoint when there is one,
        else at the starting position); read on after ``after``."""
        client = self._redis()
        redis = _redis()
        if after is not None:
            first = after
        elif start == "AT_TIMESTAMP" and timestamp is not None:
            first = self._before(timestamp)
        elif start == "LATEST":
            first = "$"
        else:
            first = "0"
        try:
            client.xgroup_create(self.key, self.group, id=first)
            log.info("event source %s: consumer group %s created at %s", self.source.arn, self.group, first)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise LookupError(f"cannot create the consumer group {self.group} on {self.key!r}: {error}") from None
        return Cursor(pending=True, last=after or "0")

    def _before(self, timestamp: float) -> str:
        """The id just before the first entry added at ``timestamp`` or later (Redis's clock,
        when it differs from ours by more than a second)."""
        seconds, micros = self._redis().time()
        skew = seconds + micros / 1e6 - time.time()
        if abs(skew) >= CLOCK_SKEW_SECONDS:
            timestamp += skew
        ms = int(timestamp * 1000)
        return f"{ms - 1}-{MAX_SEQUENCE}" if ms > 0 else "0-0"

    def read(self, shard: str, cursor: Cursor, limit: int) -> tuple[list[StreamRecord], Cursor, float | None]:
        client = self._redis()
        if cursor.pending:
            entries = self._entries(client.xreadgroup(self.group, CONSUMER, {self.key: cursor.last}, count=limit))
            if not entries:
                cursor.pending = False
        if not cursor.pending:
            entries = self._entries(client.xreadgroup(self.group, CONSUMER, {self.key: ">"}, count=limit,
                                                      block=BLOCK_MS))
            if not entries:
                # Idle: entries delivered to us whose reply never came (a dropped connection) are
                # pending after the last one we saw; take them now rather than after a restart.
                entries = self._entries(client.xreadgroup(self.group, CONSUMER, {self.key: cursor.last}, count=limit))
        if not entries:
            return [], cursor, 0.0
        cursor.last = _text(entries[-1][0])
        records: list[StreamRecord] = []
        gone: list[str] = []
        for entry_id, fields in entries:
            if not fields:  # pending, but deleted from the stream (XDEL, XTRIM): nothing to deliver
                gone.append(_text(entry_id))
            else:
                records.append(self._record(_text(entry_id), fields))
        if gone:
            client.xack(self.key, self.group, *gone)
        behind = max(0.0, time.time() * 1000 - _millis(cursor.last)) if len(entries) >= limit else 0.0
        return records, cursor, behind

    def acknowledge(self, shard: str, positions: list[str]) -> None:
        """XACK a finished batch. A failure is logged, not raised: the entries then stay pending
        and Squall's checkpoint (already past them) keeps them from being delivered again."""
        for attempt in range(ACK_ATTEMPTS):
            try:
                client = self._redis()
                for start in range(0, len(positions), 1000):
                    client.xack(self.key, self.group, *positions[start:start + 1000])
                return
            except Exception as error:  # noqa: BLE001 - never raised: a lane that raises stops its shard
                if attempt == ACK_ATTEMPTS - 1:
                    log.warning("event source %s: XACK of %d entries failed: %r", self.source.arn, len(positions), error)
                else:
                    time.sleep(0.2 * (attempt + 1))

    # ---- records --------------------------------------------------------------------------------
    def _entries(self, reply: Any) -> list[tuple[Any, dict[bytes, bytes]]]:
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3 (protocol=3 in the URL): {key: [[entry, ...]]}
            streams = list(reply.values())
            return list(streams[0][0]) if streams[0] else []
        return list(reply[0][1])  # RESP2: [[key, [entry, ...]]]

    def _record(self, entry_id: str, fields: dict[Any, Any]) -> StreamRecord:
        raw = {_text(k): v for k, v in fields.items()}
        data = raw["data"] if "data" in raw else orjson.dumps({k: _text(v) for k, v in raw.items()})
        if isinstance(data, str):
            data = data.encode()
        key = _text(raw["partitionKey"]) if "partitionKey" in raw else self.key
        arrival = _millis(entry_id) / 1000
        event = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": key,
                "sequenceNumber": entry_id,
                "data": base64.b64encode(data).decode(),
                "approximateArrivalTimestamp": arrival,
            },
            "eventSource": "squall:redis",
            "eventVersion": "1.0",
            "eventID": f"{SHARD}:{entry_id}",
            "eventName": "squall:redis:record",
            "invokeIdentityArn": self.role_arn,
            "awsRegion": self.source.region,
            "eventSourceARN": self.source.arn,
        }
        return StreamRecord(entry_id, key, arrival, event, kinesis_view(event), len(data) * 4 // 3 + 400)


def _millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
