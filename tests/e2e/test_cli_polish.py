"""The CLI's answers to mistakes, against a real server: a bad function name or an unknown
runtime is a usage error (exit 2) said in words, not botocore's regular expression or enum;
``squall logs`` of no function fails; declining ``squall delete`` is not an error. And the
CloudWatch Logs subset's log-group ARNs carry the server's region and account.

The server runs with a region and account of its own (not the defaults), so that what the
ARNs carry is seen to come from its settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ParamValidationError

from squall.cli.client import CliError, Connection, server_errors
from tests.conftest import create_function, start_server, unique_name

REGION = "eu-west-1"
ACCOUNT = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/squall-function"
HELLO = "def handler(event, context):\n    print('hello from', event)\n    return 'ok'\n"
NAME_RULES = "letters, digits, hyphens and underscores, up to 64 characters"


@pytest.fixture(scope="module")
def squall(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("squall-cli-polish"), "--isolation", "process",
                           env={"SQUALL_REGION": REGION, "SQUALL_ACCOUNT_ID": ACCOUNT})
    yield running
    running.stop()


def client(server, service: str):
    key_id, secret = server.credentials
    return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, read_timeout=120))


@pytest.fixture(scope="module")
def lam(squall):
    return client(squall, "lambda")


@pytest.fixture(scope="module")
def function(lam):
    return create_function(lam, HELLO, Role=ROLE)


def _env(server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"SQUALL_ENDPOINT": server.endpoint, "SQUALL_DATA_DIR": str(server.data_dir), "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    return env


@pytest.fixture
def connection(squall, monkeypatch) -> Connection:
    """The CLI's own connection, in this process, as the server's administrator."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SQUALL_DATA_DIR", str(squall.data_dir))
    return Connection(squall.endpoint, REGION)


def run_cli(server, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], env=_env(server), capture_output=True,
                          text=True, timeout=60, input=input)


def assert_exit(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    for dump in ("regular expression", "enum value set", "Parameter validation failed"):
        assert dump not in result.stderr, result.stderr


# ------------------------------------------------------------------ names and runtimes


def test_deploy_with_a_bad_name_is_a_usage_error(squall, lam, tmp_path: Path):
    (tmp_path / "app.py").write_text(HELLO)
    result = run_cli(squall, "deploy", str(tmp_path), "--name", "bad name!", "--runtime", "python9")
    assert_exit(result, 2)
    assert "'bad name!' is not a function name" in result.stderr and NAME_RULES in result.stderr
    assert "Packaging" not in result.stderr  # refused before anything was done


def test_deploy_with_an_unknown_runtime_lists_what_the_server_offers(squall, lam, tmp_path: Path):
    (tmp_path / "app.py").write_text(HELLO)
    name = unique_name("rt")
    result = run_cli(squall, "deploy", str(tmp_path), "--name", name, "--runtime", "python9")
    assert_exit(result, 2)
    assert "unknown runtime 'python9'" in result.stderr
    assert "This server offers: " in result.stderr and "python3.11" in result.stderr
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name)


@pytest.mark.parametrize("command", [("invoke",), ("logs",), ("delete", "--yes"), ("versions",), ("url",)])
def test_commands_refuse_a_bad_name(squall, command):
    result = run_cli(squall, command[0], "bad name!", *command[1:])
    assert_exit(result, 2)
    assert "'bad name!' is not a function name" in result.stderr and NAME_RULES in result.stderr


def test_qualified_names_and_arns_still_pass(squall, function):
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
    for name in (function, arn, f"{function}:$LATEST"):
        result = run_cli(squall, "invoke", name)
        assert_exit(result, 0)
        assert result.stdout.strip() == '"ok"'


def test_the_servers_validation_errors_are_said_in_words_too(connection):
    """What got past the CLI's own checks: the server's regex / enum message, rewritten (exit 2)."""
    with pytest.raises(CliError) as bad_name:
        with server_errors(connection.endpoint):
            connection.lam.invoke(FunctionName="bad name!")
    assert bad_name.value.exit_code == 2
    assert NAME_RULES in bad_name.value.format_message()
    assert "regular expression" not in bad_name.value.format_message()

    with pytest.raises(CliError) as bad_runtime:
        with server_errors(connection.endpoint):
            connection.lam.create_function(FunctionName=unique_name("rt"), Runtime="python9", Role=ROLE,
                                           Handler="app.handler", Code={"ZipFile": b"PK"})
    message = bad_runtime.value.format_message()
    assert bad_runtime.value.exit_code == 2
    assert message.startswith("Unknown runtime 'python9'") and "python3.11" in message
    assert "enum value set" not in message


def test_botocore_parameter_errors_are_one_line(connection):
    with pytest.raises(CliError) as caught:
        with server_errors(connection.endpoint):
            connection.lam.create_function(FunctionName="x", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                                           Code={"ZipFile": b"PK"}, MemorySize="lots")
    assert caught.value.exit_code == 2
    assert caught.value.format_message() == "Invalid request: Invalid type for parameter MemorySize, value: lots, " \
                                            "type: <class 'str'>."


def test_main_catches_parameter_errors_that_escape_a_command(monkeypatch, capsys):
    import squall.cli.main as main_module

    def failing() -> None:
        raise ParamValidationError(report="Invalid value for parameter Runtime, value: x, valid values: a, b, c\n"
                                          "Another problem")

    monkeypatch.setattr(main_module, "cli", failing)
    with pytest.raises(SystemExit) as exited:
        main_module.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "Error: Invalid request: Invalid value for parameter Runtime, value: x."


# ------------------------------------------------------------------ logs


def test_logs_of_no_function_fails(squall):
    result = run_cli(squall, "logs", unique_name("nosuch"))
    assert_exit(result, 1)
    assert "Error: Function not found" in result.stderr and "squall functions" in result.stderr
    follow = run_cli(squall, "logs", unique_name("nosuch"), "--follow")  # fails at once rather than waiting forever
    assert_exit(follow, 1)
    assert "Function not found" in follow.stderr


def test_logs_of_a_function_without_logs_yet_is_fine(squall, lam):
    name = create_function(lam, HELLO, Role=ROLE)
    result = run_cli(squall, "logs", name)
    assert_exit(result, 0)
    assert f"No logs for {name} yet" in result.stderr


def test_logs_of_an_invoked_function_by_name_and_arn(squall, lam, function):
    lam.invoke(FunctionName=function, Payload=b'{"marker": "polish"}')
    for name in (function, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"):
        result = run_cli(squall, "logs", name)
        assert_exit(result, 0)
        assert "polish" in result.stdout


def test_log_group_arns_carry_the_servers_region_and_account(squall, lam, function):
    lam.invoke(FunctionName=function, Payload=b"{}")
    logs = client(squall, "logs")
    group = f"/aws/lambda/{function}"
    found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in found] == [group]
    assert found[0]["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    assert found[0]["logGroupArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"


# ------------------------------------------------------------------ delete


@pytest.mark.parametrize("answer", ["n\n", "", None], ids=["no", "empty-answer", "stdin-closed"])
def test_declining_delete_is_not_an_error(squall, lam, answer):
    name = create_function(lam, HELLO, Role=ROLE)
    result = run_cli(squall, "delete", name, input=answer) if answer is not None else \
        subprocess.run([sys.executable, "-m", "squall.cli.main", "delete", name], env=_env(squall),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert_exit(result, 0)
    assert "Not deleted" in result.stderr and "Error" not in result.stderr
    assert result.stdout == ""
    assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == name

    deleted = run_cli(squall, "delete", name, input="y\n")
    assert_exit(deleted, 0)
    assert f"Deleted {name}." in deleted.stdout

