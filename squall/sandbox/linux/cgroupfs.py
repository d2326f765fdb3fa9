"""File primitives on the cgroup filesystem: read, write, mkdir, rmdir, flat-keyed files.

The cgroup modules call these through the module (``cgroupfs.write(...)``), never by a
name imported from it, so that tests can emulate the kernel's mkdir/rmdir and writes by
patching one attribute here.
"""

from __future__ import annotations

import os


def write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def mkdir(path: str) -> None:
    os.mkdir(path, 0o755)


def rmdir(path: str) -> None:
    os.rmdir(path)


def keyed(text: str, key: str) -> int:
    """The value of ``key`` in a flat-keyed file ("key value" lines), 0 when absent."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def rmdir_quietly(paths: list[str]) -> None:
    for path in reversed(paths):
        try:
            rmdir(path)
        except OSError:
            pass
