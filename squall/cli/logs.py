"""``squall logs``: a function's log events through the CloudWatch Logs API.

Events come from FilterLogEvents on ``/aws/lambda/NAME``. ``--follow`` polls, asking
again from a little before the newest event seen (events stamped just before it may
still be arriving) and printing only events whose ``eventId`` is new.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import click

from squall.cli.output import clock_time, note, readable

POLL_INTERVAL = 0.5
# How far before the newest event seen each follow poll starts again.
OVERLAP_MS = 5_000

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration(text: str) -> int:
    """``30s``, ``10m``, ``2h``, ``1d``, ``1w`` → milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: 30s, 10m, 2h, 1d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def log_group(name: str, lam: Any = None) -> str:
    """The function's log group: its LoggingConfig.LogGroup, else Lambda's default."""
    if lam is not None:
        try:
            group = lam.get_function_configuration(FunctionName=name).get("LoggingConfig", {}).get("LogGroup")
        except lam.exceptions.ResourceNotFoundException:
            group = None
        if group:
            return group
    return f"/aws/lambda/{name}"


def function_log_group(lam: Any, logs: Any, name: str) -> str:
    """The log group of function ``name`` (NAME, NAME:ALIAS or an ARN): its LoggingConfig.LogGroup,
    else ``/aws/lambda/NAME``. A :class:`CliError` (exit 1) when there is neither such a function
    nor such a log group; a deleted function's logs, which outlive it, are still shown."""
    from squall.cli.client import CliError
    from squall.cli.names import bare_name

    try:
        config = lam.get_function_configuration(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        config = None
    if config is not None:
        return config.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{config['FunctionName']}"
    group = f"/aws/lambda/{bare_name(name)}"
    try:
        logs.describe_log_streams(logGroupName=group, limit=1)
    except logs.exceptions.ResourceNotFoundException:
        raise CliError(f"Function not found: {name} (and there are no logs of a function of that name).",
                       "See your functions with `squall functions`.") from None
    return group


def fetch(logs: Any, group: str, start_ms: int | None) -> list[dict[str, Any]] | None:
    """All events of ``group`` from ``start_ms`` on, in time order; None if there is no group."""
    params: dict[str, Any] = {"logGroupName": group}
    if start_ms is not None:
        params["startTime"] = start_ms
    events: list[dict[str, Any]] = []
    try:
        while True:
            page = logs.filter_log_events(**params)
            events.extend(page.get("events", []))
            token = page.get("nextToken")
            if not token or token == params.get("nextToken"):
                return events
            params["nextToken"] = token
    except logs.exceptions.ResourceNotFoundException:
        return None


def format_event(event: dict[str, Any]) -> str:
    return f"{clock_time(event['timestamp'])} {readable(event['message'])}"


def print_logs(logs: Any, name: str, start_ms: int | None, since: str, lam: Any = None, group: str | None = None) -> bool:
    """Print the events once; False when there are none to show."""
    events = fetch(logs, group or log_group(name), start_ms)
    if events is None:
        note(f"No logs for {name} yet.")
        if lam is not None and not _function_exists(lam, name):
            note(f"There is no function {name} either; see your functions with `squall functions`.")
        return False
    for event in events:
        click.echo(format_event(event))
    if not events:
        note(f"No log events for {name} in the last {since}; try a longer --since, e.g. --since 1d.")
    return bool(events)


def _function_exists(lam: Any, name: str) -> bool:
    try:
        lam.get_function_configuration(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        return False
    return True


@dataclass
class Follower:
    """Polls a log group and prints each new event once."""

    logs: Any
    name: str
    start_ms: int | None
    sleep: Callable[[float], None] = time.sleep
    seen: dict[str, int] = field(default_factory=dict)
    waiting_noted: bool = False
    group: str | None = None

    def poll(self) -> None:
        events = fetch(self.logs, self.group or log_group(self.name), self.start_ms)
        if events is None:
            if not self.waiting_noted:
                note(f"No logs for {self.name} yet; waiting for some (Ctrl-C to stop).")
                self.waiting_noted = True
            return
        self._print_new(events)

    def _print_new(self, events: Iterable[dict[str, Any]]) -> None:
        newest = None
        for event in events:
            event_id = event.get("eventId") or f"{event.get('logStreamName')}/{event['timestamp']}/{event['message']}"
            if event_id in self.seen:
                continue
            self.seen[event_id] = event["timestamp"]
            click.echo(format_event(event))
            newest = event["timestamp"] if newest is None else max(newest, event["timestamp"])
        if newest is not None:
            floor = newest - OVERLAP_MS
            if self.start_ms is None or floor > self.start_ms:
                self.start_ms = floor
                self.seen = {k: t for k, t in self.seen.items() if t >= floor}

    def run(self) -> None:
        try:
            while True:
                self.poll()
                self.sleep(POLL_INTERVAL)
        except KeyboardInterrupt:
            pass
