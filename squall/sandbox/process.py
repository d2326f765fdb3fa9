"""The portable backend: each environment is a plain process group. Not isolated.

Used where Linux namespaces and cgroups are unavailable (no root, macOS, containers
without delegation). Limits are rlimits only; the function runs as the server's user and
can see the host. ``/health`` reports it as ``isolated: false``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

from squall.sandbox.base import SandboxSpec

ENV_MARKER = "_SQUALL_ENVIRONMENT_ID"


class ProcessHandle:
    setup_failure: str | None = None  # a failed exec raises from start() instead

    def __init__(self, proc: subprocess.Popen[bytes], marker: str, measure: bool = False) -> None:
        self._proc = proc
        self._marker = marker
        self._measure = measure  # read the runtime process's VmHWM (runtimes that do not report it)
        self._exited = asyncio.get_running_loop().create_future()
        self._watch()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        if hasattr(os, "pidfd_open"):
            fd = os.pidfd_open(self._proc.pid)

            def on_exit() -> None:
                loop.remove_reader(fd)
                os.close(fd)
                self._proc.wait()
                if not self._exited.done():
                    self._exited.set_result(self._proc.returncode)

            loop.add_reader(fd, on_exit)
        else:  # pragma: no cover - non-Linux
            task = loop.run_in_executor(None, self._proc.wait)
            task.add_done_callback(lambda f: self._exited.done() or self._exited.set_result(f.result()))

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def reset_peak_memory(self) -> None:
        """The built-in Python runtime reports its own peak; for others, reset the process's VmHWM."""
        if self._measure:
            try:
                with open(f"/proc/{self._proc.pid}/clear_refs", "wb", buffering=0) as f:
                    f.write(b"5")
            except OSError:
                pass

    def peak_memory_bytes(self) -> int | None:
        """The runtime process's peak RSS (not its children's: the fallback without cgroups)."""
        if not self._measure:
            return None
        try:
            with open(f"/proc/{self._proc.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def oom_killed(self) -> bool:
        return False

    def init_done(self) -> None:
        pass

    def admits(self, connection: socket.socket) -> bool:
        return True  # not isolated: any local process could reach the function's files too

    def kill(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # Children that left the process group (setsid, daemonise) still carry the marker.
        for pid in find_marked_processes(self._marker, exact=True):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class ProcessBackend:
    """``scope`` names this server's environments (one data dir) for clean-up after a crash."""

    name = "process"
    isolated = False
    layers = False  # cannot show a function's layers at /opt

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> ProcessHandle:
        env = dict(spec.env)
        marker = f"{self.scope}/{spec.environment_id}"
        env[ENV_MARKER] = marker
        listener = None
        if spec.runtime_api:  # no namespace of its own: any free loopback port
            listener = socket.create_server(("127.0.0.1", 0), backlog=64)
            env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:%d" % listener.getsockname()[1]
        else:
            env["_SQUALL_CHANNEL_FD"] = str(channel_fd)
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                cwd=spec.code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                pass_fds=() if spec.runtime_api else (channel_fd,),
                start_new_session=True,
                close_fds=True,
            )
            if listener is not None:
                with socket.socket(fileno=os.dup(channel_fd)) as channel:
                    socket.send_fds(channel, [env["AWS_LAMBDA_RUNTIME_API"].encode()], [listener.fileno()])
        finally:
            if listener is not None:
                listener.close()
        _apply_rlimits(proc.pid)
        return ProcessHandle(proc, marker, measure=spec.runtime_api)

    def reap_orphans(self) -> int:
        """Kill environments a previous run of this server left behind (it was SIGKILLed)."""
        pids = find_marked_processes(f"{self.scope}/")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return len(pids)

    async def close(self) -> None:
        pass

    def host_address(self, network: str | None) -> str | None:
        return "127.0.0.1"  # environments share the host's network

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "isolated": False, "note": "plain processes with rlimits; functions are not isolated"}


def _apply_rlimits(pid: int) -> None:
    """Lambda's per-environment file-descriptor limit; no core dumps."""
    if not hasattr(resource, "prlimit"):  # pragma: no cover - non-Linux
        return
    for limit, value in ((resource.RLIMIT_NOFILE, (1024, 1024)), (resource.RLIMIT_CORE, (0, 0))):
        try:
            resource.prlimit(pid, limit, value)
        except (OSError, ValueError):
            pass


def find_marked_processes(marker: str, exact: bool = False) -> list[int]:
    """Pids whose environment carries a Squall marker equal to (or starting with) ``marker``."""
    if not sys.platform.startswith("linux"):
        return []
    needle = f"{ENV_MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "environ").read_bytes()
        except OSError:
            continue
        items = data.split(b"\0")
        if any(item == needle if exact else item.startswith(needle) for item in items):
            found.append(int(entry.name))
    return found
