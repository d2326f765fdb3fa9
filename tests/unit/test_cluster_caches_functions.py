"""Caches of function settings with several front ends on one database: a change made on one
front end is published as ``StateChanged``; the others re-read it when the relay brings it
(``bus.from_remote``), and only then.

Each front end here is its own SQLAlchemy engine and bus over one SQLite file; what the relay
would do is done by hand: ``with bus.remote(): bus.publish(...)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from squall.arn import Arns, FunctionRef
from squall.async_invoke.configs import EventInvokeConfigs
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.function import Code, FunctionVersion
from squall.functions.layers import LayerService
from squall.functions.permissions import Permissions
from squall.functions.recursion import RecursionConfigs
from squall.store.aliases import AliasRepository
from squall.store.db import create_engine
from squall.store.event_invoke_configs import EventInvokeConfigRepository
from squall.store.function_settings import FunctionSettingsRepository
from squall.store.functions import FunctionRepository
from squall.store.iam import IamRepository
from squall.store.layers import LayerRepository

ARNS = Arns("us-east-1", "123456789012")
LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:lib:1"


@dataclass
class Case:
    kind: str
    name: str  # what StateChanged names
    build: Callable[[Any, EventBus], Any]  # (engine, bus) → the cache
    change: Callable[[Any], Awaitable[Any]]  # made through a front end's cache
    undo: Callable[[Any], Awaitable[Any]]
    read: Callable[[Any], Any]  # what the cache answers (no I/O)
    before: Any
    after: Any


def _sids(policy: Any) -> list[str] | None:
    return None if policy is None else [s.sid for s in policy.statements]


async def _exists(ref: FunctionRef) -> bool:
    return True


CASES = {
    "permissions": Case(
        "permissions", "f",
        lambda db, bus: Permissions(IamRepository(db), FunctionRepository(db), AliasRepository(db), ARNS, bus),
        lambda c: c.add(FunctionRef("f"), {"StatementId": "s1", "Principal": "123456789012",
                                           "Action": "lambda:InvokeFunction"}),
        lambda c: c.remove(FunctionRef("f"), "s1", None),
        lambda c: _sids(c.policy_for("f", None)), None, ["s1"]),
    "recursion": Case(
        "recursion", "f",
        lambda db, bus: RecursionConfigs(FunctionSettingsRepository(db), FunctionRepository(db), ARNS, bus),
        lambda c: c.put(FunctionRef("f"), {"RecursiveLoop": "Allow"}),
        lambda c: c.put(FunctionRef("f"), {"RecursiveLoop": "Terminate"}),
        lambda c: c._loops.get("f", "Terminate"), "Terminate", "Allow"),
    "layer_policies": Case(
        "layer_policies", "lib:1",
        lambda db, bus: LayerService(LayerRepository(db), None, None, ARNS, bus),  # type: ignore[arg-type]
        lambda c: c.add_permission({"LayerName": "lib", "VersionNumber": 1, "StatementId": "s1",
                                    "Action": "lambda:GetLayerVersion", "Principal": "*"}),
        lambda c: c.remove_permission({"LayerName": "lib", "VersionNumber": 1, "StatementId": "s1"}),
        lambda c: _sids(c.policy_for(LAYER_ARN)), None, ["s1"]),
    "event_invoke_configs": Case(
        "event_invoke_configs", "f",
        lambda db, bus: EventInvokeConfigs(EventInvokeConfigRepository(db), ARNS, _exists, bus=bus),
        lambda c: c.store(FunctionRef("f"), {"MaximumRetryAttempts": 0}, merge=False),
        lambda c: c.delete(FunctionRef("f")),
        lambda c: c.for_event("f", None).maximum_retry_attempts, None, 0),
}


class FrontEnd:
    """One front end's cache: its own engine and bus over the shared database file."""

    def __init__(self, case: Case, path: Any) -> None:
        self.db = create_engine(f"sqlite:///{path}")
        self.bus = EventBus()
        self.published: list[object] = []
        self.bus.subscribe(StateChanged, self.published.append)
        self.cache = case.build(self.db, self.bus)

    def remote(self, event: object) -> None:
        with self.bus.remote():
            self.bus.publish(event)


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "shared.db"
    db = create_engine(f"sqlite:///{path}")
    FunctionRepository(db).create(FunctionVersion(
        name="f", runtime="python3.11", handler="app.handler", role="arn:aws:iam::123456789012:role/r",
        code=Code("c2hh", "ab" * 32, 10)), {})
    LayerRepository(db).publish("lib", "cd" * 32, 10, 10, {"CodeSha256": "c2hh"}, 0.0)
    db.dispose()
    made: list[FrontEnd] = []

    def front_end(case: Case) -> FrontEnd:
        made.append(FrontEnd(case, path))
        return made[-1]

    yield front_end
    for node in made:
        node.db.dispose()


async def _until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the cache was not refreshed"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("event", ["state_changed", "caches_reset"])
@pytest.mark.parametrize("kind", list(CASES))
def test_another_front_ends_change_is_re_read_when_the_relay_brings_it(world, kind, event):
    case = CASES[kind]
    here, there = world(case), world(case)

    async def scenario() -> None:
        await here.cache.load()
        await there.cache.load()
        told = StateChanged(case.kind, case.name) if event == "state_changed" else CachesReset("reconnected")

        await case.change(there.cache)
        assert there.published == [StateChanged(case.kind, case.name)]  # for the relay, once committed
        assert case.read(there.cache) == case.after
        assert case.read(here.cache) == case.before  # nobody told it yet
        here.remote(told)
        await _until(lambda: case.read(here.cache) == case.after)

        await case.undo(there.cache)  # gone there (or back to the default): gone here too
        here.remote(told)
        await _until(lambda: case.read(here.cache) == case.before)
        assert here.published == ([told, told] if isinstance(told, StateChanged) else [])  # no echo of its own

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", list(CASES))
def test_a_local_state_change_reloads_nothing(world, kind, monkeypatch):
    case = CASES[kind]
    here = world(case)
    reloads: list[str] = []

    async def counted(name: str) -> None:
        reloads.append(name)

    async def scenario() -> None:
        await here.cache.load()
        monkeypatch.setattr(here.cache, "reload", counted)
        here.bus.publish(StateChanged(case.kind, case.name))  # this front end's own change
        here.bus.publish(CachesReset("local"))
        here.remote(StateChanged("some-other-cache", case.name))
        for _ in range(10):
            await asyncio.sleep(0)
        assert reloads == []
        here.remote(StateChanged(case.kind, case.name))  # the same event from another front end
        await _until(lambda: reloads == [case.name])

    asyncio.run(scenario())


def test_a_reload_overtaken_by_a_local_change_reads_again(world):
    """A re-read that raced this front end's own change does not put the older rows back."""
    case = CASES["event_invoke_configs"]
    here = world(case)
    configs = here.cache
    reads = 0
    real_all = configs.repo.all

    def all_rows():  # the first read answers what was there before this front end's change
        nonlocal reads
        reads += 1
        rows = real_all()
        if reads == 1:
            asyncio.run_coroutine_threadsafe(case.change(configs), loop).result()
        return rows

    async def scenario() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        configs.repo.all = all_rows
        await configs.reload("f")
        assert reads == 2
        assert case.read(configs) == case.after

    loop: Any = None
    asyncio.run(scenario())
