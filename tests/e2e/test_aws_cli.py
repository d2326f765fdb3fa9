"""The AWS CLI (v1), unchanged, against a real server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from tests.conftest import ROLE, make_zip, unique_name


def aws(server, tmp_path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = server.aws_env()
    result = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", server.endpoint, "--output", "json", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_aws_cli_flow(server, tmp_path):
    name = unique_name("cli")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(make_zip({"app.py": "def handler(event, context):\n    print('cli says hi')\n    return {'sum': event['a'] + event['b']}\n"}))
    created = json.loads(aws(server, tmp_path, "lambda", "create-function", "--function-name", name,
                             "--runtime", "python3.11", "--role", ROLE, "--handler", "app.handler",
                             "--zip-file", f"fileb://{zip_path}").stdout)
    assert created["FunctionName"] == name and created["Runtime"] == "python3.11"
    aws(server, tmp_path, "lambda", "wait", "function-active-v2", "--function-name", name)

    out = tmp_path / "out.json"
    invoked = json.loads(aws(server, tmp_path, "lambda", "invoke", "--function-name", name,
                             "--payload", '{"a": 2, "b": 3}',
                             "--log-type", "Tail", str(out)).stdout)
    assert invoked["StatusCode"] == 200 and invoked["ExecutedVersion"] == "$LATEST"
    assert json.loads(out.read_text()) == {"sum": 5}
    assert "cli says hi" in base64.b64decode(invoked["LogResult"]).decode()

    listed = json.loads(aws(server, tmp_path, "lambda", "list-functions").stdout)
    assert name in [f["FunctionName"] for f in listed["Functions"]]
    got = json.loads(aws(server, tmp_path, "lambda", "get-function", "--function-name", name).stdout)
    assert got["Configuration"]["State"] == "Active"

    aws(server, tmp_path, "lambda", "update-function-configuration", "--function-name", name, "--timeout", "9")
    aws(server, tmp_path, "lambda", "wait", "function-updated-v2", "--function-name", name)
    assert json.loads(aws(server, tmp_path, "lambda", "get-function-configuration",
                          "--function-name", name).stdout)["Timeout"] == 9

    logs = json.loads(aws(server, tmp_path, "logs", "filter-log-events", "--log-group-name", f"/aws/lambda/{name}").stdout)
    assert any("cli says hi" in e["message"] for e in logs["events"])

    aws(server, tmp_path, "lambda", "delete-function", "--function-name", name)
    missing = aws(server, tmp_path, "lambda", "get-function", "--function-name", name, check=False)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr and "Function not found" in missing.stderr


def test_aws_cli_drives_eventbridge_and_scheduler(server, tmp_path):
    """The AWS CLI (v1, from PyPI) against Squall's events and scheduler APIs."""
    rule = f"cli-rule-{tmp_path.name[-6:]}".replace("_", "-")
    made = aws(server, tmp_path, "events", "put-rule", "--name", rule, "--schedule-expression", "rate(5 minutes)",
               "--state", "DISABLED")
    assert json.loads(made.stdout)["RuleArn"].endswith(f":rule/{rule}")
    listed = json.loads(aws(server, tmp_path, "events", "list-rules", "--name-prefix", rule).stdout)
    assert [r["Name"] for r in listed["Rules"]] == [rule] and listed["Rules"][0]["State"] == "DISABLED"
    bad = aws(server, tmp_path, "events", "put-rule", "--name", rule, "--schedule-expression", "rate(0 minutes)",
              check=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stderr
    aws(server, tmp_path, "events", "delete-rule", "--name", rule)
    schedules = json.loads(aws(server, tmp_path, "scheduler", "list-schedules").stdout)
    assert "Schedules" in schedules
