"""Repository of functions and their versions."""

from __future__ import annotations

import base64
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.arn import LATEST
from squall.errors import InvalidParameterValue, PreconditionFailed, ResourceConflict
from squall.function import FunctionVersion
from squall.store.db import functions, versions


class FunctionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, version: FunctionVersion, tags: dict[str, str]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(functions.insert().values(name=version.name, tags=tags, created_at=time.time()))
                conn.execute(versions.insert().values(**_row(version)))
        except IntegrityError as exc:
            raise ResourceConflict(f"Function already exist: {version.name}") from exc

    def get(self, name: str, version: str = LATEST) -> FunctionVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(versions.c.config).where(versions.c.function_name == name, versions.c.version == version)
            ).first()
        return FunctionVersion.from_record(row.config) if row else None

    def save(self, version: FunctionVersion, expected_revision: str | None = None) -> None:
        """Replace a version's record; with ``expected_revision``, only if it is still current."""
        stmt = versions.update().where(
            versions.c.function_name == version.name, versions.c.version == version.version
        )
        if expected_revision is not None:
            stmt = stmt.where(versions.c.revision_id == expected_revision)
        with self.engine.begin() as conn:
            updated = conn.execute(stmt.values(**_row(version))).rowcount
        if updated == 0 and expected_revision is not None:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )

    def delete(self, name: str) -> list[str]:
        """Delete a function with all its versions; returns the code hashes it used."""
        with self.engine.begin() as conn:
            hashes = conn.execute(
                sa.select(versions.c.code_sha256_hex).where(versions.c.function_name == name)
            ).scalars().all()
            conn.execute(versions.delete().where(versions.c.function_name == name))
            conn.execute(functions.delete().where(functions.c.name == name))
        return list(hashes)

    def code_in_use(self, sha256_hex: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(versions).where(versions.c.code_sha256_hex == sha256_hex)
            ).scalar_one() > 0

    def page(self, marker: str | None, limit: int) -> tuple[list[FunctionVersion], str | None]:
        """One page of $LATEST configurations in name order, and the marker of the next page."""
        after = _decode_marker(marker)
        stmt = sa.select(versions.c.config).where(versions.c.version == LATEST)
        if after is not None:
            stmt = stmt.where(versions.c.function_name > after)
        stmt = stmt.order_by(versions.c.function_name).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        items = [FunctionVersion.from_record(r.config) for r in rows[:limit]]
        next_marker = _encode_marker(items[-1].name) if len(rows) > limit else None
        return items, next_marker

    def all_latest(self) -> list[FunctionVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions.c.config).where(versions.c.version == LATEST)).all()
        return [FunctionVersion.from_record(r.config) for r in rows]

    def tags(self, name: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(functions.c.tags).where(functions.c.name == name)).scalar()
        return dict(value or {})

    def set_tags(self, name: str, tags: dict[str, str]) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(functions.update().where(functions.c.name == name).values(tags=tags)).rowcount > 0

    def set_reserved_concurrency(self, name: str, value: int | None) -> bool:
        with self.engine.begin() as conn:
            stmt = functions.update().where(functions.c.name == name).values(reserved_concurrency=value)
            return conn.execute(stmt).rowcount > 0

    def function_settings(self) -> dict[str, tuple[dict[str, str], int | None]]:
        """Tags and reserved concurrency of every function (loaded once at start)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(functions.c.name, functions.c.tags, functions.c.reserved_concurrency)).all()
        return {r.name: (dict(r.tags or {}), r.reserved_concurrency) for r in rows}

    def usage(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(functions)).scalar_one()
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(versions.c.code_size), 0))).scalar_one()
        return {"FunctionCount": int(count), "TotalCodeSize": int(total)}


def _row(version: FunctionVersion) -> dict[str, Any]:
    return {
        "function_name": version.name,
        "version": version.version,
        "revision_id": version.revision_id,
        "code_sha256_hex": version.code.sha256_hex,
        "code_size": version.code.size,
        "config": version.to_record(),
    }


def _encode_marker(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_marker(marker: str | None) -> str | None:
    if not marker:
        return None
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterValue(f"Invalid marker: {marker}") from None
