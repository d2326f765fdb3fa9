"""Formatting for the CLI: sizes, times, tables, payloads and progress lines.

Results go to stdout (so they can be piped); progress and diagnostics go to stderr.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator, Sequence

import click


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def lambda_time(text: str) -> str:
    """Lambda's ``LastModified`` (``2024-01-01T12:00:00.000+0000``) in local time."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return text


def clock_time(epoch_ms: int) -> str:
    """A short local time for a log line: ``12:34:56.789``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """Aligned ``Label:  value`` lines."""
    width = max(len(label) for label, _ in pairs) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in pairs)


def pretty_payload(raw: bytes) -> str:
    """A response payload: indented JSON when it is JSON, else the text as it came."""
    try:
        document = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    return json.dumps(document, indent=2, ensure_ascii=False)


def readable(log_text: str) -> str:
    """Log text for a terminal: Lambda runtimes join a multi-line record (a traceback)
    with carriage returns so that it stays one event; show those as line breaks."""
    return log_text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def note(message: str) -> None:
    click.echo(message, err=True)


class Step:
    """What a finished :func:`step` reports ("done" unless set)."""

    def __init__(self) -> None:
        self.result = "done"


@contextmanager
def step(text: str) -> Iterator[Step]:
    """``Creating function hello... done`` on stderr, or ``failed`` if the block raises."""
    click.echo(f"{text}... ", nl=False, err=True)
    progress = Step()
    started = time.monotonic()
    try:
        yield progress
    except BaseException:
        click.echo("failed", err=True)
        raise
    elapsed = time.monotonic() - started
    suffix = f" ({elapsed:.1f} s)" if elapsed >= 1 else ""
    click.echo(f"{progress.result}{suffix}", err=True)
