"""Which runtimes a server offers, and how each one's environments are launched."""

from __future__ import annotations

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
