"""Which Lambda runtime identifiers this server can run, and with which interpreter.

* ``python3.X``: offered when a Python 3.X interpreter exists. The interpreter running
  Squall itself is preferred for its own version (same site-packages, so functions find
  boto3 as on Lambda). Talks to Squall over the frames channel (the fastest path).
* ``nodejs18.x`` / ``nodejs20.x`` / ``nodejs22.x``: the machine's ``node``;
  ``ruby3.2`` / ``ruby3.3`` / ``ruby3.4``: the machine's ``ruby``; ``java17`` / ``java21``:
  the machine's JDK (``java`` and ``javac``); ``dotnet10`` / ``dotnet8`` / ``dotnet6``: the machine's
  .NET of that major version where a .NET SDK is there to build Squall's C# runtime (``dotnet``
  under /usr), else Mono (``mono`` and ``mcs``), with a warning saying which assemblies work there.
  Every other identifier of a family is served by
  the one interpreter installed (``/health`` and ``squall runtimes`` show which); each
  language's runtime client ships in ``squall/runtimes/<family>`` and speaks the Runtime API.
* ``provided.al2023`` / ``provided.al2`` / ``provided``: the function's own executable
  ``bootstrap`` (Go, Rust, C++, shell…), always offered.

An interpreter is offered only once it passed a test run at discovery: a tiny program that
must exit 0 and report its version (a Python's must be the 3.X of its name). A pyenv shim that
answers "command not found", or one that starts another Python, is not offered, and
``unavailable`` says why. The test run also reports the real executable behind a shim or
symlink, which is what the registry records. :meth:`RuntimeRegistry.warning` says when an
identifier is served by an interpreter older than the one its label names on Lambda.
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
    executables: tuple[str, ...]  # looked up on PATH, first that passes its test run wins
    version_args: tuple[str, ...]  # the test run: prints the version (and the real executable)
    version_pattern: str  # group 1 (or 2): the version, in the test run's stdout + stderr
    install_hint: str
    label: str = ""  # "Node.js": the interpreter's name in warnings
    path_pattern: str = ""  # group 1: the real executable (or home, see path_suffix) the test run printed
    path_suffix: str = ""


FAMILIES = (
    Family("nodejs", ("nodejs22.x", "nodejs20.x", "nodejs18.x"), ("node", "nodejs"),
           ("-e", "process.stdout.write(process.version + '\\n' + process.execPath)"),
           r"\bv(\d+\.\d+\.\d+)", "Node.js (`node`): apt install nodejs", "Node.js", r"^(/.+)$"),
    Family("ruby", ("ruby3.4", "ruby3.3", "ruby3.2"), ("ruby",),
           ("--disable-gems", "-e", 'require "rbconfig"; print RUBY_VERSION, "\\n", RbConfig.ruby'),
           r"^(\d+\.\d+\.\d+)", "Ruby (`ruby`): apt install ruby", "Ruby", r"^(/.+)$"),
    Family("java", ("java21", "java17"), ("java",), ("-XshowSettings:properties", "-version"),
           r'java\.version = (\d+(?:\.\d+)*)|version "(\d+(?:\.\d+)*)',
           "a JDK (`java` and `javac`): apt install default-jdk-headless", "JDK",
           r"^\s*java\.home = (/.+?)\s*$", "/bin/java"),
    Family("dotnet", ("dotnet10", "dotnet8", "dotnet6"), ("mono",), ("--version",),
           r"Mono JIT compiler version (\d+(?:\.\d+)+)", "Mono (`mono` and `mcs`): apt install mono-runtime mono-mcs",
           "Mono"),
)
MONO_NOTE = ("{identifier} is served by Mono {version}, not .NET: assemblies built for netstandard2.0 (or earlier) or "
             "the .NET Framework with mcs or a .NET SDK work; ones that need .NET 6+ APIs (net6.0/net8.0 targets) or a "
             "Native AOT build do not: deploy a self-contained bootstrap on provided.al2023 for those")
PYTHON_DIRS = ("/usr/bin", "/usr/local/bin")  # looked in after PATH for python3.X
# where a .NET host must live for sandboxed environments to see it (the jail shows these)
JAIL_VISIBLE = ("/usr/", "/bin/", "/lib/", "/lib64/", "/sbin/")
PROBE_TIMEOUT_S = 10.0  # for one test run
_PYTHON_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)"


@dataclass(frozen=True)
class Launch:
    """How to start one environment of a runtime."""

    argv: tuple[str, ...]
    runtime_dir: Path | None  # host directory shown at /var/runtime (None: the Python runtime's)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Runtime:
    identifier: str  # e.g. "python3.11"
    family: str  # "python", "nodejs", "ruby", "java", "dotnet", "provided"
    interpreter: str  # absolute path of the executable ("" for provided: the function's bootstrap)
    version: str  # e.g. "3.11.7"
    builds: "RuntimeBuilds | None" = None
    engine: str = ""  # dotnet family: "dotnet" (a .NET host; interpreter is its `dotnet`) or "mono"

    @property
    def link(self) -> str:
        return FRAMES if self.family == "python" else RUNTIME_API

    @property
    def execution_env(self) -> str | None:
        return None if self.family == "provided" else f"AWS_Lambda_{self.identifier}"

    @property
    def prepared(self) -> bool:
        """False while something must be built before the first start (it may take seconds)."""
        if self.family == "java":
            return self.builds is not None and self.builds.java_ready()
        if self.family == "dotnet":
            return self.builds is not None and self.builds.dotnet_ready(self._dotnet_key())
        return True

    def _dotnet_key(self) -> str:
        return f"net{self.identifier.removeprefix('dotnet')}.0" if self.engine == "dotnet" else "mono"

    def describe(self) -> str:
        return self.interpreter or "the function's bootstrap"

    @property
    def warning(self) -> str | None:
        """Why code written for this identifier may fail here: its interpreter is older than the label."""
        if self.family == "dotnet":
            return None if self.engine == "dotnet" else MONO_NOTE.format(identifier=self.identifier, version=self.version)
        label = _label_version(self.identifier)
        family = next((f for f in FAMILIES if f.name == self.family), None)
        if label is None or family is None:
            return None
        served = _version_tuple(self.version, self.family)[:len(label)]
        if not served or served >= label:
            return None
        wanted = ".".join(map(str, label))
        if self.family == "java":
            return (f"{self.identifier} is served by JDK {self.version}, older than Lambda's Java {wanted}: classes "
                    f"compiled for Java {wanted} fail with UnsupportedClassVersionError (compile with --release "
                    f"{served[0]})")
        return (f"{self.identifier} is served by {family.label} {self.version}, older than Lambda's {family.label} "
                f"{wanted}: code that needs {wanted} may fail")

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
        if self.family == "dotnet" and self.engine == "dotnet":
            assert self.builds is not None
            runtime_dir = self.builds.dotnet(self._dotnet_key(), self.interpreter)
            from squall.runtimes import dotnet

            heap = max(32, memory_mb * 85 // 100) << 20  # as for Mono; .NET also reads the cgroup
            return Launch(tuple(dotnet.sdk_command(self.interpreter, str(runtime_dir))), runtime_dir,
                          {"DOTNET_GCHeapHardLimit": f"{heap:x}", "DOTNET_TieredPGO": "0",
                           "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_gcServer": "0"})
        if self.family == "dotnet":
            assert self.builds is not None
            runtime_dir = self.builds.dotnet()
            from squall.runtimes import dotnet

            heap = max(32, memory_mb * 85 // 100)  # Mono's GC cannot see the sandbox's cgroup: say it
            return Launch(tuple(dotnet.command(self.interpreter, str(runtime_dir))), runtime_dir,
                          {"MONO_GC_PARAMS": f"max-heap-size={heap}m"})
        raise ValueError(f"unknown runtime family {self.family}")


class RuntimeBuilds:
    """Runtime parts built on first use (the Java library, the C# runtime), cached under ``cache_dir``."""

    def __init__(self, cache_dir: Path, javac: str | None, jar: str | None, mcs: str | None = None) -> None:
        self.cache_dir = cache_dir
        self.javac = javac
        self.jar = jar
        self.mcs = mcs
        self._lock = threading.Lock()
        self._java: Path | None = None
        self._dotnet: dict[str, Path] = {}  # "mono" or a target framework ("net8.0") -> built runtime

    def dotnet_ready(self, key: str = "mono") -> bool:
        return key in self._dotnet

    def dotnet(self, key: str = "mono", sdk: str | None = None) -> Path:
        """The C# runtime built with mcs (``key`` "mono"), or with the .NET SDK ``sdk`` for the target
        framework ``key``."""
        with self._lock:
            if key not in self._dotnet:
                from squall.runtimes import dotnet

                if key == "mono":
                    self._dotnet[key] = dotnet.build_runtime(self.cache_dir / "dotnet", self.mcs or "mcs")
                else:
                    assert sdk is not None
                    self._dotnet[key] = dotnet.build_runtime_sdk(self.cache_dir / "dotnet", sdk, key)
            return self._dotnet[key]

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
    missing: dict[str, str] = field(default_factory=dict)  # identifier -> why it is not offered (what to install)

    @property
    def unavailable(self) -> dict[str, str]:
        """identifier -> why it is not offered: not installed (and what to install), or its test run failed."""
        return self.missing

    @classmethod
    def discover(cls, cache_dir: Path | None = None) -> "RuntimeRegistry":
        found: list[Runtime] = []
        missing: dict[str, str] = {}
        # Every candidate is test-run (a shim may start nothing, or another version): all at once,
        # so discovery takes about as long as the slowest interpreter start (~0.1-0.3 s).
        with ThreadPoolExecutor(max_workers=len(PYTHON_MINORS) + len(FAMILIES) + 1) as pool:
            others = [pool.submit(_find_family, family) for family in FAMILIES]
            dotnet_host = pool.submit(find_dotnet_host)
            pythons = list(pool.map(_find_python, PYTHON_MINORS))
            probes = [future.result() for future in others]
            host = dotnet_host.result()
        for minor, (runtime, reason) in zip(PYTHON_MINORS, pythons):
            if runtime is None:
                missing[f"python3.{minor}"] = reason
            else:
                found.append(runtime)
        javac = jar = mcs = None
        for index, (family, (probe, reason)) in enumerate(zip(FAMILIES, probes)):
            if family.name == "dotnet" and probe is not None:
                mcs = _tool(Path(probe[0]).parent, "mcs")
                if mcs is None:  # mono-runtime alone cannot build Squall's C# runtime
                    probe, reason = None, f"{probe[0]} has no `mcs` (the C# compiler): {family.install_hint}"
                    probes[index] = (None, reason)
            if family.name == "java" and probe is not None:
                home = Path(probe[0]).parent
                javac = _tool(home, "javac")
                jar = _tool(home, "jar")
                if javac is None:  # a JRE alone cannot build Squall's Java library
                    probe, reason = None, f"{probe[0]} has no `javac` (a JRE, not a JDK): {family.install_hint}"
            if probe is None:
                missing.update((identifier, reason) for identifier in family.identifiers)
        builds = RuntimeBuilds(cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squall",
                               javac, jar, mcs)
        for family, (probe, _) in zip(FAMILIES, probes):
            for identifier in family.identifiers:
                on_dotnet = host.serves(identifier) if family.name == "dotnet" else None
                if on_dotnet is not None:  # a real .NET host with its SDK: preferred to Mono
                    found.append(Runtime(identifier, "dotnet", host.dotnet, on_dotnet, builds, engine="dotnet"))
                    missing.pop(identifier, None)
                elif probe is not None and not (family.name == "java" and javac is None):
                    found.append(Runtime(identifier, family.name, probe[0], probe[1], builds,
                                         engine="mono" if family.name == "dotnet" else ""))
                elif family.name == "dotnet" and host.why_not(identifier):
                    missing[identifier] = f"{host.why_not(identifier)}; {missing.get(identifier, '')}".rstrip("; ")
        found.extend(Runtime(identifier, "provided", "", "al2023" if identifier != "provided" else "al1") for identifier in PROVIDED)
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
        raise InvalidParameterValue(
            f"The runtime parameter of {identifier} is not supported by this Squall server: {self.missing[identifier]}. "
            f"Install a working interpreter and restart squall server. Runtimes offered: {offered}."
        )

    def warning(self, identifier: str) -> str | None:
        """Why code for ``identifier`` may fail on this server although it is offered (its interpreter is
        older than the label: nodejs22.x served by Node.js 20), or None."""
        for runtime in self.runtimes:
            if runtime.identifier == identifier:
                return runtime.warning
        return None

    def warnings(self) -> dict[str, str]:
        """identifier -> its warning, for the offered identifiers that have one."""
        return {r.identifier: w for r in self.runtimes if (w := r.warning)}

    def describe(self) -> dict[str, str]:
        """identifier -> the interpreter serving it (for /health and the CLI)."""
        return {r.identifier: r.describe() for r in self.runtimes}


@dataclass(frozen=True)
class DotnetHost:
    """What ``dotnet --list-runtimes`` / ``--list-sdks`` said: the .NET host that may serve dotnetN."""

    dotnet: str = ""  # the muxer, symlinks resolved ("" when there is none)
    runtimes: dict[int, str] = field(default_factory=dict)  # major -> newest Microsoft.NETCore.App version
    sdks: tuple[str, ...] = ()
    problem: str = ""  # why this host serves nothing (no SDK, not visible in the sandbox, failed test run)

    def serves(self, identifier: str) -> str | None:
        """The .NET version serving ``identifier`` (dotnet8 -> "8.0.11") on this host, or None."""
        major = _dotnet_major(identifier)
        if not self.dotnet or self.problem or major is None or major not in self.runtimes:
            return None
        return self.runtimes[major]

    def why_not(self, identifier: str) -> str:
        major = _dotnet_major(identifier)
        if not self.dotnet or major is None:
            return ""
        if self.problem:
            return self.problem
        if major not in self.runtimes:
            have = ", ".join(f"{m}.x" for m in sorted(self.runtimes)) or "none"
            return f"{self.dotnet} has no .NET {major} runtime (Microsoft.NETCore.App {major}.x; it has: {have})"
        return ""


def _dotnet_major(identifier: str) -> int | None:
    match = re.fullmatch(r"dotnet(\d+)", identifier)
    return int(match.group(1)) if match else None


def parse_dotnet_lists(runtimes_text: str, sdks_text: str) -> tuple[dict[int, str], tuple[str, ...]]:
    """({major: newest Microsoft.NETCore.App version}, SDK versions) from ``dotnet --list-runtimes``
    and ``dotnet --list-sdks`` output (lines like ``Microsoft.NETCore.App 8.0.11 [/usr/lib/dotnet/shared/…]``)."""
    runtimes: dict[int, str] = {}
    for match in re.finditer(r"^Microsoft\.NETCore\.App (\d+)\.(\d+)\.(\d+)(\S*) \[", runtimes_text, re.MULTILINE):
        major = int(match.group(1))
        version = ".".join(match.group(i) for i in (1, 2, 3)) + match.group(4)
        current = runtimes.get(major)
        if current is None or _version_tuple(version, "dotnet") > _version_tuple(current, "dotnet"):
            runtimes[major] = version
    sdks = tuple(m.group(1) for m in re.finditer(r"^(\d+\.\d+\.\d+\S*) \[", sdks_text, re.MULTILINE))
    return runtimes, sdks


def find_dotnet_host() -> DotnetHost:
    """The machine's .NET host (``dotnet`` on PATH, or in $DOTNET_ROOT), test-run; an empty host when none."""
    candidates = [shutil.which("dotnet")]
    if os.environ.get("DOTNET_ROOT"):
        candidates.append(os.path.join(os.environ["DOTNET_ROOT"], "dotnet"))
    path = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if path is None:
        return DotnetHost()
    real = os.path.realpath(path)
    listed, problem = _test_run(real, ("--list-runtimes",))
    if listed is None:
        return DotnetHost(real, problem=problem)
    sdks_text, problem = _test_run(real, ("--list-sdks",))
    runtimes, sdks = parse_dotnet_lists(listed, sdks_text or "")
    if not runtimes:
        return DotnetHost(real, problem=f"{real} lists no Microsoft.NETCore.App runtime")
    if not sdks:
        return DotnetHost(real, runtimes, problem=(
            f"{real} has .NET runtimes but no .NET SDK to build Squall's C# runtime with (install the SDK, e.g. "
            f"dotnet-sdk-{max(runtimes)}.0)"))
    if not any(real.startswith(prefix) for prefix in JAIL_VISIBLE):
        return DotnetHost(real, runtimes, sdks, problem=(
            f"{real} is outside /usr, where sandboxed environments cannot see it: install .NET under /usr "
            f"(e.g. /usr/share/dotnet or /usr/lib/dotnet, as Microsoft's and the distributions' packages do)"))
    return DotnetHost(real, runtimes, sdks)


def _label_version(identifier: str) -> tuple[int, ...] | None:
    """The version an identifier names: nodejs22.x -> (22,), ruby3.4 -> (3, 4), java21 -> (21,)."""
    match = re.fullmatch(r"nodejs(\d+)\.x|ruby(\d+)\.(\d+)|java(\d+)", identifier)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _version_tuple(version: str, family: str) -> tuple[int, ...]:
    numbers = tuple(int(n) for n in re.findall(r"\d+", version))
    if family == "java" and numbers[:1] == (1,):  # "1.8.0_392" is Java 8
        numbers = numbers[1:]
    return numbers


def _tool(java_home: Path, name: str) -> str | None:
    """The JDK's own ``javac``/``jar`` next to the ``java`` found (Mono's ``mcs`` next to ``mono``), else the one on PATH."""
    own = java_home / name
    return str(own) if os.access(own, os.X_OK) else shutil.which(name)


def _test_run(executable: str, args: tuple[str, ...]) -> tuple[str | None, str]:
    """(stdout + stderr, "") of a run of ``executable`` that exited 0 in time, else (None, why not)."""
    try:
        out = subprocess.run([executable, *args], capture_output=True, text=True, errors="replace",
                             stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"{executable} failed its test run (no answer within {PROBE_TIMEOUT_S:.0f} s)"
    except OSError as e:
        return None, f"{executable} failed its test run ({e.strerror or e})"
    if out.returncode != 0:
        first = next((line.strip() for line in (out.stderr + "\n" + out.stdout).splitlines() if line.strip()), "")
        status = f"exit {out.returncode}" if out.returncode > 0 else f"killed by signal {-out.returncode}"
        return None, f"{executable} failed its test run ({status}{': ' + first[:200] if first else ''})"
    return out.stdout + "\n" + out.stderr, ""


def _find_family(family: Family) -> tuple[tuple[str, str] | None, str]:
    """((real executable, version), "") of the first of the family's executables that passes its
    test run, else (None, why none is offered)."""
    problems: list[str] = []
    for name in family.executables:
        path = shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            continue
        text, problem = _test_run(path, family.version_args)
        if text is None:
            problems.append(problem)
            continue
        version = re.search(family.version_pattern, text, re.MULTILINE)
        if version is None:
            problems.append(f"{path} failed its test run (no {family.label or family.name} version in its output)")
            continue
        return (_real_path(path, text, family), next(g for g in version.groups() if g is not None)), ""
    if not problems:
        return None, f"not installed: {family.install_hint}"
    return None, "; ".join(problems) + f" (install: {family.install_hint})"


def _real_path(path: str, text: str, family: Family) -> str:
    """The executable the test run says it is (behind a shim), else ``path`` with symlinks resolved."""
    reported = re.search(family.path_pattern, text, re.MULTILINE) if family.path_pattern else None
    if reported:
        candidate = reported.group(1) + family.path_suffix
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return os.path.realpath(path)


def _find_python(minor: int) -> tuple[Runtime | None, str]:
    """(the python3.X runtime, "") if a Python 3.X passes its test run, else (None, why not)."""
    identifier = f"python3.{minor}"
    if sys.version_info[:2] == (3, minor):
        return Runtime(identifier, "python", sys.executable, ".".join(map(str, sys.version_info[:3]))), ""
    problems: list[str] = []
    seen: set[str] = set()
    for candidate in [shutil.which(identifier), *(f"{d}/{identifier}" for d in PYTHON_DIRS)]:
        if not candidate or not os.access(candidate, os.X_OK) or os.path.realpath(candidate) in seen:
            continue
        seen.add(os.path.realpath(candidate))
        text, problem = _test_run(candidate, ("-S", "-c", _PYTHON_PROBE))
        if text is None:
            problems.append(problem)
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        version = lines[0] if lines and re.fullmatch(r"\d+\.\d+\.\d+", lines[0]) else ""
        if not version.startswith(f"3.{minor}."):
            problems.append(f"{candidate} failed its test run (it is Python {version or 'of unknown version'}, not 3.{minor})")
            continue
        executable = lines[1] if len(lines) > 1 and os.path.isabs(lines[1]) and os.access(lines[1], os.X_OK) else candidate
        return Runtime(identifier, "python", _real_python(executable), version), ""
    if not problems:
        return None, f"not installed: apt install {identifier} (or put a Python 3.{minor} on PATH as {identifier})"
    return None, "; ".join(problems)


def _real_python(executable: str) -> str:
    """``executable`` with symlinks resolved, unless it is a virtual environment's (its symlink makes it one)."""
    if (Path(executable).parent.parent / "pyvenv.cfg").exists():
        return executable
    return os.path.realpath(executable)
