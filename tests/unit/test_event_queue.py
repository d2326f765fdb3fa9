"""The durable event queue: group commit, leases, settlement, redelivery after a crash."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from squall.async_invoke.queue import LEASE_SECONDS
from squall.errors import ResourceNotFound
from tests.unit.async_helpers import Clock, event, make_queue, make_store


def run(coro):
    return asyncio.run(coro)


def test_accept_then_lease_once(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock)
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "r1"))
        await queue.accept(event(clock, "r2"))
        leased, next_due = await queue.lease_due({"fn": 10})
        assert sorted(e.request_id for e in leased) == ["r1", "r2"] and next_due == {"fn": None}
        assert leased[0].payload == b'{"n": 1}' and leased[0].enqueued_at == clock()
        assert (await queue.lease_due({"fn": 10}))[0] == []  # leased events are not handed out twice
        await queue.stop()

    run(scenario())
    assert repo.count() == 2  # stop gave the leases back; nothing was lost


def test_concurrent_accepts_share_commits(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario(max_batch):
        queue = make_queue(repo, clock, max_batch=max_batch)
        await queue.start(reclaim_everything=True)
        await asyncio.gather(*(queue.accept(event(clock, f"{max_batch}-{i}")) for i in range(300)))
        commits = queue.commits - 1  # the start-up reclaim is one
        await queue.stop()
        return commits

    grouped = run(scenario(1000))
    assert grouped <= 3  # 300 events, submitted together: one or two transactions
    assert run(scenario(1)) == 300  # the baseline: one commit per event
    assert repo.count() == 600


def test_unknown_function_is_refused_and_does_not_spoil_the_batch(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock)
        await queue.start(reclaim_everything=True)
        results = await asyncio.gather(
            queue.accept(event(clock, "ok-1")),
            queue.accept(event(clock, "bad", function="deleted")),
            queue.accept(event(clock, "ok-2")),
            return_exceptions=True,
        )
        await queue.stop()
        return results

    results = run(scenario())
    assert results[0] is None and results[2] is None and isinstance(results[1], ResourceNotFound)
    assert repo.count() == 2


def test_reschedule_waits_for_the_due_time(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock)
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "r1"))
        (leased,), _ = await queue.lease_due({"fn": 10})
        async with queue.held(leased) as lease:
            await lease.retry(replace(leased, attempts=1, not_before=clock() + 60, last_status=200, last_error=b"{}"))
        events, next_due = await queue.lease_due({"fn": 10})
        assert events == [] and next_due == {"fn": clock() + 60}
        clock.advance(60)
        (again,), _ = await queue.lease_due({"fn": 10})
        assert again.attempts == 1 and again.last_status == 200 and again.last_error == b"{}"
        async with queue.held(again) as lease:
            await lease.finish("succeeded")
        await queue.stop()

    run(scenario())
    assert repo.count() == 0
    (stats,) = repo.stats("fn")
    assert stats.counters["succeeded"] == 1


def test_an_unsettled_lease_is_released(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock)
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "r1"))
        (leased,), _ = await queue.lease_due({"fn": 10})
        with pytest.raises(RuntimeError):
            async with queue.held(leased):
                raise RuntimeError("the invocation blew up")
        await asyncio.sleep(0.05)  # the release is written by the writer
        events, _ = await queue.lease_due({"fn": 10})
        assert [e.request_id for e in events] == ["r1"]
        await queue.stop()

    run(scenario())


def test_leases_of_a_killed_server_are_redelivered(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def crashed_run():
        queue = make_queue(repo, clock, owner="dead-server")
        await queue.start(reclaim_everything=True)
        for i in range(5):
            await queue.accept(event(clock, f"r{i}"), leased=i < 2)  # two handed straight to its dispatcher
        leased, _ = await queue.lease_due({"fn": 2})
        assert len(leased) == 2
        queue._writer.cancel()  # "SIGKILL": no stop(), leases stay in the database
        queue._thread.shutdown(wait=True)

    run(crashed_run())
    assert {s.leased for s in repo.stats()} == {4}

    async def next_run(everything):
        queue = make_queue(repo, clock, owner="new-server")
        reclaimed = await queue.start(reclaim_everything=everything)
        events, _ = await queue.lease_due({"fn": 100})
        await queue.stop()
        return reclaimed, sorted(e.request_id for e in events)

    # Sharing a database (PostgreSQL), another server waits for the leases to expire.
    assert run(next_run(False)) == (0, ["r4"])
    clock.advance(LEASE_SECONDS + 1)
    reclaimed, events = run(next_run(False))
    assert reclaimed == 4 and events == ["r0", "r1", "r2", "r3", "r4"]


def test_restart_on_sqlite_reclaims_every_lease_at_once(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def crashed_run():
        queue = make_queue(repo, clock, owner="dead-server")
        await queue.start(reclaim_everything=True)
        for i in range(3):
            await queue.accept(event(clock, f"r{i}"), leased=True)
        queue._writer.cancel()
        queue._thread.shutdown(wait=True)

    async def next_run():
        queue = make_queue(repo, clock, owner="new-server")
        reclaimed = await queue.start(reclaim_everything=True)
        events, _ = await queue.lease_due({"fn": 100})
        await queue.stop()
        return reclaimed, len(events)

    run(crashed_run())
    assert run(next_run()) == (3, 3)


def test_age_expiry_lease(tmp_path):
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock)
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "old"))
        clock.advance(100)
        await queue.accept(event(clock, "new"))
        expired = await queue.lease_expired("fn", max_age=60)
        await queue.stop()
        return [e.request_id for e in expired]

    assert run(scenario()) == ["old"]


def test_a_lease_no_longer_held_expires_and_runs_again(tmp_path):
    """Renewal extends only the leases the dispatcher holds; one it lost track of expires and is
    reclaimed, by its own owner too (a front end never sits on an event it does not run)."""
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock, owner="me")
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "held"), leased=True)
        await queue.accept(event(clock, "lost"), leased=True)  # leased to us, then forgotten
        for _ in range(3):
            clock.advance(queue.lease_seconds / 2)
            await queue.renew({"held"})
            await queue.reclaim_expired()
        leased, _ = await queue.lease_due({"fn": 10})
        assert [e.request_id for e in leased] == ["lost"]  # available again, to anyone
        await queue.renew({"held", "lost"})
        clock.advance(queue.lease_seconds / 2)
        await queue.reclaim_expired()
        assert (await queue.lease_due({"fn": 10}))[0] == []  # both held and renewed: nothing expires
        await queue.stop()

    run(scenario())


def test_a_settlement_that_fails_gives_the_lease_back(tmp_path):
    """A retry or finish whose write fails (a deadlock, the database away) leaves the event
    unleased, due again, rather than leased to a front end that will never settle it."""
    clock, repo = Clock(), make_store(tmp_path)

    async def scenario():
        queue = make_queue(repo, clock, owner="me")
        await queue.start(reclaim_everything=True)
        await queue.accept(event(clock, "r1"))
        (leased,), _ = await queue.lease_due({"fn": 1})

        async def failing(_event):
            raise RuntimeError("deadlock detected")

        queue.reschedule = failing
        with pytest.raises(RuntimeError):
            async with queue.held(leased) as lease:
                await lease.retry(replace(leased, attempts=1))
        for _ in range(100):  # the release goes through the writer
            again, _ = await queue.lease_due({"fn": 1})
            if again:
                break
            await asyncio.sleep(0.01)
        assert [e.request_id for e in again] == ["r1"]
        await queue.stop()

    run(scenario())
