"""The sandbox seam: how an execution environment's processes are started and stopped.

A backend turns a :class:`SandboxSpec` into a running :class:`SandboxHandle`. The engine
creates the control channel and the log pipe, hands the child ends to ``start`` and keeps
the parent ends; whatever the backend does (plain processes, namespaces and cgroups, a
remote node), the runtime inside sees the same contract: the control channel's fd number
in ``_SQUALL_CHANNEL_FD``, stdout and stderr on the log pipe, cwd = the code directory.
"""

from __future__ import annotations

import signal
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
    network: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)


class SandboxHandle(Protocol):
    """A started environment: the processes it owns."""

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status, or -N when killed by signal N."""

    async def wait(self) -> int: ...

    def kill(self) -> None:
        """Kill every process of the environment, the runtime's children included. Idempotent."""


class SandboxBackend(Protocol):
    name: str
    isolated: bool

    def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> SandboxHandle: ...

    def reap_orphans(self) -> int:
        """Kill environments a previous run left behind (after a crash); returns how many."""

    def describe(self) -> dict[str, object]:
        """What /health and the startup banner say about this backend."""


def exit_description(returncode: int) -> str:
    """Lambda's wording (Go's os.ProcessState) for how a runtime process ended."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name.lower()}"
