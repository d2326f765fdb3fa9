"""Which Lambda runtime identifiers this server can run, and with which interpreter.

A ``python3.X`` runtime is offered when a Python 3.X interpreter exists on the machine.
The interpreter running Squall itself is preferred for its own version (it has the same
site-packages, so functions find boto3 as they do on Lambda); otherwise ``python3.X`` on
PATH or in the usual prefixes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from squall.errors import InvalidParameterValue

PYTHON_MINORS = range(8, 16)
_BOOTSTRAP = Path(__file__).resolve().parent / "python" / "bootstrap.py"


@dataclass(frozen=True)
class Runtime:
    identifier: str  # e.g. "python3.11"
    family: str  # "python"
    interpreter: str  # absolute path of the executable
    version: str  # e.g. "3.11.7"

    def command(self) -> list[str]:
        """argv that starts this runtime's worker inside an environment."""
        return [self.interpreter, "-s", str(_BOOTSTRAP)]

    @property
    def execution_env(self) -> str:
        return f"AWS_Lambda_{self.identifier}"


@dataclass(frozen=True)
class RuntimeRegistry:
    runtimes: tuple[Runtime, ...]

    @classmethod
    def discover(cls) -> "RuntimeRegistry":
        found: list[Runtime] = []
        for minor in PYTHON_MINORS:
            runtime = _find_python(minor)
            if runtime is not None:
                found.append(runtime)
        return cls(tuple(found))

    def identifiers(self) -> list[str]:
        return [r.identifier for r in self.runtimes]

    def get(self, identifier: str) -> Runtime:
        for runtime in self.runtimes:
            if runtime.identifier == identifier:
                return runtime
        offered = ", ".join(self.identifiers()) or "none"
        hint = ""
        if identifier.startswith("python3."):
            hint = f" Install the {identifier} interpreter (e.g. the Debian package {identifier}) to use it."
        raise InvalidParameterValue(
            f"The runtime parameter of {identifier} is not supported by this Squall server. "
            f"Runtimes offered: {offered}.{hint}"
        )


def _find_python(minor: int) -> Runtime | None:
    identifier = f"python3.{minor}"
    if sys.version_info[:2] == (3, minor):
        return Runtime(identifier, "python", sys.executable, ".".join(map(str, sys.version_info[:3])))
    candidates = [shutil.which(identifier), f"/usr/bin/{identifier}", f"/usr/local/bin/{identifier}"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            version = _probe_version(candidate)
            if version and version.startswith(f"3.{minor}."):
                return Runtime(identifier, "python", os.path.realpath(candidate), version)
    return None


def _probe_version(executable: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
