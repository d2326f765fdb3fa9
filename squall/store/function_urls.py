"""Repository of function URL configs (one per function qualifier)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.store.db import function_urls as table


@dataclass(frozen=True)
class FunctionUrlRecord:
    function_name: str
    qualifier: str | None  # an alias, or None for the function itself
    url_id: str
    auth_type: str
    cors: dict[str, Any] | None
    invoke_mode: str
    created: str
    last_modified: str


def _record(r: Any) -> FunctionUrlRecord:
    return FunctionUrlRecord(r.function_name, r.qualifier or None, r.url_id, r.auth_type,
                             dict(r.cors) if r.cors is not None else None, r.invoke_mode, r.created, r.last_modified)


class FunctionUrlRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> list[FunctionUrlRecord]:
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(sa.select(table))]

    def insert(self, record: FunctionUrlRecord) -> bool:
        """False when the function has a URL for that qualifier already, or is gone."""
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(
                    function_name=record.function_name, qualifier=record.qualifier or "", url_id=record.url_id,
                    auth_type=record.auth_type, cors=record.cors, invoke_mode=record.invoke_mode,
                    created=record.created, last_modified=record.last_modified))
        except IntegrityError:
            return False
        return True

    def update(self, record: FunctionUrlRecord) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(
                table.update()
                .where(table.c.function_name == record.function_name, table.c.qualifier == (record.qualifier or ""))
                .values(auth_type=record.auth_type, cors=record.cors, invoke_mode=record.invoke_mode,
                        last_modified=record.last_modified)
            ).rowcount > 0

    def delete(self, function_name: str, qualifier: str | None) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(
                table.delete().where(table.c.function_name == function_name, table.c.qualifier == (qualifier or ""))
            ).rowcount > 0
