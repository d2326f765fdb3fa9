"""Server lifecycle: restart persistence, clean shutdown, crash clean-up, no orphans."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from tests.conftest import create_function, processes_with_arg, require, start_server

SLEEPER = """
import subprocess
def handler(event, context):
    subprocess.Popen(["sleep", event["tag"]])
    subprocess.Popen(["setsid", "sleep", str(int(event["tag"]) + 1)])
    return "spawned"
"""


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_functions_survive_restart_and_shutdown_leaves_no_processes(tmp_path):
    server = start_server(tmp_path / "data")
    try:
        lam = server.client()
        name = create_function(lam, SLEEPER)
        assert json.loads(lam.invoke(FunctionName=name, Payload='{"tag": "4441"}')["Payload"].read()) == "spawned"
        assert wait_until(lambda: len(processes_with_arg("4441", "4442")) == 2)
        worker_pids = processes_with_arg("4441")
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert worker_pids
    assert wait_until(lambda: not processes_with_arg("4441", "4442")), "environment processes outlived the server"

    server = start_server(tmp_path / "data")
    try:
        lam = server.client()
        config = lam.get_function_configuration(FunctionName=name)
        assert config["State"] == "Active"
        response = lam.invoke(FunctionName=name, Payload='{"tag": "4451"}')
        assert json.loads(response["Payload"].read()) == "spawned"
        # Deleting the function stops its environments and everything they spawned.
        lam.delete_function(FunctionName=name)
        assert wait_until(lambda: not processes_with_arg("4451", "4452"))
    finally:
        server.stop()


@pytest.mark.parametrize("isolation", ["process", "linux"])
def test_environments_left_by_a_killed_server_are_cleaned_up_at_start(tmp_path, isolation):
    if isolation == "linux":
        require(os.geteuid() == 0, "the linux sandbox needs root")
    server = start_server(tmp_path / "data", "--isolation", isolation)
    lam = server.client()
    name = create_function(lam, SLEEPER)
    lam.invoke(FunctionName=name, Payload='{"tag": "4461"}')
    assert wait_until(lambda: len(processes_with_arg("4461", "4462")) == 2)
    os.killpg(server.process.pid, signal.SIGKILL)  # the server and the shell around it, not the sessions
    server.process.wait()
    if isolation == "process":
        # Plain processes outlive a SIGKILLed server; the next start must find them.
        assert processes_with_arg("4461", "4462"), "the environments should have outlived a SIGKILLed server"

    server = start_server(tmp_path / "data", "--isolation", isolation)
    try:
        assert wait_until(lambda: not processes_with_arg("4461", "4462")), "orphans were not reaped at start"
        with urllib.request.urlopen(f"{server.endpoint}/health") as response:
            health = json.loads(response.read())
        assert health["functions"] == 1 and health["isolation"]["name"] == isolation
    finally:
        server.stop()


def test_sigint_lets_in_flight_invokes_finish(tmp_path):
    import threading

    server = start_server(tmp_path / "data")
    lam = server.client()
    name = create_function(lam, "import time\ndef handler(e, c):\n    time.sleep(1)\n    return 'finished'\n", Timeout=10)
    result: dict[str, object] = {}

    def call() -> None:
        result["payload"] = json.loads(lam.invoke(FunctionName=name)["Payload"].read())

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.4)
    assert server.stop(signal.SIGINT) == 0
    thread.join(10)
    assert result.get("payload") == "finished"
