"""The dispatcher and the delivery worker, driven step by step with an injected clock."""

from __future__ import annotations

import asyncio
import logging

import orjson

from squall.invoke.admission import Admission
from squall.async_invoke.deliveries import DeliveryWorker
from squall.async_invoke.destinations import DeliveryError
from squall.async_invoke.dispatcher import Dispatcher
from squall.async_invoke.configs import EventInvokeConfig, EventInvokeConfigs
from squall.async_invoke.queue import Lease
from squall.invoke.invocation import InvocationResult
from squall.async_invoke.retries import Condition, RetryPolicy
from squall.errors import RecursiveInvocation, ResourceNotFound, TooManyRequests
from squall.arn import Arns
from squall.store.event_invoke_configs import EventInvokeConfigRepository
from squall.store.events import Delivery
from tests.unit.async_helpers import Clock, event, make_queue, make_store


class Harness:
    """A dispatcher over a real queue (SQLite in tmp) with a scripted invoke."""

    def __init__(self, tmp_path, reserved=None, max_concurrency=8, script=None):
        self.clock = Clock()
        self.repo = make_store(tmp_path)
        self.queue = make_queue(self.repo, self.clock)
        self.concurrency = Admission(100)
        for name, value in (reserved or {}).items():
            self.concurrency.set_reserved(name, value)
        self.configs = EventInvokeConfigs(EventInvokeConfigRepository(self.repo.engine), Arns("us-east-1", "1" * 12), None)
        self.script = script or {}  # request id → list of "ok" | "error" | "throttle" | "gone" | asyncio.Event
        self.calls: list[tuple[str, str]] = []
        self.traces: list[str | None] = []
        self.finished: list[tuple[str, Condition, int, int]] = []
        self.dispatcher = Dispatcher(
            self.queue, self.invoke, self.finish, self.concurrency, self.configs, RetryPolicy(60.0), self.clock, max_concurrency
        )

    async def invoke(self, ref, payload, request_id, prelude, trace=None, queued_at=None):
        self.calls.append((request_id, prelude))
        self.traces.append(trace)
        steps = self.script.get(request_id) or ["ok"]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        with self.concurrency.try_acquire(ref.name):
            if isinstance(step, asyncio.Event):
                await step.wait()
                step = "ok"
            if step == "throttle":
                raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
            if step == "gone":
                raise ResourceNotFound("Function not found")
            if step == "loop":
                raise RecursiveInvocation("a recursive loop")
            failed = step == "error"
            body = orjson.dumps({"errorMessage": "boom", "errorType": "ValueError"}) if failed else b'"fine"'
            return InvocationResult(request_id, body, "$LATEST", "Unhandled" if failed else None)

    async def finish(self, lease: Lease, condition, status, result):
        self.finished.append((lease.event.request_id, condition, status, lease.event.attempts))
        await lease.finish(condition.counter)

    async def start(self):
        await self.queue.start(reclaim_everything=True)
        self.dispatcher.start(0, run=False)

    async def accept(self, request_id):
        ev = event(self.clock, request_id)
        claimed = self.dispatcher.claim("fn")
        await self.queue.accept(ev, leased=claimed)
        self.dispatcher.accepted(ev, claimed, stored=True)

    async def steps(self, n=1, advance=0.02):
        for _ in range(n):
            self.clock.advance(advance)
            await self.dispatcher.step()
            await asyncio.sleep(0)

    async def stop(self):
        await self.dispatcher.stop(1.0)
        await self.queue.stop()


def test_success_runs_once_with_the_attempt_in_the_log_line(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        await h.accept("r1")
        await h.steps()
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert h.finished == [("r1", Condition.SUCCESS, 200, 1)]
    (request_id, prelude), = h.calls
    assert prelude.startswith("ASYNC_EVENT RequestId: r1\tAttempt: 1 of 3\tEvent Age: ")
    assert h.repo.count() == 0


def test_function_errors_follow_the_backoff_schedule(tmp_path):
    async def scenario():
        h = Harness(tmp_path, script={"r1": ["error", "error", "error"]})
        await h.start()
        await h.accept("r1")
        await h.steps()
        await h.dispatcher.wait_running()
        assert len(h.calls) == 1 and not h.finished
        await h.steps(3, advance=10)  # 30 s: not due yet (60 s)
        assert len(h.calls) == 1
        await h.steps(1, advance=31)
        await h.dispatcher.wait_running()
        assert len(h.calls) == 2
        await h.steps(1, advance=119)  # the second retry waits 120 s
        assert len(h.calls) == 2
        await h.steps(1, advance=2)
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert [p.split("\t")[1] for _, p in h.calls] == ["Attempt: 1 of 3", "Attempt: 2 of 3", "Attempt: 3 of 3"]
    assert h.finished == [("r1", Condition.RETRIES_EXHAUSTED, 200, 3)]


def test_throttles_wait_and_are_not_attempts(tmp_path):
    async def scenario():
        h = Harness(tmp_path, script={"r1": ["throttle", "throttle", "ok"]})
        await h.start()
        await h.accept("r1")
        await h.steps()
        await h.dispatcher.wait_running()
        await h.steps(1, advance=1.0)  # first backoff: 1 s
        await h.dispatcher.wait_running()
        await h.steps(1, advance=1.0)
        assert len(h.calls) == 2  # second backoff is 2 s
        await h.steps(1, advance=1.0)
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert len(h.calls) == 3
    assert all("Attempt: 1 of 3" in p for _, p in h.calls)  # throttles are not attempts
    assert h.finished == [("r1", Condition.SUCCESS, 200, 1)]


def test_reserved_concurrency_is_respected_and_nothing_is_dropped(tmp_path):
    async def scenario():
        gate = asyncio.Event()
        h = Harness(tmp_path, reserved={"fn": 2}, script={f"r{i}": [gate] for i in range(6)})
        await h.start()
        for i in range(6):
            await h.accept(f"r{i}")
        await h.steps(3)
        running = len(h.calls)
        assert h.concurrency.in_flight_of("fn") == 2
        gate.set()
        for _ in range(10):
            await h.steps()
            await h.dispatcher.wait_running()
        await h.stop()
        return h, running

    h, running = asyncio.run(scenario())
    assert running == 2
    assert sorted(r for r, *_ in h.finished) == [f"r{i}" for i in range(6)]


def test_events_of_a_throttled_function_expire_with_their_age(tmp_path):
    async def scenario():
        h = Harness(tmp_path, reserved={"fn": 0})
        h.configs._cache[("fn", "$LATEST")] = EventInvokeConfig("fn", maximum_event_age=60)
        await h.start()
        await h.accept("r1")
        await h.steps(2, advance=6)  # waits: no slot, ever
        assert h.calls == [] and h.finished == [] and h.repo.count() == 1
        await h.steps(1, advance=60)
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert h.calls == []
    assert h.finished == [("r1", Condition.EVENT_AGE_EXCEEDED, 429, 0)]
    assert h.repo.count() == 0


def test_events_of_a_deleted_function_are_dropped(tmp_path):
    async def scenario():
        h = Harness(tmp_path, script={"r1": ["gone"]})
        await h.start()
        await h.accept("r1")
        await h.steps()
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert h.finished == [] and h.repo.count() == 0


def test_a_recursive_loop_ends_at_once_and_is_not_retried(tmp_path):
    async def scenario():
        h = Harness(tmp_path, script={"r1": ["loop"]})
        await h.start()
        await h.accept("r1")
        await h.steps()
        await h.dispatcher.wait_running()
        await h.stop()
        return h

    h = asyncio.run(scenario())
    assert h.finished == [("r1", Condition.RECURSIVE_LOOP, 400, 0)] and len(h.calls) == 1
    assert h.repo.count() == 0


class FlakySenders:
    def __init__(self, failures):
        self.failures = failures
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, target, body, attributes=None):
        if self.failures:
            self.failures -= 1
            raise DeliveryError(f"{target} is down")
        self.sent.append((target, body))


def test_failing_destination_is_retried_then_logged(tmp_path, caplog):
    async def scenario(failures):
        clock, repo = Clock(), make_store(tmp_path / str(failures))
        queue = make_queue(repo, clock)
        senders = FlakySenders(failures)
        worker = DeliveryWorker(queue, senders, clock)
        await queue.start(reclaim_everything=True)
        await queue.run(
            lambda conn: repo.insert_deliveries(
                conn, [Delivery("fn", "r1", "dlq", "arn:aws:sqs:us-east-1:123456789012:q", b"{}", {"RequestID": "r1"}, 0, clock())]
            )
        )
        attempts = []
        for delay in (0, 1, 2):
            clock.advance(delay)
            started = await worker.step()
            await asyncio.gather(*started)
            attempts.append(len(started))
        await queue.stop()
        return worker, senders, repo, attempts

    (tmp_path / "3").mkdir()
    (tmp_path / "1").mkdir()
    with caplog.at_level(logging.WARNING, logger="squall.destinations"):
        worker, senders, repo, attempts = asyncio.run(scenario(3))
    assert attempts == [1, 1, 1] and worker.failed == 1 and senders.sent == []
    assert "DESTINATION_FAILED function=fn request_id=r1 kind=dlq" in caplog.text
    assert repo.stats("fn")[0].counters["destination_failures"] == 1

    worker, senders, repo, attempts = asyncio.run(scenario(1))
    assert attempts == [1, 1, 0] and worker.sent == 1 and len(senders.sent) == 1
    assert repo.stats("fn")[0].counters["dead_lettered"] == 1
