"""Repository of provisioned concurrency configs: how many environments a qualifier keeps ready."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.store.db import provisioned_concurrency as table


@dataclass(frozen=True)
class ProvisionedRecord:
    function_name: str
    qualifier: str
    requested: int
    last_modified: str  # Lambda's timestamp string


class ProvisionedRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, record: ProvisionedRecord) -> bool:
        """Store (replace) a config; False when the function does not exist (any more)."""
        key = (table.c.function_name == record.function_name, table.c.qualifier == record.qualifier)
        values = {"requested": record.requested, "last_modified": record.last_modified}
        try:
            with self.engine.begin() as conn:
                if not conn.execute(table.update().where(*key).values(**values)).rowcount:
                    conn.execute(table.insert().values(function_name=record.function_name, qualifier=record.qualifier, **values))
        except IntegrityError:
            return False
        return True

    def get(self, function_name: str, qualifier: str) -> ProvisionedRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.function_name == function_name, table.c.qualifier == qualifier)
            ).first()
        return _record(row) if row else None

    def delete(self, function_name: str, qualifier: str) -> bool:
        with self.engine.begin() as conn:
            stmt = table.delete().where(table.c.function_name == function_name, table.c.qualifier == qualifier)
            return conn.execute(stmt).rowcount > 0

    def of_function(self, function_name: str) -> list[ProvisionedRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.function_name == function_name).order_by(table.c.qualifier)
            ).all()
        return [_record(r) for r in rows]

    def all(self) -> list[ProvisionedRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table)).all()
        return [_record(r) for r in rows]


def _record(row: sa.Row) -> ProvisionedRecord:  # type: ignore[type-arg]
    return ProvisionedRecord(row.function_name, row.qualifier, row.requested, row.last_modified)
