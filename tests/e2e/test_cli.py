"""The ``squall`` command line, driven as a user drives it, against a real server."""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from squall.cli.client import CliError
from squall.cli.deploy import DeployOptions, Waiter, deploy_function, function_name_for
from squall.cli.main import cli
from tests.conftest import create_function, make_zip, server_at, start_server, unique_name

ECHO = "def handler(event, context):\n    print('event', event)\n    return {'got': event}\n"


def user_env(endpoint: str) -> dict[str, str]:
    """The environment of a user with no AWS configuration at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("SQUALL_ENDPOINT", "SQUALL_DATA_DIR")}
    env.update(
        SQUALL_ENDPOINT=endpoint,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    running = server_at(endpoint)
    if running is not None:  # the CLI finds the server's administrator key in its data dir
        env["SQUALL_DATA_DIR"] = str(running.data_dir)
    return env


def squall(endpoint: str, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "squall.cli.main", *args],
        env=user_env(endpoint),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def invoke(lam, name: str, event: object) -> dict:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event))
    return json.loads(response["Payload"].read())


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> None:
    assert result.returncode == code, result
    assert "Traceback (most recent call last)" not in result.stderr


# ---------------------------------------------------------------------------- deploy


def test_deploy_directory_then_redeploy(server, lam, tmp_path: Path):
    name = unique_name("cli")
    code_dir = tmp_path / name
    code_dir.mkdir()
    (code_dir / "app.py").write_text("def handler(event, context):\n    return 'v1'\n")

    first = squall(server.endpoint, "deploy", str(code_dir))
    assert first.returncode == 0, first.stderr
    config = lam.get_function_configuration(FunctionName=name)
    assert config["State"] == "Active"
    assert config["Role"] == "arn:aws:iam::123456789012:role/squall-function"
    assert (config["Runtime"], config["Handler"], config["MemorySize"]) == ("python3.11", "app.handler", 128)
    assert f"arn:aws:lambda:us-east-1:123456789012:function:{name}" in first.stdout
    assert "python3.11" in first.stdout and "app.handler" in first.stdout
    assert config["CodeSha256"] in first.stdout and f"({config['CodeSize']} bytes)" in first.stdout
    assert "Packaging" in first.stderr and f"Creating function {name}... done" in first.stderr
    assert f"Waiting for {name} to become Active... done" in first.stderr
    assert invoke(lam, name, {}) == "v1"

    (code_dir / "app.py").write_text("def handler(event, context):\n    return 'v2'\n")
    second = squall(server.endpoint, "deploy", str(code_dir), "--memory", "256")
    assert second.returncode == 0, second.stderr
    assert f"Updating code of {name}... done" in second.stderr
    assert f"Updating configuration of {name} (memory)... done" in second.stderr
    updated = lam.get_function_configuration(FunctionName=name)
    assert updated["MemorySize"] == 256 and updated["LastUpdateStatus"] == "Successful"
    assert updated["Timeout"] == config["Timeout"]  # only what was given changes
    assert updated["CodeSha256"] != config["CodeSha256"] and updated["CodeSha256"] in second.stdout
    assert "256 MB" in second.stdout
    assert invoke(lam, name, {}) == "v2"


def test_deploy_zip_then_invoke_with_payload_and_log(server, lam, tmp_path: Path):
    stem = unique_name("zip")
    package = tmp_path / f"{stem}.zip"
    code = (
        "import os\n"
        "def run(event, context):\n"
        "    print('hello from run')\n"
        "    return {'n': event['n'] + 1, 'greeting': os.environ['GREETING']}\n"
    )
    package.write_bytes(make_zip({"main.py": code}))

    deployed = squall(
        server.endpoint, "deploy", str(package), "--handler", "main.run", "--env", "GREETING=hi",
        "--timeout", "5", "--description", "from a zip",
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "Warning" not in deployed.stderr
    config = lam.get_function_configuration(FunctionName=stem)
    assert config["Handler"] == "main.run" and config["Timeout"] == 5
    assert config["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert config["Description"] == "from a zip"

    result = squall(server.endpoint, "invoke", stem, "--payload", '{"n": 1}', "--log")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": 2, "greeting": "hi"}
    assert '\n  "n": 2' in result.stdout  # pretty-printed
    for marker in ("START RequestId:", "hello from run", "END RequestId:", "REPORT RequestId:"):
        assert marker in result.stderr
    assert "START" not in result.stdout


def test_deploy_warns_about_a_missing_handler_module_and_names_from_the_path(server, tmp_path: Path):
    code_dir = tmp_path / f"My fn.{unique_name('v')}"
    code_dir.mkdir()
    (code_dir / "handler.py").write_text(ECHO)
    result = squall(server.endpoint, "deploy", str(code_dir))
    assert result.returncode == 0, result.stderr
    assert "Warning: the package has no app.py" in result.stderr
    assert f"Function:     My-fn-{code_dir.name.split('.', 1)[1]}" in result.stdout

    missing = squall(server.endpoint, "deploy", str(tmp_path / "nowhere"))
    assert_clean_failure(missing)
    assert "does not exist" in missing.stderr


def test_deploy_reports_a_failed_function(tmp_path: Path):
    """A function that ends Failed: StateReason shown, CliError (exit 1)."""

    class NotFound(Exception):
        pass

    class StubLambda:
        class exceptions:
            ResourceNotFoundException = NotFound

        created = False

        def get_function_configuration(self, FunctionName: str) -> dict:
            if not self.created:
                raise NotFound(FunctionName)
            return {"FunctionName": FunctionName, "State": "Failed", "StateReasonCode": "InvalidZipFileException",
                    "StateReason": "Could not unpack the code"}

        def create_function(self, **params: object) -> dict:
            self.created = True
            return {"State": "Pending"}

    (tmp_path / "app.py").write_text(ECHO)
    with pytest.raises(CliError, match="InvalidZipFileException: Could not unpack the code"):
        deploy_function(StubLambda(), tmp_path, DeployOptions(name="broken"), Waiter(sleep=lambda _: None))


# ---------------------------------------------------------------------------- invoke


def test_invoke_function_error_exits_1(server, lam):
    name = create_function(lam, "def handler(event, context):\n    raise ValueError('boom')\n")
    result = squall(server.endpoint, "invoke", name)
    assert_clean_failure(result)
    assert "Error: ValueError: boom" in result.stderr
    assert 'raise ValueError(\'boom\')' in result.stderr  # the function's stack trace
    assert result.stdout == ""


def test_invoke_rejects_bad_payload_before_calling(server, tmp_path: Path):
    name = unique_name("absent")
    result = squall(server.endpoint, "invoke", name, "--payload", "{not json")
    assert_clean_failure(result, code=2)
    assert "Invalid value for --payload: not valid JSON" in result.stderr
    assert "ResourceNotFoundException" not in result.stderr  # it never called the server

    bad_file = tmp_path / "event.json"
    bad_file.write_text("[1,")
    from_file = squall(server.endpoint, "invoke", name, "--payload-file", str(bad_file))
    assert_clean_failure(from_file, code=2)
    assert f"{bad_file} is not valid JSON" in from_file.stderr

    both = squall(server.endpoint, "invoke", name, "--payload", "{}", "--payload-file", str(bad_file))
    assert_clean_failure(both, code=2)


def test_invoke_payload_file_and_missing_function(server, lam, tmp_path: Path):
    name = create_function(lam, ECHO)
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    result = squall(server.endpoint, "invoke", name, "--payload-file", str(event))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"got": {"from": "file"}}

    missing = squall(server.endpoint, "invoke", unique_name("absent"))
    assert_clean_failure(missing)
    assert "Error: ResourceNotFoundException: Function not found:" in missing.stderr


# ---------------------------------------------------------------------------- functions, delete


def test_functions_table(server, lam):
    small = create_function(lam, ECHO)
    large = create_function(lam, ECHO, MemorySize=512, Timeout=30)
    result = squall(server.endpoint, "functions")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "STATE", "LAST", "MODIFIED", "SNAPSHOTS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[small][1:7] == ["python3.11", "128", "MB", "3", "s", "Active"]
    assert rows[large][1:7] == ["python3.11", "512", "MB", "30", "s", "Active"]
    assert len(rows[small]) == 10 and rows[small][9] == "-"  # date and time; no SnapStart snapshot


def test_runtimes_table(server):
    result = squall(server.endpoint, "runtimes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUNTIME", "SERVED", "BY"]
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[1:] if line.strip() and not line.startswith("NOT")}
    assert rows["python3.11"].startswith("/") and rows["provided.al2023"] == "the function's bootstrap"
    if shutil.which("node"):
        assert rows["nodejs20.x"].endswith("node")


def test_functions_when_there_are_none(tmp_path: Path):
    empty = start_server(tmp_path / "data")
    try:
        result = squall(empty.endpoint, "functions")
    finally:
        empty.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "No functions yet. Deploy one with: squall deploy ./my-fn"


def test_delete(server, lam):
    name = create_function(lam, ECHO)
    declined = squall(server.endpoint, "delete", name, input="n\n")
    assert declined.returncode == 0 and "Error" not in declined.stderr  # declining is not a failure
    assert "Not deleted" in declined.stderr
    assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == name

    confirmed = squall(server.endpoint, "delete", name, input="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"Deleted {name}." in confirmed.stdout
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name)

    again = squall(server.endpoint, "delete", name, "--yes")
    assert_clean_failure(again)
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert f"Error: ResourceNotFoundException: Function not found: {arn}" in again.stderr


# ---------------------------------------------------------------------------- logs


def test_logs_after_invoke_and_since(server, lam):
    name = create_function(lam, ECHO)
    invoke(lam, name, {"marker": "first-call"})
    result = squall(server.endpoint, "logs", name)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(" START RequestId:" in line for line in lines)
    assert any(" REPORT RequestId:" in line for line in lines)
    assert any("first-call" in line for line in lines)
    # A short timestamp prefix: HH:MM:SS.mmm
    assert all(line[2] == ":" and line[5] == ":" and line[8] == "." for line in lines if line[:1].isdigit())

    time.sleep(1.2)
    recent = squall(server.endpoint, "logs", name, "--since", "1s")
    assert recent.returncode == 0, recent.stderr
    assert "first-call" not in recent.stdout
    assert "No log events" in recent.stderr

    bad = squall(server.endpoint, "logs", name, "--since", "ten minutes")
    assert_clean_failure(bad, code=2)
    assert "30s, 10m, 2h, 1d" in bad.stderr

    nothing = squall(server.endpoint, "logs", unique_name("absent"))
    assert_clean_failure(nothing)
    assert "Function not found" in nothing.stderr


def _lines_of(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} never appeared; got {seen!r}")


def test_logs_follow(server, lam):
    name = create_function(lam, ECHO)
    follower = subprocess.Popen(
        [sys.executable, "-m", "squall.cli.main", "logs", name, "--follow"],
        env=user_env(server.endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = _lines_of(follower.stdout), _lines_of(follower.stderr)
        seen_err: list[str] = []
        _wait_for(err, f"No logs for {name} yet", seen_err)  # no group yet: it keeps waiting

        seen: list[str] = []
        invoke(lam, name, {"marker": "follow-one"})
        _wait_for(out, "follow-one", seen)
        _wait_for(out, "REPORT RequestId:", seen)
        invoke(lam, name, {"marker": "follow-two"})
        _wait_for(out, "follow-two", seen)
        _wait_for(out, "REPORT RequestId:", seen)
        time.sleep(1.2)  # two more polls: nothing printed again
        while not out.empty():
            seen.append(out.get())
        assert sum("follow-one" in line for line in seen) == 1
        assert sum("follow-two" in line for line in seen) == 1
        assert follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(timeout=10)


# ---------------------------------------------------------------------------- failures and parsing


def test_unreachable_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for args in (["functions"], ["invoke", "hello"], ["logs", "hello"]):
        result = squall(url, *args)
        assert_clean_failure(result)
        assert f"Cannot reach Squall at {url}." in result.stderr
        assert "squall server" in result.stderr and "SQUALL_ENDPOINT" in result.stderr


def test_argument_parsing():
    runner = CliRunner()
    bad_env = runner.invoke(cli, ["deploy", ".", "--env", "NOEQUALS"])
    assert bad_env.exit_code == 2 and "KEY=VALUE" in bad_env.output
    assert runner.invoke(cli, ["logs", "fn", "--since", "5x"]).exit_code == 2
    assert runner.invoke(cli, ["invoke"]).exit_code == 2
    assert "--endpoint" in runner.invoke(cli, ["functions", "--help"]).output
    assert function_name_for(Path("/tmp/my.package.zip")) == "my-package"
    assert function_name_for(Path("/srv/hello world_v2")) == "hello-world_v2"
    assert len(function_name_for(Path("/x/" + "a" * 100))) == 64


# ---------------------------------------------------------------------------- versions and aliases


def test_deploy_publish_versions_alias_and_invoke_through_it(server, lam, tmp_path: Path):
    name = unique_name("pub")
    code_dir = tmp_path / name
    code_dir.mkdir()
    for tag in ("v1", "v2"):
        (code_dir / "app.py").write_text(f"def handler(event, context):\n    return {tag!r}\n")
        result = squall(server.endpoint, "deploy", str(code_dir), "--publish")
        assert result.returncode == 0, result.stderr
        assert "Publishing a version of" in result.stderr
    assert "Version" in result.stdout and " 2" in result.stdout

    made = squall(server.endpoint, "alias", name, "live", "--version", "1")
    assert made.returncode == 0, made.stderr
    assert f":{name}:live → version 1" in made.stdout
    ran = squall(server.endpoint, "invoke", f"{name}:live")
    assert ran.returncode == 0 and ran.stdout.strip() == '"v1"' and "(ran version 1)" in ran.stderr

    split = squall(server.endpoint, "alias", name, "live", "--weight", "2=0.25")
    assert split.returncode == 0 and "version 1 (75%) and version 2 (25%)" in split.stdout
    listing = squall(server.endpoint, "versions", name)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert set(rows) == {"$LATEST", "1", "2"}
    assert "live" in rows["1"] and "live (25%)" in rows["2"]

    moved = squall(server.endpoint, "alias", name, "live", "--version", "2", "--no-weight")
    assert moved.returncode == 0 and moved.stdout.strip().endswith("→ version 2")
    assert squall(server.endpoint, "invoke", f"{name}:live").stdout.strip() == '"v2"'

    bad = squall(server.endpoint, "alias", name, "live", "--weight", "two=half")
    assert_clean_failure(bad, 2)
    assert "VERSION=WEIGHT" in bad.stderr
    missing = squall(server.endpoint, "alias", name, "beta")
    assert_clean_failure(missing)
    assert "--version" in missing.stderr


def test_url_makes_shows_and_deletes_a_public_url_and_deploy_prints_one(server, lam, tmp_path: Path):
    import http.client
    from urllib.parse import urlsplit

    name = unique_name("cli-url")
    code_dir = tmp_path / name
    code_dir.mkdir()
    (code_dir / "app.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi ' + event['rawPath']}\n")
    deployed = squall(server.endpoint, "deploy", str(code_dir), "--url")
    assert deployed.returncode == 0, deployed.stderr
    url = lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
    assert "URL" in deployed.stdout and url in deployed.stdout
    shown = squall(server.endpoint, "url", name)
    assert shown.returncode == 0 and shown.stdout.strip() == url and "Made a URL" not in shown.stderr
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=30)
    conn.request("GET", "/there", headers={"Host": parts.netloc})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"hi /there")  # public: the statement was added
    conn.close()
    removed = squall(server.endpoint, "url", name, "--delete")
    assert removed.returncode == 0 and "Removed the URL" in removed.stderr
    again = squall(server.endpoint, "url", name, "--auth", "iam")
    assert again.returncode == 0 and "Made a URL" in again.stderr and "AWS_IAM" in again.stderr
    assert lam.get_function_url_config(FunctionName=name)["AuthType"] == "AWS_IAM"
    missing = squall(server.endpoint, "url", unique_name("nope"))
    assert missing.returncode != 0 and "not found" in (missing.stderr + missing.stdout).lower()
