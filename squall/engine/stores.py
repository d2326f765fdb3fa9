"""The engine's stores, opened together from the settings: the database's repositories, the
code store and the log store. The async event queue opens its own connections (each commit
fsynced) in ``async_invoke/pipeline.py``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.engine import Engine as Database

from squall.functions.code_store import CodeStore
from squall.observe.logs import LogStore
from squall.settings import Settings
from squall.store.aliases import AliasRepository
from squall.store.blobs import BlobStore
from squall.store.db import create_engine
from squall.store.functions import FunctionRepository
from squall.store.provisioned import ProvisionedRepository


@dataclass
class Stores:
    db: Database
    functions: FunctionRepository
    aliases: AliasRepository
    provisioned: ProvisionedRepository
    code: CodeStore
    logs: LogStore

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_engine(settings.database)
        functions = FunctionRepository(db)
        return cls(
            db=db,
            functions=functions,
            aliases=AliasRepository(db),
            provisioned=ProvisionedRepository(db),
            code=CodeStore(BlobStore(settings.data_dir), functions.code_in_use, settings.code_storage_limit_bytes),
            logs=LogStore(settings.data_dir / "logs"),
        )

    async def close(self) -> None:
        await self.code.close()
        await self.logs.stop()
        await asyncio.to_thread(self.db.dispose)
