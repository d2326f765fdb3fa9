"""``squall invoke``: check the payload, invoke synchronously, show the result.

The response payload goes to stdout; the log tail (``--log``) and a function's error go
to stderr, and a function error makes the command exit 1.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import click

from squall.cli.client import CliError
from squall.cli.output import note, pretty_payload, readable


def check_payload(raw: bytes) -> bytes:
    """The payload as sent, after making sure it is JSON (Lambda only accepts JSON)."""
    try:
        json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from exc
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc}). A JSON string needs its own quotes, e.g. '\"hello\"'.") from exc
    return raw


def invoke_function(lam: Any, name: str, payload: bytes, show_log: bool) -> None:
    params: dict[str, Any] = {"FunctionName": name, "Payload": payload}
    if show_log:
        params["LogType"] = "Tail"
    response = lam.invoke(**params)
    body = response["Payload"].read()
    executed = response.get("ExecutedVersion")
    if executed and executed != "$LATEST":  # through an alias or a version: which one ran
        note(f"(ran version {executed})")
    if show_log and response.get("LogResult"):
        tail = base64.b64decode(response["LogResult"]).decode("utf-8", "replace")
        note(readable(tail))
    if response.get("FunctionError"):
        raise CliError(describe_error(body, response["FunctionError"]))
    if body:
        click.echo(pretty_payload(body))


def describe_error(body: bytes, kind: str) -> str:
    """``errorType: errorMessage`` and the stack trace of a function's error payload."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not ({"errorType", "errorMessage"} & document.keys()):
        text = body.decode("utf-8", "replace").strip()
        return f"{kind} function error: {text}" if text else f"{kind} function error"
    lines = [f"{document.get('errorType', kind)}: {document.get('errorMessage', '')}"]
    trace = document.get("stackTrace")
    if isinstance(trace, list) and trace:
        lines.append("Stack trace:")
        for frame in trace:
            text = frame if isinstance(frame, str) else " ".join(str(part) for part in frame)
            lines.extend(text.rstrip("\n").splitlines())
    return "\n".join(lines)
