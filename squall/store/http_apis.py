"""Repository of HTTP APIs (API Gateway v2): each API's document, and its integrations, routes
and stages as documents keyed by (kind, id). Deleting an API deletes its resources (foreign
key); deleting a function deletes nothing here, as on AWS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from squall.store.db import http_api_resources as resources
from squall.store.db import http_apis as apis

KINDS = ("integration", "route", "stage")


@dataclass
class StoredApi:
    document: dict[str, Any]
    # kind → resource id → document
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})


class HttpApiRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> dict[str, StoredApi]:
        with self.engine.connect() as conn:
            found = {r.api_id: StoredApi(dict(r.document)) for r in conn.execute(sa.select(apis))}
            for r in conn.execute(sa.select(resources)):
                api = found.get(r.api_id)
                if api is not None and r.kind in api.resources:
                    api.resources[r.kind][r.resource_id] = dict(r.document)
        return found

    def create_api(self, api_id: str, document: dict[str, Any],
                   parts: list[tuple[str, str, dict[str, Any]]] | None = None) -> None:
        """An API and (quick create) its first resources, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(apis.insert().values(api_id=api_id, document=document))
            for kind, resource_id, part in parts or ():
                conn.execute(resources.insert().values(api_id=api_id, kind=kind, resource_id=resource_id, document=part))

    def update_api(self, api_id: str, document: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(apis.update().where(apis.c.api_id == api_id).values(document=document))

    def delete_api(self, api_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(resources.delete().where(resources.c.api_id == api_id))  # without relying on the cascade
            conn.execute(apis.delete().where(apis.c.api_id == api_id))

    def put(self, api_id: str, kind: str, resource_id: str, document: dict[str, Any]) -> None:
        """Insert or replace one resource of an API."""
        with self.engine.begin() as conn:
            self._put(conn, api_id, kind, resource_id, document)

    def put_many(self, api_id: str, parts: list[tuple[str, str, dict[str, Any]]]) -> None:
        with self.engine.begin() as conn:
            for kind, resource_id, document in parts:
                self._put(conn, api_id, kind, resource_id, document)

    @staticmethod
    def _put(conn: Connection, api_id: str, kind: str, resource_id: str, document: dict[str, Any]) -> None:
        where = (resources.c.api_id == api_id, resources.c.kind == kind, resources.c.resource_id == resource_id)
        if conn.execute(resources.update().where(*where).values(document=document)).rowcount == 0:
            conn.execute(resources.insert().values(api_id=api_id, kind=kind, resource_id=resource_id, document=document))

    def delete(self, api_id: str, kind: str, resource_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(resources.delete().where(resources.c.api_id == api_id, resources.c.kind == kind,
                                                  resources.c.resource_id == resource_id))
