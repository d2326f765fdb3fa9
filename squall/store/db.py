"""The relational store: engine set-up, schema and versioned migrations.

SQLite in WAL mode is the embedded default; any SQLAlchemy URL (PostgreSQL) can be
configured instead. Blocking calls are made off the event loop by the callers.
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("reserved_concurrency", sa.Integer, nullable=True),
)

versions = sa.Table(
    "function_versions",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("code_sha256_hex", sa.String(64), nullable=False),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
)

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[functions, versions])


def _v2(conn: sa.Connection) -> None:
    """Reserved concurrency per function (PutFunctionConcurrency)."""
    _add_column(conn, "functions", "reserved_concurrency", "INTEGER")


def _add_column(conn: sa.Connection, table: str, column: str, sql_type: str) -> None:
    # Fresh databases get the current tables from _v1 already; older ones need the column.
    existing = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    if column not in existing:
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


# Append-only: each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[Callable[[sa.Connection], None], ...] = (_v1, _v2)


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> int:
    """Bring the schema to the latest version; returns it."""
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[schema_version])
        current = conn.execute(sa.select(schema_version.c.version)).scalar()
        if current is None:
            conn.execute(schema_version.insert().values(version=0))
            current = 0
        for target in range(current, len(MIGRATIONS)):
            MIGRATIONS[target](conn)
        conn.execute(schema_version.update().values(version=len(MIGRATIONS)))
    return len(MIGRATIONS)
