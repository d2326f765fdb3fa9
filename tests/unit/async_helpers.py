"""Shared pieces for the asynchronous invocation unit tests: a clock, a store, a queue."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from squall.async_invoke.queue import EventQueue
from squall.store.db import create_engine, functions
from squall.store.events import EventRepository, QueuedEvent


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_store(tmp_path: Path, *names: str) -> EventRepository:
    engine = create_engine(f"sqlite:///{tmp_path / 'squall.db'}", synchronous="FULL")
    with engine.begin() as conn:
        for name in names or ("fn",):
            conn.execute(sa.insert(functions).values(name=name, tags={}, created_at=time.time()))
    return EventRepository(engine)


def make_queue(repo: EventRepository, clock: Clock, owner: str = "owner-a", max_batch: int = 1000) -> EventQueue:
    return EventQueue(repo, owner, clock, max_batch)


def event(clock: Clock, request_id: str, function: str = "fn", payload: bytes = b'{"n": 1}', **kw: object) -> QueuedEvent:
    return QueuedEvent(request_id, function, None, payload, clock(), not_before=clock(), **kw)  # type: ignore[arg-type]
