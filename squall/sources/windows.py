"""Tumbling windows (Kinesis, DynamoDB Streams): records grouped by fixed windows of their
arrival time, a ``state`` object carried from one invocation of a window to the next, and a
last invocation when the window closes (``isFinalInvokeForWindow``), as on Lambda.

Pure: the poller asks where a record falls and what to send; the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

MAX_STATE_BYTES = 1024 * 1024  # beyond it the window ends early (isWindowTerminatedEarly)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Window:
    start: float
    length: int
    state: dict[str, Any] = field(default_factory=dict)
    terminated_early: bool = False

    @property
    def end(self) -> float:
        return self.start + self.length

    def envelope(self, shard: str, source_arn: str, final: bool) -> dict[str, Any]:
        """The fields Lambda adds to a windowed invocation's event (besides Records)."""
        return {
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "state": self.state,
            "shardId": shard,
            "eventSourceARN": source_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": self.terminated_early if final else False,
        }

    def take_state(self, payload: bytes) -> None:
        """The function's answer carries the state for the next invocation of this window."""
        try:
            answer = orjson.loads(payload) if payload.strip() else None
        except orjson.JSONDecodeError:
            return
        state = answer.get("state") if isinstance(answer, dict) else None
        if isinstance(state, dict):
            if len(orjson.dumps(state)) > MAX_STATE_BYTES:
                self.terminated_early = True
            else:
                self.state = state


def window_start(arrival: float, length: int) -> float:
    """The start of the window an arrival time falls in (windows are aligned to the epoch)."""
    return arrival - (arrival % length)


def split_by_window(arrivals: list[float], length: int) -> list[tuple[float, int, int]]:
    """(window start, first index, end index) of each run of consecutive records in one window."""
    runs: list[tuple[float, int, int]] = []
    for i, arrival in enumerate(arrivals):
        start = window_start(arrival, length)
        if runs and runs[-1][0] == start:
            runs[-1] = (start, runs[-1][1], i + 1)
        else:
            runs.append((start, i, i + 1))
    return runs
