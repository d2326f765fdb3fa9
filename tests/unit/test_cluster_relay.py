"""The change relay and the leader's lock, against the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from squall.cluster.leadership import Leadership
from squall.cluster.relay import ChangeRelay, conninfo, decode, encode
from squall.engine.bus import (
    AliasChanged,
    CachesReset,
    EventBus,
    FunctionUpdated,
    InvocationFinished,
    StateChanged,
)
from tests.conftest import require
from tests.e2e.test_postgres import PG_HOST, PG_PORT, postgres_reachable

URL = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"


def run(scenario):
    """A test written as a coroutine, run on a loop of its own (as the other unit tests do)."""
    def test():
        asyncio.run(scenario())
    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


def test_events_round_trip_and_strangers_are_ignored():
    node, event = decode(encode("n1", AliasChanged("f", "live")))
    assert (node, event) == ("n1", AliasChanged("f", "live"))
    assert decode(encode("n1", StateChanged("iam"))) == ("n1", StateChanged("iam", ""))
    assert decode("not json") is None and decode('{"n": "x", "t": "os.system", "f": {}}') is None
    huge = encode("n1", StateChanged("permissions", "x" * 10_000))  # too large for NOTIFY: a reset instead
    assert decode(huge) == ("n1", CachesReset("a change too large to relay"))
    assert conninfo("postgresql+psycopg://postgres@127.0.0.1:5432/db") == "postgresql://postgres@127.0.0.1:5432/db"


async def _until(check, seconds: float = 10.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError("not within %s s" % seconds)
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _recorder(bus: EventBus, kinds) -> list:
    seen: list = []
    for kind in kinds:
        bus.subscribe(kind, lambda event: seen.append((event, bus.from_remote)))
    return seen


@run
async def test_a_change_on_one_bus_reaches_the_other_once():
    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    one, two = EventBus(), EventBus()
    seen_one = _recorder(one, (FunctionUpdated, StateChanged))
    seen_two = _recorder(two, (FunctionUpdated, StateChanged, CachesReset))
    relays = [ChangeRelay(one, URL), ChangeRelay(two, URL)]
    for relay in relays:
        relay.start()
    try:
        await _until(lambda: all(r.connected for r in relays))
        one.publish(FunctionUpdated("f", "rev-1"))
        one.publish(InvocationFinished("f", "$LATEST", "r", 1.0, None, None))  # not a state change: not relayed
        took = await _until(lambda: (FunctionUpdated("f", "rev-1"), True) in seen_two)
        print(f"relayed in {took * 1000:.1f} ms")
        with two.remote():  # a cache's echo of a remote change: not sent back
            two.publish(StateChanged("permissions", "f"))
        two.publish(StateChanged("iam"))
        await _until(lambda: (StateChanged("iam"), True) in seen_one)
        assert (StateChanged("permissions", "f"), True) not in seen_one
        assert [e for e, _ in seen_one].count(FunctionUpdated("f", "rev-1")) == 1  # its own, not echoed
        assert relays[0].sent >= 1 and relays[1].received >= 1
    finally:
        for relay in relays:
            await relay.stop()


@run
async def test_listening_again_resets_the_caches():
    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    bus = EventBus()
    seen = _recorder(bus, (CachesReset,))
    relay = ChangeRelay(bus, URL, retry_seconds=(0.05, 0.2))
    relay.start()
    try:
        await _until(lambda: len(seen) == 1)  # (re)connected: whatever was missed, drop everything
        assert seen[0][1] is True
    finally:
        await relay.stop()


@run
async def test_one_leader_and_a_takeover():
    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    log: list[str] = []

    def leadership(name: str) -> Leadership:
        async def gain() -> None:
            log.append(f"{name}+")

        async def lose() -> None:
            log.append(f"{name}-")

        return Leadership(URL, gain, lose, interval=0.1)

    first, second = leadership("a"), leadership("b")
    await first.start()
    await _until(lambda: first.leader)
    await second.start()
    await asyncio.sleep(0.5)
    assert first.leader and not second.leader
    await first.stop()  # its session ends: the lock is free
    await _until(lambda: second.leader)
    await second.stop()
    assert log == ["a+", "a-", "b+", "b-"]


@run
async def test_without_postgres_the_only_front_end_leads():
    gained: list[bool] = []

    async def gain() -> None:
        gained.append(True)

    async def lose() -> None:
        gained.append(False)

    alone = Leadership("sqlite:///x.db", gain, lose)
    await alone.start()
    assert alone.leader and gained == [True]
    await alone.stop()
    assert gained == [True, False]
