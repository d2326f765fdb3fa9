"""An in-process backend so the engine can be tested without processes.

Handlers are plain async callables registered under a handler name. The fake speaks the
real control-channel protocol on the sockets the engine hands it, so the engine code
under test is the production code path, frames and log capture included.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from squall.runtimes.python.frames import FrameError, encode_frame, read_frame
from squall.sandbox.base import SandboxSpec


SETUP_FAILED = 125  # the linux backend's status for a sandbox that could not be built


class FakeExit(Exception):
    """Raised by a fake handler to make its 'process' exit with a status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class FakeContext:
    request_id: str
    log_fd: int

    def log(self, line: str) -> None:
        os.write(self.log_fd, line.encode() + b"\n")


FakeHandler = Callable[[Any, FakeContext], Awaitable[Any]]


class FakeHandle:
    def __init__(self, backend: "FakeBackend", spec: SandboxSpec, channel_fd: int, log_fd: int) -> None:
        self.backend = backend
        self.spec = spec
        self._log_fd = os.dup(log_fd)
        self._sock = socket.socket(fileno=os.dup(channel_fd))
        self._returncode: int | None = None
        self.setup_failure: str | None = backend.fail_setup
        self._exited = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def pid(self) -> int | None:
        return None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _run(self) -> None:
        status = 0
        try:
            if self.setup_failure is not None:  # as a sandbox that could not be built
                raise FakeExit(SETUP_FAILED)
            reader, writer = await asyncio.open_unix_connection(sock=self._sock)
            handler = self.backend.handlers.get(self.spec.env.get("_HANDLER", ""))
            if handler is None:
                error = {"errorType": "Runtime.HandlerNotFound", "errorMessage": "no such fake handler"}
                writer.write(encode_frame({"t": "init_error"}, orjson.dumps(error)))
                await writer.drain()
                status = 1
                return
            writer.write(encode_frame({"t": "ready", "max_rss_kb": 1024}, b""))
            while True:
                try:
                    meta, body = await read_frame(reader, 1 << 24)
                except FrameError:
                    return
                context = FakeContext(meta["id"], self._log_fd)
                try:
                    result = await handler(orjson.loads(body or b"{}"), context)
                    reply = ({"t": "result", "id": meta["id"], "ok": True, "max_rss_kb": 2048}, orjson.dumps(result))
                except FakeExit:
                    raise
                except Exception as exc:  # the fake runtime reports it like the real one
                    error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "requestId": meta["id"]}
                    reply = ({"t": "result", "id": meta["id"], "ok": False, "max_rss_kb": 2048}, orjson.dumps(error))
                writer.write(encode_frame(*reply))
                await writer.drain()
        except FakeExit as exc:
            status = exc.status
        except asyncio.CancelledError:
            status = -9
        finally:
            self._finish(status)

    def _finish(self, status: int) -> None:
        if self._returncode is None:
            self._returncode = status
            self._sock.close()
            os.close(self._log_fd)
            self._exited.set_result(status)
            self.backend.running.discard(self)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if not self._task.done():
            self._task.cancel()

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory_bytes(self) -> int | None:
        return None

    def oom_killed(self) -> bool:
        return False

    def admits(self, connection: object) -> bool:
        return True

    def init_done(self) -> None:
        pass


class FakeBackend:
    name = "fake"
    isolated = False
    layers = False  # cannot show a function's layers at /opt

    def __init__(self, handlers: dict[str, FakeHandler]) -> None:
        self.handlers = handlers
        self.running: set[FakeHandle] = set()
        self.started = 0
        self.fail_setup: str | None = None  # set: sandboxes started now fail their set-up, saying this

    async def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> FakeHandle:
        if spec.runtime_api:
            raise ValueError("the fake backend speaks only the built-in Python runtime's frames protocol")
        handle = FakeHandle(self, spec, channel_fd, log_fd)
        self.running.add(handle)
        self.started += 1
        return handle

    def reap_orphans(self) -> int:
        return 0

    async def close(self) -> None:
        for handle in list(self.running):
            handle.kill()

    def host_address(self, network: str | None) -> str | None:
        return "127.0.0.1"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "isolated": False, "note": "in-process fake for tests"}
