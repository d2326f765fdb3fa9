"""Repository of functions and their versions (``$LATEST`` and the published ones).

Operations that must see a consistent picture (publishing, deleting a version an alias may
point at, creating with ``Publish``) run in one transaction each.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from squall.arn import LATEST
from squall.errors import PreconditionFailed, ResourceConflict
from squall.function import FunctionVersion
from squall.paging import decode_marker, encode_marker
from squall.store.aliases import referencing
from squall.store.db import functions, provisioned_concurrency, versions

REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


class _Unchanged(Exception):
    def __init__(self, version: FunctionVersion) -> None:
        self.version = version


class VersionInUse(Exception):
    """A version aliases still point at."""

    def __init__(self, aliases: list[str]) -> None:
        super().__init__(aliases)
        self.aliases = aliases


class FunctionRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, version: FunctionVersion, tags: dict[str, str], published: FunctionVersion | None = None) -> None:
        """A new function; ``published``: its version 1 too (CreateFunction with Publish)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    functions.insert().values(
                        name=version.name, tags=tags, created_at=time.time(), last_version=1 if published else 0
                    )
                )
                conn.execute(versions.insert().values(**_row(version)))
                if published is not None:
                    conn.execute(versions.insert().values(**_row(published)))
        except IntegrityError as exc:
            raise ResourceConflict(f"Function already exist: {version.name}") from exc

    def get(self, name: str, version: str = LATEST) -> FunctionVersion | None:
        with self.engine.connect() as conn:
            return _get(conn, name, version)

    def save(self, version: FunctionVersion, expected_revision: str | None = None, *also: FunctionVersion) -> None:
        """Replace a version's record; with ``expected_revision``, only if it is still current.
        ``also``: other versions' records replaced in the same transaction."""
        with self.engine.begin() as conn:
            if not _replace(conn, version, expected_revision) and expected_revision is not None:
                raise PreconditionFailed(REVISION_MISMATCH)
            for other in also:
                _replace(conn, other, None)

    def update_and_publish(
        self, updated: FunctionVersion, expected_revision: str, publish: Callable[[int], FunctionVersion] | None
    ) -> FunctionVersion | None:
        """Replace ``$LATEST`` and, with ``publish``, add the next version (built from its number)."""
        with self.engine.begin() as conn:
            if not _replace(conn, updated, expected_revision):
                raise PreconditionFailed(REVISION_MISMATCH)
            if publish is None:
                return None
            published = publish(_next_version(conn, updated.name))
            conn.execute(versions.insert().values(**_row(published)))
            return published

    def publish(
        self,
        name: str,
        expected_revision: str | None,
        build: Callable[[FunctionVersion, FunctionVersion | None, int], FunctionVersion | None],
        rebased: Callable[[FunctionVersion], FunctionVersion],
    ) -> tuple[FunctionVersion, bool] | None:
        """PublishVersion in one transaction. ``build(latest, last published, next number)``
        gives the new version, or None when the last one is unchanged (returned instead);
        ``rebased(latest)`` is ``$LATEST`` with its new RevisionId. None: no such function."""
        try:
            with self.engine.begin() as conn:
                number = _next_version(conn, name)  # first: the row lock serialises publishers
                latest = _get(conn, name, LATEST)
                if latest is None:
                    return None
                if expected_revision is not None and expected_revision != latest.revision_id:
                    raise PreconditionFailed(REVISION_MISMATCH)
                last = _last_published(conn, name)
                created = build(latest, last, number)
                if created is None:
                    assert last is not None
                    raise _Unchanged(last)  # rolls the number back
                conn.execute(versions.insert().values(**_row(created)))
                _replace(conn, rebased(latest), latest.revision_id)
                return created, True
        except _Unchanged as unchanged:
            return unchanged.version, False

    def versions_of(self, name: str) -> list[FunctionVersion]:
        """``$LATEST`` first, then the published versions in ascending order."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions.c.config).where(versions.c.function_name == name)).all()
        found = [FunctionVersion.from_record(r.config) for r in rows]
        return sorted(found, key=lambda v: -1 if v.version == LATEST else int(v.version))

    def delete_version(self, name: str, version: str) -> str | None:
        """Delete one published version; its code hash, or None when it does not exist.
        Raises VersionInUse when aliases point at it."""
        with self.engine.begin() as conn:
            aliases = referencing(conn, name, version)
            if aliases:
                raise VersionInUse(aliases)
            key = (versions.c.function_name == name, versions.c.version == version)
            sha = conn.execute(sa.select(versions.c.code_sha256_hex).where(*key)).scalar()
            if sha is not None:
                conn.execute(versions.delete().where(*key))
                conn.execute(  # its provisioned concurrency goes with it
                    provisioned_concurrency.delete().where(
                        provisioned_concurrency.c.function_name == name, provisioned_concurrency.c.qualifier == version
                    )
                )
            return sha

    def published_versions(self) -> list[FunctionVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions.c.config).where(versions.c.version != LATEST)).all()
        return [FunctionVersion.from_record(r.config) for r in rows]

    def exists(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(functions.c.name).where(functions.c.name == name)).first() is not None

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

    def page(self, marker: str | None, limit: int, all_versions: bool = False) -> tuple[list[FunctionVersion], str | None]:
        """One page of configurations in name order (with ``all_versions``, each function's
        ``$LATEST`` then its published versions), and the marker of the next page."""
        after = _decode_marker(marker)
        stmt = sa.select(versions.c.config)
        if not all_versions:
            stmt = stmt.where(versions.c.version == LATEST)
        if after is not None:
            stmt = stmt.where(versions.c.function_name >= after[0])
        order = (versions.c.function_name, versions.c.version != LATEST, sa.func.length(versions.c.version), versions.c.version)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(*order)).all()
        items = [FunctionVersion.from_record(r.config) for r in rows]
        if after is not None:
            position = next((i + 1 for i, v in enumerate(items) if (v.name, v.version) == after), None)
            if position is None:
                position = next((i for i, v in enumerate(items) if v.name > after[0]), len(items))
            items = items[position:]
        page = items[:limit]
        next_marker = _encode_marker(page[-1].name, page[-1].version) if len(items) > limit else None
        return page, next_marker

    def all_latest(self) -> list[FunctionVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions.c.config).where(versions.c.version == LATEST)).all()
        return [FunctionVersion.from_record(r.config) for r in rows]

    def tags(self, name: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(functions.c.tags).where(functions.c.name == name)).scalar()
        return dict(value or {})

    def change_tags(self, name: str, edit: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str] | None:
        """Replace a function's tags with ``edit(current)``, and ``$LATEST``'s RevisionId with a
        new one (tagging changes it on AWS); None when the function does not exist."""
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(functions.c.tags).where(functions.c.name == name)).first()
            if current is None:
                return None
            tags = edit(dict(current.tags or {}))
            conn.execute(functions.update().where(functions.c.name == name).values(tags=tags))
            latest = _get(conn, name, LATEST)
            if latest is not None:
                _replace(conn, dataclasses.replace(latest, revision_id=str(uuid.uuid4())), None)
            return tags

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


def _get(conn: sa.Connection, name: str, version: str) -> FunctionVersion | None:
    row = conn.execute(
        sa.select(versions.c.config).where(versions.c.function_name == name, versions.c.version == version)
    ).first()
    return FunctionVersion.from_record(row.config) if row else None


def _replace(conn: sa.Connection, version: FunctionVersion, expected_revision: str | None) -> bool:
    stmt = versions.update().where(versions.c.function_name == version.name, versions.c.version == version.version)
    if expected_revision is not None:
        stmt = stmt.where(versions.c.revision_id == expected_revision)
    return conn.execute(stmt.values(**_row(version))).rowcount > 0


def _current_version(conn: sa.Connection, name: str) -> int:
    return int(conn.execute(sa.select(functions.c.last_version).where(functions.c.name == name)).scalar() or 0)


def _next_version(conn: sa.Connection, name: str) -> int:
    """Take the next version number (never reused, even after a deletion)."""
    conn.execute(functions.update().where(functions.c.name == name).values(last_version=functions.c.last_version + 1))
    return _current_version(conn, name)


def _last_published(conn: sa.Connection, name: str) -> FunctionVersion | None:
    rows = conn.execute(
        sa.select(versions.c.config).where(versions.c.function_name == name, versions.c.version != LATEST)
    ).all()
    found = [FunctionVersion.from_record(r.config) for r in rows]
    return max(found, key=lambda v: int(v.version)) if found else None


def _row(version: FunctionVersion) -> dict[str, Any]:
    return {
        "function_name": version.name,
        "version": version.version,
        "revision_id": version.revision_id,
        "code_sha256_hex": version.code.sha256_hex,
        "code_size": version.code.size,
        "config": version.to_record(),
    }


def _encode_marker(name: str, version: str) -> str:
    return encode_marker(f"{name}:{version}")


def _decode_marker(marker: str | None) -> tuple[str, str] | None:
    if not marker:
        return None
    name, _, version = decode_marker(marker).partition(":")
    return name, version or LATEST
