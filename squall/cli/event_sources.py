"""``squall event-sources``: every event source mapping with its state, lag, last result and
counts, read from the server's endpoint ``GET /squall/event-sources`` (the Lambda API has no
operation that shows a poller's lag or error counts)."""

from __future__ import annotations

from typing import Any

from squall.cli.client import fetch_json

COLUMNS = ("UUID", "FUNCTION", "SOURCE", "STATE", "POLLERS", "LAG", "INVOKED", "FAILED", "FILTERED", "LAST RESULT")


def fetch_mappings(endpoint: str, timeout: float = 10.0, region: str = "us-east-1") -> list[dict[str, Any]]:
    report = fetch_json(endpoint, "/squall/event-sources", timeout, region=region)
    return list(report.get("mappings", []))


def lag(mapping: dict[str, Any]) -> str:
    value = mapping.get("lag")
    if value is None:
        return "-"
    if mapping.get("kind") in ("sqs", "rabbitmq"):
        return f"{int(value)} msg"
    return f"{value / 1000:.1f}s" if value >= 1000 else f"{int(value)}ms"


def short_arn(arn: str) -> str:
    """The part of an ARN a person reads: after the account."""
    parts = arn.split(":", 5)
    return parts[5] if len(parts) == 6 else arn


def mapping_rows(mappings: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for m in mappings:
        failed = m.get("failed_invocations", 0)
        lost = m.get("records_dropped", 0) + m.get("records_to_destination", 0)
        rows.append((
            m["uuid"], short_arn(m["function"]).removeprefix("function:"), f"{m['kind']}:{short_arn(m['source'])}",
            m["state"], str(m.get("pollers", 0)), lag(m), f"{m.get('invocations', 0)} ({m.get('records', 0)} rec)",
            f"{failed}" + (f" ({lost} rec given up)" if lost else ""), str(m.get("filtered", 0)),
            (m.get("last_result") or "-")[:60],
        ))
    return rows
