"""A burst of concurrent cold starts on the ``linux`` backend: every invoke gets an answer.

Regression: when many spawn requests met a full zygote socket (EAGAIN), each waiting
sender registered its own ``add_writer`` on the same fd; the event loop keeps one writer
per fd, so all but the last waited forever (no reply, no log line, "busy" for good:
401 of 1,000 in bench/density.py). The zygote's socket buffer is shrunk here so that a
burst of 200 hits the back-pressure for sure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from squall.sandbox.linux.backend import ZygoteError
from tests.conftest import require
from tests.contract import linux_unavailable
from tests.contract.test_sandbox_contract import ECHO, Harness, run

pytestmark = pytest.mark.timeout(120)

BURST = 200

SLEEPY = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
"""


@pytest.fixture
def linux() -> str:
    require(os.geteuid() == 0, "the linux sandbox needs root")
    reason = linux_unavailable()
    require(reason is None, f"linux sandbox unavailable: {reason}")
    return "linux"


def _zygote(h: Harness):
    (zygote,) = h.backend._zygotes.values()
    return zygote


def test_burst_of_cold_starts_all_complete(linux, tmp_path):
    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY, timeout=60, memory_size=128)
        await h.invoke(fn, code)  # the zygote is up
        zygote = _zygote(h)
        zygote._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # back-pressure after a few requests
        started = time.monotonic()
        tasks = [asyncio.create_task(h.invoke(fn, code, {"sleep": 1})) for _ in range(BURST)]
        done, pending = await asyncio.wait(tasks, timeout=45)
        for task in pending:
            task.cancel()
        assert not pending, (
            f"{len(pending)} of {BURST} invokes hung ({len(zygote._pending)} spawn requests unanswered, "
            f"pool {h.pool.counts()})"
        )
        results = [task.result()[1] for task in tasks]
        failed = [r.payload[:200] for r in results if r.function_error]
        assert not failed, failed[:3]
        counts = h.pool.counts()
        assert counts["busy"] == 0 and counts["idle"] == BURST, counts  # the first one's and BURST - 1 new ones
        assert not zygote._pending
        print(f"{BURST} concurrent cold starts in {time.monotonic() - started:.1f} s")

    run(linux, tmp_path, scenario)


def test_a_zygote_that_stops_reading_fails_the_waiting_cold_starts(linux, tmp_path):
    """A hung zygote (here: stopped) turns waiting cold starts into errors, then is replaced."""

    async def scenario(h: Harness) -> None:
        fn, code = h.function(SLEEPY, timeout=30)
        await h.invoke(fn, code)
        zygote = _zygote(h)
        zygote._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        hung_pid = zygote.pid
        os.kill(hung_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            tasks = [asyncio.create_task(h.invoke(fn, code, {"sleep": 5})) for _ in range(40)]
            done, pending = await asyncio.wait(tasks, timeout=45)
            assert not pending, f"{len(pending)} invokes hung behind a stopped zygote"
            errors = [t.exception() for t in tasks if t.exception() is not None]
            assert errors and all(isinstance(e, ZygoteError) for e in errors), errors[:3]
            assert time.monotonic() - started < 30
        finally:
            try:
                os.kill(hung_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        assert h.pool.counts()["busy"] == 0
        # the next cold start gets a new zygote
        fn2, code2 = h.function(ECHO)
        _, result = await h.invoke(fn2, code2)
        assert result.function_error is None, result.payload
        assert zygote.pid != hung_pid

    run(linux, tmp_path, scenario)
