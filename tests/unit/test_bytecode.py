"""Byte-compiling a Python function's code at deploy time (squall/runtimes/bytecode.py)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

from squall.runtimes.bytecode import precompile
from squall.runtimes.registry import Runtime

PYTHON = Runtime("python3.11", "python", sys.executable, "%d.%d.%d" % sys.version_info[:3])
TAG = sys.implementation.cache_tag


def tree_with(tmp_path: Path, files: dict[str, str]) -> Path:
    tree = tmp_path / "code"
    for name, text in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tree


def test_every_module_gets_bytecode_for_the_runtimes_interpreter(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"app.py": "def handler(e, c):\n    return e\n", "lib/pkg/__init__.py": "X = 1\n"})
    assert asyncio.run(precompile(PYTHON, tree))
    assert (tree / "__pycache__" / f"app.{TAG}.pyc").is_file()
    assert (tree / "lib" / "pkg" / "__pycache__" / f"__init__.{TAG}.pyc").is_file()


def test_a_module_that_does_not_compile_leaves_the_others_compiled(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"good.py": "A = 1\n", "old.py": "print 'python 2'\n"})
    assert not asyncio.run(precompile(PYTHON, tree))  # reported, not raised
    assert (tree / "__pycache__" / f"good.{TAG}.pyc").is_file()
    assert not (tree / "__pycache__" / f"old.{TAG}.pyc").exists()


def test_other_runtimes_and_trees_without_python_are_left_alone(tmp_path: Path) -> None:
    node = Runtime("nodejs20.x", "nodejs", "/usr/bin/node", "20.0.0")
    tree = tree_with(tmp_path, {"index.py": "A = 1\n"})
    assert not asyncio.run(precompile(node, tree))
    assert not (tree / "__pycache__").exists()
    plain = tree_with(tmp_path / "b", {"data.txt": "hello"})
    assert asyncio.run(precompile(PYTHON, plain))  # nothing to do, no interpreter started
    assert sorted(p.name for p in plain.iterdir()) == ["data.txt"]


def test_a_compiler_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    hanging = tmp_path / "python"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(hanging.stat().st_mode | stat.S_IEXEC)
    runtime = Runtime("python3.11", "python", str(hanging), "3.11.0")
    tree = tree_with(tmp_path, {"app.py": "A = 1\n"})
    assert not asyncio.run(precompile(runtime, tree, timeout=0.3))


def test_a_missing_interpreter_is_reported_not_raised(tmp_path: Path) -> None:
    runtime = Runtime("python3.11", "python", str(tmp_path / "no-such-python"), "3.11.0")
    tree = tree_with(tmp_path, {"app.py": "A = 1\n"})
    assert not asyncio.run(precompile(runtime, tree))
    assert not os.path.exists(tree / "__pycache__")


def test_the_compiler_is_not_forked_from_the_server(tmp_path: Path, monkeypatch) -> None:
    # a fork would mark the server's memory copy-on-write; subprocess.Popen uses vfork/exec
    import subprocess

    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    tree = tree_with(tmp_path, {"app.py": "A = 1\n"})
    assert asyncio.run(precompile(PYTHON, tree))
    assert started and started[0][0] == sys.executable


def test_a_tree_is_compiled_once_per_interpreter(tmp_path: Path, monkeypatch) -> None:
    from squall.runtimes import bytecode

    calls = []

    async def fake(runtime, tree, timeout=bytecode.COMPILE_TIMEOUT_S):
        calls.append((runtime.interpreter, tree))
        return True

    monkeypatch.setattr(bytecode, "precompile", fake)
    tree = tree_with(tmp_path, {"app.py": "A = 1\n"})
    other = Runtime("python3.12", "python", "/usr/bin/python3.12", "3.12.0")
    compiler = bytecode.Precompiler()

    async def scenario() -> None:
        await compiler.ensure(PYTHON, tree)
        await compiler.ensure(PYTHON, tree)  # a configuration update: nothing to do
        await compiler.ensure(other, tree)  # another interpreter: its own cache tag
        tree.rename(tmp_path / "old")
        tree.mkdir()  # extracted again: a new directory
        await compiler.ensure(PYTHON, tree)

    asyncio.run(scenario())
    assert calls == [(sys.executable, tree), ("/usr/bin/python3.12", tree), (sys.executable, tree)]
