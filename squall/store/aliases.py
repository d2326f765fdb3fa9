"""Repository of aliases: a name that points at a version (and maybe a second, weighted one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.store.db import aliases as table


@dataclass(frozen=True)
class AliasRecord:
    function_name: str
    name: str
    function_version: str
    revision_id: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)  # additional version → its share

    @property
    def additional_version(self) -> str | None:
        return next(iter(self.weights), None)


class AliasExists(Exception):
    pass


class AliasRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, function_name: str, name: str) -> AliasRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.function_name == function_name, table.c.name == name)).first()
        return _record(row) if row else None

    def create(self, alias: AliasRecord) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(**_row(alias)))
        except IntegrityError as exc:
            raise AliasExists(alias.name) from exc

    def save(self, alias: AliasRecord, expected_revision: str) -> bool:
        """Replace an alias if its revision is still ``expected_revision``."""
        with self.engine.begin() as conn:
            stmt = table.update().where(
                table.c.function_name == alias.function_name, table.c.name == alias.name,
                table.c.revision_id == expected_revision,
            )
            return conn.execute(stmt.values(**_row(alias))).rowcount > 0

    def delete(self, function_name: str, name: str) -> bool:
        with self.engine.begin() as conn:
            stmt = table.delete().where(table.c.function_name == function_name, table.c.name == name)
            return conn.execute(stmt).rowcount > 0

    def of_function(self, function_name: str, version: str | None = None) -> list[AliasRecord]:
        """A function's aliases by name (``version``: only those whose primary version it is)."""
        stmt = sa.select(table).where(table.c.function_name == function_name)
        if version is not None:
            stmt = stmt.where(table.c.function_version == version)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(table.c.name)).all()
        return [_record(r) for r in rows]

    def referencing(self, function_name: str, version: str) -> list[str]:
        """Names of the aliases that route any traffic to ``version``."""
        with self.engine.connect() as conn:
            return referencing(conn, function_name, version)


def referencing(conn: sa.Connection, function_name: str, version: str) -> list[str]:
    stmt = sa.select(table.c.name).where(
        table.c.function_name == function_name,
        sa.or_(table.c.function_version == version, table.c.additional_version == version),
    )
    return sorted(conn.execute(stmt).scalars().all())


def _row(alias: AliasRecord) -> dict[str, Any]:
    return {
        "function_name": alias.function_name,
        "name": alias.name,
        "function_version": alias.function_version,
        "additional_version": alias.additional_version,
        "revision_id": alias.revision_id,
        "config": {"description": alias.description, "weights": dict(alias.weights)},
    }


def _record(row: Any) -> AliasRecord:
    config = dict(row.config)
    return AliasRecord(
        row.function_name, row.name, row.function_version, row.revision_id,
        config.get("description", ""), {str(k): float(v) for k, v in (config.get("weights") or {}).items()},
    )
