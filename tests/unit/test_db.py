"""Versioned migrations of the store."""

from __future__ import annotations

import sqlalchemy as sa

from squall.store import db


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
