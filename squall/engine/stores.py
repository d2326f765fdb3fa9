"""The engine's stores, opened together from the settings: the database's repositories, the
code store and the log store. The async event queue opens its own connections (each commit
fsynced) in ``async_invoke/pipeline.py``."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine as Database
from sqlalchemy.exc import IntegrityError

from squall.functions.code_store import CodeStore
from squall.observe.logs import LogStore
from squall.settings import Settings
from squall.store.aliases import AliasRepository
from squall.store.blobs import BlobStore, S3CodeBucket
from squall.store.db import create_engine, iam_access_keys, server_secrets
from squall.store.event_rules import EventRuleRepository
from squall.store.event_sources import EventSourceRepository
from squall.store.function_urls import FunctionUrlRepository
from squall.store.function_settings import FunctionSettingsRepository
from squall.store.functions import FunctionRepository
from squall.store.http_apis import HttpApiRepository
from squall.store.iam import IamRepository
from squall.store.layers import LayerRepository
from squall.store.provisioned import ProvisionedRepository
from squall.store.triggers import TriggerRepository
from squall.store.schedules import ScheduleRepository
from squall.store.front_ends import FrontEndRepository

log = logging.getLogger("squall.stores")

SERVER_KEY = "server_key"  # its row in server_secrets


def load_server_key(data_dir: Path) -> bytes:
    """A per-installation secret, created on the first start (mode 0600)."""
    path = data_dir / "secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def shared_server_key(db: Database, data_dir: Path) -> bytes:
    """The server's key, one for every front end of the database (blocking; the schema must be
    migrated already): the database's ``server_key`` when it has one; else this data dir's
    secret file (an upgraded installation keeps its keys) or 32 fresh random bytes, stored.
    Front ends starting together race to store theirs: the first insert wins and the others read
    it. ``<data dir>/secret`` is rewritten (0600) to hold the database's key."""
    key = _stored_key(db)
    if key is None:
        had_file = (data_dir / "secret").exists()
        candidate = load_server_key(data_dir)
        if not had_file and _has_access_keys(db):
            log.warning("the database holds access keys but no server key, and %s has no secret file: a new server "
                        "key is made, and the existing access keys' secrets no longer match (start the front end "
                        "whose data directory holds the old secret first to keep them)", data_dir)
        try:
            with db.begin() as conn:
                conn.execute(server_secrets.insert().values(name=SERVER_KEY, value=candidate))
            key = candidate
        except IntegrityError:  # another front end stored its key first
            key = _stored_key(db)
            if key is None:
                raise
    _write_secret_file(data_dir, key)
    return key


def _stored_key(db: Database) -> bytes | None:
    with db.connect() as conn:
        value = conn.execute(sa.select(server_secrets.c.value).where(server_secrets.c.name == SERVER_KEY)).scalar()
    return None if value is None else bytes(value)


def _has_access_keys(db: Database) -> bool:
    with db.connect() as conn:
        return conn.execute(sa.select(iam_access_keys.c.key_id).limit(1)).first() is not None


def _write_secret_file(data_dir: Path, key: bytes) -> None:
    """``<data dir>/secret`` holds ``key`` (0600), replaced atomically when it held another."""
    path = data_dir / "secret"
    try:
        if path.read_bytes() == key:
            return
    except OSError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@dataclass
class Stores:
    db: Database
    functions: FunctionRepository
    aliases: AliasRepository
    provisioned: ProvisionedRepository
    code: CodeStore
    logs: LogStore
    iam: IamRepository
    event_sources: EventSourceRepository
    function_urls: FunctionUrlRepository
    http_apis: HttpApiRepository  # HTTP APIs (API Gateway v2)
    event_rules: EventRuleRepository  # EventBridge buses, rules and targets
    schedules: ScheduleRepository  # EventBridge Scheduler schedules
    front_ends: FrontEndRepository  # the front ends serving the database (squall cluster status)
    triggers: TriggerRepository  # SNS subscriptions and object-store webhooks
    layers: LayerRepository  # layers and their versions
    function_settings: FunctionSettingsRepository  # recursion and runtime management configurations
    server_key: bytes  # signs code links, derives access keys' secrets (the database's, copied to <data dir>/secret)

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        bucket = None
        if settings.code_bucket:  # checked before anything else opens: CodeBucketError fails the start
            bucket = S3CodeBucket.connect(settings.code_bucket, settings.code_bucket_prefix, settings.aws_endpoint,
                                          settings.aws_access_key_id, settings.aws_secret_access_key, settings.region)
            bucket.check()
        db = create_engine(settings.database)  # migrated: server_secrets exists
        server_key = shared_server_key(db, settings.data_dir)
        functions = FunctionRepository(db)
        layers = LayerRepository(db)

        def code_in_use(sha256_hex: str) -> bool:  # a function version's code, or a layer version's
            return functions.code_in_use(sha256_hex) or layers.code_in_use(sha256_hex)

        return cls(
            db=db,
            functions=functions,
            aliases=AliasRepository(db),
            provisioned=ProvisionedRepository(db),
            code=CodeStore(BlobStore(settings.data_dir, bucket), code_in_use, settings.code_storage_limit_bytes),
            layers=layers,
            function_settings=FunctionSettingsRepository(db),
            logs=LogStore(settings.data_dir / "logs"),
            iam=IamRepository(db),
            event_sources=EventSourceRepository(db),
            function_urls=FunctionUrlRepository(db),
            server_key=server_key,
            http_apis=HttpApiRepository(db),
            event_rules=EventRuleRepository(db),
            triggers=TriggerRepository(db),
            schedules=ScheduleRepository(db),
            front_ends=FrontEndRepository(db),
        )

    def check_database(self) -> str | None:
        """None when the database answers a query now; else why not (blocking)."""
        try:
            with self.db.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any failure is the answer
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    async def close(self) -> None:
        await self.code.close()
        await asyncio.to_thread(self.code.blobs.close)  # removals from the code bucket under way
        await self.logs.stop()
        await asyncio.to_thread(self.db.dispose)
