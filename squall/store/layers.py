"""Repository of layers and their versions.

Each layer name has a counter (``layers.last_version``): version numbers are never reused, even
after every version was deleted. A deleted version keeps its row, marked ``deleted``, for as long
as a function version uses it (its code must stay); :meth:`purge_deleted` removes the rows that
nothing uses any more and answers their code hashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import layer_versions, layers, versions


@dataclass(frozen=True)
class StoredLayerVersion:
    name: str
    version: int
    code_sha256_hex: str
    code_size: int
    unzipped_size: int
    document: dict[str, Any]
    policy: dict[str, Any]  # {"statements": [...], "revision": "..."}
    deleted: bool
    created_at: float


def _row(row: Any) -> StoredLayerVersion:
    return StoredLayerVersion(row.name, row.version, row.code_sha256_hex, row.code_size, row.unzipped_size,
                              dict(row.document or {}), dict(row.policy or {}), bool(row.deleted), row.created_at)


class LayerRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, name: str, code_sha256_hex: str, code_size: int, unzipped_size: int, document: dict[str, Any],
                created_at: float) -> StoredLayerVersion:
        """Add the next version of ``name`` (one transaction: the counter and the row)."""
        with self.engine.begin() as conn:
            where = layers.c.name == name
            moved = conn.execute(layers.update().where(where).values(last_version=layers.c.last_version + 1)).rowcount
            if not moved:
                try:
                    with conn.begin_nested():
                        conn.execute(layers.insert().values(name=name, last_version=1))
                except sa.exc.IntegrityError:  # published concurrently: count on from there
                    conn.execute(layers.update().where(where).values(last_version=layers.c.last_version + 1))
            number = conn.execute(sa.select(layers.c.last_version).where(where)).scalar_one()
            stored = StoredLayerVersion(name, number, code_sha256_hex, code_size, unzipped_size, document,
                                        {"statements": []}, False, created_at)
            conn.execute(layer_versions.insert().values(
                name=name, version=number, code_sha256_hex=code_sha256_hex, code_size=code_size,
                unzipped_size=unzipped_size, document=document, policy=stored.policy, deleted=False,
                created_at=created_at))
        return stored

    def get(self, name: str, version: int, include_deleted: bool = False) -> StoredLayerVersion | None:
        query = sa.select(layer_versions).where(layer_versions.c.name == name, layer_versions.c.version == version)
        if not include_deleted:
            query = query.where(layer_versions.c.deleted.is_(False))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row(row)

    def versions(self, name: str | None = None) -> list[StoredLayerVersion]:
        """Visible versions (of one layer, or of all), by name then newest first."""
        query = sa.select(layer_versions).where(layer_versions.c.deleted.is_(False))
        if name is not None:
            query = query.where(layer_versions.c.name == name)
        query = query.order_by(layer_versions.c.name, layer_versions.c.version.desc())
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def exists(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(layers.c.name).where(layers.c.name == name)).first() is not None

    def mark_deleted(self, name: str, version: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(layer_versions.update().where(
                layer_versions.c.name == name, layer_versions.c.version == version,
                layer_versions.c.deleted.is_(False)).values(deleted=True)).rowcount > 0

    def set_policy(self, name: str, version: int, policy: dict[str, Any], expected_revision: str | None) -> bool:
        """Replace the policy if its revision is still ``expected_revision`` (compare-and-set)."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(layer_versions.c.policy).where(
                layer_versions.c.name == name, layer_versions.c.version == version,
                layer_versions.c.deleted.is_(False))).first()
            if row is None or (row.policy or {}).get("revision") != expected_revision:
                return False
            conn.execute(layer_versions.update().where(
                layer_versions.c.name == name, layer_versions.c.version == version).values(policy=policy))
        return True

    def purge_deleted(self, arn_of: Any) -> list[str]:
        """Remove the deleted versions no function version refers to; their code hashes.
        ``arn_of(name, version)`` gives the version ARN that function configurations hold."""
        gone: list[str] = []
        with self.engine.begin() as conn:
            for row in conn.execute(sa.select(layer_versions).where(layer_versions.c.deleted.is_(True))).all():
                needle = f'%"{arn_of(row.name, row.version)}"%'
                used = conn.execute(sa.select(sa.func.count()).select_from(versions).where(
                    sa.cast(versions.c.config, sa.Text).like(needle))).scalar_one()
                if not used:
                    conn.execute(layer_versions.delete().where(layer_versions.c.name == row.name,
                                                               layer_versions.c.version == row.version))
                    gone.append(row.code_sha256_hex)
        return gone

    def code_in_use(self, sha256_hex: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(layer_versions).where(
                layer_versions.c.code_sha256_hex == sha256_hex)).scalar_one() > 0
