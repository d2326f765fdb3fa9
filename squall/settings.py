"""One typed settings object for the whole server.

Values come, in increasing priority, from the defaults below, an optional TOML file
(``SQUALL_CONFIG_FILE`` or ``--config``), ``SQUALL_*`` environment variables, and the
command line of ``squall server``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "squall"


class NetworkSettings(BaseModel):
    """A named network (TOML ``[networks.<name>]``): what its environments may reach."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cidrs: list[str] = Field(default_factory=list)  # the addresses it reaches
    ports: list[int] = Field(default_factory=list)  # only these ports of them (empty: all)
    internet: bool = False  # the internet too, as the default network does
    host_ports: list[int] = Field(default_factory=list)  # ports of this host it may connect to
    subnet: str = ""  # its environments' addresses (empty: a /22 of 10.214.0.0/15 from its name)


class UpstreamCredentials(BaseModel):
    """An upstream AWS-compatible service's key a role stands for (``upstream_roles``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str
    secret_access_key: str = Field(repr=False)


class BrokerSecret(BaseModel):
    """A broker's user name and password, named like a Secrets Manager secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: str = Field(repr=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SQUALL_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    # Empty: SQLite (WAL) at <data_dir>/squall.db. Otherwise an SQLAlchemy URL.
    database_url: str = ""

    account_id: str = Field("123456789012", pattern=r"^\d{12}$")
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")

    # Every request must be signed (SigV4) with a key Squall issued, and IAM-style policies
    # decide what it may do. False (`--auth off`): anyone who can connect may do anything;
    # only for throwaway local use, and refused unless the server listens on loopback.
    auth: bool = True

    # Host names (and IP addresses) the server answers to besides loopback names and ``host``;
    # any other Host header is refused (DNS rebinding). Origins (scheme://host:port) browsers
    # may call from; by default none: a request with any Origin header is refused.
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    # Connections: how long a client may take to send a request's headers, how long a body
    # may stall, and how many connections are served at once (the next ones are closed).
    request_header_timeout_seconds: float = Field(10.0, gt=0)
    request_body_idle_seconds: float = Field(30.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    # Stored code (zips and their extracted trees) for the whole server: Lambda's 75 GB.
    code_storage_limit_bytes: int = Field(80530636800, ge=0)
    # An S3-compatible bucket (at aws_endpoint, with the aws_* credentials) that holds every
    # stored zip as <code_bucket_prefix><sha256>.zip: the durable copy every node can read;
    # <data_dir>/blobs is then a cache. Empty: zips live on this node's disk only.
    code_bucket: str = ""
    code_bucket_prefix: str = "squall-code/"

    # auto: the strongest backend this machine supports; or force one.
    isolation: Literal["auto", "process", "linux"] = "auto"
    # Where environments run: ``local`` (this machine) or ``ray``: node agents on every node of
    # the Ray cluster at ray_address place them (docs/cluster.md). Agents keep their code,
    # zygotes and environments' disks under ray_node_dir/node-<id> on their node, reserve
    # ray_cpu_share of Lambda's CPU share (MemorySize / 1769 MB) per environment, and a new
    # environment waits at most ray_placement_timeout_seconds for room.
    executor: Literal["local", "ray"] = "local"
    ray_address: str = ""
    ray_namespace: str = "squall"
    ray_node_dir: Path = Path("/var/lib/squall/nodes")
    ray_cpu_share: float = Field(1.0, ge=0, le=1)
    ray_placement_timeout_seconds: float = Field(10.0, gt=0)
    # Environments' networks (linux backend): the default network's addresses (it reaches the
    # internet, not this host), and named networks functions join through VpcConfig
    # (subnet-<name>, sg-<name>) or the tag squall:network=<name>.
    network_subnet: str = "10.213.0.0/16"
    networks: dict[str, NetworkSettings] = Field(default_factory=dict)
    # How long an idle execution environment is kept warm.
    keep_alive_seconds: float = Field(300.0, gt=0)
    # Account-wide concurrent executions (Lambda's default quota).
    account_concurrency: int = Field(1000, ge=1)
    # Sum of MemorySize over all environments (busy and warm); 0 = 80% of the machine's RAM.
    memory_capacity_mb: int = Field(0, ge=0)
    # SnapStart (Python): the memory all versions' snapshots (templates forked after init) may
    # take together; beyond it the least recently used is stopped.
    snapshot_memory_mb: int = Field(1024, ge=0)
    # SnapStart for $LATEST too (of functions whose SnapStart ApplyOn is PublishedVersions).
    snap_start_latest: bool = False
    # Log output kept per invocation; beyond it the log says it was truncated.
    max_log_bytes_per_invocation: int = Field(1 << 20, ge=4096)
    # Grace given to in-flight invokes on shutdown before their environments are killed.
    shutdown_grace_seconds: float = Field(10.0, ge=0)

    # Asynchronous invocation (InvocationType Event). Retry n after a function error waits
    # base x 2^(n-1): Lambda's ~1 min, then ~2 min by default.
    async_retry_delay_seconds: float = Field(60.0, gt=0)
    # Invocations the async dispatcher runs at once (each one may need its own environment).
    async_max_concurrency: int = Field(32, ge=1)
    # Most queue writes per commit; 1 = one commit (and fsync) per accepted event.
    async_commit_batch: int = Field(1000, ge=1)
    # How long a front end's lease on an event it runs lasts unless renewed (every quarter of it):
    # when a front end dies, the others run its events once their leases expire.
    async_lease_seconds: float = Field(60.0, ge=1)
    # SQS/SNS destinations and dead-letter queues: their AWS-compatible endpoints (empty:
    # SQUALL_AWS_ENDPOINT, and if that is empty too, AWS itself) and credentials (empty:
    # boto3's usual chain, e.g. AWS_ACCESS_KEY_ID).
    aws_endpoint: str = ""
    destination_sqs_endpoint: str = ""
    destination_sns_endpoint: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = Field("", repr=False)
    # GET /metrics: a scraper may send ``Authorization: Bearer <metrics_token>`` instead of a
    # SigV4 signature (Prometheus' ``authorization: {credentials: …}``). Empty: signed requests only.
    metrics_token: str = Field("", repr=False)
    # Spans of invocations go to this OTLP/HTTP collector (http://host:4318; empty: the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT, and without it no export). docs/metrics.md, "Traces".
    otlp_endpoint: str = ""
    # Execution roles whose functions call an upstream AWS-compatible endpoint (aws_endpoint):
    # role name → that service's key. Environments of such a role get this key (and
    # AWS_ENDPOINT_URL = aws_endpoint) instead of a Squall session; Squall accepts the same key
    # as that role, so one set of credentials works for both.
    upstream_roles: dict[str, UpstreamCredentials] = Field(default_factory=dict)
    # Self-hosted event sources (docs/event-sources.md): broker name → URL (redis://,
    # nats://, amqp://, postgresql://), named in a mapping's EventSourceArn; and credentials
    # for brokers, named by a mapping's SourceAccessConfigurations BASIC_AUTH URI
    # (arn:aws:secretsmanager:<region>:<account>:secret:<name>).
    event_source_brokers: dict[str, str] = Field(default_factory=dict)
    event_source_secrets: dict[str, BrokerSecret] = Field(default_factory=dict)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value

    @model_validator(mode="after")
    def _networks_fit(self) -> "Settings":
        self.network_specs()  # names, subnets that do not overlap, ports
        return self

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> "Settings":
        if not self.auth and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"auth off is for throwaway local use: it needs host 127.0.0.1, ::1 or localhost, not {self.host!r}")
        return self

    def network_specs(self) -> dict[str, Any]:
        """The networks, each with its subnet (see ``squall.sandbox.linux.network``)."""
        from squall.sandbox.linux.network import network_specs

        return network_specs(self.network_subnet, {name: n.model_dump() for name, n in self.networks.items()})

    @property
    def memory_capacity(self) -> int:
        """The memory admission limit in MB."""
        if self.memory_capacity_mb:
            return self.memory_capacity_mb
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
        return int(total * 0.8) >> 20

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'squall.db'}"

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> "Settings":
        """Defaults < TOML file < SQUALL_* environment < explicit overrides (CLI flags)."""
        path = config_file or os.environ.get("SQUALL_CONFIG_FILE")
        file_values: dict[str, Any] = {}
        if path:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        env_values = cls().model_dump(exclude_unset=True)
        merged = {**file_values, **env_values, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**merged)
