"""The engine facade on the fake backend (SQLite in a temporary directory): the three steps of
an invocation, versions, aliases, provisioned concurrency and the bus, without processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from squall.arn import FunctionRef
from squall.engine.bus import InvocationFinished
from squall.engine.engine import Engine, InvokeOptions
from squall.engine.stores import Stores
from squall.environments.executor import LocalExecutor
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.errors import ResourceConflict, ResourceNotFound, TooManyRequests
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox.fake import FakeBackend
from squall.settings import Settings
from tests.conftest import ROLE, make_zip


async def echo(event, ctx):
    return {"event": event}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def runtimes() -> RuntimeRegistry:
    return RuntimeRegistry.discover()


def run(tmp_path, runtimes, scenario, **settings) -> None:
    async def main() -> None:
        config = Settings(data_dir=tmp_path, shutdown_grace_seconds=0, **settings)
        stores = Stores.open(config)
        clock = Clock()
        pool = EnvironmentPool(FakeBackend({"app.handler": echo}), stores.logs, config.region,
                               PoolLimits(100_000, 60.0, 1 << 20), clock, code=stores.code)
        engine = Engine(config, stores, LocalExecutor(pool), runtimes)
        await engine.start()
        try:
            await scenario(engine, clock)
        finally:
            await engine.stop()

    asyncio.run(main())


async def created(engine: Engine, name: str, publish: bool = False) -> None:
    await engine.create_function({"FunctionName": name, "Runtime": "python3.11", "Role": ROLE, "Handler": "app.handler",
                                  "Code": {"ZipFile": make_zip({"app.py": "x = 1\n"})}, "Publish": publish})
    await settled(engine, name)


async def settled(engine: Engine, name: str, qualifier: str | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config = (await engine.get_function(FunctionRef(name, qualifier))).config
        if config.state == "Active" and config.last_update_status == "Successful":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never settled")


async def call(engine: Engine, name: str, qualifier: str | None = None, payload: bytes = b'{"n": 1}'):
    return await engine.invoke(FunctionRef(name, qualifier), payload, InvokeOptions("req-" + str(time.monotonic_ns())))


def test_invoke_is_resolve_admit_lease_and_tells_the_bus(tmp_path, runtimes):
    async def scenario(engine: Engine, clock: Clock) -> None:
        finished: list[InvocationFinished] = []
        engine.bus.subscribe(InvocationFinished, finished.append)
        with pytest.raises(ResourceNotFound, match=r":missing:\$LATEST"):
            await call(engine, "missing")
        await created(engine, "f")
        result = await call(engine, "f")
        assert result.function_error is None and result.executed_version == "$LATEST"
        assert [(e.function, e.version) for e in finished] == [("f", "$LATEST")]
        await engine.put_function_concurrency(FunctionRef("f"), 0)
        with pytest.raises(TooManyRequests):
            await call(engine, "f")
        await engine.delete_function_concurrency(FunctionRef("f"))
        assert (await call(engine, "f")).function_error is None

    run(tmp_path, runtimes, scenario)


def test_versions_aliases_and_their_environments(tmp_path, runtimes):
    async def scenario(engine: Engine, clock: Clock) -> None:
        await created(engine, "f", publish=True)
        await settled(engine, "f", "1")
        await engine.update_function_configuration(FunctionRef("f"), {"Description": "two"})
        await settled(engine, "f")
        second = await engine.publish_version(FunctionRef("f"), {})
        assert second.version == "2"
        await engine.create_alias(FunctionRef("f"), {"Name": "live", "FunctionVersion": "1",
                                                      "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}})
        engine.resolver.draw = iter([0.9, 0.1]).__next__
        assert [(await call(engine, "f", "live")).executed_version for _ in range(2)] == ["1", "2"]
        await engine.update_alias(FunctionRef("f"), "live", {"FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {}}})
        engine.resolver.draw = lambda: 0.0
        assert (await call(engine, "f", "live")).executed_version == "2"  # the next invoke follows
        with pytest.raises(ResourceConflict, match=r"\[live\]"):
            await engine.delete_function(FunctionRef("f", "2"))
        await engine.delete_function(FunctionRef("f", "1"))
        with pytest.raises(ResourceNotFound):
            await call(engine, "f", "1")
        counts = engine.executor.counts()
        assert counts["busy"] == 0 and counts["idle"] >= 1

    run(tmp_path, runtimes, scenario)


def test_provisioned_concurrency_through_the_facade(tmp_path, runtimes):
    async def scenario(engine: Engine, clock: Clock) -> None:
        await created(engine, "f", publish=True)
        await settled(engine, "f", "1")
        shown = await engine.put_provisioned_concurrency(FunctionRef("f", "1"), 2)
        assert shown["RequestedProvisionedConcurrentExecutions"] == 2
        deadline = time.monotonic() + 10
        while (await engine.get_provisioned_concurrency(FunctionRef("f", "1")))["Status"] != "READY":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        result = await call(engine, "f", "1")
        assert result.init_duration_ms is None  # ran on a provisioned environment
        assert engine.admission.provisioned == {"f": {"1": 2}}
        await engine.delete_function(FunctionRef("f"))
        assert engine.admission.provisioned == {} and engine.executor.counts()["provisioned"] == 0

    run(tmp_path, runtimes, scenario)
