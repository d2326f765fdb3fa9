"""Drive a runtime process (any language) against Squall's Runtime API, without a server.

For the per-language runtime tests: start :class:`RuntimeApi` on an ephemeral port, start
the runtime's argv with Lambda's environment, then ``init()`` and ``invoke()`` as the engine
does. The process's stdout and stderr are collected in ``output``.

    async with RuntimeSession.start([node, bootstrap], code_dir, "index.handler") as rt:
        assert await rt.init() is None
        outcome = await rt.invoke({"x": 1})
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Sequence

from squall.runtimes.runtime_api import RuntimeApi, RuntimeEvent, RuntimeOutcome


class RuntimeSession:
    def __init__(self, api: RuntimeApi, proc: asyncio.subprocess.Process) -> None:
        self.api = api
        self.proc = proc
        self.output = ""
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    def start(cls, argv: Sequence[str], code_dir: Path, handler: str, env: dict[str, str] | None = None,
              function_name: str = "fn", memory_mb: int = 128) -> "_Starter":
        return _Starter(argv, code_dir, handler, env or {}, function_name, memory_mb)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.output += chunk.decode("utf-8", "replace")

    async def init(self, timeout: float = 20) -> RuntimeOutcome | None:
        """None when the runtime asked for its first event; the posted init error otherwise.

        Raises ``RuntimeExited`` if the process ends first.
        """
        return await self._until_exit(self.api.wait_init(), timeout, "the runtime did not call /next")

    async def invoke(self, payload: object = None, raw: bytes | None = None, timeout_ms: int = 10_000,
                     request_id: str | None = None, client_context: str | None = None,
                     cognito_identity: str | None = None, arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fn",
                     wait: float | None = None) -> RuntimeOutcome:
        """One invocation. ``raw`` sends bytes as they are; otherwise ``payload`` as JSON."""
        body = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        event = RuntimeEvent(request_id or str(uuid.uuid4()), body, int(time.time() * 1000) + timeout_ms, arn,
                             client_context=client_context, cognito_identity=cognito_identity)
        limit = wait if wait is not None else timeout_ms / 1000 + 10
        return await self._until_exit(self.api.invoke(event), limit, "no response")

    async def _until_exit(self, work, timeout: float, what: str):
        """``work``'s result; RuntimeExited if the process ends first; TimeoutError after ``timeout``."""
        task = asyncio.ensure_future(work)
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({task, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            exited.cancel()
            return task.result()
        task.cancel()
        if exited in done:
            await asyncio.sleep(0.05)
            raise RuntimeExited(self.proc.returncode, self.output)
        exited.cancel()
        raise TimeoutError(f"{what} within {timeout} s; output:\n{self.output}")

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await asyncio.wait_for(self._reader, 5)
        await self.api.close()


class RuntimeExited(Exception):
    def __init__(self, returncode: int | None, output: str) -> None:
        super().__init__(f"the runtime exited with status {returncode}; output:\n{output}")
        self.returncode = returncode
        self.output = output


class _Starter:
    def __init__(self, argv: Sequence[str], code_dir: Path, handler: str, env: dict[str, str], name: str, memory: int):
        self.args = (list(argv), code_dir, handler, env, name, memory)
        self.session: RuntimeSession | None = None

    async def __aenter__(self) -> RuntimeSession:
        argv, code_dir, handler, extra, name, memory = self.args
        api = RuntimeApi()
        address = await api.start()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/tmp",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_LAMBDA_RUNTIME_API": address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }
        proc = await asyncio.create_subprocess_exec(*argv, cwd=code_dir, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.session = RuntimeSession(api, proc)
        return self.session

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
