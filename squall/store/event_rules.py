"""Repository of EventBridge custom event buses, rules and targets.

The ``default`` bus is implicit (never stored). A rule's document holds what DescribeRule shows;
``next_tick`` (epoch seconds) is a schedule's next due tick, advanced only by compare-and-set
(:meth:`EventRuleRepository.claim_tick`) so that one tick is claimed by one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import event_buses as buses
from squall.store.db import event_rules as rules
from squall.store.db import event_targets as targets


@dataclass(frozen=True)
class StoredRule:
    bus: str
    name: str
    document: dict[str, Any]
    created_at: float
    next_tick: float | None


def _rule(row: Any) -> StoredRule:
    return StoredRule(row.bus, row.name, dict(row.document), row.created_at, row.next_tick)


class EventRuleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- buses --------------------------------------------------------------------------
    def create_bus(self, name: str, description: str | None, created_at: float) -> bool:
        """False when it exists already."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(buses.c.name).where(buses.c.name == name)).first() is not None:
                return False
            conn.execute(buses.insert().values(name=name, description=description, created_at=created_at))
        return True

    def get_bus(self, name: str) -> tuple[str | None, float] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(buses).where(buses.c.name == name)).first()
        return None if row is None else (row.description, row.created_at)

    def list_buses(self) -> list[tuple[str, str | None, float]]:
        with self.engine.connect() as conn:
            return [(r.name, r.description, r.created_at) for r in conn.execute(sa.select(buses).order_by(buses.c.name))]

    def delete_bus(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(buses.delete().where(buses.c.name == name))

    # ---- rules --------------------------------------------------------------------------
    def put_rule(self, bus: str, name: str, document: dict[str, Any], created_at: float, next_tick: float | None) -> None:
        """Insert or replace a rule (its targets stay)."""
        with self.engine.begin() as conn:
            where = (rules.c.bus == bus, rules.c.name == name)
            values = {"document": document, "created_at": created_at, "next_tick": next_tick}
            if conn.execute(rules.update().where(*where).values(**values)).rowcount == 0:
                conn.execute(rules.insert().values(bus=bus, name=name, **values))

    def get_rule(self, bus: str, name: str) -> StoredRule | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rules).where(rules.c.bus == bus, rules.c.name == name)).first()
        return None if row is None else _rule(row)

    def list_rules(self, bus: str, prefix: str = "") -> list[StoredRule]:
        query = sa.select(rules).where(rules.c.bus == bus).order_by(rules.c.name)
        with self.engine.connect() as conn:
            return [_rule(r) for r in conn.execute(query) if r.name.startswith(prefix)]

    def rule_count(self, bus: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(rules).where(rules.c.bus == bus)).scalar() or 0

    def delete_rule(self, bus: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(targets.delete().where(targets.c.bus == bus, targets.c.rule == name))
            conn.execute(rules.delete().where(rules.c.bus == bus, rules.c.name == name))

    def due_rules(self, now: float) -> list[StoredRule]:
        """Scheduled rules whose stored next tick is due (enabled or not: the caller decides)."""
        query = sa.select(rules).where(rules.c.next_tick.is_not(None), rules.c.next_tick <= now)
        with self.engine.connect() as conn:
            return [_rule(r) for r in conn.execute(query)]

    def claim_tick(self, bus: str, name: str, expected: float, following: float | None) -> bool:
        """Compare-and-set: move the stored next tick from ``expected`` to ``following``. True
        for the one caller that moved it (that caller owns the tick)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                rules.update()
                .where(rules.c.bus == bus, rules.c.name == name, rules.c.next_tick == expected)
                .values(next_tick=following)
            )
        return result.rowcount == 1

    # ---- targets ------------------------------------------------------------------------
    def targets(self, bus: str, rule: str) -> list[dict[str, Any]]:
        query = (sa.select(targets.c.document).where(targets.c.bus == bus, targets.c.rule == rule)
                 .order_by(targets.c.position, targets.c.target_id))
        with self.engine.connect() as conn:
            return [dict(r.document) for r in conn.execute(query)]

    def targets_of_bus(self, bus: str) -> dict[str, list[dict[str, Any]]]:
        query = sa.select(targets).where(targets.c.bus == bus).order_by(targets.c.position, targets.c.target_id)
        found: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                found.setdefault(r.rule, []).append(dict(r.document))
        return found

    def put_targets(self, bus: str, rule: str, documents: list[dict[str, Any]]) -> None:
        """Insert or replace targets by Id (a new one goes last)."""
        with self.engine.begin() as conn:
            top = conn.execute(sa.select(sa.func.max(targets.c.position))
                               .where(targets.c.bus == bus, targets.c.rule == rule)).scalar() or 0
            for document in documents:
                where = (targets.c.bus == bus, targets.c.rule == rule, targets.c.target_id == document["Id"])
                if conn.execute(targets.update().where(*where).values(document=document)).rowcount == 0:
                    top += 1
                    conn.execute(targets.insert().values(bus=bus, rule=rule, target_id=document["Id"], position=top,
                                                         document=document))

    def remove_targets(self, bus: str, rule: str, ids: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(targets.delete().where(targets.c.bus == bus, targets.c.rule == rule,
                                                targets.c.target_id.in_(ids)))
