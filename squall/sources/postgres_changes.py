"""PostgreSQL table changes as an ordered event source, read through logical replication.

A mapping follows one table, ``arn:aws:postgres:<region>:<account>:<broker>/table/<schema>.<table>``,
where ``<broker>`` names a ``postgresql://`` URL in the ``event_source_brokers`` setting. Each
INSERT, UPDATE and DELETE of the table becomes a DynamoDB-Streams-shaped record (``eventName``
INSERT / MODIFY / REMOVE, ``dynamodb.Keys`` / ``NewImage`` / ``OldImage`` in DynamoDB JSON,
``eventSource`` ``squall:postgres``), delivered in commit order.

The changes come from a logical replication slot of the built-in ``pgoutput`` plugin, one per
mapping (``squall_<mapping UUID without dashes>``), decoding a publication of the table
(``squall_<hash>_<table>``, shared by every mapping of that table; it publishes INSERT, UPDATE and
DELETE, not TRUNCATE). The slot is read with ``pg_logical_slot_peek_binary_changes`` — a read
that does not consume — and moved on with ``pg_replication_slot_advance`` only past transactions
whose every change is done (the function succeeded or the change was given up), so the slot
itself is a durable checkpoint: after a crash PostgreSQL decodes again whatever was not done.
Squall's own per-shard checkpoint (the last change done before the first not done) covers the
rest: changes at or before it are skipped when decoded again.

A change's position (its ``SequenceNumber``) is its transaction's commit LSN and its ordinal in
the transaction, as 30 decimal digits, so positions sort in commit order (the change's own LSN
does not: an earlier-started transaction may commit later). The table is one shard (named after
the slot); ``ParallelizationFactor`` lanes are chosen by the row's key, so order holds per key.

CreateEventSourceMapping checks the broker, ``wal_level = logical``, the table and its primary
key, makes the publication and a slot (``squall_p_<hash of source and function>``) right then, so
that changes made once the mapping exists are kept even before its poller first runs; the poller
takes that slot over under its own name. A slot cannot see the past: TRIM_HORIZON and LATEST both
start when the mapping is made. A slot keeps WAL until it is advanced, so an idle table's slot
is moved on with a heartbeat (a non-transactional logical message) when other tables' writes
make it lag, and a deleted mapping's slot must be dropped (``forget``; see the docs).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from squall.errors import InvalidParameterValue
from squall.sources.batches import Watermark
from squall.sources.mapping import EventSourceMapping, Source
from squall.sources.poller import PollerDeps
from squall.sources.streams import StreamClient, StreamPoller, StreamRecord

log = logging.getLogger("squall.sources")

PLUGIN = "pgoutput"
CONNECT_TIMEOUT = 5  # seconds, libpq's connect_timeout
STATEMENT_TIMEOUT_MS = 60_000  # no statement of a poller runs longer (slot creation waits for running transactions)
CHECK_TIMEOUT_MS = 15_000  # … nor of CreateEventSourceMapping's check
PEEK_ATTEMPTS = 6  # a read asks for up to 4**5 times more rows when what it got was all read before
ADVANCE_SECONDS = 1.0  # the slot is moved on at most this often (and when the poller stops)
HEARTBEAT_SECONDS = 5.0  # an idle slot's lag is looked at this often …
HEARTBEAT_BYTES = 1 << 20  # … and a heartbeat written when it keeps this much WAL
HEARTBEAT_PREFIX = "squall"
PG_EPOCH = 946684800  # 2000-01-01T00:00:00Z, where PostgreSQL's timestamps count from
EVENT_SOURCE = "squall:postgres"

# Type OIDs (pg_type) with a DynamoDB type of their own; everything else is a string (S).
BOOL_OID = 16
BYTEA_OID = 17
NUMBER_OIDS = frozenset({20, 21, 23, 26, 700, 701, 1700})  # int8 int2 int4 oid float4 float8 numeric
JSON_OIDS = frozenset({114, 3802})  # json jsonb

NEW_AND_OLD_IMAGES, NEW_IMAGE = "NEW_AND_OLD_IMAGES", "NEW_IMAGE"


# ---- names --------------------------------------------------------------------------------------
def slot_name(mapping_uuid: str) -> str:
    return "squall_" + mapping_uuid.replace("-", "").lower()


def pending_slot_name(source_arn: str, function_arn: str) -> str:
    """The slot CreateEventSourceMapping makes, before the mapping has its UUID."""
    return "squall_p_" + hashlib.sha256(f"{source_arn}\n{function_arn}".encode()).hexdigest()[:40]


def publication_name(schema: str, table: str) -> str:
    digest = hashlib.sha256(f"{schema}.{table}".encode()).hexdigest()[:12]
    return f"squall_{digest}_{table.lower()}"[:63]


def split_table(name: str) -> tuple[str, str]:
    schema, _, table = name.partition(".")
    return schema, table


# ---- LSNs and positions ---------------------------------------------------------------------------
def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def position(commit_lsn: int, ordinal: int) -> str:
    """A change's SequenceNumber: sorts (as a string, and as a number) in commit order."""
    return f"{commit_lsn:020d}{ordinal:010d}"


# ---- pgoutput (protocol version 1) -------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    key: bool  # part of the replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    identity: str  # d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[Column, ...]


Tuple = list[tuple[str, bytes | None]]  # per column: (n)ull, (u)nchanged TOAST, (t)ext


@dataclass
class Change:
    kind: str  # INSERT, MODIFY, REMOVE
    relation: Relation
    new: Tuple | None
    old: Tuple | None
    old_kind: str | None  # K: the old key only, O: the whole old row
    ordinal: int  # 1, 2, … among the table's changes in its transaction


@dataclass
class Transaction:
    xid: int
    commit_lsn: int  # where its commit record starts (its changes' positions)
    commit_time: float  # epoch seconds
    end_lsn: int = 0  # where its commit record ends: the slot moves past it to here
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Boundary:
    """A non-transactional logical message: nothing before it is still to come."""

    lsn: int


class ProtocolError(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ProtocolError("truncated pgoutput message")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def byte(self) -> str:
        return chr(self.take("!B"))

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError("unterminated string in pgoutput message")
        text = self.data[self.at:end].decode("utf-8", "replace")
        self.at = end + 1
        return text

    def bytes(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ProtocolError("truncated pgoutput message")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def tuple(self) -> Tuple:
        values: Tuple = []
        for _ in range(self.take("!h")):
            kind = self.byte()
            if kind == "t":
                values.append(("t", self.bytes(self.take("!i"))))
            elif kind in ("n", "u"):
                values.append((kind, None))
            else:
                raise ProtocolError(f"unexpected column kind {kind!r} (binary values are not asked for)")
        return values


class Decoder:
    """pgoutput's messages in the order a slot gives them; ``feed`` returns a transaction when
    its Commit arrives and a ``Boundary`` for a non-transactional message."""

    def __init__(self, schema: str, table: str) -> None:
        self.schema = schema
        self.table = table
        self.relations: dict[int, Relation] = {}
        self.current: Transaction | None = None

    def reset(self) -> None:
        """A new read starts at a transaction's beginning."""
        self.current = None

    def feed(self, data: bytes) -> Transaction | Boundary | None:
        r = _Reader(data)
        tag = r.byte()
        if tag == "B":
            final_lsn, commit_ts, xid = r.take("!Q"), r.take("!q"), r.take("!I")
            self.current = Transaction(xid, final_lsn, PG_EPOCH + commit_ts / 1e6)
        elif tag == "C":
            r.take("!B")  # flags
            commit_lsn, end_lsn, commit_ts = r.take("!Q"), r.take("!Q"), r.take("!q")
            tx, self.current = self.current, None
            if tx is None:
                raise ProtocolError("Commit without Begin")
            tx.commit_lsn, tx.end_lsn, tx.commit_time = commit_lsn, end_lsn, PG_EPOCH + commit_ts / 1e6
            return tx
        elif tag == "R":
            oid, schema, name, identity = r.take("!I"), r.string(), r.string(), r.byte()
            columns = []
            for _ in range(r.take("!h")):
                flags, column, type_oid = r.take("!B"), r.string(), r.take("!I")
                r.take("!i")  # atttypmod
                columns.append(Column(column, type_oid, bool(flags & 1)))
            self.relations[oid] = Relation(oid, schema, name, identity, tuple(columns))
        elif tag in ("I", "U", "D"):
            relation = self._relation(r.take("!I"))
            new = old = old_kind = None
            kind = r.byte()
            if tag != "I" and kind in ("K", "O"):
                old_kind, old = kind, r.tuple()
                kind = r.byte() if tag == "U" else ""
            if tag != "D":
                if kind != "N":
                    raise ProtocolError(f"expected a new tuple, got {kind!r}")
                new = r.tuple()
            tx = self._transaction()
            if (relation.schema, relation.name) == (self.schema, self.table):
                name = {"I": "INSERT", "U": "MODIFY", "D": "REMOVE"}[tag]
                tx.changes.append(Change(name, relation, new, old, old_kind, len(tx.changes) + 1))
        elif tag == "M":
            flags = r.take("!B")
            lsn = r.take("!Q")
            if not flags & 1:
                return Boundary(lsn)
        elif tag in ("Y", "O", "T"):
            pass  # types, origins: nothing to do; TRUNCATE is not published
        else:
            raise ProtocolError(f"unknown pgoutput message {tag!r}")
        return None

    def _relation(self, oid: int) -> Relation:
        relation = self.relations.get(oid)
        if relation is None:
            raise ProtocolError(f"a change of relation {oid} before its Relation message")
        return relation

    def _transaction(self) -> Transaction:
        if self.current is None:
            raise ProtocolError("a change outside a transaction")
        return self.current


# ---- values: PostgreSQL text → DynamoDB JSON ---------------------------------------------------
class _Number(str):
    """A JSON number kept as its text."""


def _json_attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, _Number):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [_json_attribute(v) for v in value]}
    return {"M": {str(k): _json_attribute(v) for k, v in value.items()}}


def attribute(type_oid: int, text: str | None) -> dict[str, Any]:
    """One column's value as a DynamoDB attribute value (see the module's docs for the mapping)."""
    if text is None:
        return {"NULL": True}
    if type_oid == BOOL_OID:
        return {"BOOL": text in ("t", "true")}
    if type_oid in NUMBER_OIDS:
        if text in ("NaN", "Infinity", "-Infinity"):
            return {"S": text}
        return {"N": text}
    if type_oid == BYTEA_OID and text.startswith("\\x"):
        try:
            return {"B": base64.b64encode(bytes.fromhex(text[2:])).decode()}
        except ValueError:
            return {"S": text}
    if type_oid in JSON_OIDS:
        try:
            parsed = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
        except ValueError:
            return {"S": text}
        return _json_attribute(parsed)
    return {"S": text}


def image(relation: Relation, values: Tuple, only_keys: bool = False) -> tuple[dict[str, Any], set[str]]:
    """A tuple as an image, and the columns whose value was not sent (unchanged TOASTed values)."""
    out: dict[str, Any] = {}
    missing: set[str] = set()
    for column, (kind, raw) in zip(relation.columns, values):
        if only_keys and not column.key:
            continue  # a key tuple sends the other columns as nulls
        if kind == "u":
            missing.add(column.name)
            continue
        out[column.name] = attribute(column.type_oid, None if raw is None else raw.decode("utf-8", "replace"))
    return out, missing


def dynamodb_change(change: Change, commit_lsn: int, commit_time: float,
                    primary_key: tuple[str, ...]) -> dict[str, Any]:
    """The ``dynamodb`` part of a change's record."""
    relation = change.relation
    full_old = change.old_kind == "O"
    view = NEW_AND_OLD_IMAGES if relation.identity == "f" else NEW_IMAGE
    new = old = None
    if change.new is not None:
        new, missing = image(relation, change.new)
        if missing and full_old and change.old is not None:
            before, _ = image(relation, change.old)
            new.update({name: before[name] for name in missing if name in before})
    if change.old is not None:
        old, _ = image(relation, change.old, only_keys=not full_old)
    keys: dict[str, Any] = {}
    for names in (primary_key, tuple(c.name for c in relation.columns if c.key)):
        found = next((img for img in (new, old) if names and img is not None and all(n in img for n in names)),
                     None)
        if found is not None:
            keys = {n: found[n] for n in names}
            break
    out: dict[str, Any] = {"ApproximateCreationDateTime": int(commit_time), "Keys": keys}
    if new is not None:
        out["NewImage"] = new
    if old is not None and full_old and change.kind != "INSERT":
        out["OldImage"] = old
    out["SequenceNumber"] = position(commit_lsn, change.ordinal)
    out["SizeBytes"] = len(orjson.dumps([keys, out.get("NewImage"), out.get("OldImage")]))
    out["StreamViewType"] = view
    return out


def lambda_record(change: Change, tx: Transaction, source_arn: str, region: str,
                  primary_key: tuple[str, ...]) -> dict[str, Any]:
    dynamodb = dynamodb_change(change, tx.commit_lsn, tx.commit_time, primary_key)
    event_id = hashlib.sha256(f"{source_arn}\n{dynamodb['SequenceNumber']}".encode()).hexdigest()[:32]
    return {
        "eventID": event_id,
        "eventName": change.kind,
        "eventVersion": "1.1",
        "eventSource": EVENT_SOURCE,
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": source_arn,
    }


# ---- the database ---------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


async def _connect(url: str, name: str, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Any:
    import psycopg  # imported when a mapping of this kind is used

    conn = await asyncio.wait_for(
        psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT), CONNECT_TIMEOUT + 5)
    try:
        # The settings pgoutput's text values are printed with (its output runs in this session).
        await conn.execute(
            "SELECT set_config('DateStyle', 'ISO, MDY', false), set_config('TimeZone', 'UTC', false), "
            "set_config('extra_float_digits', '3', false), set_config('bytea_output', 'hex', false), "
            "set_config('IntervalStyle', 'postgres', false), set_config('statement_timeout', %s, false), "
            "set_config('application_name', %s, false)", (str(statement_timeout_ms), name[:63]))
    except BaseException:
        await conn.close()
        raise
    return conn


async def _one(conn: Any, query: str, params: tuple[Any, ...] = ()) -> Any:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


@dataclass(frozen=True)
class TableInfo:
    oid: int
    kind: str
    identity: str
    primary_key: tuple[str, ...]


async def table_info(conn: Any, schema: str, table: str) -> TableInfo | None:
    row = await _one(conn, """
        SELECT c.oid, c.relkind, c.relreplident,
               ARRAY(SELECT a.attname FROM pg_index i
                     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.n)
        FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
        WHERE ns.nspname = %s AND c.relname = %s""", (schema, table))
    if row is None:
        return None
    return TableInfo(int(row[0]), str(row[1]), str(row[2]), tuple(row[3] or ()))


async def _require_table(conn: Any, source: Source) -> TableInfo:
    """The table as a mapping needs it; raises ``InvalidParameterValue`` saying what is wrong."""
    level = (await _one(conn, "SHOW wal_level"))[0]
    if level != "logical":
        raise InvalidParameterValue(
            f"The PostgreSQL server of broker {source.broker!r} runs with wal_level = {level}; table changes are read "
            "by logical decoding, which needs wal_level = logical (postgresql.conf; a restart applies it).")
    schema, table = split_table(source.name)
    info = await table_info(conn, schema, table)
    if info is None:
        raise InvalidParameterValue(
            f"The table {source.name} does not exist in the database of broker {source.broker!r} (names are matched "
            "exactly, as stored in pg_class: unquoted names are lowercase).")
    if info.kind not in ("r", "p"):
        raise InvalidParameterValue(f"{source.name} is not a table (pg_class.relkind {info.kind!r}).")
    if not info.primary_key:
        raise InvalidParameterValue(
            f"The table {source.name} has no primary key. Its changes' Keys are its primary key, and PostgreSQL "
            "refuses UPDATE and DELETE on a published table without one (or a REPLICA IDENTITY): add a primary key.")
    return info


async def _ensure_publication(conn: Any, source: Source) -> bool:
    """The table's publication, made or completed; True when the table had to be added to it."""
    from psycopg import sql

    schema, table = split_table(source.name)
    name = publication_name(schema, table)
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    exists = await _one(conn, "SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
    if exists is None:
        await conn.execute(sql.SQL(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete', "
            "publish_via_partition_root = true)").format(sql.Identifier(name), target))
        return True
    if await _one(conn, "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s "
                        "AND tablename = %s", (name, schema, table)) is None:
        await conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(name), target))
        return True
    return False


async def _slot(conn: Any, name: str) -> tuple[bool, int | None] | None:
    """(active, pid) of the slot ``name``, or None when there is none."""
    row = await _one(conn, "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,))
    return None if row is None else (bool(row[0]), row[1])


async def _drop_slot(conn: Any, name: str) -> bool:
    if await _slot(conn, name) is None:
        return False
    await conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    return True


async def check(source: Source, deps: PollerDeps, function_timeout: int | None) -> None:
    """The broker is configured and reachable with logical decoding, the table exists with a
    primary key; then the publication and the mapping's slot are made (changes are kept from now)."""
    url = deps.brokers.url(source.broker)
    try:
        conn = await _connect(url, "squall-check", CHECK_TIMEOUT_MS)
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot connect to the PostgreSQL server of broker {source.broker!r}: {_first_line(error)}") from None
    try:
        await _require_table(conn, source)
        await _ensure_publication(conn, source)
        pending = pending_slot_name(source.arn, deps.function_arn)
        await _drop_slot(conn, pending)  # left by a mapping of this source and function made before
        await conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (pending, PLUGIN))
    except InvalidParameterValue:
        raise
    except Exception as error:
        raise InvalidParameterValue(
            f"Cannot use {source.arn} as an event source: {_first_line(error)}. The user of broker "
            f"{source.broker!r} needs the REPLICATION attribute, ownership of the table (to publish it) and a free "
            "replication slot (max_replication_slots).") from None
    finally:
        await conn.close()


async def forget(mapping: EventSourceMapping, deps: PollerDeps) -> None:
    """Drop a deleted mapping's slots (its own, and the one made at create time if still there).
    The publication stays: other mappings of the table share it."""
    conn = await _connect(deps.brokers.url(mapping.source.broker), "squall-forget")
    try:
        for name in (slot_name(mapping.uuid), pending_slot_name(mapping.source.arn, deps.function_arn)):
            await _drop_slot(conn, name)
    finally:
        await conn.close()


# ---- the stream ---------------------------------------------------------------------------------
def make_poller(mapping: EventSourceMapping, deps: PollerDeps) -> StreamPoller:
    source = mapping.source
    region = source.region or (deps.function_arn.split(":")[3] if deps.function_arn.count(":") >= 3 else "")
    stream = TableChanges(source, lambda: deps.brokers.url(source.broker), slot_name(mapping.uuid),
                          pending_slot_name(source.arn, deps.function_arn), region)
    poller = StreamPoller(mapping, deps, stream)
    stream.report = poller.report
    return poller


@dataclass
class _Open:
    """A transaction (or boundary) read and not yet moved past by the slot."""

    end_lsn: int
    last: str | None  # its last change's position (None: no change of the table)


class TableChanges(StreamClient):
    """One table's changes from its mapping's slot. Coroutine methods: they run on the server's
    loop; one connection, used by one of them at a time."""

    batch_info_key = "DDBStreamBatchInfo"  # on-failure records look like DynamoDB Streams'
    max_read = 10000

    def __init__(self, source: Source, url: Callable[[], str], slot: str, pending: str, region: str) -> None:
        self.source = source
        self.url = url
        self.slot = slot
        self.pending = pending
        self.region = region
        self.schema, self.table = split_table(source.name)
        self.publication = publication_name(self.schema, self.table)
        self.report: Callable[[str], None] = lambda result: None
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._decoder = Decoder(self.schema, self.table)
        self._primary_key: tuple[str, ...] = ()
        self._started = False
        self._fresh_slot = False  # the slot had to be made by the poller (not at create time)
        self._read_upto: str | None = None  # the last position handed out (or Squall's checkpoint)
        self._ahead: deque[StreamRecord] = deque()  # decoded, not handed out yet
        self._open: deque[_Open] = deque()
        self._last_end = 0  # the end of the last transaction put in _open
        self._watermark = Watermark()  # handed out → done, in order
        self._done_upto: str | None = None  # every position up to here is done
        self._target = 0  # where the slot may be moved to
        self._advanced = 0
        self._advanced_at = 0.0
        self._rows_hint = 0
        self._lag_checked_at = time.monotonic()

    # ---- StreamClient ---------------------------------------------------------------------------
    async def shards(self) -> list[str]:
        """The table is one shard. Called every few seconds: a table gone is reported."""
        async with self._lock:
            if not await self._ready():
                try:
                    await _require_table(self._conn, self.source)
                    if await _ensure_publication(self._conn, self.source):  # the table was dropped and made again
                        self._problem(f"The table {self.source.name} was not in the publication {self.publication} "
                                      "(dropped and made again?): it has been added; changes made before are lost.")
                except BaseException:
                    await self._drop_connection()
                    raise
        return [self.slot]

    async def iterator(self, shard: str, after: str | None, start: str, timestamp: float | None) -> str:
        async with self._lock:
            await self._ready()
            if not self._started:
                self._started = True
                self._done_upto = after
                if self._fresh_slot and after is not None:
                    self._slot_lost()
            if after != self._read_upto:
                self._ahead.clear()
                self._read_upto = after
        return self.slot

    async def read(self, shard: str, iterator: Any, limit: int) -> tuple[list[StreamRecord], Any, float | None]:
        async with self._lock:
            await self._ready()
            try:
                await self._advance_or_log()
                if not self._ahead:
                    await self._peek(limit)
                out = [self._ahead.popleft() for _ in range(min(limit, len(self._ahead)))]
                if out:
                    self._read_upto = out[-1].position
                    self._watermark.register(r.position for r in out)
                else:
                    await self._heartbeat()
            except BaseException:
                await self._drop_connection()
                raise
        behind = (time.time() - out[-1].arrival) * 1000 if out else 0.0
        return out, iterator, max(0.0, behind)

    async def acknowledge(self, shard: str, positions: list[str]) -> None:
        """A batch is done: the slot may move past every transaction now wholly done. Never
        raises (a lane must not stop over it): a slot left behind is moved on later."""
        moved = self._watermark.done(positions)
        if moved is not None:
            self._done_upto = moved
            self._collect()
        if (self._target > self._advanced and time.monotonic() - self._advanced_at >= ADVANCE_SECONDS
                and not self._lock.locked()):  # else the read in progress moves the slot on
            async with self._lock:
                if self._conn is not None:
                    await self._advance_or_log()

    async def forget(self) -> None:
        """The mapping was deleted: its slots go (a slot nobody reads keeps WAL forever)."""
        conn = await _connect(self.url(), "squall-forget")
        try:
            for name in (self.slot, self.pending):
                await _drop_slot(conn, name)
        finally:
            await conn.close()

    async def close(self) -> None:
        try:
            async with self._lock:
                if self._conn is not None and self._target > self._advanced:
                    await asyncio.wait_for(self._advance(force=True), 3.0)
        except Exception as error:  # the slot stays behind: its changes after Squall's checkpoint are skipped
            log.info("event source %s: slot %s not moved on at stop: %s", self.source.arn, self.slot,
                     _first_line(error))
        finally:
            await self._drop_connection()

    # ---- the connection and the slot -----------------------------------------------------------
    async def _ready(self) -> bool:
        """Connected, with the slot in place; True when that took a new connection."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return False
        await self._drop_connection()
        conn = await _connect(self.url(), f"squall {self.slot}")
        try:
            info = await _require_table(conn, self.source)
            self._primary_key = info.primary_key
            if await _slot(conn, self.slot) is None:
                if await _slot(conn, self.pending) is not None:
                    # The slot made at create time, taken over under this mapping's own name.
                    await conn.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (self.pending, self.slot))
                else:
                    await _ensure_publication(conn, self.source)
                    await conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (self.slot, PLUGIN))
                    self._fresh_slot = True
                    if self._started:
                        self._slot_lost()
            if await _slot(conn, self.pending) is not None:
                await _drop_slot(conn, self.pending)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._decoder.relations.clear()
        return True

    def _slot_lost(self) -> None:
        self._problem(f"The replication slot {self.slot} was missing and has been made again: changes committed "
                      "while it was missing are lost.")

    def _problem(self, text: str) -> None:
        log.warning("event source %s: %s", self.source.arn, text)
        self.report(f"PROBLEM: {text}")

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    # ---- reading ----------------------------------------------------------------------------------
    async def _peek(self, limit: int) -> None:
        """Decode from the slot's position; what was handed out before is skipped."""
        rows_wanted = self._rows_hint + 3 * limit + 16
        for _ in range(PEEK_ATTEMPTS):
            cursor = await self._conn.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, 'proto_version', '1', "
                "'publication_names', %s, 'messages', 'true')", (self.slot, rows_wanted, self.publication))
            rows = await cursor.fetchall()
            found, skipped = self._absorb(rows, max(4 * limit, 1000))
            if found or len(rows) < rows_wanted:
                self._rows_hint = skipped
                break
            rows_wanted *= 4
        else:
            self._rows_hint = rows_wanted
        self._collect()

    def _absorb(self, rows: list[Any], keep: int = 1 << 30) -> tuple[int, int]:
        """Decoded rows into ``_ahead`` (at most ``keep``: the rest is decoded again by a later read)
        and ``_open``: (changes new to this client, rows before them)."""
        self._decoder.reset()
        found, skipped, tx_start = 0, len(rows), 0
        newest = self._ahead[-1].position if self._ahead else self._read_upto
        for index, row in enumerate(rows):
            data = row[0] if isinstance(row[0], bytes) else bytes(row[0])
            if data[:1] == b"B":
                tx_start = index
            item = self._decoder.feed(data)
            if item is None:
                continue
            if isinstance(item, Boundary):
                if item.lsn + 1 > self._last_end:
                    self._open.append(_Open(item.lsn + 1, None))
                    self._last_end = item.lsn + 1
                continue
            last = position(item.commit_lsn, item.changes[-1].ordinal) if item.changes else None
            if item.end_lsn > self._last_end:
                self._open.append(_Open(item.end_lsn, last))
                self._last_end = item.end_lsn
            for change in item.changes:
                at = position(item.commit_lsn, change.ordinal)
                if (newest is not None and at <= newest) or len(self._ahead) >= keep:
                    continue
                self._ahead.append(self._record(change, item))
                newest = at
                if not found:
                    skipped = tx_start
                found += 1
        return found, skipped

    def _record(self, change: Change, tx: Transaction) -> StreamRecord:
        event = lambda_record(change, tx, self.source.arn, self.region, self._primary_key)
        dynamodb = event["dynamodb"]
        key = orjson.dumps(dynamodb["Keys"], option=orjson.OPT_SORT_KEYS).decode()
        return StreamRecord(dynamodb["SequenceNumber"], key, tx.commit_time, event, event,
                            int(dynamodb["SizeBytes"]) + 400)

    # ---- moving the slot on -------------------------------------------------------------------------
    def _collect(self) -> None:
        """Transactions wholly done (in commit order from the slot's position) can be passed."""
        while self._open:
            head = self._open[0]
            if head.last is not None and (self._done_upto is None or head.last > self._done_upto):
                return
            self._target = max(self._target, head.end_lsn)
            self._open.popleft()

    async def _advance(self, force: bool = False) -> None:
        if self._target <= self._advanced:
            return
        if not force and time.monotonic() - self._advanced_at < ADVANCE_SECONDS:
            return
        target = self._target
        await self._conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn_text(target)))
        self._advanced, self._advanced_at = target, time.monotonic()

    async def _advance_or_log(self) -> None:
        try:
            await self._advance()
        except Exception as error:  # e.g. the slot in use elsewhere for a moment: tried again later
            self._advanced_at = time.monotonic()
            log.warning("event source %s: moving slot %s on failed: %s", self.source.arn, self.slot,
                        _first_line(error))

    async def _heartbeat(self) -> None:
        """Nothing to read: when other tables' writes make the slot keep WAL, write a logical
        message; once decoded (nothing of the table before it pending) the slot moves past it."""
        if self._open or self._watermark.pending or time.monotonic() - self._lag_checked_at < HEARTBEAT_SECONDS:
            return
        self._lag_checked_at = time.monotonic()
        row = await _one(self._conn, "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots "
                                     "WHERE slot_name = %s", (self.slot,))
        if row is not None and row[0] is not None and row[0] >= HEARTBEAT_BYTES:
            await self._conn.execute("SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,))
