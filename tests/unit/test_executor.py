"""The local executor on the fake backend: leases, retiring by bus events, provisioned sets."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson

from squall.arn import LATEST
from squall.engine.bus import EventBus, FunctionDeleted, FunctionUpdated, VersionDeleted
from squall.environments.executor import LocalExecutor
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.environments.provisioned import INIT_FAILURE
from squall.function import Code, FunctionVersion, State
from squall.invoke.admission import Admission
from squall.invoke.invocation import InvocationRequest
from squall.observe.logs import LogStore
from squall.runtimes.registry import Runtime
from squall.sandbox.fake import FakeBackend, FakeExit
from tests.targets import target_of

RUNTIME = Runtime("python3.11", "python", "/usr/bin/python3", "3.11.0")


async def env_info(event, ctx):
    await asyncio.sleep(event.get("sleep", 0))
    return {"event": event}


async def crash(event, ctx):
    raise FakeExit(3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fn(number: str = "1", handler: str = "env", **changes) -> FunctionVersion:
    fv = FunctionVersion(name="f", runtime="python3.11", handler=handler, role="arn:aws:iam::123456789012:role/r",
                         code=Code("c2hh", "ab" * 32, 10), version=number, state=State.ACTIVE)
    return dataclasses.replace(fv, **changes)


def make(tmp_path, clock=None):
    backend = FakeBackend({"env": env_info, "crash": crash})
    pool = EnvironmentPool(backend, LogStore(tmp_path / "logs"), "us-east-1", PoolLimits(100_000, 60.0, 1 << 20), clock or Clock())
    executor = LocalExecutor(pool)
    bus = EventBus()
    executor.pool.bus = bus
    return backend, pool, executor, bus


async def call(executor, target, admission, payload=None):
    with admission.try_acquire(target.name, target.qualifier) as slot:
        async with executor.lease(target, slot) as lease:
            return lease, await lease.invoke(InvocationRequest("r", orjson.dumps(payload or {}), target.invoked_arn))


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_provisioned_environments_start_ahead_serve_first_and_spill_over(tmp_path):
    async def scenario():
        backend, pool, executor, _ = make(tmp_path)
        admission = Admission(100)
        target = target_of(fn("1"), RUNTIME, tmp_path, qualifier="live")
        admission.set_provisioned("f", "live", 2)
        pool.provision("f", "live", [(target, 2)])
        await until(lambda: pool.provisioned_status("f", "live") == (2, None))
        assert backend.started == 2
        assert all(e.spec.env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency" for e in backend.running)
        lease, result = await call(executor, target, admission)
        assert lease.provisioned and result.init_duration_ms is None  # no Init Duration: it started ahead
        assert b"Init Duration" not in result.log_tail
        # three at once: two on the provisioned environments, the third spills over on demand
        results = await asyncio.gather(*(call(executor, target, admission, {"sleep": 0.1}) for _ in range(3)))
        assert sorted(lease.provisioned for lease, _ in results) == [False, True, True]
        spilled = [r for lease, r in results if not lease.provisioned][0]
        assert spilled.init_duration_ms is not None
        assert pool.counts()["provisioned"] == 2
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_provisioned_environments_outlive_keep_alive_and_are_replaced_when_they_die(tmp_path):
    async def scenario():
        clock = Clock()
        backend, pool, executor, _ = make(tmp_path, clock)
        admission = Admission(100)
        crasher = target_of(fn("1", handler="crash"), RUNTIME, tmp_path, qualifier="1")
        admission.set_provisioned("f", "1", 1)
        pool.provision("f", "1", [(crasher, 1)])
        await until(lambda: pool.provisioned_status("f", "1")[0] == 1)
        clock.now += 3600
        assert pool.reap() == 0  # kept past the keep-alive time
        _, result = await call(executor, crasher, admission)
        assert result.error_type == "Runtime.ExitError"
        await until(lambda: backend.started == 2 and pool.provisioned_status("f", "1")[0] == 1)  # replaced
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_an_init_failure_fails_the_provisioned_config(tmp_path):
    async def scenario():
        _, pool, _, _ = make(tmp_path)
        broken = target_of(fn("1", handler="missing"), RUNTIME, tmp_path, qualifier="1")
        pool.provision("f", "1", [(broken, 3)])
        await until(lambda: pool.provisioned_status("f", "1")[1] is not None)
        assert pool.provisioned_status("f", "1") == (0, INIT_FAILURE)
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_lowering_and_deleting_provisioned_concurrency_stops_environments(tmp_path):
    async def scenario():
        backend, pool, _, _ = make(tmp_path)
        target = target_of(fn("1"), RUNTIME, tmp_path, qualifier="1")
        pool.provision("f", "1", [(target, 3)])
        await until(lambda: pool.provisioned_status("f", "1")[0] == 3)
        pool.provision("f", "1", [(target, 1)])
        await until(lambda: len(backend.running) == 1)
        pool.provision("f", "1", [])
        await until(lambda: not backend.running)
        assert pool.provisioned_status("f", "1") == (0, None)

    asyncio.run(scenario())


def test_bus_events_retire_the_right_environments(tmp_path):
    async def scenario():
        backend, pool, executor, bus = make(tmp_path)
        admission = Admission(100)
        executor.connect(bus, resolver=None)  # type: ignore[arg-type]  (no provisioning here)
        latest = target_of(fn(LATEST), RUNTIME, tmp_path)
        one = target_of(fn("1"), RUNTIME, tmp_path, qualifier="1")
        await call(executor, latest, admission)
        await call(executor, one, admission)
        assert pool.counts()["idle"] == 2
        bus.publish(FunctionUpdated("f", "another-revision"))  # a new $LATEST: its old environment goes
        await until(lambda: len(backend.running) == 1)
        assert pool.counts()["idle"] == 1  # version 1 is immutable: its environment stays
        bus.publish(VersionDeleted("f", "1"))
        await until(lambda: not backend.running)
        await call(executor, latest, admission)
        bus.publish(FunctionDeleted("f"))
        await until(lambda: not backend.running)
        await pool.shutdown(0)

    asyncio.run(scenario())
