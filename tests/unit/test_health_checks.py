"""The database check behind /health's truth (Stores.check_database): a database that does not
answer is named with the reason."""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from squall.engine.stores import Stores
from squall.store.db import create_engine


def test_a_database_that_answers_and_one_that_does_not(tmp_path):
    working = SimpleNamespace(db=create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert Stores.check_database(working) is None  # type: ignore[arg-type]
    away = SimpleNamespace(db=sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2"))
    problem = Stores.check_database(away)  # type: ignore[arg-type]
    assert problem and problem.startswith("OperationalError")
