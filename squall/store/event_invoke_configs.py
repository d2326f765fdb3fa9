"""Repository of EventInvokeConfigs (asynchronous invocation settings per function qualifier)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.store.db import event_invoke_configs as table


class EventInvokeConfigRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> list[tuple[str, str, dict[str, Any], float]]:
        """(function name, qualifier, config, last modified) of every stored config."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table)).all()
        return [(r.function_name, r.qualifier, dict(r.config), r.last_modified) for r in rows]

    def get(self, function_name: str, qualifier: str) -> tuple[dict[str, Any], float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.function_name == function_name, table.c.qualifier == qualifier)
            ).first()
        return (dict(row.config), row.last_modified) if row else None

    def put(self, function_name: str, qualifier: str, config: dict[str, Any], last_modified: float) -> bool:
        """Store (replace) a config; False when the function does not exist (any more)."""
        try:
            with self.engine.begin() as conn:
                key = (table.c.function_name == function_name, table.c.qualifier == qualifier)
                updated = conn.execute(
                    table.update().where(*key).values(config=config, last_modified=last_modified)
                ).rowcount
                if not updated:
                    conn.execute(
                        table.insert().values(
                            function_name=function_name, qualifier=qualifier, config=config, last_modified=last_modified
                        )
                    )
        except IntegrityError:
            return False
        return True

    def delete(self, function_name: str, qualifier: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    table.delete().where(table.c.function_name == function_name, table.c.qualifier == qualifier)
                ).rowcount
                > 0
            )
