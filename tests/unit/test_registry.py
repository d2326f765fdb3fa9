"""Which runtimes a server offers, and how each one's environments are launched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from squall.errors import InvalidParameterValue
from squall.runtimes import registry
from squall.runtimes.registry import FRAMES, RUNTIME_API, Runtime, RuntimeRegistry


def test_launch_per_family(tmp_path):
    code = tmp_path / "code"
    python = Runtime("python3.11", "python", "/usr/bin/python3.11", "3.11.2")
    assert python.link == FRAMES and python.launch(code, 128).runtime_dir is None
    provided = Runtime("provided.al2023", "provided", "", "al2023")
    assert provided.link == RUNTIME_API and provided.launch(code, 128).argv == (str(code / "bootstrap"),)
    assert provided.execution_env is None and python.execution_env == "AWS_Lambda_python3.11"
    node = Runtime("nodejs20.x", "nodejs", "/usr/bin/node", "20.1.0").launch(code, 128)
    assert node.argv[0] == "/usr/bin/node" and node.argv[1].endswith("nodejs/bootstrap.mjs")
    assert node.env["NODE_PATH"].startswith("/opt/nodejs/node20/node_modules:") and node.env["NODE_PATH"].endswith(str(code))
    ruby = Runtime("ruby3.3", "ruby", "/usr/bin/ruby", "3.1.2")
    assert "--disable-gems" in ruby.launch(code, 128).argv  # RubyGems loads on demand
    assert "--disable-gems" not in ruby.launch(code, 128, {"RUBYOPT": "-rbundler/setup"}).argv


def test_missing_interpreters_name_what_to_install(monkeypatch):
    monkeypatch.setattr(registry.shutil, "which", lambda name, *a, **k: None)
    found = RuntimeRegistry.discover(Path("/nonexistent"))
    assert "provided.al2023" in found.identifiers() and "nodejs20.x" not in found.identifiers()
    with pytest.raises(InvalidParameterValue, match="apt install nodejs"):
        found.get("nodejs20.x")
    with pytest.raises(InvalidParameterValue, match="default-jdk-headless"):
        found.get("java17")
    assert found.describe()["provided.al2023"] == "the function's bootstrap"


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """A PATH of shell scripts only: the interpreters a test puts there are all discover() finds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(registry, "PYTHON_DIRS", ())  # not /usr/bin's Pythons either
    return bin_dir


def _other_minors() -> tuple[int, int]:
    """Two Python minors (preferably 12 and 13) that are not the one running the tests (always offered)."""
    first, second = [m for m in (12, 13, 10, 9) if m != sys.version_info[1]][:2]
    return first, second


def test_only_interpreters_that_pass_their_test_run_are_offered(fake_path):
    shim, wrong = _other_minors()
    # a pyenv shim whose version is not selected; a "python3.13" that starts another Python
    _script(fake_path, f"python3.{shim}", f'echo "pyenv: python3.{shim}: command not found" >&2\n'
            f'echo "The \\`python3.{shim}\' command exists in these Python versions:\n  3.{shim}.1" >&2\nexit 127')
    _script(fake_path, f"python3.{wrong}", 'echo 3.11.7; echo /usr/bin/python3.11')
    _script(fake_path, "node", 'printf v20.1.0')
    found = RuntimeRegistry.discover(Path("/nonexistent"))

    offered = found.identifiers()
    assert f"python3.{shim}" not in offered and f"python3.{wrong}" not in offered
    assert f"python{sys.version_info[0]}.{sys.version_info[1]}" in offered  # Squall's own interpreter
    assert found.unavailable[f"python3.{shim}"] == (
        f"{fake_path}/python3.{shim} failed its test run (exit 127: pyenv: python3.{shim}: command not found)")
    assert found.unavailable[f"python3.{wrong}"] == (
        f"{fake_path}/python3.{wrong} failed its test run (it is Python 3.11.7, not 3.{wrong})")
    assert found.unavailable["python3.15"].startswith("not installed: apt install python3.15")
    assert found.unavailable["ruby3.3"] == "not installed: Ruby (`ruby`): apt install ruby"
    with pytest.raises(InvalidParameterValue, match=f"exit 127: pyenv: python3.{shim}: command not found"):
        found.get(f"python3.{shim}")

    # the fake node reports no executable path: the script found on PATH is recorded (symlinks resolved)
    node = found.get("nodejs20.x")
    assert (node.interpreter, node.version) == (str((fake_path / "node").resolve()), "20.1.0")
    assert found.warning("nodejs20.x") is None and found.warning("nodejs18.x") is None
    assert found.warning("nodejs22.x") == (
        "nodejs22.x is served by Node.js 20.1.0, older than Lambda's Node.js 22: code that needs 22 may fail")
    assert found.warnings() == {"nodejs22.x": found.warning("nodejs22.x")}
    assert found.warning("python3.15") is None  # not offered: no warning, its reason is in unavailable
    described = found.describe()
    assert described["nodejs20.x"] == node.interpreter
    assert described["nodejs22.x"] == node.interpreter  # the warning is /health's runtimes_warnings


def test_failing_test_run_of_a_family_and_the_real_executable_behind_a_shim(fake_path, tmp_path):
    real = _script(tmp_path, "node-20", "exit 0")  # where the shim's node really is
    _script(fake_path, "node", f'printf "v18.19.0\\n{real}"')  # a shim: reports the real execPath
    _script(fake_path, "ruby", 'echo "rbenv: ruby: command not found" >&2; exit 127')
    found = RuntimeRegistry.discover(Path("/nonexistent"))
    assert found.get("nodejs18.x").interpreter == str(real.resolve())
    assert found.warning("nodejs18.x") is None
    assert "older than Lambda's Node.js 20" in found.warning("nodejs20.x")
    assert found.unavailable["ruby3.4"] == (
        f"{fake_path}/ruby failed its test run (exit 127: rbenv: ruby: command not found) "
        "(install: Ruby (`ruby`): apt install ruby)")
    assert "java21" in found.unavailable and "ruby3.4" not in found.identifiers()


def test_warnings_follow_the_label():
    assert Runtime("ruby3.4", "ruby", "/usr/bin/ruby", "3.1.2").warning.startswith(
        "ruby3.4 is served by Ruby 3.1.2, older than Lambda's Ruby 3.4")
    assert Runtime("ruby3.2", "ruby", "/usr/bin/ruby", "3.3.0").warning is None
    java21 = Runtime("java21", "java", "/usr/lib/jvm/java-17/bin/java", "17.0.15").warning
    assert java21 is not None and "JDK 17.0.15, older than Lambda's Java 21" in java21 and "--release 17" in java21
    assert Runtime("java17", "java", "/usr/bin/java", "1.8.0_392").warning is not None  # Java 8
    assert Runtime("java17", "java", "/usr/bin/java", "21.0.2").warning is None
    assert Runtime("python3.12", "python", "/usr/bin/python3.12", "3.12.1").warning is None
    assert Runtime("provided.al2023", "provided", "", "al2023").warning is None


def test_no_mono_means_no_dotnet_and_says_what_to_install(fake_path):
    found = RuntimeRegistry.discover(Path("/nonexistent"))
    assert "dotnet8" not in found.identifiers() and "dotnet6" not in found.identifiers()
    assert "apt install mono-runtime mono-mcs" in found.unavailable["dotnet8"]
    with pytest.raises(InvalidParameterValue, match="apt install mono-runtime mono-mcs"):
        found.get("dotnet8")


def test_mono_without_mcs_is_not_offered(fake_path):
    _script(fake_path, "mono", 'echo "Mono JIT compiler version 6.8.0.105 (Debian)"')
    found = RuntimeRegistry.discover(Path("/nonexistent"))
    assert "dotnet8" not in found.identifiers()
    assert "has no `mcs`" in found.unavailable["dotnet8"] and "mono-mcs" in found.unavailable["dotnet8"]
    _script(fake_path, "mcs", "exit 0")
    found = RuntimeRegistry.discover(Path("/nonexistent"))
    assert {"dotnet8", "dotnet6"} <= set(found.identifiers())
    assert "served by Mono 6.8.0.105" in found.warning("dotnet8") and "netstandard2.0" in found.warning("dotnet8")
    launch = next(r for r in found.runtimes if r.identifier == "dotnet8")
    assert launch.family == "dotnet" and not launch.prepared


def test_dotnet_lists_parse_the_newest_runtime_of_each_major():
    from squall.runtimes.registry import parse_dotnet_lists

    runtimes, sdks = parse_dotnet_lists(
        "Microsoft.AspNetCore.App 8.0.11 [/usr/lib/dotnet/shared/Microsoft.AspNetCore.App]\n"
        "Microsoft.NETCore.App 8.0.2 [/usr/lib/dotnet/shared/Microsoft.NETCore.App]\n"
        "Microsoft.NETCore.App 8.0.11 [/usr/lib/dotnet/shared/Microsoft.NETCore.App]\n"
        "Microsoft.NETCore.App 10.0.0-rc.2.25502.107 [/usr/lib/dotnet/shared/Microsoft.NETCore.App]\n",
        "8.0.404 [/usr/lib/dotnet/sdk]\n10.0.100-rc.2 [/usr/lib/dotnet/sdk]\n")
    assert runtimes == {8: "8.0.11", 10: "10.0.0-rc.2.25502.107"}
    assert sdks == ("8.0.404", "10.0.100-rc.2")


def test_a_dotnet_host_serves_only_the_majors_it_has_and_says_why_not():
    from squall.runtimes.registry import DotnetHost

    host = DotnetHost("/usr/lib/dotnet/dotnet", {8: "8.0.11"}, ("8.0.404",))
    assert host.serves("dotnet8") == "8.0.11" and host.serves("dotnet10") is None and host.serves("python3.11") is None
    assert "has no .NET 10 runtime" in host.why_not("dotnet10") and "8.x" in host.why_not("dotnet10")
    assert host.why_not("dotnet8") == ""
    without_sdk = DotnetHost("/usr/lib/dotnet/dotnet", {8: "8.0.11"}, problem="no .NET SDK")
    assert without_sdk.serves("dotnet8") is None and without_sdk.why_not("dotnet8") == "no .NET SDK"
    assert DotnetHost().serves("dotnet8") is None and DotnetHost().why_not("dotnet8") == ""


def test_a_dotnet_host_outside_usr_or_without_an_sdk_is_not_used(tmp_path, monkeypatch):
    from squall.runtimes import registry

    script = tmp_path / "dotnet"
    script.write_text('#!/bin/sh\ncase "$1" in --list-runtimes) echo "Microsoft.NETCore.App 8.0.1 [/x]";;\n'
                      '--list-sdks) [ -n "$NO_SDK" ] || echo "8.0.100 [/x]";; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    host = registry.find_dotnet_host()
    assert host.runtimes == {8: "8.0.1"} and "outside /usr" in host.problem and host.serves("dotnet8") is None
    monkeypatch.setenv("NO_SDK", "1")
    assert "no .NET SDK" in registry.find_dotnet_host().problem
