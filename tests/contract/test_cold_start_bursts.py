"""Bursts of concurrent cold starts at the moments a backend is least prepared for them.

Regression (issue 21): the first burst on a fresh ``linux`` backend failed 11 of 12 with
``Runtime.ExitError`` (exit status 125, "expected the code's (and the runtime's) mount
fds, got 0"). The first cold start started the zygote; the others saw it alive but not yet
ready, decided before it said whether its sandboxes take the code as mount fds, and sent
none. Every start now waits for the zygote to be ready before deciding anything.

The same class of race is tried on every other path into the jail: a burst on two
functions at once, right after a code update, and while the zygote restocks its spare.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from tests.contract.test_sandbox_contract import Harness, backend_name, linux, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

BURST = 12

SLEEPY = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "version": %r}
"""


async def burst(h: Harness, fn, code, n: int = BURST, sleep: float = 0.3) -> list:
    """``n`` invokes at once; every one must succeed. Returns their payloads."""
    results = await asyncio.wait_for(
        asyncio.gather(*(h.invoke(fn, code, {"sleep": sleep}) for _ in range(n))), 60
    )
    failed = [r.payload[:300] for _, r in results if r.function_error]
    assert not failed, f"{len(failed)} of {n} failed: {failed[:2]}"
    return [orjson.loads(r.payload) for _, r in results]


def _zygote_starting(h: Harness) -> bool:
    """A zygote has its socket (it counts as alive) but has not said it is ready."""
    zygotes = getattr(h.backend, "_zygotes", {})
    return any(z.alive and not (z._ready is not None and z._ready.done()) for z in zygotes.values())


def test_first_burst_on_a_fresh_backend(backend_name, tmp_path):
    """As a server sees it: requests arrive one after another while the first cold start
    is still starting the zygote, and some after it is ready."""

    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY % "v1", timeout=30)
        invoke = lambda: asyncio.ensure_future(h.invoke(fn, code, {"sleep": 0.5}))  # noqa: E731
        tasks = [invoke()]
        if backend_name == "linux":
            for _ in range(500):  # the zygote is alive but not ready yet
                if _zygote_starting(h):
                    break
                await asyncio.sleep(0.001)
            else:
                pytest.fail("never saw the zygote starting")
        for _ in range(BURST // 2 - 1):
            tasks.append(invoke())
            await asyncio.sleep(0)
        while _zygote_starting(h):
            await asyncio.sleep(0.001)
        tasks += [invoke() for _ in range(BURST - len(tasks))]
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        failed = [r.payload[:300] for _, r in results if r.function_error]
        assert not failed, f"{len(failed)} of {BURST} failed: {failed[:2]}"
        assert len({orjson.loads(r.payload)["pid"] for _, r in results}) == BURST  # one environment each

    run(backend_name, tmp_path, scenario)


def test_first_burst_on_two_functions_at_once(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        a, code_a = h.function(SLEEPY % "a", timeout=30)
        b, code_b = h.function(SLEEPY % "b", timeout=30)
        seen_a, seen_b = await asyncio.gather(burst(h, a, code_a, 8), burst(h, b, code_b, 8))
        assert {s["version"] for s in seen_a} == {"a"} and {s["version"] for s in seen_b} == {"b"}

    run(backend_name, tmp_path, scenario)


def test_burst_right_after_a_code_update(backend_name, tmp_path):
    async def scenario(h: Harness) -> None:
        old, old_code = h.function(SLEEPY % "old", timeout=30, name="upd")
        await h.invoke(old, old_code)
        new, new_code = h.function(SLEEPY % "new", timeout=30, name="upd", revision_id="r2")
        assert new_code != old_code
        seen = await burst(h, new, new_code)
        assert {s["version"] for s in seen} == {"new"}

    run(backend_name, tmp_path, scenario)


def test_bursts_while_the_zygote_restocks(linux, tmp_path):
    """Bursts at the moments the zygote forks its next spare, hands it over, or has just
    had it taken: a cold start has just finished (restock due in 0.25 s), or a little later."""

    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY % "v", timeout=30)
        for delay in (0.0, 0.05, 0.25, 0.3, 0.5):
            await h.invoke(fn, code)
            h.pool.retire(fn.name)  # no warm environment left: every invoke below is a cold start
            await asyncio.sleep(delay)
            await burst(h, fn, code, 6, sleep=0.05)

    run(linux, tmp_path, scenario)


def test_a_sandbox_that_cannot_be_built_says_why(linux, tmp_path, caplog):
    """A sandbox whose set-up fails: Runtime.ExitError with the reason, and a line in the
    server's own log under the request id (not only in the function's log stream)."""

    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY % "v")
        await h.invoke(fn, code)
        (zygote,) = h.backend._zygotes.values()
        if not zygote.trees:
            pytest.skip("the jail is built after each request here: no mount fds to get wrong")
        zygote.trees = False  # the server forgets the mount fds the zygote's sandboxes expect
        h.pool.retire(fn.name)
        with caplog.at_level(logging.ERROR, logger="squall.environment"):
            env, result = await h.invoke(fn, code)
        error = orjson.loads(result.payload)
        assert error["errorType"] == "Runtime.ExitError"
        assert error["errorMessage"] == (
            "Runtime exited with error: exit status 125 (sandbox setup failed: "
            "expected the code's (the runtime's, the layers') mount fds: 1, got 0)"
        )
        lines = [r.getMessage() for r in caplog.records if r.name == "squall.environment"]
        assert any(result.request_id in line and "expected the code's" in line for line in lines), lines
        zygote.trees = True
        _, healed = await h.invoke(fn, code)
        assert healed.function_error is None, healed.payload

    run(linux, tmp_path, scenario)
