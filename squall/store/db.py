"""The relational store: engine set-up and the current schema (what queries use).

SQLite in WAL mode is the embedded default; any SQLAlchemy URL (PostgreSQL) can be
configured instead. Blocking calls are made off the event loop by the callers. The schema
is built and upgraded by the frozen steps in ``migrations.py``, never from these objects.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.migrations import MIGRATIONS

metadata = sa.MetaData()

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("reserved_concurrency", sa.Integer, nullable=True),
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),  # published versions are never reused
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

# ---- asynchronous invocation (issue 4): the durable event queue, its outbox and counters -----
async_events = sa.Table(
    "async_events",
    metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("enqueued_at", sa.Float, nullable=False),  # epoch seconds of the first enqueue
    sa.Column("attempts", sa.Integer, nullable=False),  # function invocations made so far
    sa.Column("deferrals", sa.Integer, nullable=False),  # throttles / system errors so far
    sa.Column("not_before", sa.Float, nullable=False),  # due time (retry backoff)
    sa.Column("lease_owner", sa.String(36), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),  # 200 function error, 429 throttle, 500 system
    sa.Column("last_error", sa.LargeBinary, nullable=True),  # the last error document
    sa.Column("trace", sa.String(512), nullable=True),  # the caller's X-Amzn-Trace-Id (recursion detection)
    sa.Index("ix_async_events_due", "function_name", "lease_owner", "not_before"),
    sa.Index("ix_async_events_age", "function_name", "enqueued_at"),
)

async_deliveries = sa.Table(  # the outbox: destination records and dead letters still to send
    "async_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("function_name", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "destination" | "dlq"
    sa.Column("target", sa.String(400), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attributes", sa.JSON, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(36), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Index("ix_async_deliveries_due", "lease_owner", "not_before"),
)

async_stats = sa.Table(
    "async_stats",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("succeeded", sa.Integer, nullable=False, default=0),
    sa.Column("retries_exhausted", sa.Integer, nullable=False, default=0),
    sa.Column("age_exceeded", sa.Integer, nullable=False, default=0),
    sa.Column("dead_lettered", sa.Integer, nullable=False, default=0),
    sa.Column("destination_failures", sa.Integer, nullable=False, default=0),
    sa.Column("recursive_loops", sa.Integer, nullable=False, default=0),
)

event_invoke_configs = sa.Table(
    "event_invoke_configs",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
)


aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("function_version", sa.String(32), nullable=False),
    sa.Column("additional_version", sa.String(32), nullable=True),  # the weighted one, if any
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
)

provisioned_concurrency = sa.Table(
    "provisioned_concurrency",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),
    sa.Column("requested", sa.Integer, nullable=False),
    sa.Column("last_modified", sa.String(32), nullable=False),
)


# ---- identities (issue 11): IAM users, keys, roles, inline policies; resource policies -----
iam_users = sa.Table(
    "iam_users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False, unique=True),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
)

iam_access_keys = sa.Table(
    "iam_access_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("user_name", sa.String(64), sa.ForeignKey("iam_users.name"), nullable=False, index=True),
    sa.Column("salt", sa.String(64), nullable=False),  # the secret is derived from the server's key and this
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
)

iam_user_policies = sa.Table(
    "iam_user_policies",
    metadata,
    sa.Column("user_name", sa.String(64), sa.ForeignKey("iam_users.name"), primary_key=True),
    sa.Column("policy_name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
)

iam_roles = sa.Table(
    "iam_roles",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role_id", sa.String(32), nullable=False, unique=True),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("trust_policy", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("max_session_duration", sa.Integer, nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
)

iam_role_policies = sa.Table(
    "iam_role_policies",
    metadata,
    sa.Column("role_name", sa.String(64), sa.ForeignKey("iam_roles.name"), primary_key=True),
    sa.Column("policy_name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
)

function_policies = sa.Table(
    "function_policies",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),  # "" for the unqualified function
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("revision_id", sa.String(36), nullable=False),
)

event_source_mappings = sa.Table(
    "event_source_mappings",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("function_name", sa.String(64), nullable=False, index=True),
    sa.Column("qualifier", sa.String(128), nullable=False),
    sa.Column("source_arn", sa.String(1024), nullable=False, index=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.String(256), nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("last_result", sa.String(1024), nullable=False),
)

event_source_positions = sa.Table(
    "event_source_positions",
    metadata,
    sa.Column("mapping_uuid", sa.String(36), sa.ForeignKey("event_source_mappings.uuid", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("shard", sa.String(256), primary_key=True),
    sa.Column("position", sa.String(256), nullable=False),
)

function_urls = sa.Table(
    "function_urls",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),  # "" for the function itself
    sa.Column("url_id", sa.String(40), nullable=False, unique=True),
    sa.Column("auth_type", sa.String(16), nullable=False),
    sa.Column("cors", sa.JSON, nullable=True),
    sa.Column("invoke_mode", sa.String(32), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("last_modified", sa.String(40), nullable=False),
)


# ---- HTTP APIs (API Gateway v2) -------------------------------------------------------------
http_apis = sa.Table(
    "http_apis",
    metadata,
    sa.Column("api_id", sa.String(16), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
)

http_api_resources = sa.Table(
    "http_api_resources",
    metadata,
    sa.Column("api_id", sa.String(16), sa.ForeignKey("http_apis.api_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # "integration", "route" or "stage"
    sa.Column("resource_id", sa.String(128), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
)


# ---- EventBridge rules and custom event buses ----------------------------------------------
event_buses = sa.Table(
    "event_buses",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("description", sa.String(512), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

event_rules = sa.Table(
    "event_rules",
    metadata,
    sa.Column("bus", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # epoch seconds (a rate's lattice starts here)
    sa.Column("next_tick", sa.Float, nullable=True),  # a schedule's next due tick (compare-and-set)
)

event_targets = sa.Table(
    "event_targets",
    metadata,
    sa.Column("bus", sa.String(256), primary_key=True),
    sa.Column("rule", sa.String(64), primary_key=True),
    sa.Column("target_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
)

# ---- EventBridge Scheduler schedules ---------------------------------------------------------
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("group_name", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # schedule-clock epoch seconds (a rate's default anchor)
    sa.Column("next_tick", sa.Float, nullable=True),  # the next due fire (compare-and-set)
)


# ---- notification triggers (SNS subscriptions, object-store webhooks) -------------------------
triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("trigger_id", sa.String(64), primary_key=True),  # unguessable: the webhook's path
    sa.Column("kind", sa.String(16), nullable=False),  # "sns" or "s3"
    sa.Column("function_arn", sa.String(256), nullable=False),
    sa.Column("source", sa.String(1024), nullable=False),  # the topic ARN, or a label
    sa.Column("token", sa.String(128), nullable=True),  # an object-store webhook's secret
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# ---- per-function settings documents (recursion config, runtime management) ---------------------
function_settings = sa.Table(
    "function_settings",
    metadata,
    sa.Column("function_name", sa.String(64), sa.ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),  # "recursion", "runtime-management"
    sa.Column("qualifier", sa.String(128), primary_key=True),  # "" for the function itself
    sa.Column("document", sa.JSON, nullable=False),
)


# ---- layers ------------------------------------------------------------------------------------
layers = sa.Table(
    "layers",
    metadata,
    sa.Column("name", sa.String(140), primary_key=True),
    sa.Column("last_version", sa.Integer, nullable=False),  # numbers are never reused
)

layer_versions = sa.Table(
    "layer_versions",
    metadata,
    sa.Column("name", sa.String(140), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("code_sha256_hex", sa.String(64), nullable=False, index=True),
    sa.Column("code_size", sa.BigInteger, nullable=False),
    sa.Column("unzipped_size", sa.BigInteger, nullable=False),
    sa.Column("document", sa.JSON, nullable=False),  # Description, Compatible*, LicenseInfo, CreatedDate, CodeSha256
    sa.Column("policy", sa.JSON, nullable=False),  # the layer version's permission statements
    sa.Column("deleted", sa.Boolean, nullable=False),  # hidden, kept while function versions use it
    sa.Column("created_at", sa.Float, nullable=False),
)


# ---- the server's secrets (one key for every front end of the database) ---------------------------
front_ends = sa.Table(
    "front_ends",
    metadata,
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

concurrency_permits = sa.Table(
    "concurrency_permits",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),  # "account" or "function:<name>"
    sa.Column("holder", sa.String(64), primary_key=True),  # the front end
    sa.Column("permits", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),  # "server_key"
    sa.Column("value", sa.LargeBinary, nullable=False),
)


def create_engine(url: str, synchronous: str = "NORMAL") -> Engine:
    """``synchronous="FULL"`` (SQLite): every commit is fsynced (the async event queue uses it)."""
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"invalid SQLite synchronous mode: {synchronous}")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


MIGRATION_LOCK = 0x5371_7561_6C6D  # PostgreSQL advisory lock held while the schema is brought up to date


def migrate(engine: Engine) -> int:
    """Bring the schema to the latest version; returns it."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # front ends starting at once: one migrates, the others wait
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        metadata.create_all(conn, tables=[schema_version])  # the one table no step creates
        current = conn.execute(sa.select(schema_version.c.version)).scalar()
        if current is None:
            conn.execute(schema_version.insert().values(version=0))
            current = 0
        for target in range(current, len(MIGRATIONS)):
            MIGRATIONS[target](conn)
        conn.execute(schema_version.update().values(version=len(MIGRATIONS)))
    return len(MIGRATIONS)
