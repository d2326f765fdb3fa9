"""Squall's C# runtime (dotnet6 / dotnet8 / dotnet10), built from source: with a .NET SDK where the
host has .NET, else with Mono's ``mcs``.

``src/core`` is ``Amazon.Lambda.Core.dll``: the handler API under the names AWS users compile
against (``ILambdaContext``, ``ILambdaLogger``, ``LambdaLogger``, ``LambdaSerializerAttribute``…)
plus a Runtime API client (``Squall.Lambda.LambdaBootstrap.Run(...)``, usable from a program of
one's own on provided.al2023). ``src/bootstrap`` is ``bootstrap.exe``: the managed runtime,
which loads ``/var/task/<Assembly>.dll`` by the handler ``Assembly::Namespace.Type::Method``
and calls the method via reflection.

:func:`build_runtime` compiles both with ``mcs`` once per source and ``mcs`` version into
``<cache>/<hash>/`` (world-readable: shown read-only at ``/var/runtime``); :func:`command` is
the argv that starts the runtime from that directory on Mono. :func:`build_runtime_sdk` builds
the same sources with a .NET SDK (``dotnet build`` of two generated projects, SQUALL_NETCORE
defined: System.Text.Json instead of System.Web.Extensions) for one target framework
(``net8.0``), and :func:`sdk_command` starts ``bootstrap.dll`` on that .NET host.
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
CORE_DLL = "Amazon.Lambda.Core.dll"
BOOTSTRAP_EXE = "bootstrap.exe"
INSTALL_HINT = "install Mono (mono and mcs), e.g. `apt install mono-runtime mono-mcs`"
SDK_HINT = "install a .NET SDK (https://dot.net) beside the runtime, or Mono (`apt install mono-runtime mono-mcs`)"
BOOTSTRAP_DLL = "bootstrap.dll"
# what `dotnet` is told in every build: no telemetry, no first-run banner, no workload check
SDK_ENV = {"DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1", "DOTNET_SKIP_FIRST_TIME_EXPERIENCE": "1",
           "DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE": "1", "DOTNET_GENERATE_ASPNET_CERTIFICATE": "0"}
_BUILD_FORMAT = "1"  # part of the cache key: change it when the way the runtime is built changes
_MCS_FLAGS = ("-nologo", "-optimize+", "-debug:portable", "-nowarn:1591")

_versions: dict[tuple[str, float], str] = {}
_versions_lock = threading.Lock()


class DotnetBuildError(RuntimeError):
    """The C# runtime (or a handler) could not be compiled."""


def _tool(name: str, what: str) -> str:
    found = shutil.which(name) if not os.path.isabs(name) else (name if os.access(name, os.X_OK) else None)
    if not found:
        raise DotnetBuildError(f"{what}: `{name}` was not found; {INSTALL_HINT}")
    return found


def _mcs_version(mcs: str) -> str:
    real = os.path.realpath(mcs)
    key = (real, os.stat(real).st_mtime)
    with _versions_lock:
        if key in _versions:
            return _versions[key]
    try:
        done = subprocess.run([mcs, "--version"], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise DotnetBuildError(f"cannot run `{mcs} --version`: {exc}; {INSTALL_HINT}") from exc
    version = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or not version:
        raise DotnetBuildError(f"`{mcs} --version` failed (exit {done.returncode}): {version}; {INSTALL_HINT}")
    with _versions_lock:
        _versions[key] = version
    return version


def _sources(part: str) -> list[Path]:
    return sorted(p for p in (SOURCES / part).rglob("*.cs") if p.is_file())


def source_hash(mcs_version: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"format={_BUILD_FORMAT}\nmcs={mcs_version}\nflags={' '.join(_MCS_FLAGS)}\n".encode())
    for path in _sources("core") + _sources("bootstrap"):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(SOURCES).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:20]


def _run(argv: list[str], what: str, env: Mapping[str, str] | None = None, hint: str = INSTALL_HINT) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **env} if env else None)
    except OSError as exc:
        raise DotnetBuildError(f"{what}: cannot run {argv[0]}: {exc}; {hint}") from exc
    if done.returncode != 0:
        raise DotnetBuildError(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr).strip()}")


def build_runtime(cache_dir: Path, mcs: str = "mcs") -> Path:
    """Compile the runtime into ``cache_dir/<hash>/`` (once) and return that directory.

    It holds ``Amazon.Lambda.Core.dll`` (compile handlers with ``mcs -r:<dir>/Amazon.Lambda.Core.dll``)
    and ``bootstrap.exe``. Safe when several processes build at once (build aside, rename into
    place). Raises :class:`DotnetBuildError` when mcs is missing or fails.
    """
    mcs_path = _tool(mcs, "cannot build Squall's C# runtime")
    cache_dir = Path(cache_dir).resolve()
    final = cache_dir / source_hash(_mcs_version(mcs_path))
    if (final / BOOTSTRAP_EXE).is_file() and (final / CORE_DLL).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        _run([mcs_path, *_MCS_FLAGS, "-target:library", f"-out:{work / CORE_DLL}", "-r:System.Web.Extensions.dll",
              *map(str, _sources("core"))], "compiling Squall's C# runtime (Amazon.Lambda.Core.dll)")
        _run([mcs_path, *_MCS_FLAGS, "-target:exe", f"-out:{work / BOOTSTRAP_EXE}", f"-r:{work / CORE_DLL}",
              "-r:System.Core.dll", *map(str, _sources("bootstrap"))], "compiling Squall's C# runtime (bootstrap.exe)")
        install(work, final, BOOTSTRAP_EXE)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _project(name: str, output: str, framework: str, sources: list[Path], references: str = "") -> str:
    """A generated SDK project compiling ``sources`` (absolute paths) as assembly ``name``."""
    items = "\n".join(f'    <Compile Include="{path}" />' for path in sources)
    return f"""<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>{output}</OutputType>
    <TargetFramework>{framework}</TargetFramework>
    <AssemblyName>{name}</AssemblyName>
    <RootNamespace>Squall.Lambda</RootNamespace>
    <EnableDefaultCompileItems>false</EnableDefaultCompileItems>
    <ImplicitUsings>disable</ImplicitUsings>
    <Nullable>disable</Nullable>
    <LangVersion>latest</LangVersion>
    <DefineConstants>$(DefineConstants);SQUALL_NETCORE</DefineConstants>
    <NoWarn>$(NoWarn);1591;CS8632;SYSLIB0011;SYSLIB0014</NoWarn>
    <GenerateDocumentationFile>false</GenerateDocumentationFile>
    <InvariantGlobalization>true</InvariantGlobalization>
    <TieredPGO>false</TieredPGO>
    <UseAppHost>false</UseAppHost>
    <SatelliteResourceLanguages>en</SatelliteResourceLanguages>
  </PropertyGroup>
  <ItemGroup>
{items}
  </ItemGroup>{references}
</Project>
"""


def sdk_version(dotnet: str) -> str:
    """``dotnet --version``: the SDK the builds use (part of their cache key)."""
    try:
        done = subprocess.run([dotnet, "--version"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **SDK_ENV})
    except OSError as exc:
        raise DotnetBuildError(f"cannot run `{dotnet} --version`: {exc}; {SDK_HINT}") from exc
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise DotnetBuildError(f"`{dotnet} --version` failed (exit {done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()}; {SDK_HINT}")
    return version.splitlines()[-1]


def build_runtime_sdk(cache_dir: Path, dotnet: str, framework: str) -> Path:
    """Build the runtime with a .NET SDK for ``framework`` (``net8.0``) into ``cache_dir/<hash>/``
    (once) and return it: ``Amazon.Lambda.Core.dll``, ``bootstrap.dll`` and its runtimeconfig."""
    dotnet_path = _tool(dotnet, "cannot build Squall's C# runtime")
    cache_dir = Path(cache_dir).resolve()
    key = source_hash(f"dotnet-sdk {sdk_version(dotnet_path)} {framework}")
    final = cache_dir / key
    if (final / BOOTSTRAP_DLL).is_file() and (final / CORE_DLL).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        projects = work / "projects"
        (projects / "core").mkdir(parents=True)
        (projects / "bootstrap").mkdir()
        (projects / "core" / "Amazon.Lambda.Core.csproj").write_text(
            _project("Amazon.Lambda.Core", "Library", framework, _sources("core")))
        reference = '\n  <ItemGroup>\n    <ProjectReference Include="../core/Amazon.Lambda.Core.csproj" />\n  </ItemGroup>'
        (projects / "bootstrap" / "bootstrap.csproj").write_text(
            _project("bootstrap", "Exe", framework, _sources("bootstrap"), reference))
        out = work / "out"
        # a home of its own: the SDK writes its first-run sentinel and NuGet caches under $HOME
        env = {**SDK_ENV, "HOME": str(work / "home"), "NUGET_PACKAGES": str(work / "home" / "nuget")}
        _run([dotnet_path, "build", str(projects / "bootstrap" / "bootstrap.csproj"), "-c", "Release",
              "-o", str(out), "--nologo", "-v", "q"], f"building Squall's C# runtime with the .NET SDK for {framework}",
             env, SDK_HINT)
        if not (out / BOOTSTRAP_DLL).is_file() or not (out / CORE_DLL).is_file():
            raise DotnetBuildError(f"the .NET SDK build for {framework} made no {BOOTSTRAP_DLL} / {CORE_DLL} in {out}")
        built = work / "runtime"
        os.rename(out, built)
        shutil.rmtree(projects, ignore_errors=True)
        shutil.rmtree(work / "home", ignore_errors=True)
        for item in list(work.iterdir()):
            if item != built:
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink()
        for item in built.iterdir():
            os.rename(item, work / item.name)
        built.rmdir()
        install(work, final, BOOTSTRAP_DLL)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def sdk_command(dotnet: str, runtime_dir: str) -> list[str]:
    """argv starting the runtime built by :func:`build_runtime_sdk` on the .NET host ``dotnet``."""
    return [dotnet, "exec", f"{runtime_dir.rstrip('/')}/{BOOTSTRAP_DLL}"]


def command(mono: str, runtime_dir: str) -> list[str]:
    """argv starting the managed runtime from ``runtime_dir`` (where the built directory is visible)."""
    return [mono, "--gc=sgen", f"{runtime_dir.rstrip('/')}/{BOOTSTRAP_EXE}"]


def compile_handler(sources: Mapping[str, str], runtime_dir: Path, out: Path, mcs: str = "mcs",
                    target: str = "library", references: Iterable[str] = ()) -> Path:
    """Compile C# sources ({file name: text}) against the runtime's Amazon.Lambda.Core.dll into ``out``
    (``Function.dll``; ``target="exe"`` for a program with a Main). Returns ``out``."""
    mcs_path = _tool(mcs, "cannot compile the handler")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="squall-mcs-") as scratch:
        files = []
        for name, text in sources.items():
            path = Path(scratch) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files.append(str(path))
        _run([mcs_path, *_MCS_FLAGS, f"-target:{target}", f"-out:{out}", f"-r:{Path(runtime_dir) / CORE_DLL}",
              "-r:System.Core.dll", *(f"-r:{r}" for r in references), *files], "compiling the handler")
    return out
