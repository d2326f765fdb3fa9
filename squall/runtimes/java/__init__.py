"""Squall's Java runtime (java17 / java21), built from source with the machine's JDK.

``src/`` holds a small library with no dependencies: the handler API under the names AWS
users compile against (``com.amazonaws.services.lambda.runtime.Context``, ``RequestHandler``,
``RequestStreamHandler``, ``LambdaLogger``…), a Runtime API client (``squall.runtime.Bootstrap``)
and a JSON codec that maps events to and from handler types as the Lambda Java runtime's
Jackson setup does.

:func:`build_runtime` compiles it once per source and JDK version into
``<cache>/<hash>/squall-runtime.jar`` (world-readable: the directory is shown read-only at
``/var/runtime`` to functions running as an unprivileged user); :func:`command` is the argv
that starts the runtime from that directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Mapping

from squall.runtimes.build_cache import install

SOURCES: Path = Path(__file__).resolve().parent / "src"
JAR_NAME = "squall-runtime.jar"
MAIN_CLASS = "squall.runtime.Bootstrap"
INSTALL_HINT = "install a JDK (javac and jar), e.g. `apt install default-jdk-headless`"
_RELEASE = "17"
# Part of the cache key: change it when the way the jar is built changes.
_BUILD_FORMAT = "1"
# javac options shared by the runtime and handler builds. -XDstringConcat=inline compiles
# string concatenation to StringBuilder calls instead of invokedynamic, whose first use
# costs ~10-20 ms of bootstrap at JVM start.
_JAVAC_FLAGS = ("--release", _RELEASE, "-encoding", "UTF-8", "-g", "-nowarn", "-XDstringConcat=inline")
# A short-lived javac starts faster with C1 only and the serial collector.
_JAVAC_JVM = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Xshare:auto")

_versions: dict[tuple[str, float], str] = {}
_versions_lock = threading.Lock()


class JavaBuildError(RuntimeError):
    """The Java runtime (or a handler) could not be compiled."""


def _tool(name: str, what: str) -> str:
    found = shutil.which(name)
    if not found:
        raise JavaBuildError(f"{what}: `{name}` was not found; {INSTALL_HINT}")
    return found


def _javac_version(javac: str) -> str:
    real = os.path.realpath(javac)
    key = (real, os.stat(real).st_mtime)
    with _versions_lock:
        if key in _versions:
            return _versions[key]
    try:
        done = subprocess.run([javac, "-version"], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise JavaBuildError(f"cannot run `{javac} -version`: {exc}; {INSTALL_HINT}") from exc
    version = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or not version:
        raise JavaBuildError(f"`{javac} -version` failed (exit {done.returncode}): {version}; {INSTALL_HINT}")
    with _versions_lock:
        _versions[key] = version
    return version


def _source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.java") if p.is_file())


def source_hash(javac_version: str) -> str:
    """Key of a build: the sources (paths and contents), the javac version and the build format."""
    digest = hashlib.sha256()
    digest.update(f"format={_BUILD_FORMAT}\njavac={javac_version}\nflags={' '.join(_JAVAC_FLAGS)}\n".encode())
    for path in _source_files(SOURCES):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(SOURCES).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:20]


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except OSError as exc:
        raise JavaBuildError(f"{what}: cannot run {argv[0]}: {exc}; {INSTALL_HINT}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise JavaBuildError(f"{what} failed (exit {done.returncode}):\n{output}")


def _javac(javac: str, sources: Iterable[Path], out_dir: Path, classpath: Iterable[Path], workdir: Path, what: str) -> None:
    files = [str(p) for p in sources]
    if not files:
        raise JavaBuildError(f"{what}: no .java sources")
    argfile = workdir / "sources.txt"
    # javac's @file syntax: one quoted argument a line (paths may hold spaces).
    argfile.write_text("".join('"' + f.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for f in files), encoding="utf-8")
    argv = [javac, *_JAVAC_JVM, *_JAVAC_FLAGS, "-d", str(out_dir)]
    cp = [str(p) for p in classpath]
    if cp:
        argv += ["-classpath", os.pathsep.join(cp)]
    _run([*argv, f"@{argfile}"], what)


def build_runtime(cache_dir: Path, javac: str = "javac", jar: str = "jar") -> Path:
    """Compile the runtime into ``cache_dir/<hash>/squall-runtime.jar`` (once) and return that directory.

    Safe when several processes build at once: each builds in a temporary directory and
    renames it into place; the loser of the race removes its copy and uses the winner's.
    Raises :class:`JavaBuildError` when javac or jar is missing or fails.
    """
    javac_path = _tool(javac, "cannot build Squall's Java runtime")
    version = _javac_version(javac_path)
    cache_dir = Path(cache_dir).resolve()  # the sandbox maps the resolved path to /var/runtime
    final = cache_dir / source_hash(version)
    if (final / JAR_NAME).is_file():
        return final
    jar_path = _tool(jar, "cannot build Squall's Java runtime")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        classes = work / "classes"
        classes.mkdir()
        with tempfile.TemporaryDirectory(prefix="squall-javac-") as scratch:
            _javac(javac_path, _source_files(SOURCES), classes, (), Path(scratch), "compiling Squall's Java runtime")
        _run([jar_path, "--create", "--file", str(work / JAR_NAME), "--main-class", MAIN_CLASS, "-C", str(classes), "."],
             "packaging Squall's Java runtime")
        shutil.rmtree(classes)
        install(work, final, JAR_NAME)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def command(java: str, runtime_dir: str) -> list[str]:
    """argv starting the runtime from ``runtime_dir`` (where the built directory is visible).

    Flags for a fast start and a small footprint, as Lambda's own Java 17+ runtimes choose:
    the serial collector, C1 only (tiered compilation stops at level 1), class data sharing,
    no perf-data file in /tmp. The heap follows the memory limit the JVM sees (its cgroup)
    unless an -Xmx given before these flags says otherwise.
    """
    return [
        java,
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        "-XX:-UsePerfData",
        "-XX:MaxRAMPercentage=75",
        "-Dfile.encoding=UTF-8",
        "-cp",
        f"{runtime_dir.rstrip('/')}/{JAR_NAME}",
        MAIN_CLASS,
    ]


def compile_handler(sources: Mapping[str, str], runtime_jar_dir: Path, out_dir: Path, javac: str = "javac",
                    classpath: Iterable[Path] = ()) -> None:
    """Compile handler sources ({relative path: text}) against the runtime jar into ``out_dir``.

    ``classpath``: more jars or directories to compile against (e.g. the function's lib/ jars).
    """
    javac_path = _tool(javac, "cannot compile the handler")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="squall-handler-") as scratch:
        src = Path(scratch) / "src"
        files = []
        for rel, text in sources.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files.append(path)
        cp = [Path(runtime_jar_dir) / JAR_NAME, *classpath]
        _javac(javac_path, files, out_dir, cp, Path(scratch), "compiling the handler")
