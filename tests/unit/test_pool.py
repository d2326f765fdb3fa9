"""The environment pool and environments, driven through the in-process fake backend."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import orjson
import pytest

from squall.environments.environment import EnvironmentState
from squall.invoke.invocation import InvocationRequest
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.errors import TooManyRequests
from squall.function import Code, FunctionVersion, State
from squall.observe.logs import LogStore
from squall.runtimes.registry import Runtime
from squall.sandbox.fake import FakeBackend, FakeExit
from tests.targets import target_of

RUNTIME = Runtime("python3.11", "python", "/usr/bin/python3", "3.11.0")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def echo(event, ctx):
    ctx.log(f"echo {event}")
    return event


async def slow(event, ctx):
    await asyncio.sleep(event.get("sleep", 0.2))
    return "slept"


async def boom(event, ctx):
    raise ValueError("boom")


async def crash(event, ctx):
    raise FakeExit(3)


HANDLERS = {"echo": echo, "slow": slow, "boom": boom, "crash": crash}


def function(handler: str = "echo", **changes) -> FunctionVersion:
    fv = FunctionVersion(
        name="f", runtime="python3.11", handler=handler, role="arn:aws:iam::123456789012:role/r",
        code=Code("c2hh", "ab" * 32, 10), state=State.ACTIVE,
    )
    return dataclasses.replace(fv, **changes)


def make_pool(tmp_path: Path, clock=None, memory_mb: int = 100_000, keep_alive: float = 60.0):
    backend = FakeBackend(HANDLERS)
    logs = LogStore(tmp_path / "logs")
    pool = EnvironmentPool(backend, logs, "us-east-1", PoolLimits(memory_mb, keep_alive, 1 << 20), clock or Clock())
    return backend, logs, pool


def request(payload=b"{}", rid="req-1"):
    return InvocationRequest(rid, payload, "arn:aws:lambda:us-east-1:123456789012:function:f")


async def invoke(pool, fn, tmp_path, payload=b"{}", rid="req-1"):
    async with pool.lease(target_of(fn, RUNTIME, tmp_path)) as env:
        return env, await env.invoke(request(payload, rid))


def test_cold_then_warm(tmp_path):
    async def scenario():
        backend, logs, pool = make_pool(tmp_path)
        fn = function()
        env1, first = await invoke(pool, fn, tmp_path, b'{"a": 1}')
        env2, second = await invoke(pool, fn, tmp_path, b'{"a": 2}', "req-2")
        assert env1 is env2 and backend.started == 1
        assert orjson.loads(first.payload) == {"a": 1} and first.cold and not second.cold
        assert b"echo {'a': 1}" in first.log_tail and b"INIT_START" in first.log_tail
        assert b"Init Duration" in first.log_tail and b"Init Duration" not in second.log_tail
        assert b"START RequestId: req-2 Version: $LATEST" in second.log_tail
        assert (pool.counts()["busy"], pool.counts()["idle"]) == (0, 1)
        await pool.shutdown(0)
        assert not backend.running

    asyncio.run(scenario())


def test_parallel_leases_scale_out(tmp_path):
    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        fn = function("slow")
        results = await asyncio.gather(*(invoke(pool, fn, tmp_path, b'{"sleep": 0.1}', f"r{i}") for i in range(5)))
        assert len({id(env) for env, _ in results}) == 5
        assert backend.started == 5 and pool.counts()["idle"] == 5
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_memory_admission_evicts_idle_then_throttles(tmp_path):
    async def scenario():
        backend, _, pool = make_pool(tmp_path, memory_mb=300)
        small = function(memory_size=128)
        other = dataclasses.replace(function(memory_size=128), name="g")
        await invoke(pool, small, tmp_path)
        await invoke(pool, other, tmp_path)
        assert pool.memory_in_use_mb == 256
        # A third 128 MB environment does not fit: the least recently used idle one is evicted.
        big = dataclasses.replace(function(memory_size=128), name="h")
        await invoke(pool, big, tmp_path)
        assert pool.memory_in_use_mb == 256 and backend.started == 3
        # Busy environments cannot be evicted: over capacity the invoke is throttled.
        slow_fn = dataclasses.replace(function("slow", memory_size=200), name="s")
        running = asyncio.create_task(invoke(pool, slow_fn, tmp_path, b'{"sleep": 0.3}'))
        await asyncio.sleep(0.05)
        assert pool.memory_in_use_mb <= 300
        with pytest.raises(TooManyRequests) as excinfo:
            await invoke(pool, dataclasses.replace(function("slow", memory_size=200), name="t"), tmp_path)
        assert excinfo.value.reason == "ConcurrentInvocationLimitExceeded"
        await running
        await pool.shutdown(0)
        assert pool.memory_in_use_mb == 0

    asyncio.run(scenario())


def test_idle_environments_are_reaped_with_injected_clock(tmp_path):
    async def scenario():
        clock = Clock()
        backend, _, pool = make_pool(tmp_path, clock=clock, keep_alive=60)
        await invoke(pool, function(), tmp_path)
        clock.now += 59
        assert pool.reap() == 0
        clock.now += 2
        assert pool.reap() == 1
        assert (pool.counts()["busy"], pool.counts()["idle"]) == (0, 0)
        await asyncio.sleep(0.01)
        assert not backend.running
        await invoke(pool, function(), tmp_path)
        assert backend.started == 2  # scaled to zero, then cold again
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_environments_are_replaced_at_their_maximum_age(tmp_path):
    """Their role's credentials outlive them: an environment in use for 11 hours is replaced
    (busy ones once their invocation is over)."""
    async def scenario():
        clock = Clock()
        backend, _, pool = make_pool(tmp_path, clock=clock, keep_alive=3600 * 24)
        fn = function()
        first, _ = await invoke(pool, fn, tmp_path)
        for _ in range(10):  # used every hour: never idle for long, but old
            clock.now += 3600
            again, _ = await invoke(pool, fn, tmp_path)
            assert again is first
        clock.now += 3601
        replaced, _ = await invoke(pool, fn, tmp_path)
        assert replaced is not first and backend.started == 2
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_retire_replaces_environments_of_old_revisions(tmp_path):
    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        old = function()
        await invoke(pool, old, tmp_path)
        new = old.changed(memory_size=256)
        pool.retire("f", keep_revision=new.revision_id)
        env, result = await invoke(pool, new, tmp_path)
        assert result.cold and backend.started == 2
        assert env.environment_variables()["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_function_error_keeps_environment(tmp_path):
    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        fn = function("boom")
        env, result = await invoke(pool, fn, tmp_path)
        assert result.function_error == "Unhandled" and result.error_type == "ValueError"
        assert env.state == EnvironmentState.READY
        _, again = await invoke(pool, fn, tmp_path)
        assert backend.started == 1 and again.function_error == "Unhandled"
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_crash_is_runtime_exit_error_and_environment_replaced(tmp_path):
    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        env, result = await invoke(pool, function("crash"), tmp_path)
        assert result.error_type == "Runtime.ExitError"
        assert orjson.loads(result.payload)["errorMessage"].endswith("Runtime exited with error: exit status 3")
        assert env.state == EnvironmentState.STOPPED
        assert b"Runtime.ExitError" in result.log_tail
        await invoke(pool, function("crash"), tmp_path)
        assert backend.started == 2
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_init_error_is_served_to_the_first_invoke(tmp_path):
    async def scenario():
        _, _, pool = make_pool(tmp_path)
        env, result = await invoke(pool, function("missing-handler"), tmp_path)
        assert result.function_error == "Unhandled" and result.error_type == "Runtime.HandlerNotFound"
        assert b"INIT_REPORT" in result.log_tail and b"Status: error" in result.log_tail
        assert env.state == EnvironmentState.STOPPED
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_a_sandbox_setup_failure_is_an_exit_error_that_says_why_in_the_server_log(tmp_path, caplog):
    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        backend.fail_setup = "no room for /tmp"
        with caplog.at_level("ERROR", logger="squall.environment"):
            env, result = await invoke(pool, function(), tmp_path, rid="req-setup")
        assert result.error_type == "Runtime.ExitError"
        assert orjson.loads(result.payload)["errorMessage"] == (
            "Runtime exited with error: exit status 125 (sandbox setup failed: no room for /tmp)"
        )
        assert env.state == EnvironmentState.STOPPED
        (record,) = [r for r in caplog.records if r.name == "squall.environment"]
        assert "req-setup" in record.getMessage() and "no room for /tmp" in record.getMessage()
        backend.fail_setup = None
        _, healed = await invoke(pool, function(), tmp_path)
        assert healed.function_error is None
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_timeout_kills_the_environment(tmp_path):
    async def scenario():
        _, _, pool = make_pool(tmp_path)
        fn = function("slow", timeout=1)
        env, result = await invoke(pool, fn, tmp_path, b'{"sleep": 5}')
        assert result.error_type == "Sandbox.Timedout"
        assert b"Task timed out after 1.00 seconds" in result.log_tail
        assert b"Status: timeout" in result.log_tail
        assert env.state == EnvironmentState.STOPPED
        await pool.shutdown(0)

    asyncio.run(scenario())


def test_logs_reach_the_store(tmp_path):
    async def scenario():
        _, logs, pool = make_pool(tmp_path)
        env, _ = await invoke(pool, function(), tmp_path, b'"hi"')
        await pool.shutdown(0)
        logs.flush()
        events, _ = logs.filter("/aws/lambda/f")
        messages = [e.message for e in events]
        assert messages[0].startswith("INIT_START")
        assert any(m.startswith("START RequestId: req-1") for m in messages)
        assert "echo hi" in messages
        assert messages[-1].startswith("REPORT RequestId: req-1")
        assert {e.stream for e in events} == {env.stream}

    asyncio.run(scenario())


def test_a_runtime_that_cannot_be_prepared_fails_init_clearly(tmp_path):
    from squall.runtimes.java import JavaBuildError
    from squall.runtimes.registry import RuntimeBuilds

    class BrokenBuilds(RuntimeBuilds):
        def java(self) -> Path:
            raise JavaBuildError("javac failed: install default-jdk-headless")

    java = Runtime("java17", "java", "/usr/bin/java", "17.0.1", BrokenBuilds(tmp_path, None, None))

    async def scenario():
        backend, _, pool = make_pool(tmp_path)
        async with pool.lease(target_of(function(runtime="java17"), java, tmp_path)) as env:
            result = await env.invoke(request())
        assert result.function_error == "Unhandled" and result.error_type == "Runtime.InvalidRuntime"
        assert b"javac failed: install default-jdk-headless" in result.payload
        assert backend.started == 0  # nothing was started
        await pool.shutdown(0)

    asyncio.run(scenario())
