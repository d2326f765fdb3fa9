"""Repository of notification triggers: SNS topic subscriptions and object-store webhooks.

A trigger is addressed by an unguessable id (the path of its webhook); an object-store
webhook also has a secret token. ``document`` holds what the kind needs (the subscription
ARN, whether it is confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squall.store.db import triggers


@dataclass(frozen=True)
class StoredTrigger:
    trigger_id: str
    kind: str  # "sns" or "s3"
    function_arn: str
    source: str  # the topic ARN (sns), a label (s3)
    token: str | None
    document: dict[str, Any]
    created_at: float


def _trigger(row: Any) -> StoredTrigger:
    return StoredTrigger(row.trigger_id, row.kind, row.function_arn, row.source, row.token, dict(row.document or {}),
                         row.created_at)


class TriggerRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, trigger: StoredTrigger) -> None:
        values = {"kind": trigger.kind, "function_arn": trigger.function_arn, "source": trigger.source,
                  "token": trigger.token, "document": trigger.document, "created_at": trigger.created_at}
        with self.engine.begin() as conn:
            where = triggers.c.trigger_id == trigger.trigger_id
            if conn.execute(triggers.update().where(where).values(**values)).rowcount == 0:
                conn.execute(triggers.insert().values(trigger_id=trigger.trigger_id, **values))

    def get(self, trigger_id: str) -> StoredTrigger | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(triggers).where(triggers.c.trigger_id == trigger_id)).first()
        return None if row is None else _trigger(row)

    def find(self, kind: str, function_arn: str, source: str) -> StoredTrigger | None:
        query = sa.select(triggers).where(triggers.c.kind == kind, triggers.c.function_arn == function_arn,
                                          triggers.c.source == source)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _trigger(row)

    def list(self) -> list[StoredTrigger]:
        with self.engine.connect() as conn:
            return [_trigger(r) for r in conn.execute(sa.select(triggers).order_by(triggers.c.created_at))]

    def delete(self, trigger_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(triggers.delete().where(triggers.c.trigger_id == trigger_id))
