"""``squall queue``: the asynchronous invocation queue per function.

Read from the server's small Squall-specific endpoint ``GET /squall/queue[?function=NAME]``
(the Lambda API has no operation that shows a queue).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from squall.cli.client import fetch_json

COLUMNS = ("FUNCTION", "DEPTH", "OLDEST", "IN RETRY", "IN FLIGHT", "SUCCEEDED", "FAILED", "TO DLQ", "DEST FAILED")


def fetch_queue(endpoint: str, name: str | None = None, timeout: float = 10.0, region: str = "us-east-1") -> dict[str, Any]:
    path = "/squall/queue" + (f"?function={quote(name, safe='')}" if name else "")
    return fetch_json(endpoint, path, timeout, not_found_hint="See your functions with `squall functions`.", region=region)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def queue_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for fn in report.get("functions", []):
        failed = fn.get("retries_exhausted", 0) + fn.get("age_exceeded", 0)
        rows.append(
            (
                fn["function"],
                str(fn.get("depth", 0)),
                age(fn.get("oldest_age_seconds")),
                str(fn.get("in_retry", 0)),
                str(fn.get("in_flight", 0)),
                str(fn.get("succeeded", 0)),
                str(failed),
                str(fn.get("dead_lettered", 0)),
                str(fn.get("destination_failures", 0)),
            )
        )
    return rows
