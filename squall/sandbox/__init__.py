"""Sandbox backends: how execution environments are isolated."""

from __future__ import annotations

import hashlib
from pathlib import Path

from squall.errors import SquallError
from squall.sandbox.base import SandboxBackend
from squall.sandbox.process import ProcessBackend


def select_backend(isolation: str, data_dir: Path) -> SandboxBackend:
    """The backend for the ``isolation`` setting: ``auto`` picks the strongest available."""
    scope = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if isolation in ("auto", "process"):
        return ProcessBackend(scope)
    raise SquallError(
        f"isolation={isolation!r} is not available on this server build; use 'process' or 'auto'."
    )
