"""Which Lambda runtime identifiers this server can run, and with which interpreter.

* ``python3.X``: offered when a Python 3.X interpreter exists. The interpreter running
  Squall itself is preferred for its own version (same site-packages, so functions find
  boto3 as on Lambda). Talks to Squall over the frames channel (the fastest path).
* ``nodejs18.x`` / ``nodejs20.x`` / ``nodejs22.x``: the machine's ``node``;
  ``ruby3.2`` / ``ruby3.3`` / ``ruby3.4``: the machine's ``ruby``; ``java17`` / ``java21``:
  the machine's JDK (``java`` and ``javac``). Every identifier of a family is served by
  the one interpreter installed (``/health`` and ``squall runtimes`` show which); each
  language's runtime client ships in ``squall/runtimes/<family>`` and speaks the Runtime API.
* ``provided.al2023`` / ``provided.al2`` / ``provided``: the function's own executable
  ``bootstrap`` (Go, Rust, C++, shell…), always offered.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from squall.errors import InvalidParameterValue

PYTHON_MINORS = range(8, 16)
RUNTIMES_DIR = Path(__file__).resolve().parent
_BOOTSTRAP = RUNTIMES_DIR / "python" / "bootstrap.py"
PROVIDED = ("provided.al2023", "provided.al2", "provided")
BOOTSTRAP_NAME = "bootstrap"

FRAMES = "frames"  # the built-in Python runtime's channel
RUNTIME_API = "runtime_api"  # everything else: the Lambda Runtime API over HTTP


@dataclass(frozen=True)
class Family:
    """A language whose identifiers one installed interpreter serves."""

    name: str  # Lambda's family name, as in "INIT_START Runtime Version: nodejs:20..."
    identifiers: tuple[str, ...]
    executables: tuple[str, ...]  # looked up on PATH, first found wins
    version_args: tuple[str, ...]
    version_pattern: str
    install_hint: str


FAMILIES = (
    Family("nodejs", ("nodejs22.x", "nodejs20.x", "nodejs18.x"), ("node", "nodejs"), ("--version",),
           r"v?(\d+\.\d+\.\d+)", "Node.js (`node`): apt install nodejs"),
    Family("ruby", ("ruby3.4", "ruby3.3", "ruby3.2"), ("ruby",), ("-e", "print RUBY_VERSION"),
           r"(\d+\.\d+\.\d+)", "Ruby (`ruby`): apt install ruby"),
    Family("java", ("java21", "java17"), ("java",), ("-version",),
           r'version "(\d+(?:\.\d+)*)', "a JDK (`java` and `javac`): apt install default-jdk-headless"),
)


@dataclass(frozen=True)
class Launch:
    """How to start one environment of a runtime."""

    argv: tuple[str, ...]
    runtime_dir: Path | None  # host directory shown at /var/runtime (None: the Python runtime's)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Runtime:
    identifier: str  # e.g. "python3.11"
    family: str  # "python", "nodejs", "ruby", "java", "provided"
    interpreter: str  # absolute path of the executable ("" for provided: the function's bootstrap)
    version: str  # e.g. "3.11.7"
    builds: "RuntimeBuilds | None" = None

    @property
    def link(self) -> str:
        return FRAMES if self.family == "python" else RUNTIME_API

    @property
    def execution_env(self) -> str | None:
        return None if self.family == "provided" else f"AWS_Lambda_{self.identifier}"

    @property
    def prepared(self) -> bool:
        """False while something must be built before the first start (it may take seconds)."""
        return self.family != "java" or (self.builds is not None and self.builds.java_ready())

    def describe(self) -> str:
        return self.interpreter or "the function's bootstrap"

    def command(self) -> list[str]:
        """argv of the built-in Python runtime's worker (kept for the Python-only callers)."""
        return [self.interpreter, "-s", str(_BOOTSTRAP)]

    def launch(self, code_dir: Path, memory_mb: int, function_env: dict[str, str] | None = None) -> Launch:
        """argv and runtime directory of one environment. For Java, may build (blocking)."""
        if self.family == "python":
            return Launch(tuple(self.command()), None)
        if self.family == "provided":
            return Launch((str(code_dir / BOOTSTRAP_NAME),), None)
        if self.family == "nodejs":
            runtime_dir = RUNTIMES_DIR / "nodejs"
            major = self.version.split(".")[0]
            node_path = f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:{runtime_dir}/node_modules:{runtime_dir}:{code_dir}"
            return Launch((self.interpreter, str(runtime_dir / "bootstrap.mjs")), runtime_dir, {"NODE_PATH": node_path})
        if self.family == "ruby":
            runtime_dir = RUNTIMES_DIR / "ruby"
            # RubyGems loads on demand (bootstrap.rb): ~90 ms less per cold start. A RUBYOPT
            # (e.g. -rbundler/setup) acts before bootstrap.rb runs, so then gems load up front.
            flags = () if "RUBYOPT" in (function_env or {}) else ("--disable-gems",)
            return Launch((self.interpreter, *flags, str(runtime_dir / "bootstrap.rb")), runtime_dir)
        if self.family == "java":
            assert self.builds is not None
            runtime_dir = self.builds.java()
            from squall.runtimes import java

            argv = java.command(self.interpreter, str(runtime_dir))
            heap = max(64, memory_mb * 85 // 100)  # the JVM cannot see the sandbox's cgroup: say it
            return Launch((argv[0], f"-Xmx{heap}m", *argv[1:]), runtime_dir)
        raise ValueError(f"unknown runtime family {self.family}")


class RuntimeBuilds:
    """Runtime parts built on first use (the Java library), cached under ``cache_dir``."""

    def __init__(self, cache_dir: Path, javac: str | None, jar: str | None) -> None:
        self.cache_dir = cache_dir
        self.javac = javac
        self.jar = jar
        self._lock = threading.Lock()
        self._java: Path | None = None

    def java_ready(self) -> bool:
        return self._java is not None

    def java(self) -> Path:
        with self._lock:
            if self._java is None:
                from squall.runtimes import java

                self._java = java.build_runtime(self.cache_dir / "java", self.javac or "javac", self.jar or "jar")
            return self._java


@dataclass(frozen=True)
class RuntimeRegistry:
    runtimes: tuple[Runtime, ...]
    missing: dict[str, str] = field(default_factory=dict)  # identifier -> what to install

    @classmethod
    def discover(cls, cache_dir: Path | None = None) -> "RuntimeRegistry":
        builds = RuntimeBuilds(cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squall",
                               shutil.which("javac"), shutil.which("jar"))
        found: list[Runtime] = []
        missing: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=4) as pool:  # interpreters answer --version in ~50 ms each
            pythons = pool.map(_find_python, PYTHON_MINORS)
            others = list(pool.map(_find_family, FAMILIES))
        found.extend(r for r in pythons if r is not None)
        for family, probe in zip(FAMILIES, others):
            if family.name == "java" and probe is not None and builds.javac is None:
                probe = None  # a JRE alone cannot build Squall's Java library
            for identifier in family.identifiers:
                if probe is None:
                    missing[identifier] = family.install_hint
                else:
                    found.append(Runtime(identifier, family.name, probe[0], probe[1], builds))
        found.extend(Runtime(identifier, "provided", "", "al2023" if identifier != "provided" else "al1") for identifier in PROVIDED)
        for minor in PYTHON_MINORS:
            identifier = f"python3.{minor}"
            if not any(r.identifier == identifier for r in found):
                missing[identifier] = f"the {identifier} interpreter (e.g. the Debian package {identifier})"
        return cls(tuple(found), missing)

    def identifiers(self) -> list[str]:
        return [r.identifier for r in self.runtimes]

    def get(self, identifier: str) -> Runtime:
        for runtime in self.runtimes:
            if runtime.identifier == identifier:
                return runtime
        if identifier not in self.missing:  # no runtime of that name at all: AWS's enum message
            known = ", ".join([*self.identifiers(), *self.missing])
            raise InvalidParameterValue(
                f"Value {identifier} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{known}] or be a valid ARN"
            )
        offered = ", ".join(self.identifiers()) or "none"
        hint = ""
        if identifier in self.missing:
            hint = f" It needs {self.missing[identifier]}; install it and restart squall server."
        raise InvalidParameterValue(
            f"The runtime parameter of {identifier} is not supported by this Squall server.{hint} "
            f"Runtimes offered: {offered}."
        )

    def describe(self) -> dict[str, str]:
        """identifier -> the interpreter serving it (for /health and the CLI)."""
        return {r.identifier: r.describe() for r in self.runtimes}


def _find_family(family: Family) -> tuple[str, str] | None:
    for name in family.executables:
        path = shutil.which(name)
        if path and os.access(path, os.X_OK):
            version = _probe(path, family.version_args, family.version_pattern)
            if version:
                return os.path.realpath(path), version
    return None


def _probe(executable: str, args: tuple[str, ...], pattern: str) -> str | None:
    try:
        out = subprocess.run([executable, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else None


def _find_python(minor: int) -> Runtime | None:
    identifier = f"python3.{minor}"
    if sys.version_info[:2] == (3, minor):
        return Runtime(identifier, "python", sys.executable, ".".join(map(str, sys.version_info[:3])))
    candidates = [shutil.which(identifier), f"/usr/bin/{identifier}", f"/usr/local/bin/{identifier}"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            version = _probe(candidate, ("-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"), r"(\d+\.\d+\.\d+)")
            if version and version.startswith(f"3.{minor}."):
                return Runtime(identifier, "python", os.path.realpath(candidate), version)
    return None
