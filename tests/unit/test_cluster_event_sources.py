"""Event source mappings over one database shared by several front ends: the API answers the same
on each, pollers run on the leader only, and another front end's change (a StateChanged or a
CachesReset published as remote) is re-read and its poller started, restarted or stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import squall.sources.sqs as sqs
from squall.arn import Arns
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.errors import ResourceNotFound
from squall.sources.poller import Poller
from squall.sources.service import KIND, EventSources
from squall.store.db import create_engine
from squall.store.event_sources import EventSourceRepository

QUEUE = "arn:aws:sqs:us-east-1:123456789012:jobs"
OTHER_QUEUE = "arn:aws:sqs:us-east-1:123456789012:other"


class FakePoller(Poller):
    started: list[FakePoller] = []

    async def run(self) -> None:
        FakePoller.started.append(self)
        await self.stopping.wait()

    async def forget(self) -> None:
        pass


class FakeClients:
    def close(self) -> None:
        pass


async def _exists(ref: Any) -> bool:
    return True


async def _send(target: str, body: bytes) -> None:
    pass


async def _check(source: Any, deps: Any, timeout: Any, **_: Any) -> None:
    pass


@pytest.fixture(autouse=True)
def fake_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    FakePoller.started = []
    monkeypatch.setattr(sqs, "make_poller", lambda mapping, deps: FakePoller(mapping, deps))
    monkeypatch.setattr(sqs, "check", _check)


def front_end(engine: Any) -> tuple[EventSources, EventBus]:
    bus = EventBus()
    sources = EventSources(EventSourceRepository(engine), object(), FakeClients(), object(),  # type: ignore[arg-type]
                           Arns("us-east-1", "123456789012"), _exists, _send, lambda name: "role",
                           lambda name: 3, bus=bus)
    return sources, bus


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[tuple[EventSources, EventBus], tuple[EventSources, EventBus]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'squall.db'}")
    return front_end(engine), front_end(engine)


def relay(source_bus: EventBus, target_bus: EventBus) -> list[object]:
    """What the relay does: B's local StateChanged are published on A as remote ones."""
    sent: list[object] = []

    def forward(event: object) -> None:
        if source_bus.from_remote:
            return
        sent.append(event)
        with target_bus.remote():
            target_bus.publish(event)

    source_bus.subscribe(StateChanged, forward)
    return sent


async def settle(sources: EventSources, until: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not until():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    for _ in range(5):  # let deferred refreshes and transitions run out
        await asyncio.sleep(0.01)


def run(scenario: Any) -> Any:
    """A test whose body is a coroutine (these unit tests use no asyncio plugin)."""

    def test(cluster: Any) -> None:
        asyncio.run(scenario(cluster))

    test.__name__ = scenario.__name__
    return test


def live(sources: EventSources) -> dict[str, asyncio.Task[None]]:
    return {uuid: task for uuid, (_, task) in sources._pollers.items() if not task.done()}


@run
async def test_a_mapping_made_on_another_front_end_is_seen_and_polled_by_the_leader(cluster):
    (a, bus_a), (b, bus_b) = cluster
    relay(bus_b, bus_a)
    await a.start()  # the leader
    await b.load()  # not the leader: no pollers
    assert a.polling and not b.polling

    made = await b.create({"EventSourceArn": QUEUE, "FunctionName": "fn", "BatchSize": 5})
    uuid = made["UUID"]
    await settle(a, lambda: uuid in live(a) and a._mappings[uuid].state == "Enabled")
    assert not b._pollers and [p.mapping.uuid for p in FakePoller.started] == [uuid]  # started once, on A
    assert (await a.get(uuid))["BatchSize"] == 5
    assert [m["UUID"] for m in (await a.list(None, None, None, None))[0]] == [uuid]
    assert [r["uuid"] for r in a.report()] == [uuid]
    assert (await b.get(uuid))["State"] == "Enabled"

    # a new setting: the leader's poller restarts with it
    first = live(a)[uuid]
    await b.update(uuid, {"BatchSize": 7})
    await settle(a, lambda: uuid in live(a) and live(a)[uuid] is not first
                 and a._pollers[uuid][0].settings.batch_size == 7)
    assert first.done()

    # disabled elsewhere: the poller stops
    await b.update(uuid, {"Enabled": False})
    await settle(a, lambda: uuid not in a._pollers and a._mappings[uuid].state == "Disabled")
    assert (await a.get(uuid))["State"] == "Disabled"

    # enabled again
    await b.update(uuid, {"Enabled": True})
    await settle(a, lambda: uuid in live(a))

    # deleted on a front end without pollers: the leader stops the poller and finishes the delete
    relay(bus_a, bus_b)
    answer = await b.delete(uuid)
    assert answer["State"] == "Deleting"
    await settle(a, lambda: uuid not in a._mappings and uuid not in a._pollers and uuid not in b._mappings)
    with pytest.raises(ResourceNotFound):
        await b.get(uuid)
    assert (await a.list(None, None, None, None))[0] == []
    await a.stop()
    await b.stop()
    assert not live(a)


@run
async def test_stop_pollers_leaves_none_and_run_pollers_resumes(cluster):
    (a, bus_a), (b, bus_b) = cluster
    relay(bus_b, bus_a)
    await a.start()
    await b.load()
    one = (await a.create({"EventSourceArn": QUEUE, "FunctionName": "fn"}))["UUID"]
    two = (await a.create({"EventSourceArn": OTHER_QUEUE, "FunctionName": "fn", "Enabled": False}))["UUID"]
    await settle(a, lambda: one in live(a) and a._mappings[two].state == "Disabled")
    tasks = [task for _, task in a._pollers.values()]

    await a.stop_pollers()
    await a.stop_pollers()  # idempotent
    assert not a._pollers and all(t.done() for t in tasks) and not a.polling

    # while not the leader: another front end's change updates the API side, starts nothing
    await b.update(two, {"Enabled": True})
    await settle(a, lambda: a._mappings[two].settings.enabled and a._mappings[two].state == "Enabled")
    assert not a._pollers
    # a delete made here without pollers waits, in Deleting, for the leader
    await a.delete(one)
    await asyncio.sleep(0.05)
    assert (await b.get(one))["State"] == "Deleting"

    await a.run_pollers()
    await a.run_pollers()  # idempotent
    assert set(live(a)) == {two}
    assert a.polling
    await settle(a, lambda: one not in a._mappings)
    with pytest.raises(ResourceNotFound):
        await a.get(one)
    await a.stop()
    assert not live(a)


@run
async def test_a_local_state_changed_does_not_reload(cluster):
    (a, bus_a), (b, _) = cluster
    await a.start()
    await b.load()
    uuid = (await b.create({"EventSourceArn": QUEUE, "FunctionName": "fn"}))["UUID"]
    await asyncio.sleep(0.05)
    bus_a.publish(StateChanged(KIND, uuid))  # this front end's own change: nothing re-read
    await asyncio.sleep(0.05)
    assert uuid not in a._mappings and not a._pollers
    bus_a.publish(StateChanged("permissions", uuid))
    with bus_a.remote():
        bus_a.publish(StateChanged("permissions", uuid))  # another kind
    await asyncio.sleep(0.05)
    assert uuid not in a._mappings
    await b.stop()
    await a.stop()


@run
async def test_a_remote_caches_reset_reloads_everything_and_syncs_the_pollers(cluster):
    (a, bus_a), (b, _) = cluster
    await a.start()
    await b.load()
    kept = (await a.create({"EventSourceArn": QUEUE, "FunctionName": "fn"}))["UUID"]
    await settle(a, lambda: kept in live(a))
    # changes whose StateChanged never reached A
    made = (await b.create({"EventSourceArn": OTHER_QUEUE, "FunctionName": "fn"}))["UUID"]
    await b.update(kept, {"Enabled": False})
    await asyncio.sleep(0.05)
    assert made not in a._mappings and kept in live(a)

    bus_a.publish(CachesReset("local"))  # not from another front end: nothing
    await asyncio.sleep(0.05)
    assert made not in a._mappings

    with bus_a.remote():
        bus_a.publish(CachesReset("reconnected"))
    await settle(a, lambda: made in live(a) and kept not in a._pollers)
    assert a._mappings[kept].state == "Disabled"
    await b.stop()
    await a.stop()
    assert not live(a)
