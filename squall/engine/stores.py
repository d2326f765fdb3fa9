"""The engine's stores, opened together from the settings: the database's repositories, the
code store and the log store. The async event queue opens its own connections (each commit
fsynced) in ``async_invoke/pipeline.py``."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine as Database

from squall.functions.code_store import CodeStore
from squall.observe.logs import LogStore
from squall.settings import Settings
from squall.store.aliases import AliasRepository
from squall.store.blobs import BlobStore, S3CodeBucket
from squall.store.db import create_engine
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
    triggers: TriggerRepository  # SNS subscriptions and object-store webhooks
    layers: LayerRepository  # layers and their versions
    function_settings: FunctionSettingsRepository  # recursion and runtime management configurations
    server_key: bytes  # signs code links, derives access keys' secrets (<data dir>/secret, 0600)

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        bucket = None
        if settings.code_bucket:  # checked before anything else opens: CodeBucketError fails the start
            bucket = S3CodeBucket.connect(settings.code_bucket, settings.code_bucket_prefix, settings.aws_endpoint,
                                          settings.aws_access_key_id, settings.aws_secret_access_key, settings.region)
            bucket.check()
        db = create_engine(settings.database)
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
            server_key=load_server_key(settings.data_dir),
            http_apis=HttpApiRepository(db),
            event_rules=EventRuleRepository(db),
            triggers=TriggerRepository(db),
            schedules=ScheduleRepository(db),
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
