"""The pure parts of the PostgreSQL table-changes source: pgoutput decoding, values as DynamoDB
JSON, record shapes, positions, and which transactions the slot may move past."""

from __future__ import annotations

import asyncio
import struct

import pytest

from squall.sources import postgres_changes as pc
from squall.sources.mapping import Source

ARN = "arn:aws:postgres:us-east-1:123456789012:pg/table/public.orders"
SOURCE = Source.parse(ARN)
TS = 800_000_000_000_000  # microseconds after 2000-01-01


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int = 700, ts: int = TS) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int = TS) -> bytes:
    return b"C" + struct.pack("!BQQq", 0, commit_lsn, end_lsn, ts)


def relation(oid: int = 16400, schema: str = "public", name: str = "orders", identity: str = "d",
             columns: tuple[tuple[str, int, bool], ...] = (("id", 23, True), ("name", 25, False), ("big", 25, False))) -> bytes:
    out = b"R" + struct.pack("!I", oid) + cstr(schema) + cstr(name) + identity.encode() + struct.pack("!h", len(columns))
    for column, type_oid, key in columns:
        out += struct.pack("!B", 1 if key else 0) + cstr(column) + struct.pack("!Ii", type_oid, -1)
    return out


def tup(*values: str | None) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "<unchanged>":
            out += b"u"
        else:
            raw = v.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def insert(*values: str | None, oid: int = 16400) -> bytes:
    return b"I" + struct.pack("!I", oid) + b"N" + tup(*values)


def update(new: tuple, old: tuple | None = None, old_kind: str = "O", oid: int = 16400) -> bytes:
    out = b"U" + struct.pack("!I", oid)
    if old is not None:
        out += old_kind.encode() + tup(*old)
    return out + b"N" + tup(*new)


def delete(old: tuple, old_kind: str = "K", oid: int = 16400) -> bytes:
    return b"D" + struct.pack("!I", oid) + old_kind.encode() + tup(*old)


def message(lsn: int, transactional: bool = False) -> bytes:
    return b"M" + struct.pack("!BQ", 1 if transactional else 0, lsn) + cstr("squall") + struct.pack("!I", 0)


def decode(*messages: bytes) -> list:
    decoder = pc.Decoder("public", "orders")
    return [item for m in messages if (item := decoder.feed(m)) is not None]


# ---- names, LSNs, positions ---------------------------------------------------------------------
def test_names_fit_postgres_identifiers():
    assert pc.slot_name("0b7c0f7e-1d2a-4c39-9e0b-6f0d1c2b3a4f") == "squall_0b7c0f7e1d2a4c399e0b6f0d1c2b3a4f"
    pending = pc.pending_slot_name(ARN, "arn:aws:lambda:us-east-1:123456789012:function:f")
    assert pending.startswith("squall_p_") and len(pending) <= 63
    assert pending != pc.pending_slot_name(ARN, "arn:aws:lambda:us-east-1:123456789012:function:g")
    pub = pc.publication_name("public", "Orders" + "x" * 60)
    assert len(pub) <= 63 and pub == pub.lower() and pub.startswith("squall_")


def test_lsns_and_positions_sort_in_commit_order():
    assert pc.lsn_text(0x1_0000_00A0) == "1/A0" and pc.parse_lsn("1/A0") == 0x1_0000_00A0
    assert pc.parse_lsn(pc.lsn_text(2**64 - 1)) == 2**64 - 1
    ordered = [pc.position(9, 1), pc.position(9, 2), pc.position(10, 1), pc.position(2**64 - 1, 10**9)]
    assert sorted(ordered) == ordered and sorted(ordered, key=int) == ordered
    assert all(len(p) == 30 and p.isdigit() for p in ordered)


# ---- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize("type_oid,text,expected", [
    (16, "t", {"BOOL": True}), (16, "f", {"BOOL": False}),
    (23, "-42", {"N": "-42"}), (20, "9223372036854775807", {"N": "9223372036854775807"}),
    (1700, "12.50", {"N": "12.50"}), (701, "1.5e+300", {"N": "1.5e+300"}), (701, "NaN", {"S": "NaN"}),
    (700, "-Infinity", {"S": "-Infinity"}),
    (17, "\\x00ff", {"B": "AP8="}),
    (3802, '{"a": [1, 2.5, true, null, "x"], "b": {"c": 12345678901234567890}}',
     {"M": {"a": {"L": [{"N": "1"}, {"N": "2.5"}, {"BOOL": True}, {"NULL": True}, {"S": "x"}]},
            "b": {"M": {"c": {"N": "12345678901234567890"}}}}}),
    (114, '"just text"', {"S": "just text"}),
    (25, "hello", {"S": "hello"}), (1184, "2024-01-02 03:04:05+00", {"S": "2024-01-02 03:04:05+00"}),
    (1009, "{a,\"b c\"}", {"S": "{a,\"b c\"}"}), (2950, "0b7c0f7e-1d2a-4c39-9e0b-6f0d1c2b3a4f",
                                              {"S": "0b7c0f7e-1d2a-4c39-9e0b-6f0d1c2b3a4f"}),
    (25, None, {"NULL": True}), (23, None, {"NULL": True}),
])
def test_values_as_dynamodb_json(type_oid, text, expected):
    assert pc.attribute(type_oid, text) == expected


# ---- decoding -----------------------------------------------------------------------------------
def test_a_transaction_decodes_to_its_changes_in_order():
    (tx,) = decode(begin(0x500), relation(), insert("1", "a", "x"), update(("1", "b", "x")), delete(("1", None, None)),
                   commit(0x500, 0x530))
    assert (tx.commit_lsn, tx.end_lsn, tx.xid) == (0x500, 0x530, 700)
    assert tx.commit_time == pc.PG_EPOCH + TS / 1e6
    assert [(c.kind, c.ordinal) for c in tx.changes] == [("INSERT", 1), ("MODIFY", 2), ("REMOVE", 3)]


def test_other_tables_and_messages_inside_a_transaction_are_ignored():
    other = relation(oid=1, name="other")
    (tx,) = decode(begin(0x500), other, relation(), insert("5", oid=1), message(0x510, transactional=True),
                   insert("1", "a", "x"), commit(0x500, 0x530))
    assert [(c.kind, c.ordinal, c.relation.name) for c in tx.changes] == [("INSERT", 1, "orders")]


def test_a_non_transactional_message_is_a_boundary():
    assert decode(message(0x900)) == [pc.Boundary(0x900)]


@pytest.mark.parametrize("messages", [
    [b"Z"],  # an unknown message
    [b"B\x00"],  # truncated
    [begin(1), insert("1", "a", "x")],  # a change before its relation's Relation message
    [relation(), insert("1", "a", "x")],  # a change outside a transaction
    [commit(1, 2)],  # a Commit without Begin
    [begin(1), relation(), b"I" + struct.pack("!I", 16400) + b"N" + struct.pack("!h", 1) + b"b"],  # a binary value
])
def test_malformed_or_out_of_order_messages_are_refused(messages):
    decoder = pc.Decoder("public", "orders")
    with pytest.raises(pc.ProtocolError):
        for m in messages:
            decoder.feed(m)


# ---- record shapes ------------------------------------------------------------------------------
def change_record(identity: str, *messages: bytes, primary_key=("id",)) -> list[dict]:
    (tx,) = decode(begin(0x700), relation(identity=identity), *messages, commit(0x700, 0x760))
    return [pc.lambda_record(c, tx, ARN, "us-east-1", primary_key) for c in tx.changes]


def test_full_replica_identity_gives_new_and_old_images():
    ins, mod, rem = change_record("f", insert("1", "a", "big"), update(("1", "b", "<unchanged>"), ("1", "a", "big")),
                                  delete(("1", "b", "big"), old_kind="O"))
    assert ins["eventName"] == "INSERT" and ins["eventSource"] == "squall:postgres" and ins["eventVersion"] == "1.1"
    assert ins["eventSourceARN"] == ARN and ins["awsRegion"] == "us-east-1" and len(ins["eventID"]) == 32
    assert ins["dynamodb"]["Keys"] == {"id": {"N": "1"}} and "OldImage" not in ins["dynamodb"]
    assert ins["dynamodb"]["NewImage"] == {"id": {"N": "1"}, "name": {"S": "a"}, "big": {"S": "big"}}
    assert ins["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert ins["dynamodb"]["ApproximateCreationDateTime"] == int(pc.PG_EPOCH + TS / 1e6)
    # An unchanged TOASTed value is taken from the old row.
    assert mod["dynamodb"]["NewImage"] == {"id": {"N": "1"}, "name": {"S": "b"}, "big": {"S": "big"}}
    assert mod["dynamodb"]["OldImage"] == {"id": {"N": "1"}, "name": {"S": "a"}, "big": {"S": "big"}}
    assert rem["dynamodb"]["OldImage"]["name"] == {"S": "b"} and "NewImage" not in rem["dynamodb"]
    assert [r["dynamodb"]["SequenceNumber"] for r in (ins, mod, rem)] == [pc.position(0x700, i) for i in (1, 2, 3)]
    assert len({r["eventID"] for r in (ins, mod, rem)}) == 3


def test_default_replica_identity_gives_new_images_and_keys():
    mod, rem = change_record("d", update(("1", "b", "<unchanged>")), delete(("1", None, None)))
    assert mod["dynamodb"]["StreamViewType"] == "NEW_IMAGE" and "OldImage" not in mod["dynamodb"]
    assert mod["dynamodb"]["NewImage"] == {"id": {"N": "1"}, "name": {"S": "b"}}  # the unchanged value was not sent
    assert rem["dynamodb"]["Keys"] == {"id": {"N": "1"}}
    assert "OldImage" not in rem["dynamodb"] and "NewImage" not in rem["dynamodb"]


def test_keys_are_the_primary_key_even_when_every_column_is_in_the_identity():
    (tx,) = decode(begin(1), relation(identity="f", columns=(("a", 23, True), ("b", 25, True), ("c", 25, True))),
                   insert("1", "x", "y"), commit(1, 2))
    record = pc.lambda_record(tx.changes[0], tx, ARN, "r", ("b", "a"))
    assert list(record["dynamodb"]["Keys"].items()) == [("b", {"S": "x"}), ("a", {"N": "1"})]
    without = pc.lambda_record(tx.changes[0], tx, ARN, "r", ())
    assert set(without["dynamodb"]["Keys"]) == {"a", "b", "c"}  # unknown primary key: the identity's columns


# ---- what was read, what is done, where the slot may go -----------------------------------------
def client() -> pc.TableChanges:
    return pc.TableChanges(SOURCE, lambda: "postgresql://unused", "squall_x", "squall_p_x", "us-east-1")


def tx_rows(commit_lsn: int, end_lsn: int, *ids: str) -> list[tuple[bytes]]:
    return [(begin(commit_lsn),), (relation(),), *[(insert(i, "n", "b"),) for i in ids], (commit(commit_lsn, end_lsn),)]


def test_only_changes_after_what_was_read_are_new_and_the_slot_passes_only_done_transactions():
    c = client()
    rows = tx_rows(100, 110, "1", "2") + tx_rows(200, 210, "3") + tx_rows(300, 310, "4", "5")
    found, skipped = c._absorb(rows)
    assert (found, skipped) == (5, 0)
    handed = list(c._ahead)
    c._ahead.clear()
    c._read_upto = handed[-1].position
    c._watermark.register(r.position for r in handed)
    assert c._absorb(rows) == (0, len(rows))  # all read before
    # Out of order (parallel lanes): the slot passes a transaction only when all before it are done.
    asyncio.run(c.acknowledge("s", [handed[2].position]))
    assert c._target == 0
    asyncio.run(c.acknowledge("s", [handed[0].position]))
    assert c._target == 0  # the first transaction is half done
    asyncio.run(c.acknowledge("s", [handed[1].position]))
    assert c._target == 210
    asyncio.run(c.acknowledge("s", [handed[4].position]))
    assert c._target == 210
    asyncio.run(c.acknowledge("s", [handed[3].position]))
    assert c._target == 310


def test_after_a_restart_changes_up_to_squalls_checkpoint_are_skipped_and_passed():
    c = client()
    rows = tx_rows(100, 110, "1", "2") + tx_rows(200, 210, "3", "4")
    checkpoint = pc.position(200, 1)  # done up to the middle of the second transaction
    c._done_upto = c._read_upto = checkpoint
    found, skipped = c._absorb(rows)
    assert (found, skipped) == (1, 5) and [r.position for r in c._ahead] == [pc.position(200, 2)]
    c._collect()
    assert c._target == 110  # the first transaction is done; the second is not yet


def test_a_boundary_lets_the_slot_pass_when_nothing_before_it_is_pending():
    c = client()
    c._absorb([(message(0x900),)])
    c._collect()
    assert c._target == 0x901
    c2 = client()
    c2._absorb(tx_rows(100, 110, "1") + [(message(0x900),)])
    c2._collect()
    assert c2._target == 0  # the change before it is not done


def test_a_read_keeps_a_bounded_number_of_changes_and_takes_the_rest_later():
    c = client()
    rows = tx_rows(100, 110, *[str(i) for i in range(10)])  # one big transaction
    assert c._absorb(rows, keep=4) == (4, 0)
    first = [c._ahead.popleft().position for _ in range(4)]
    c._read_upto = first[-1]
    assert c._absorb(rows, keep=4) == (4, 0)
    assert [r.position for r in c._ahead] == [pc.position(100, i) for i in range(5, 9)]
    assert len(c._open) == 1  # the transaction is counted once
