"""Capture of an environment's output (its stdout/stderr pipe) into log events.

Output is read as it comes (a function printing 100 MB never blocks on a full pipe nor
fills the server's memory), split into lines, stamped, sent to the log store and kept
per invocation up to a cap for the ``X-Amz-Log-Result`` tail.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

from squall.invoke.invocation import LOG_TAIL_BYTES
from squall.observe.logs import LogStore

_READ_CHUNK = 65536
_READS_PER_WAKEUP = 16


class InvocationLog:
    """The lines of one invocation: all of them go to the store up to ``cap`` bytes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.dropped = 0
        self._tail: deque[tuple[str, int]] = deque()  # (line, its UTF-8 size with the newline)
        self._tail_size = 0

    def accept(self, line: str) -> bool:
        """Record a line; False when it is beyond the cap and must not be stored."""
        encoded = len(line.encode("utf-8", "replace")) + 1
        if self.size + encoded > self.cap:
            self.dropped += encoded
            return False
        self.size += encoded
        self._tail.append((line, encoded))
        self._tail_size += encoded
        # Keep just enough whole lines to cover the last LOG_TAIL_BYTES bytes.
        while len(self._tail) > 1 and self._tail_size - self._tail[0][1] >= LOG_TAIL_BYTES:
            self._tail_size -= self._tail.popleft()[1]
        return True

    def tail(self) -> bytes:
        text = "".join(line + "\n" for line, _ in self._tail).encode("utf-8", "replace")
        return text[-LOG_TAIL_BYTES:]


class OutputCapture:
    """Reads one environment's log pipe on the event loop."""

    def __init__(self, fd: int, logs: LogStore, group: str, stream: str) -> None:
        self.fd = fd
        self.logs = logs
        self.group = group
        self.stream = stream
        self.current: InvocationLog | None = None
        self._partial = b""
        self._closed = False
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def emit(self, line: str) -> None:
        """Log a line from the platform or the function, at the current time."""
        if self.current is not None and not self.current.accept(line):
            return
        self.logs.append(self.group, self.stream, [(int(time.time() * 1000), line)])

    def drain(self) -> None:
        """Read whatever is in the pipe now (the runtime flushed before answering)."""
        self._read(limit=None)

    def flush_partial(self) -> None:
        if self._partial:
            self.emit(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def close(self) -> None:
        if self._closed:
            return
        self._read(limit=None)
        if self._closed:  # the read met the end of the pipe and closed it
            return
        self._closed = True
        self.flush_partial()
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)

    def _on_readable(self) -> None:
        self._read(limit=_READS_PER_WAKEUP)

    def _read(self, limit: int | None) -> None:
        if self._closed:
            return
        reads = 0
        while limit is None or reads < limit:
            try:
                chunk = os.read(self.fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:  # every writer is gone
                if not self._closed:
                    asyncio.get_running_loop().remove_reader(self.fd)
                    self.flush_partial()
                    self._closed = True
                    os.close(self.fd)
                return
            reads += 1
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self.emit(line.decode("utf-8", "replace"))
        if len(self._partial) > _READ_CHUNK:  # a huge line without newline: cut it
            self.emit(self._partial.decode("utf-8", "replace"))
            self._partial = b""
