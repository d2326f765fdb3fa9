"""Repository of the front ends serving the database: one row each, written every few seconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import front_ends


@dataclass(frozen=True)
class FrontEndRow:
    id: str
    url: str
    host: str
    pid: int
    version: str
    started_at: float
    seen_at: float
    leader: bool
    info: dict[str, Any]


class FrontEndRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def beat(self, row: FrontEndRow) -> None:
        """Write this front end's row (insert the first time, update after)."""
        values = {"url": row.url, "host": row.host, "pid": row.pid, "version": row.version,
                  "started_at": row.started_at, "seen_at": row.seen_at, "leader": row.leader,
                  "info": json.dumps(row.info, separators=(",", ":"))}
        with self.engine.begin() as conn:
            updated = conn.execute(front_ends.update().where(front_ends.c.id == row.id).values(**values)).rowcount
            if not updated:
                conn.execute(front_ends.insert().values(id=row.id, **values))

    def remove(self, front_end_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(front_ends.delete().where(front_ends.c.id == front_end_id))

    def forget_older_than(self, seen_before: float) -> int:
        """Remove front ends not seen since ``seen_before`` (gone for good); how many."""
        with self.engine.begin() as conn:
            return conn.execute(front_ends.delete().where(front_ends.c.seen_at < seen_before)).rowcount

    def all(self) -> list[FrontEndRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(front_ends).order_by(front_ends.c.started_at)).all()
        return [FrontEndRow(r.id, r.url, r.host, r.pid, r.version, r.started_at, r.seen_at, bool(r.leader),
                            json.loads(r.info or "{}")) for r in rows]
