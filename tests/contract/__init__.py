"""Tests that every sandbox backend must pass, and what they share with the isolation tests."""

from __future__ import annotations

import functools
import tempfile
import uuid
from pathlib import Path


@functools.cache
def linux_unavailable() -> str | None:
    """Why the ``linux`` sandbox backend cannot run on this machine (None: it can)."""
    from squall.sandbox.linux.backend import unavailable_reason
    from squall.sandbox.linux.cgroups import Cgroups, CgroupsUnavailable

    with tempfile.TemporaryDirectory() as data_dir:
        reason = unavailable_reason(Path(data_dir))
    if reason is not None:
        return reason
    try:
        Cgroups.detect(f"probe-{uuid.uuid4().hex[:8]}").close()
    except CgroupsUnavailable as e:
        return f"cgroups: {e.reason}"
    return None
