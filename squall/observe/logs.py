"""Function logs: log groups and streams as CloudWatch Logs has them, kept under the data dir.

Writers append events to an in-memory buffer (no disk on the invoke path); a background
task flushes the buffer to one JSON-lines file per stream. Readers (the CloudWatch Logs
API subset, ``squall logs``) flush first, so they always see what was logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol
from urllib.parse import quote, unquote

import orjson

from squall import tasks as background


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # epoch milliseconds
    message: str
    stream: str = ""
    event_id: str = ""


class LogReader(Protocol):
    """What readers of function logs may do (the API layer gets no more than this)."""

    async def flush_async(self) -> None: ...

    def groups(self) -> list[str]: ...

    def streams(self, group: str) -> list[tuple[str, int, int]]: ...

    def filter(self, group: str, streams: list[str] | None = None, start: int | None = None, end: int | None = None,
               pattern: str | None = None, limit: int = 10000, token: str | None = None) -> tuple[list[LogEvent], str | None]: ...

    def group_exists(self, group: str) -> bool: ...


class LogStore:
    def __init__(self, root: Path, flush_interval: float = 0.2) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_interval = flush_interval
        self._pending: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._io = threading.Lock()
        # Held from taking the buffer until it is on disk, so a reader's flush_async
        # also waits for a background flush that took the buffer just before it.
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # ---- writing -----------------------------------------------------------------
    def append(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        if events:
            self._pending.setdefault((group, stream), []).extend(events)

    def flush(self) -> None:
        """Write everything buffered so far (blocking; call from a thread or at shutdown)."""
        pending, self._pending = self._pending, {}
        if pending:
            self._write(pending)

    async def flush_async(self) -> None:
        async with self._flushing:
            pending, self._pending = self._pending, {}
            if pending:
                await asyncio.to_thread(self._write, pending)

    def _write(self, pending: dict[tuple[str, str], list[tuple[int, str]]]) -> None:
        with self._io:
            for (group, stream), events in pending.items():
                path = self._group_dir(group, create=True) / f"{quote(stream, safe='')}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a+b") as fh:
                    end = fh.seek(0, 2)
                    if end:
                        fh.seek(end - 1)
                        if fh.read(1) != b"\n":
                            fh.write(b"\n")  # end a line torn by a crash, or the next event joins it
                    fh.write(b"".join(orjson.dumps({"t": t, "m": m}) + b"\n" for t, m in events))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await background.cancel(self._task)
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush_async()

    # ---- reading -----------------------------------------------------------------
    def groups(self) -> list[str]:
        return sorted(self._group_name(p) for p in self.root.iterdir() if p.is_dir())

    def streams(self, group: str) -> list[tuple[str, int, int]]:
        """(stream name, first event ms, last event ms) of each stream of a group."""
        result = []
        for path in sorted(self._group_dir(group).glob("*.jsonl")):
            first = last = None
            for event in self._read_stream(path, unquote(path.stem)):
                first = event.timestamp if first is None else first
                last = event.timestamp
            if first is not None and last is not None:
                result.append((unquote(path.stem), first, last))
        return result

    def filter(
        self,
        group: str,
        streams: list[str] | None = None,
        start: int | None = None,
        end: int | None = None,
        pattern: str | None = None,
        limit: int = 10000,
        token: str | None = None,
    ) -> tuple[list[LogEvent], str | None]:
        """Events of a group in time order; ``token`` resumes after the last page.

        Blocking: call ``flush_async`` on the event loop first, then this from a thread.
        """
        try:
            skip = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        except ValueError as exc:  # includes binascii.Error and UnicodeDecodeError
            raise ValueError(f"nextToken {token!r} is not one this log store gave out") from exc
        with self._io:
            paths = [p for p in sorted(self._group_dir(group).glob("*.jsonl")) if not _older_than(p, start)]
            iterators = [
                self._read_stream(p, unquote(p.stem))
                for p in paths
                if streams is None or unquote(p.stem) in streams
            ]
            merged = heapq.merge(*iterators, key=lambda e: e.timestamp)
            out: list[LogEvent] = []
            index = 0
            more = False
            for event in merged:
                if start is not None and event.timestamp < start:
                    continue
                if end is not None and event.timestamp > end:
                    continue
                if pattern and pattern not in event.message:
                    continue
                index += 1
                if index <= skip:
                    continue
                if len(out) >= limit:
                    more = True
                    break
                out.append(event)
        next_token = base64.urlsafe_b64encode(str(skip + len(out)).encode()).decode() if more else None
        return out, next_token

    def group_exists(self, group: str) -> bool:
        return self._group_dir(group).is_dir() or any(g == group for g, _ in self._pending)

    def _read_stream(self, path: Path, stream: str) -> Iterator[LogEvent]:
        prefix = hashlib.sha1(stream.encode()).hexdigest()[:12]
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return
        with fh:
            for lineno, line in enumerate(fh):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn last line after a crash
                yield LogEvent(record["t"], record["m"], stream, f"{prefix}{lineno:010d}")

    def _group_dir(self, group: str, create: bool = False) -> Path:
        """A group's directory: its name percent-encoded, or — for a name that would not make a
        safe file name ('.', '..', too long) — ``%00`` and its SHA-256 (no encoded name has a
        ``%00``), with the name kept in ``.group`` inside."""
        encoded = quote(group, safe="")
        if encoded not in (".", "..") and len(encoded) <= _LONGEST_FILE_NAME:
            return self.root / encoded
        directory = self.root / ("%00" + hashlib.sha256(group.encode()).hexdigest())
        if create and not directory.exists():
            directory.mkdir(parents=True, exist_ok=True)
            (directory / ".group").write_text(group)
        return directory

    def _group_name(self, directory: Path) -> str:
        if directory.name.startswith("%00"):
            return (directory / ".group").read_text()
        return unquote(directory.name)


# Longest directory name a group gets as itself (NAME_MAX is 255; room for the rest).
_LONGEST_FILE_NAME = 200
# Slack for filesystems that keep modification times coarsely (FAT: 2 s).
_MTIME_SLACK_MS = 5_000


def _older_than(path: Path, start: int | None) -> bool:
    """True when every event in a stream file is before ``start`` (epoch ms).

    A file is written after its events are stamped, so its modification time is no
    earlier than its newest event: ``squall logs --follow`` polls skip idle streams
    without reading them.
    """
    if start is None:
        return False
    try:
        return path.stat().st_mtime * 1000 + _MTIME_SLACK_MS < start
    except FileNotFoundError:
        return True
