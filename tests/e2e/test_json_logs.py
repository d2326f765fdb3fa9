"""Logs in Lambda's JSON format (LoggingConfig.LogFormat JSON): the platform's records
(platform.initStart, platform.start, platform.report with its metrics) and the application's,
with ApplicationLogLevel and SystemLogLevel honoured; read back through the logs API."""

from __future__ import annotations

import base64
import json

from tests.conftest import create_function

CODE = """
import logging
logger = logging.getLogger()

def handler(event, context):
    logger.info("an info line")
    logger.warning("a warning line")
    print("a print")
    return "done"
"""


def lines_of(lam, name: str) -> list[dict | str]:
    answer = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    out: list[dict | str] = []
    for line in base64.b64decode(answer["LogResult"]).decode().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(line)
    return out


def test_platform_and_application_records_are_json_and_levels_filter_them(lam):
    name = create_function(lam, CODE, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN",
                                                     "SystemLogLevel": "INFO"})
    records = lines_of(lam, name)
    types = [r.get("type") for r in records if isinstance(r, dict)]
    assert types[:2] == ["platform.initStart", "platform.start"] and types[-1] == "platform.report", records
    report = records[-1]["record"]
    assert report["status"] == "success" and report["requestId"]
    assert {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"} <= set(report["metrics"])
    application = [r for r in records if isinstance(r, dict) and "type" not in r]
    assert [r["message"] for r in application if r.get("level") in ("WARN", "WARNING")] == ["a warning line"]
    assert not any(isinstance(r, dict) and r.get("message") == "an info line" for r in records)  # below WARN
    assert not any(isinstance(r, str) and r.startswith(("START", "END", "REPORT")) for r in records)
    warm = lines_of(lam, name)
    assert [r.get("type") for r in warm if isinstance(r, dict) and "type" in r] == ["platform.start", "platform.report"]
    assert "initDurationMs" not in warm[-1]["record"]["metrics"]


def test_system_log_level_warn_drops_the_platform_records(lam, server):
    name = create_function(lam, CODE, LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "WARN"})
    records = lines_of(lam, name)
    assert not any(isinstance(r, dict) and str(r.get("type", "")).startswith("platform.") for r in records), records
    assert any(isinstance(r, dict) and r.get("message") == "an info line" for r in records)  # application: INFO
    logs = server.client("logs")  # the same records through the CloudWatch Logs subset
    messages = [e["message"] for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]]
    assert any('"a warning line"' in m for m in messages)


def test_text_format_is_unchanged(lam):
    name = create_function(lam, CODE)
    records = lines_of(lam, name)
    texts = [r for r in records if isinstance(r, str)]
    assert any(t.startswith("START RequestId:") for t in texts) and any(t.startswith("REPORT RequestId:") for t in texts)
    assert any(t.startswith("END RequestId:") for t in texts) and any(t.startswith("INIT_START") for t in texts)
