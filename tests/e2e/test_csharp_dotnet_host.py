"""dotnet8 on a .NET host (simulated): discovery, the SDK build of Squall's C# runtime, the launch.

CI has no .NET SDK (the registries this project reaches carry none), so a stand-in ``dotnet`` plays
one: it lists a Microsoft.NETCore.App 8 runtime and an SDK, "builds" the projects Squall generates
with Mono's ``mcs`` from exactly the sources those projects list (refusing a project without
``net8.0`` and ``SQUALL_NETCORE``), and runs ``dotnet exec bootstrap.dll`` with ``mono``. What it
checks is Squall's side: dotnet8 is served by the .NET host (no Mono note) and dotnet10 is not (no
.NET 10 runtime there: Mono serves it, with its note); the runtime is built through ``dotnet
build`` into the cache once; environments start with ``dotnet exec`` and the GC limit; a C#
handler answers. A real SDK is exercised by ``test_csharp.py::test_dotnet_sdk_native_build``
where one is installed.

The stand-in lives under /usr/local/lib (sandboxed environments see /usr only), removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import create_function, require, start_server
from tests.e2e.test_csharp import HANDLER, invoke

pytestmark = pytest.mark.timeout(300)

FAKE_DOTNET = r"""#!/bin/sh
# A stand-in for a .NET 8 host with its SDK (Squall's tests only).
here=$(cd "$(dirname "$0")" && pwd)
case "$1" in
  --list-runtimes)
    echo "Microsoft.AspNetCore.App 8.0.99 [$here/shared/Microsoft.AspNetCore.App]"
    echo "Microsoft.NETCore.App 8.0.7 [$here/shared/Microsoft.NETCore.App]"
    echo "Microsoft.NETCore.App 8.0.99 [$here/shared/Microsoft.NETCore.App]" ;;
  --list-sdks) echo "8.0.999 [$here/sdk]" ;;
  --version) echo "8.0.999" ;;
  build)
    proj=$2; out=""
    while [ $# -gt 0 ]; do [ "$1" = "-o" ] && out=$2; shift; done
    [ -n "$out" ] || { echo "no -o" >&2; exit 2; }
    grep -q '<TargetFramework>net8.0</TargetFramework>' "$proj" || { echo "not net8.0" >&2; exit 3; }
    grep -q 'SQUALL_NETCORE' "$proj" || { echo "no SQUALL_NETCORE" >&2; exit 3; }
    core="$(dirname "$proj")/../core/Amazon.Lambda.Core.csproj"
    grep -q '<ProjectReference Include="../core/Amazon.Lambda.Core.csproj" />' "$proj" || exit 3
    mkdir -p "$out"
    mcs -nologo -target:library -out:"$out/Amazon.Lambda.Core.dll" -r:System.Web.Extensions.dll \
      $(sed -n 's/.*<Compile Include="\([^"]*\)".*/\1/p' "$core") || exit 1
    mcs -nologo -target:exe -out:"$out/bootstrap.dll" -r:"$out/Amazon.Lambda.Core.dll" -r:System.Core.dll \
      $(sed -n 's/.*<Compile Include="\([^"]*\)".*/\1/p' "$proj") || exit 1
    echo '{"runtimeOptions": {"tfm": "net8.0"}}' > "$out/bootstrap.runtimeconfig.json"
    echo built >> "$here/builds.log" ;;
  exec)
    shift
    case "$1" in */bootstrap.dll) ;; *) echo "unexpected app $1" >&2; exit 4 ;; esac
    [ -n "$DOTNET_GCHeapHardLimit" ] || { echo "no DOTNET_GCHeapHardLimit" >&2; exit 5; }
    echo "fake dotnet exec: heap limit 0x$DOTNET_GCHeapHardLimit" >&2
    exec mono "$@" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def fake_dotnet():
    require(bool(shutil.which("mono") and shutil.which("mcs")), "Mono (apt install mono-runtime mono-mcs)")
    require(os.access("/usr/local/lib", os.W_OK), "a writable /usr/local/lib (run as root) for the stand-in .NET host")
    home = Path("/usr/local/lib") / f"squall-test-dotnet-{uuid.uuid4().hex[:8]}"
    home.mkdir(mode=0o755)
    try:
        script = home / "dotnet"
        script.write_text(FAKE_DOTNET)
        script.chmod(0o755)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def server(fake_dotnet, tmp_path_factory):
    from tests.contract import linux_unavailable

    isolation = "linux" if linux_unavailable() is None else "process"
    running = start_server(tmp_path_factory.mktemp("squall-dotnet-host"), "--isolation", isolation,
                           env={"PATH": f"{fake_dotnet}:{os.environ.get('PATH', '')}"})
    yield running
    running.stop()


def test_discovery_prefers_the_dotnet_host_for_its_major(server, fake_dotnet):
    health = json.loads(urllib.request.urlopen(f"{server.endpoint}/health", timeout=10).read())
    assert health["runtimes"]["dotnet8"] == str(fake_dotnet / "dotnet")
    assert "dotnet8" not in health["runtimes_warnings"]  # .NET, not Mono: no note
    assert "mono" in health["runtimes"]["dotnet10"]  # no .NET 10 runtime there
    assert "Mono" in health["runtimes_warnings"]["dotnet10"]


def test_dotnet8_handler_runs_on_the_dotnet_host(server, fake_dotnet, tmp_path):
    from squall.runtimes import dotnet

    runtime = dotnet.build_runtime(tmp_path / "mono-runtime")  # the handler compiles against the same API
    dll = dotnet.compile_handler({"Functions.cs": HANDLER}, runtime, tmp_path / "Function.dll")
    lam = server.client("lambda")
    name = create_function(lam, {"Function.dll": dll.read_bytes()}, handler="Function::Example.Functions::Handle",
                           Runtime="dotnet8", MemorySize=256, Timeout=30)
    body, error, log = invoke(lam, name, {"name": "dotnet"})
    assert error is None, (body, log)
    assert body["greeting"] == "hello dotnet" and body["execEnv"] == "AWS_Lambda_dotnet8"
    assert "INIT_START Runtime Version: dotnet:8.0.99" in log  # the newest 8.x the host listed
    assert f"fake dotnet exec: heap limit 0x{(256 * 85 // 100) << 20:x}" in log
    config = lam.get_function_configuration(FunctionName=name)
    assert "Error" not in config.get("RuntimeVersionConfig", {})
    # built once through `dotnet build`, kept in the server's cache
    assert (fake_dotnet / "builds.log").read_text().count("built") == 1
    built = list((server.data_dir / "runtimes" / "dotnet").glob("*/bootstrap.dll"))
    assert len(built) == 1 and (built[0].parent / "Amazon.Lambda.Core.dll").is_file()
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MARK": "1"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    body, error, log = invoke(lam, name, {"name": "again"})
    assert error is None and body["greeting"] == "hello again", log
    assert (fake_dotnet / "builds.log").read_text().count("built") == 1
    assert json.loads((built[0].parent / "bootstrap.runtimeconfig.json").read_text())["runtimeOptions"]["tfm"] == "net8.0"
