"""Repository of concurrency permits: how many invocations of a scope each front end may run.

A grant is one transaction under a PostgreSQL advisory lock per scope, so two front ends never
hand out the same permit: the sum of live holders' permits never exceeds the limit asked with.
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import concurrency_permits as permits_table


def _lock_key(scope: str) -> int:
    return 0x5371_0000_0000 + zlib.crc32(scope.encode())


class PermitRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def resize(self, scope: str, holder: str, wanted: int, limit: int, now: float, ttl: float) -> int:
        """Set ``holder``'s permits of ``scope`` to ``wanted``, or to what the other live holders leave
        under ``limit`` if that is less. Returns what ``holder`` holds now."""
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(scope)})
            rows = conn.execute(sa.select(permits_table.c.holder, permits_table.c.permits, permits_table.c.expires_at)
                                .where(permits_table.c.scope == scope)).all()
            others = sum(r.permits for r in rows if r.holder != holder and r.expires_at > now)
            granted = max(0, min(wanted, limit - others))
            stored = any(r.holder == holder for r in rows)
            values = {"permits": granted, "expires_at": now + ttl}
            if stored:
                conn.execute(permits_table.update().where(
                    (permits_table.c.scope == scope) & (permits_table.c.holder == holder)).values(**values))
            else:
                conn.execute(permits_table.insert().values(scope=scope, holder=holder, **values))
            conn.execute(permits_table.delete().where(permits_table.c.expires_at < now - ttl))
            return granted

    def renew(self, holder: str, now: float, ttl: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(permits_table.update().where(permits_table.c.holder == holder).values(expires_at=now + ttl))

    def drop(self, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(permits_table.delete().where(permits_table.c.holder == holder))

    def held(self, scope: str, now: float) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(permits_table.c.holder, permits_table.c.permits)
                                .where((permits_table.c.scope == scope) & (permits_table.c.expires_at > now))).all()
        return {r.holder: r.permits for r in rows}
