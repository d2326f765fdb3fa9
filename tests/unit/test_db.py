"""Versioned migrations of the store."""

from __future__ import annotations


import sqlalchemy as sa

from squall.store import db
from squall.store.migrations import MIGRATIONS
from tests.conftest import fresh_postgres_database


def test_fresh_database_gets_the_latest_schema(tmp_path):
    engine = db.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.schema_version.c.version)).scalar() == len(db.MIGRATIONS)
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    assert "reserved_concurrency" in {c["name"] for c in sa.inspect(engine).get_columns("functions")}
    assert db.migrate(engine) == len(db.MIGRATIONS)  # idempotent


def test_a_version_1_database_is_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:
        # The schema as migration 1 created it, before reserved concurrency existed.
        conn.execute(sa.text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO schema_version VALUES (1)"))
        conn.execute(sa.text("CREATE TABLE functions (name VARCHAR(64) PRIMARY KEY, tags JSON NOT NULL, created_at FLOAT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO functions VALUES ('kept', '{}', 1.0)"))
        conn.execute(sa.text(
            "CREATE TABLE function_versions (function_name VARCHAR(64), version VARCHAR(32), revision_id VARCHAR(36), "
            "code_sha256_hex VARCHAR(64), code_size BIGINT, config JSON, PRIMARY KEY (function_name, version))"
        ))
    old.dispose()
    engine = db.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.schema_version.c.version)).scalar() == len(db.MIGRATIONS)
        row = conn.execute(sa.select(db.functions.c.name, db.functions.c.reserved_concurrency)).one()
    assert tuple(row) == ("kept", None)


def _columns(engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}


def test_the_frozen_steps_build_the_schema_the_queries_use(tmp_path):
    engine = db.create_engine(f"sqlite:///{tmp_path / 'steps.db'}")
    built = _columns(engine)
    for name, table in db.metadata.tables.items():
        assert built.get(name) == {c.name for c in table.columns}, name


def test_the_frozen_steps_build_the_same_schema_on_postgresql():
    with fresh_postgres_database("squall_schema") as url:
        engine = db.create_engine(url)
        built = _columns(engine)
        engine.dispose()
        for table_name, table in db.metadata.tables.items():
            assert built.get(table_name) == {c.name for c in table.columns}, table_name


def test_front_ends_starting_at_once_migrate_a_fresh_postgresql_database_once():
    import threading

    with fresh_postgres_database("squall_race") as url:
        engines = [sa.create_engine(url) for _ in range(3)]
        results: list[object] = []
        start = threading.Barrier(len(engines))

        def first_start(engine) -> None:
            start.wait()
            try:
                results.append(db.migrate(engine))
            except Exception as exc:  # noqa: BLE001 - what a front end would fail its start with
                results.append(exc)

        try:
            threads = [threading.Thread(target=first_start, args=(engine,)) for engine in engines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert results == [len(MIGRATIONS)] * len(engines)
        finally:
            for engine in engines:
                engine.dispose()
