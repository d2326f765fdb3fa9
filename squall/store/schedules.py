"""Repository of EventBridge Scheduler schedules.

A schedule's document holds what GetSchedule shows; ``next_tick`` (schedule-clock epoch seconds)
is its next due fire, advanced only by compare-and-set (:meth:`ScheduleRepository.claim_tick`) so
that one fire is claimed by one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import schedules


@dataclass(frozen=True)
class StoredSchedule:
    group: str
    name: str
    document: dict[str, Any]
    created_at: float
    next_tick: float | None


def _schedule(row: Any) -> StoredSchedule:
    return StoredSchedule(row.group_name, row.name, dict(row.document), row.created_at, row.next_tick)


class ScheduleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, group: str, name: str, document: dict[str, Any], created_at: float,
               next_tick: float | None) -> bool:
        """False when a schedule of that name exists in the group."""
        with self.engine.begin() as conn:
            where = (schedules.c.group_name == group, schedules.c.name == name)
            if conn.execute(sa.select(schedules.c.name).where(*where)).first() is not None:
                return False
            conn.execute(schedules.insert().values(group_name=group, name=name, document=document,
                                                   created_at=created_at, next_tick=next_tick))
        return True

    def update(self, group: str, name: str, document: dict[str, Any], next_tick: float | None) -> bool:
        """False when there is no such schedule."""
        with self.engine.begin() as conn:
            result = conn.execute(schedules.update()
                                  .where(schedules.c.group_name == group, schedules.c.name == name)
                                  .values(document=document, next_tick=next_tick))
        return result.rowcount == 1

    def get(self, group: str, name: str) -> StoredSchedule | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.group_name == group,
                                                          schedules.c.name == name)).first()
        return None if row is None else _schedule(row)

    def list(self, group: str | None = None, prefix: str = "") -> list[StoredSchedule]:
        query = sa.select(schedules).order_by(schedules.c.group_name, schedules.c.name)
        if group is not None:
            query = query.where(schedules.c.group_name == group)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query) if r.name.startswith(prefix)]

    def delete(self, group: str, name: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(schedules.delete().where(schedules.c.group_name == group,
                                                           schedules.c.name == name))
        return result.rowcount == 1

    def due(self, now: float) -> list[StoredSchedule]:
        """Schedules whose stored next fire is due (enabled or not: the caller decides)."""
        query = sa.select(schedules).where(schedules.c.next_tick.is_not(None), schedules.c.next_tick <= now)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def claim_tick(self, group: str, name: str, expected: float, following: float | None) -> bool:
        """Compare-and-set: move the stored next fire from ``expected`` to ``following``; True for
        the one caller that moved it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                schedules.update()
                .where(schedules.c.group_name == group, schedules.c.name == name,
                       schedules.c.next_tick == expected)
                .values(next_tick=following)
            )
        return result.rowcount == 1
