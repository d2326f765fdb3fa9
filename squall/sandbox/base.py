"""The sandbox seam: how an execution environment's processes are started and stopped.

A backend turns a :class:`SandboxSpec` into a running :class:`SandboxHandle`. The engine
creates the control channel and the log pipe, hands the child ends to ``start`` and keeps
the parent ends; whatever the backend does (plain processes, namespaces and cgroups, a
remote node), the runtime inside sees the same contract: the control channel's fd number
in ``_SQUALL_CHANNEL_FD``, stdout and stderr on the log pipe, cwd = the code directory
(``LAMBDA_TASK_ROOT``; a jailing backend mounts it at /var/task and rewrites the variable).
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol


@dataclass(frozen=True)
class SandboxSpec:
    environment_id: str
    argv: tuple[str, ...]
    code_dir: Path
    env: Mapping[str, str]
    memory_mb: int
    ephemeral_storage_mb: int
    # the network it joins (settings ``networks``; "default": the internet, not the host);
    # None: no network at all, its own loopback only (tag squall:network=none)
    network: str | None = "default"
    pids_max: int = 1024  # Lambda's limit on processes + threads
    # host directory the runtime sees at /var/runtime (None: the built-in Python runtime's)
    runtime_dir: Path | None = None
    # host directory the function sees at /opt, read-only: its layers merged (None: no layers)
    opt_dir: Path | None = None
    # the runtime speaks the Lambda Runtime API: the backend creates its listening socket
    # where the runtime can reach it (inside the sandbox's network namespace), sets
    # AWS_LAMBDA_RUNTIME_API, and sends the socket as the channel's first message (data: the
    # address; SCM_RIGHTS: the listening fd). The runtime itself gets no channel.
    runtime_api: bool = False
    # a SnapStart template: the runtime runs init, then forks environments on request instead of
    # serving invocations (backends that can: ``restore``)
    template: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def cpu_cores(self) -> float:
        """Lambda's CPU share: 1 vCPU per 1,769 MB (the backend caps it at the host's cores)."""
        return self.memory_mb / 1769


class RestoreUnavailable(Exception):
    """An environment could not be forked from its version's SnapStart template (it is then
    started from scratch)."""


class SandboxHandle(Protocol):
    """A started environment: the processes it owns."""

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status, or -N when killed by signal N."""

    @property
    def setup_failure(self) -> str | None:
        """Why the sandbox could not be built around the runtime (known once it has exited), or None."""

    async def wait(self) -> int: ...

    def kill(self) -> None:
        """Kill every process of the environment, the runtime's children included. Idempotent."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement (between invocations). No-op if unsupported."""

    def peak_memory_bytes(self) -> int | None:
        """Peak memory since the last reset, or None when the backend cannot measure it."""

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this environment."""

    def init_done(self) -> None:
        """Init finished: apply limits that are relaxed during init (Lambda's init CPU burst)."""

    def admits(self, connection: socket.socket) -> bool:
        """Whether a connection to the environment's Runtime API comes from the environment."""


class SandboxBackend(Protocol):
    name: str
    isolated: bool
    layers: bool  # whether it can mount a function's layers (SandboxSpec.opt_dir) at /opt

    async def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> SandboxHandle:
        """Start the environment's runtime; the caller closes its copies of the child fds after."""

    async def close(self) -> None:
        """Release what the backend holds (zygotes, cgroup roots) at server shutdown."""

    def reap_orphans(self) -> int:
        """Kill environments a previous run left behind (after a crash); returns how many."""

    def describe(self) -> dict[str, object]:
        """What /health and the startup banner say about this backend."""

    def host_address(self, network: str | None) -> str | None:
        """The address at which an environment on ``network`` reaches this host (the
        server's API), or None when it cannot."""


def exit_description(returncode: int) -> str:
    """Lambda's wording (Go's os.ProcessState) for how a runtime process ended."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name.lower()}"
