"""PostgreSQL table changes as an event source, end to end: a real ``squall server`` reading a
PostgreSQL 15 server of the tests' own (the machine's runs with ``wal_level = replica``; logical
decoding needs ``logical``), started from initdb in a temporary directory on an ephemeral port.

Records are DynamoDB-Streams-shaped, so the shared RECORDER function writes each one's
``dynamodb`` part (its ``SequenceNumber`` as id, its ``eventName`` as key) to a sink file.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from squall.sources import postgres_changes as pc
from tests.conftest import require, start_server
from tests.e2e.test_event_sources import error_of, recorder, wait_state

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ACCOUNT_ARN = "arn:aws:postgres:us-east-1:123456789012"


# ---------------------------------------------------------------- a PostgreSQL server of our own
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, base: Path, port: int, as_user: list[str]) -> None:
        self.base = base
        self.port = port
        self.as_user = as_user
        self.url = f"postgresql://postgres@127.0.0.1:{port}/app"

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def pid(self) -> int | None:
        try:
            return int((self.base / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def pg():
    require(all((PG_BIN / b).exists() for b in ("initdb", "pg_ctl", "postgres")),
            f"the PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) are not in {PG_BIN}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg (v3) is not installed")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="squall-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: the cluster runs as the postgres OS user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            require(False, "running as root and there is no postgres OS user to run a PostgreSQL server as")
        require(shutil.which("runuser") is not None, "runuser is not installed")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(base, 0, as_user)
    try:
        cluster.run(str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8", "--locale=C")
        for _ in range(3):  # an ephemeral port someone else took in between: try another
            cluster.port = free_port()
            options = (f"-c wal_level=logical -c port={cluster.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={base} -c fsync=off -c max_replication_slots=64")
            try:
                cluster.run(str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-t", "60",
                            "-o", options, "start")
                break
            except subprocess.CalledProcessError:
                continue
        else:
            raise RuntimeError("PostgreSQL did not start:\n" + (base / "log").read_text())
        cluster.url = f"postgresql://postgres@127.0.0.1:{cluster.port}/app"
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        yield cluster
    finally:
        pid = cluster.pid()
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # fast shutdown of the postmaster we started
            deadline = time.monotonic() + 30
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.1)
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's own server (wal_level = replica)


def brokers_env(pg: Cluster) -> dict[str, str]:
    return {"SQUALL_EVENT_SOURCE_BROKERS": json.dumps({
        "pg": pg.url, "down": f"postgresql://postgres@127.0.0.1:{free_port()}/app", "machine": MACHINE_PG})}


def machine_wal_level() -> str | None:
    import psycopg

    try:
        with psycopg.connect(MACHINE_PG, connect_timeout=2) as conn:
            return conn.execute("SHOW wal_level").fetchone()[0]
    except psycopg.Error:
        return None


@pytest.fixture(scope="module")
def squall(tmp_path_factory, pg):
    running = start_server(tmp_path_factory.mktemp("squall-pg"), "--isolation", "process", env=brokers_env(pg))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


# ---------------------------------------------------------------- helpers
def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def arn_of(table: str, broker: str = "pg", schema: str = "public") -> str:
    return f"{ACCOUNT_ARN}:{broker}/table/{schema}.{table}"


def changes(batches: list[dict]) -> list[tuple[str, dict]]:
    """(eventName, dynamodb) of every record delivered, in delivery order."""
    return [(name, json.loads(body)) for b in batches for name, body in zip(b["keys"], b["bodies"])]


def wait_changes(sink, count: int, timeout: float = 30.0) -> list[dict]:
    return sink.wait(lambda bs: sum(len(b["ids"]) for b in bs) >= count, timeout, f"{count} changes")


def pending_rows(pg: Cluster, slot: str, publication: str) -> int:
    return pg.sql("SELECT count(*) FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
                  "'publication_names', %s)", (slot, publication))[0][0]


def wait_slot_drained(pg: Cluster, mapping_uuid: str, table: str, timeout: float = 15.0) -> None:
    """The mapping's slot has been moved past every change (the changes were acknowledged)."""
    slot, publication = pc.slot_name(mapping_uuid), pc.publication_name("public", table)
    deadline = time.monotonic() + timeout
    while pending_rows(pg, slot, publication):
        assert time.monotonic() < deadline, f"slot {slot} still has {pending_rows(pg, slot, publication)} rows"
        time.sleep(0.2)


def ids_of(batches: list[dict]) -> list[int]:
    return [int(change["Keys"]["id"]["N"]) for _, change in changes(batches)]


# ---------------------------------------------------------------- the happy path
def test_inserts_updates_and_deletes_arrive_as_dynamodb_records_in_commit_order(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"""CREATE TABLE {table} (id int PRIMARY KEY, name text, price numeric(10, 2), qty bigint, ok boolean,
               raw bytea, doc jsonb, at timestamptz, ratio float8, tags text[], note text)""")
    pg.sql(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST", BatchSize=10)
    assert created["StartingPosition"] == "LATEST" and created["EventSourceArn"] == arn_of(table)
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"""INSERT INTO {table} VALUES (1, 'apple', 12.50, 9007199254740993, true, '\\x00ff', '{{"n": [1, "x"]}}',
               '2024-01-02 03:04:05+00', 0.25, '{{a,b}}', NULL)""")
    pg.sql(f"UPDATE {table} SET name = 'pear', qty = 3 WHERE id = 1")
    pg.sql(f"DELETE FROM {table} WHERE id = 1")
    # Two transactions that commit in the opposite order of their first writes.
    with pg.connect() as first, pg.connect() as second:
        first.execute("BEGIN")
        first.execute(f"INSERT INTO {table} (id, name) VALUES (10, 'first-a')")
        second.execute("BEGIN")
        second.execute(f"INSERT INTO {table} (id, name) VALUES (20, 'second')")
        second.execute("COMMIT")
        first.execute(f"INSERT INTO {table} (id, name) VALUES (11, 'first-b')")
        first.execute("COMMIT")
    batches = wait_changes(sink, 6)
    got = changes(batches)
    assert [n for n, _ in got] == ["INSERT", "MODIFY", "REMOVE", "INSERT", "INSERT", "INSERT"]
    assert ids_of(batches) == [1, 1, 1, 20, 10, 11]  # commit order
    sequence = [c["SequenceNumber"] for _, c in got]
    assert sequence == sorted(sequence) and len(set(sequence)) == 6 and all(s.isdigit() for s in sequence)
    insert, modify, remove = (c for _, c in got[:3])
    assert insert["Keys"] == {"id": {"N": "1"}} and insert["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert insert["NewImage"] == {
        "id": {"N": "1"}, "name": {"S": "apple"}, "price": {"N": "12.50"}, "qty": {"N": "9007199254740993"},
        "ok": {"BOOL": True}, "raw": {"B": "AP8="}, "doc": {"M": {"n": {"L": [{"N": "1"}, {"S": "x"}]}}},
        "at": {"S": "2024-01-02 03:04:05+00"}, "ratio": {"N": "0.25"}, "tags": {"S": "{a,b}"}, "note": {"NULL": True}}
    assert "OldImage" not in insert
    assert modify["OldImage"] == insert["NewImage"]
    assert modify["NewImage"] == {**insert["NewImage"], "name": {"S": "pear"}, "qty": {"N": "3"}}
    assert remove["OldImage"] == modify["NewImage"] and "NewImage" not in remove and remove["Keys"] == {"id": {"N": "1"}}
    assert abs(insert["ApproximateCreationDateTime"] - time.time()) < 600 and isinstance(
        insert["ApproximateCreationDateTime"], int)
    record = batches[0]["first"]
    assert record["eventSource"] == "squall:postgres" and record["eventSourceARN"] == arn_of(table)
    assert record["eventVersion"] == "1.1" and record["awsRegion"] == "us-east-1" and record["eventName"] == "INSERT"
    assert isinstance(record["eventID"], str) and record["eventID"]
    wait_slot_drained(pg, created["UUID"], table)  # acknowledged changes are passed by the slot
    deadline = time.monotonic() + 10
    while lam.get_event_source_mapping(UUID=created["UUID"])["LastProcessingResult"] != "OK":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(changes(sink.batches())) == 6  # each once
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_default_replica_identity_gives_new_images_and_keys_with_a_composite_key(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (region text, id int, v int, PRIMARY KEY (region, id))")
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON")
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {table} VALUES ('eu', 1, 1)")
    pg.sql(f"UPDATE {table} SET v = 2 WHERE region = 'eu' AND id = 1")
    pg.sql(f"DELETE FROM {table} WHERE region = 'eu' AND id = 1")
    got = changes(wait_changes(sink, 3))
    keys = {"region": {"S": "eu"}, "id": {"N": "1"}}
    assert [n for n, _ in got] == ["INSERT", "MODIFY", "REMOVE"]
    assert all(c["Keys"] == keys and c["StreamViewType"] == "NEW_IMAGE" for _, c in got)
    assert got[1][1]["NewImage"] == {**keys, "v": {"N": "2"}} and "OldImage" not in got[1][1]
    assert "OldImage" not in got[2][1] and "NewImage" not in got[2][1]
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- filters, failures
def test_filters_pass_only_matching_changes_and_the_rest_are_acknowledged(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, status text, n int)")
    name, sink = recorder(lam, tmp_path)
    patterns = [{"Pattern": json.dumps({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["keep"]}}}})},
                {"Pattern": json.dumps({"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"n": {"N": ["10"]}}}})}]  # N is a string
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST", FilterCriteria={"Filters": patterns},
                                              MaximumBatchingWindowInSeconds=1)
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {table} VALUES (1, 'keep', 1), (2, 'drop', 1), (3, 'keep', 9)")
    pg.sql(f"UPDATE {table} SET n = n + 1")  # 2, 2, 10: only id 3 passes
    pg.sql(f"DELETE FROM {table} WHERE id = 1")
    pg.sql(f"INSERT INTO {table} VALUES (4, 'keep', 0)")
    wait_changes(sink, 4)
    wait_slot_drained(pg, created["UUID"], table)  # the filtered-out changes were passed too
    got = changes(sink.batches())
    assert [(n, int(c["Keys"]["id"]["N"])) for n, c in got] == [("INSERT", 1), ("INSERT", 3), ("MODIFY", 3),
                                                                ("INSERT", 4)]
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_partial_failures_retry_from_the_first_failed_change_then_give_up(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, label text)")
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(
        EventSourceArn=arn_of(table), FunctionName=name, StartingPosition="LATEST", BatchSize=10,
        MaximumBatchingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"], MaximumRetryAttempts=2)
    assert created["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'bad-c'), (4, 'd')")
    batches = sink.wait(lambda bs: len(bs) >= 3, what="three invocations")
    assert [ids_of([b]) for b in batches[:3]] == [[1, 2, 3, 4], [3, 4], [3, 4]]
    assert batches[1]["ids"][0] == batches[0]["ids"][2]  # the failed change's SequenceNumber is its identifier
    pg.sql(f"INSERT INTO {table} VALUES (5, 'after')")  # two retries, then dropped: the stream moves on
    batches = sink.wait(lambda bs: 5 in ids_of(bs), what="the change after the dropped ones")
    assert ids_of(batches) == [1, 2, 3, 4, 3, 4, 3, 4, 5]
    wait_slot_drained(pg, created["UUID"], table)
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_parallel_lanes_keep_order_per_key_and_the_slot_follows_the_slowest(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    name, sink = recorder(lam, tmp_path, delay=0.05)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST", BatchSize=2, ParallelizationFactor=4)
    assert created["ParallelizationFactor"] == 4
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 6) g")
    for v in range(1, 6):
        pg.sql(f"UPDATE {table} SET v = {v}")  # one transaction, six keys
    batches = wait_changes(sink, 36)
    per_key: dict[int, list[int]] = {}
    for _, change in changes(batches):
        per_key.setdefault(int(change["Keys"]["id"]["N"]), []).append(int(change["NewImage"]["v"]["N"]))
    assert per_key == {k: [0, 1, 2, 3, 4, 5] for k in range(1, 7)}  # each once, in order per key
    wait_slot_drained(pg, created["UUID"], table)
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- disable, enable, update
def test_changes_made_while_disabled_arrive_after_enable_with_the_new_batch_size(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST", BatchSize=10, MaximumBatchingWindowInSeconds=1)
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {table} VALUES (0)")
    wait_changes(sink, 1)
    assert lam.update_event_source_mapping(UUID=created["UUID"], Enabled=False)["State"] == "Disabling"
    wait_state(lam, created["UUID"], "Disabled")
    for i in range(1, 8):
        pg.sql(f"INSERT INTO {table} VALUES ({i})")
    time.sleep(2)
    assert ids_of(sink.batches()) == [0]
    updated = lam.update_event_source_mapping(UUID=created["UUID"], Enabled=True, BatchSize=2)
    assert updated["State"] == "Enabling" and updated["BatchSize"] == 2
    wait_state(lam, created["UUID"], "Enabled")
    batches = wait_changes(sink, 8)
    assert ids_of(batches) == list(range(8))
    assert max(len(b["ids"]) for b in batches[1:]) <= 2
    lam.delete_event_source_mapping(UUID=created["UUID"])


def test_an_idle_slot_is_moved_on_when_other_tables_write(lam, pg, tmp_path):
    """A slot keeps WAL until it is advanced: with nothing of its table to read, a heartbeat
    lets it pass what other tables wrote."""
    table, other = table_name(), table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pg.sql(f"CREATE TABLE {other} (id int PRIMARY KEY, pad text)")
    name, sink = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST")
    wait_state(lam, created["UUID"], "Enabled")
    pg.sql(f"INSERT INTO {other} SELECT g, repeat('x', 200) FROM generate_series(1, 3 * {pc.HEARTBEAT_BYTES} / 200) g")
    written = pg.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    slot = pc.slot_name(created["UUID"])
    deadline = time.monotonic() + 4 * pc.HEARTBEAT_SECONDS + 10
    while not pg.sql("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                     (written, slot))[0][0]:
        assert time.monotonic() < deadline, "the idle slot was not moved on"
        time.sleep(0.25)
    pg.sql(f"INSERT INTO {table} VALUES (1)")  # and what comes next still arrives
    assert ids_of(wait_changes(sink, 1)) == [1]
    lam.delete_event_source_mapping(UUID=created["UUID"])


# ---------------------------------------------------------------- a crash
def test_sigkill_loses_no_committed_change_and_keeps_commit_order(pg, tmp_path):
    """SIGKILL the server with batches in flight, commit more while it is down, restart it:
    every change arrives (at least once), in commit order within each run."""
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    data_dir = tmp_path / "data"
    first = start_server(data_dir, "--isolation", "process", env=brokers_env(pg))
    lam = first.client("lambda")
    name, sink = recorder(lam, tmp_path, timeout=2, delay=0.3)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=5)
    wait_state(lam, created["UUID"], "Enabled")
    for i in range(40):
        pg.sql(f"INSERT INTO {table} VALUES ({i})")
    sink.wait(lambda bs: len(bs) >= 2, what="some batches before the crash")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    for i in range(40, 60):  # committed while Squall is down
        pg.sql(f"INSERT INTO {table} VALUES ({i})")
    time.sleep(1.5)  # an invocation already running (its own process group) may still write its line
    crashed_at = len(sink.batches())
    second = start_server(data_dir, "--isolation", "process", env=brokers_env(pg))
    try:
        batches = sink.wait(lambda bs: set(ids_of(bs)) >= set(range(60)), 90, "every change after the restart")
        before, after = ids_of(batches[:crashed_at]), ids_of(batches[crashed_at:])
        assert before == sorted(before) and after == sorted(after)  # commit order within each run
        assert before == list(range(len(before)))
        assert after[0] <= len(before)  # the restart goes back (at least once), never skips
        wait_slot_drained(pg, created["UUID"], table)
        second.client("lambda").delete_event_source_mapping(UUID=created["UUID"])
    finally:
        second.stop()


# ---------------------------------------------------------------- bad input, and dropping the slots
def test_bad_sources_are_refused_when_the_mapping_is_made(lam, pg, tmp_path):
    name, _ = recorder(lam, tmp_path)
    create = lam.create_event_source_mapping
    status, code, message = error_of(create, EventSourceArn=arn_of("orders", broker="nope"), FunctionName=name,
                                     StartingPosition="LATEST")
    assert (status, code) == (400, "InvalidParameterValueException") and "'nope'" in message
    status, code, message = error_of(create, EventSourceArn=arn_of("orders", broker="down"), FunctionName=name,
                                     StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "Cannot connect" in message
    status, code, message = error_of(create, EventSourceArn=arn_of("no_such_table"), FunctionName=name,
                                     StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "public.no_such_table does not exist" in message
    keyless = table_name()
    pg.sql(f"CREATE TABLE {keyless} (v int)")
    status, code, message = error_of(create, EventSourceArn=arn_of(keyless), FunctionName=name,
                                     StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "primary key" in message
    pg.sql(f"UPDATE {keyless} SET v = 1")  # not published: it keeps working
    view = table_name()
    pg.sql(f"CREATE VIEW {view} AS SELECT 1 AS id")
    status, code, message = error_of(create, EventSourceArn=arn_of(view), FunctionName=name, StartingPosition="LATEST")
    assert code == "InvalidParameterValueException" and "not a table" in message
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    status, code, message = error_of(create, EventSourceArn=arn_of(table), FunctionName=name,
                                     StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=time.time())
    assert code == "InvalidParameterValueException" and "AT_TIMESTAMP" in message
    status, code, message = error_of(create, EventSourceArn=arn_of(table), FunctionName=name)
    assert code == "InvalidParameterValueException" and "startingPosition" in message
    if machine_wal_level() not in (None, "logical"):  # a server without logical decoding
        status, code, message = error_of(create, EventSourceArn=arn_of("orders", broker="machine"), FunctionName=name,
                                         StartingPosition="LATEST")
        assert code == "InvalidParameterValueException" and "wal_level = logical" in message
    slots = pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s", ("squall\\_p\\_%",))[0][0]
    assert slots == 0  # a refused mapping leaves no slot behind


def test_deleting_a_mapping_drops_its_slots(lam, pg, tmp_path):
    table = table_name()
    pg.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    name, _ = recorder(lam, tmp_path)
    created = lam.create_event_source_mapping(EventSourceArn=arn_of(table), FunctionName=name,
                                              StartingPosition="LATEST", Enabled=False)
    wait_state(lam, created["UUID"], "Disabled")
    pending = pc.pending_slot_name(arn_of(table), created["FunctionArn"])
    assert pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (pending,))[0][0] == 1
    lam.update_event_source_mapping(UUID=created["UUID"], Enabled=True)
    wait_state(lam, created["UUID"], "Enabled")
    slot = pc.slot_name(created["UUID"])
    deadline = time.monotonic() + 10
    while [r[0] for r in pg.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name IN (%s, %s)",
                                (slot, pending))] != [slot]:
        assert time.monotonic() < deadline, "the poller did not take the create-time slot over"
        time.sleep(0.1)
    lam.delete_event_source_mapping(UUID=created["UUID"])
    deadline = time.monotonic() + 10
    while created["UUID"] in [m["UUID"] for m in lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name IN (%s, %s)", (slot, pending))[0][0] == 0
    # A mapping deleted while disabled, before it ever ran: its create-time slot goes too.
    other = table_name()
    pg.sql(f"CREATE TABLE {other} (id int PRIMARY KEY)")
    never = lam.create_event_source_mapping(EventSourceArn=arn_of(other), FunctionName=name,
                                            StartingPosition="LATEST", Enabled=False)
    wait_state(lam, never["UUID"], "Disabled")
    pending = pc.pending_slot_name(arn_of(other), never["FunctionArn"])
    assert pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (pending,))[0][0] == 1
    lam.delete_event_source_mapping(UUID=never["UUID"])
    deadline = time.monotonic() + 10
    while pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (pending,))[0][0]:
        assert time.monotonic() < deadline, "the create-time slot of a deleted mapping is still there"
        time.sleep(0.1)
