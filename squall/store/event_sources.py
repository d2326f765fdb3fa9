"""Repository of event source mappings and their pollers' checkpoints (stream positions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import event_source_mappings as table
from squall.store.db import event_source_positions as positions


@dataclass(frozen=True)
class MappingRow:
    uuid: str
    function_name: str
    qualifier: str | None
    source_arn: str
    settings: dict[str, Any]
    state: str
    state_reason: str
    last_modified: float
    last_result: str


def _row(r: Any) -> MappingRow:
    return MappingRow(r.uuid, r.function_name, r.qualifier or None, r.source_arn, dict(r.settings), r.state,
                      r.state_reason, r.last_modified, r.last_result)


class EventSourceRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> list[MappingRow]:
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(sa.select(table).order_by(table.c.uuid))]

    def get(self, uuid: str) -> MappingRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.uuid == uuid)).first()
        return _row(row) if row else None

    def put(self, m: MappingRow) -> None:
        values = dict(function_name=m.function_name, qualifier=m.qualifier or "", source_arn=m.source_arn,
                      settings=m.settings, state=m.state, state_reason=m.state_reason,
                      last_modified=m.last_modified, last_result=m.last_result)
        with self.engine.begin() as conn:
            if not conn.execute(table.update().where(table.c.uuid == m.uuid).values(**values)).rowcount:
                conn.execute(table.insert().values(uuid=m.uuid, **values))

    def set_state(self, uuid: str, state: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.uuid == uuid).values(state=state, state_reason=reason))

    def set_result(self, uuid: str, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.uuid == uuid).values(last_result=result))

    def delete(self, uuid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(positions.delete().where(positions.c.mapping_uuid == uuid))
            conn.execute(table.delete().where(table.c.uuid == uuid))

    # ---- checkpoints -----------------------------------------------------------------------
    def positions(self, uuid: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(positions).where(positions.c.mapping_uuid == uuid)).all()
        return {r.shard: r.position for r in rows}

    def checkpoint(self, uuid: str, shard: str, position: str) -> bool:
        """Record that ``shard`` is done up to ``position``; False when the mapping is gone."""
        with self.engine.begin() as conn:
            key = (positions.c.mapping_uuid == uuid, positions.c.shard == shard)
            if conn.execute(positions.update().where(*key).values(position=position)).rowcount:
                return True
            if conn.execute(sa.select(table.c.uuid).where(table.c.uuid == uuid)).first() is None:
                return False
            conn.execute(positions.insert().values(mapping_uuid=uuid, shard=shard, position=position))
            return True
