"""Schema migrations: frozen, append-only steps.

Each step builds exactly what it built the day it was written, from its own table
definitions (a private ``MetaData``), never from the current schema objects in
``schema.py``: those change, and a step that read them would build a later schema early and
leave the next steps to guess. Step *i* takes the schema from version *i* to *i + 1*;
``schema_version`` records how far a database has come. Never edit a released step: add one.
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa


def _v1_functions_and_versions(conn: sa.Connection) -> None:
    m = sa.MetaData()
    sa.Table(
        "functions",
        m,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "function_versions",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("code_sha256_hex", sa.String(64), nullable=False),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
    )
    m.create_all(conn)


def _v2_reserved_concurrency(conn: sa.Connection) -> None:
    _add_column(conn, "functions", "reserved_concurrency", "INTEGER")


def _v3_async_invocation(conn: sa.Connection) -> None:
    """The durable event queue, its delivery outbox, per-function counters, EventInvokeConfigs."""
    m = sa.MetaData()
    sa.Table("functions", m, sa.Column("name", sa.String(64), primary_key=True))  # for the foreign keys
    sa.Table(
        "async_events",
        m,
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("deferrals", sa.Integer, nullable=False),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(36), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.LargeBinary, nullable=True),
        sa.Index("ix_async_events_due", "function_name", "lease_owner", "not_before"),
        sa.Index("ix_async_events_age", "function_name", "enqueued_at"),
    )
    sa.Table(
        "async_deliveries",
        m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("function_name", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(36), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Index("ix_async_deliveries_due", "lease_owner", "not_before"),
    )
    sa.Table(
        "async_stats",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("succeeded", sa.Integer, nullable=False, default=0),
        sa.Column("retries_exhausted", sa.Integer, nullable=False, default=0),
        sa.Column("age_exceeded", sa.Integer, nullable=False, default=0),
        sa.Column("dead_lettered", sa.Integer, nullable=False, default=0),
        sa.Column("destination_failures", sa.Integer, nullable=False, default=0),
    )
    sa.Table(
        "event_invoke_configs",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
    )
    m.create_all(conn, tables=[t for name, t in m.tables.items() if name != "functions"])


def _v4_versions_aliases_provisioned(conn: sa.Connection) -> None:
    """Published version numbers (never reused), aliases, provisioned concurrency configs."""
    _add_column(conn, "functions", "last_version", "INTEGER NOT NULL DEFAULT 0")
    m = sa.MetaData()
    sa.Table("functions", m, sa.Column("name", sa.String(64), primary_key=True))
    sa.Table(
        "aliases",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("function_version", sa.String(32), nullable=False),
        sa.Column("additional_version", sa.String(32), nullable=True),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Index("ix_aliases_version", "function_name", "function_version"),
    )
    sa.Table(
        "provisioned_concurrency",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("requested", sa.Integer, nullable=False),
        sa.Column("last_modified", sa.String(32), nullable=False),
    )
    m.create_all(conn, tables=[m.tables["aliases"], m.tables["provisioned_concurrency"]])


def _v5_identities_and_resource_policies(conn: sa.Connection) -> None:
    """IAM users, their access keys (no secrets: derived from the server's key), roles, inline
    policies; functions' resource-based policies per qualifier."""
    m = sa.MetaData()
    sa.Table("functions", m, sa.Column("name", sa.String(64), primary_key=True))
    sa.Table(
        "iam_users",
        m,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
    )
    sa.Table(
        "iam_access_keys",
        m,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("user_name", sa.String(64), sa.ForeignKey("iam_users.name"), nullable=False, index=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
    )
    sa.Table(
        "iam_user_policies",
        m,
        sa.Column("user_name", sa.String(64), sa.ForeignKey("iam_users.name"), primary_key=True),
        sa.Column("policy_name", sa.String(128), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    sa.Table(
        "iam_roles",
        m,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role_id", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("trust_policy", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("max_session_duration", sa.Integer, nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
    )
    sa.Table(
        "iam_role_policies",
        m,
        sa.Column("role_name", sa.String(64), sa.ForeignKey("iam_roles.name"), primary_key=True),
        sa.Column("policy_name", sa.String(128), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    sa.Table(
        "function_policies",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),  # "" for the unqualified function
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
    )
    m.create_all(conn, tables=[t for name, t in m.tables.items() if name != "functions"])


def _v6_event_source_mappings(conn: sa.Connection) -> None:
    """Event source mappings (no foreign key: a mapping outlives its function, as on Lambda)
    and the positions their stream pollers checkpointed per shard."""
    m = sa.MetaData()
    sa.Table(
        "event_source_mappings",
        m,
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("function_name", sa.String(64), nullable=False, index=True),
        sa.Column("qualifier", sa.String(128), nullable=False),  # "" for the unqualified function
        sa.Column("source_arn", sa.String(1024), nullable=False, index=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(256), nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.Column("last_result", sa.String(1024), nullable=False),
    )
    sa.Table(
        "event_source_positions",
        m,
        sa.Column("mapping_uuid", sa.String(36), sa.ForeignKey("event_source_mappings.uuid", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("shard", sa.String(256), primary_key=True),
        sa.Column("position", sa.String(256), nullable=False),  # the last sequence number done
    )
    m.create_all(conn)


def _v7_function_urls(conn: sa.Connection) -> None:
    """Function URLs: one per function qualifier (the alias, or "" for the function)."""
    m = sa.MetaData()
    sa.Table("functions", m, sa.Column("name", sa.String(64), primary_key=True))
    sa.Table(
        "function_urls",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("url_id", sa.String(40), nullable=False, unique=True),
        sa.Column("auth_type", sa.String(16), nullable=False),
        sa.Column("cors", sa.JSON, nullable=True),
        sa.Column("invoke_mode", sa.String(32), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("last_modified", sa.String(40), nullable=False),
    )
    m.create_all(conn, tables=[m.tables["function_urls"]])


def _v8_http_apis(conn: sa.Connection) -> None:
    """HTTP APIs (API Gateway v2): one row per API, and its integrations, routes and stages as
    documents keyed by kind and id (they go with their API; not with a function, as on AWS)."""
    m = sa.MetaData()
    sa.Table(
        "http_apis",
        m,
        sa.Column("api_id", sa.String(16), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
    )
    sa.Table(
        "http_api_resources",
        m,
        sa.Column("api_id", sa.String(16), sa.ForeignKey("http_apis.api_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),  # "integration", "route" or "stage"
        sa.Column("resource_id", sa.String(128), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
    )
    m.create_all(conn)


def _v9_event_rules(conn: sa.Connection) -> None:
    """EventBridge: custom event buses (``default`` is implicit), rules (with the next due tick of
    a schedule, claimed by compare-and-set) and their targets."""
    m = sa.MetaData()
    sa.Table(
        "event_buses",
        m,
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "event_rules",
        m,
        sa.Column("bus", sa.String(256), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_tick", sa.Float, nullable=True),
    )
    sa.Table(
        "event_targets",
        m,
        sa.Column("bus", sa.String(256), primary_key=True),
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
    )
    m.create_all(conn)


def _v10_schedules(conn: sa.Connection) -> None:
    """EventBridge Scheduler: schedules (with the next due fire, claimed by compare-and-set)."""
    m = sa.MetaData()
    sa.Table(
        "schedules",
        m,
        sa.Column("group_name", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_tick", sa.Float, nullable=True),
    )
    m.create_all(conn)


def _v11_triggers(conn: sa.Connection) -> None:
    """Notification triggers: SNS topic subscriptions and object-store webhooks, each addressed by
    an unguessable id (its webhook's path), with the function it invokes."""
    m = sa.MetaData()
    sa.Table(
        "triggers",
        m,
        sa.Column("trigger_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("function_arn", sa.String(256), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("token", sa.String(128), nullable=True),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    m.create_all(conn)


def _v12_layers(conn: sa.Connection) -> None:
    """Layers: each name's version counter (numbers are never reused) and its versions. A
    deleted version stays as a row marked deleted while function versions still use it."""
    m = sa.MetaData()
    sa.Table(
        "layers",
        m,
        sa.Column("name", sa.String(140), primary_key=True),
        sa.Column("last_version", sa.Integer, nullable=False),
    )
    sa.Table(
        "layer_versions",
        m,
        sa.Column("name", sa.String(140), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("code_sha256_hex", sa.String(64), nullable=False, index=True),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("unzipped_size", sa.BigInteger, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    m.create_all(conn)


def _v13_trace_and_function_settings(conn: sa.Connection) -> None:
    """Async events keep their caller's X-Amzn-Trace-Id (recursive loop detection); a counter of
    events stopped as recursive loops; per-function settings documents (recursion, runtime
    management)."""
    _add_column(conn, "async_events", "trace", "VARCHAR(512)")
    _add_column(conn, "async_stats", "recursive_loops", "INTEGER NOT NULL DEFAULT 0")
    m = sa.MetaData()
    sa.Table("functions", m, sa.Column("name", sa.String(64), primary_key=True))
    sa.Table(
        "function_settings",
        m,
        sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("document", sa.JSON, nullable=False),
    )
    m.tables["function_settings"].create(conn)


def _v14_server_secrets(conn: sa.Connection) -> None:
    """The server's secrets, shared by every front end of the database: ``server_key`` (from which
    access keys' secrets, session tokens and code links derive)."""
    m = sa.MetaData()
    sa.Table(
        "server_secrets",
        m,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    m.tables["server_secrets"].create(conn)


def _v15_front_ends(conn: sa.Connection) -> None:
    """The front ends serving the database: each writes its row every few seconds."""
    m = sa.MetaData()
    sa.Table(
        "front_ends",
        m,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(512), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("leader", sa.Boolean, nullable=False),
        sa.Column("info", sa.Text, nullable=False),  # JSON: environments, in flight, memory
    )
    m.tables["front_ends"].create(conn)


def _v16_concurrency_permits(conn: sa.Connection) -> None:
    """Concurrency permits held by front ends (several front ends: the limits hold across them)."""
    m = sa.MetaData()
    sa.Table(
        "concurrency_permits",
        m,
        sa.Column("scope", sa.String(200), primary_key=True),  # "account" or "function:<name>"
        sa.Column("holder", sa.String(64), primary_key=True),  # the front end
        sa.Column("permits", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    m.tables["concurrency_permits"].create(conn)


def _add_column(conn: sa.Connection, table: str, column: str, sql_type: str) -> None:
    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


# Append-only: each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[Callable[[sa.Connection], None], ...] = (
    _v1_functions_and_versions,
    _v2_reserved_concurrency,
    _v3_async_invocation,
    _v4_versions_aliases_provisioned,
    _v5_identities_and_resource_policies,
    _v6_event_source_mappings,
    _v7_function_urls,
    _v8_http_apis,
    _v9_event_rules,
    _v10_schedules,
    _v11_triggers,
    _v12_layers,
    _v13_trace_and_function_settings,
    _v14_server_secrets,
    _v15_front_ends,
    _v16_concurrency_permits,
)
