"""Per-function settings documents that are not part of a version's configuration: the recursion
configuration (``kind`` "recursion") and the runtime management configuration ("runtime-management",
per qualifier). Rows go with their function (ON DELETE CASCADE)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import function_settings


class FunctionSettingsRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, function_name: str, kind: str, qualifier: str, document: dict[str, Any]) -> bool:
        """Store (replace) a document; False when the function does not exist."""
        where = (function_settings.c.function_name == function_name, function_settings.c.kind == kind,
                 function_settings.c.qualifier == qualifier)
        try:
            with self.engine.begin() as conn:
                if conn.execute(function_settings.update().where(*where).values(document=document)).rowcount == 0:
                    conn.execute(function_settings.insert().values(function_name=function_name, kind=kind,
                                                                   qualifier=qualifier, document=document))
        except sa.exc.IntegrityError:  # no such function (the foreign key)
            return False
        return True

    def get(self, function_name: str, kind: str, qualifier: str = "") -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(function_settings.c.document).where(
                function_settings.c.function_name == function_name, function_settings.c.kind == kind,
                function_settings.c.qualifier == qualifier)).first()
        return None if row is None else dict(row.document)

    def all(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(function_settings).where(function_settings.c.kind == kind)).all()
        return {(r.function_name, r.qualifier): dict(r.document) for r in rows}
