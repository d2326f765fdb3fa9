"""Conformance: the official Python runtime interface client (awslambdaric) against our Runtime API."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from squall.runtimes.runtime_api import RuntimeApi, RuntimeEvent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("awslambdaric") is None, reason="awslambdaric not installed")

HANDLER = """
def ok(event, context):
    return {"echo": event, "rid": context.aws_request_id, "left": context.get_remaining_time_in_millis() > 0}

def fail(event, context):
    raise ValueError("ric boom")
"""


def test_awslambdaric_round_trips(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)

    async def main():
        api = RuntimeApi()
        address = await api.start()
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": address, "_HANDLER": "app.ok", "LAMBDA_TASK_ROOT": str(tmp_path),
               "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
        procs = []
        try:
            for handler, expect_ok in (("app.ok", True), ("app.fail", False)):
                proc = subprocess.Popen([sys.executable, "-m", "awslambdaric", handler], cwd=tmp_path, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(proc)
                assert await asyncio.wait_for(api.wait_init(), 20) is None
                deadline = int(time.time() * 1000) + 5000
                for i in range(3):  # the client keeps one connection for next/response
                    outcome = await asyncio.wait_for(
                        api.invoke(RuntimeEvent(f"{handler}-{i}", b'{"n": 1}', deadline, "arn:f")), 20
                    )
                    body = json.loads(outcome.body)
                    if expect_ok:
                        assert outcome.ok and body == {"echo": {"n": 1}, "rid": f"{handler}-{i}", "left": True}
                    else:
                        assert not outcome.ok and outcome.error_type == "ValueError"
                        assert body["errorMessage"] == "ric boom"
                proc.kill()
                await api.close()
                api = RuntimeApi()
                env["AWS_LAMBDA_RUNTIME_API"] = await api.start()
        finally:
            for proc in procs:
                proc.kill()
            await api.close()

    asyncio.run(main())
