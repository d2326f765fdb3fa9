"""Concurrency permits across front ends, against the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from squall.cluster.permits import ACCOUNT, ClusterPermits, NeedPermits, function_scope
from squall.engine.bus import EventBus, StateChanged
from squall.errors import TooManyRequests
from squall.invoke.admission import Admission
from squall.store import db
from squall.store.permits import PermitRepository
from tests.conftest import fresh_postgres_database


@pytest.fixture
def repo():
    with fresh_postgres_database("squall_permits") as url:
        engine = db.create_engine(url)
        yield PermitRepository(engine)
        engine.dispose()


def test_grants_never_add_up_past_the_limit(repo):
    assert repo.resize("function:f", "a", 7, 10, now=100.0, ttl=10) == 7
    assert repo.resize("function:f", "b", 7, 10, now=100.0, ttl=10) == 3  # what a leaves
    assert repo.resize("function:f", "a", 2, 10, now=101.0, ttl=10) == 2  # a gives 5 back
    assert repo.resize("function:f", "b", 7, 10, now=101.0, ttl=10) == 7
    assert repo.resize("account", "b", 50, 100, now=101.0, ttl=10) == 50  # scopes are separate
    assert repo.resize("function:f", "c", 5, 10, now=120.0, ttl=10) == 5  # a's and b's have expired
    repo.drop("c")
    assert repo.held("function:f", now=120.0) == {}


def test_racing_front_ends_never_hold_more_than_the_limit(repo):
    limit, errors = 12, []

    def front_end(holder: str) -> None:
        rng = random.Random(holder)
        try:
            for _ in range(40):
                repo.resize("function:burst", holder, rng.randint(0, 8), limit, now=1000.0, ttl=60)
                total = sum(repo.held("function:burst", now=1000.0).values())
                if total > limit:
                    errors.append(total)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=front_end, args=(f"fe{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []


def _admission(repo: PermitRepository, holder: str, live: int = 2, bus: EventBus | None = None) -> Admission:
    admission = Admission(1000)
    admission.set_reserved("f", 10)
    admission.permits = ClusterPermits(repo, holder, lambda: live, admission.usage, bus)
    return admission


async def _take(admission: Admission, function: str = "f"):
    """What Engine.invoke does: a slot, with more permits first where needed (or 429)."""
    try:
        return admission.try_acquire(function)
    except NeedPermits as need:
        if not await admission.permits.acquire(need.scope, need.limit, need.in_use):
            raise need.refusal
        return admission.try_acquire(function)


def test_two_front_ends_admit_the_reserved_concurrency_once_between_them(repo):
    async def scenario() -> None:
        a_bus, b_bus = EventBus(), EventBus()
        a, b = _admission(repo, "a", bus=a_bus), _admission(repo, "b", bus=b_bus)
        said: list[StateChanged] = []
        b_bus.subscribe(StateChanged, said.append)
        slots, refused = {"a": [], "b": []}, 0
        for i in range(30):
            side = "a" if i % 3 else "b"  # uneven: a gets twice as many requests
            try:
                slots[side].append(await _take(a if side == "a" else b))
            except TooManyRequests as exc:
                assert exc.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
                refused += 1
        assert len(slots["a"]) + len(slots["b"]) == 10 and refused == 20
        assert len(slots["b"]) == 5  # each front end got its share (10 / 2)
        for slot in slots["a"][:3]:  # a finishes three; what it holds beyond its share goes back
            slot.release()
        await a.permits.trim()
        assert a.permits.held[function_scope("f")] == 5
        for slot in slots["a"][3:]:
            slot.release()
        await a.permits.trim()
        assert a.permits.held[function_scope("f")] == 5  # kept: its share (no database on its next 5)
        with pytest.raises(TooManyRequests):  # a keeps its share idle: b is refused, and says so …
            await _take(b)
        assert StateChanged("permits", function_scope("f")) in said
        with a_bus.remote():  # … a hears it (relayed) and gives back what it does not run
            a_bus.publish(StateChanged("permits", function_scope("f")))
        for _ in range(100):
            if a.permits.held.get(function_scope("f")) == 0:
                break
            await asyncio.sleep(0.02)
        more = [await _take(b) for _ in range(5)]  # b can have what a gave back
        assert len(more) == 5
        with pytest.raises(TooManyRequests):
            await _take(b)
        assert a.usage(ACCOUNT)[1] == 990  # the unreserved pool: 1000 less the 10 reserved

    asyncio.run(scenario())


def test_the_unreserved_pool_is_shared_too(repo):
    async def scenario() -> None:
        a, b = Admission(20), Admission(20)
        for admission, holder in ((a, "a"), (b, "b")):
            admission.permits = ClusterPermits(repo, holder, lambda: 2, admission.usage)
        taken = []
        for i in range(30):
            try:
                taken.append(await _take(a if i % 2 else b, function=f"g{i}"))
            except TooManyRequests as exc:
                assert exc.reason == "ConcurrentInvocationLimitExceeded"
        assert len(taken) == 20

    asyncio.run(scenario())
