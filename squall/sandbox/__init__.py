"""Sandbox backends: how execution environments are isolated."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from squall.errors import SquallError
from squall.sandbox.base import SandboxBackend
from squall.sandbox.process import ProcessBackend

log = logging.getLogger("squall.sandbox")


def select_backend(isolation: str, data_dir: Path, networks: dict[str, Any] | None = None,
                   networks_required: bool = False) -> SandboxBackend:
    """The backend for the ``isolation`` setting: ``auto`` picks the strongest available.

    ``linux`` (namespaces, cgroups, zygote) when this machine allows it — root, a kernel
    with mount/pid namespaces, cgroups that can enforce limits; otherwise ``process``.
    Forcing ``linux`` where it cannot work fails with the reason and what to do.
    ``networks``: the environments' networks (``Settings.network_specs()``); required when
    the settings name some, else environments without them have their loopback only.
    """
    scope = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    if isolation == "process":
        return ProcessBackend(scope)
    if isolation in ("auto", "linux"):
        from squall.sandbox.linux.backend import SandboxUnavailable, create_linux_backend

        try:
            if networks is None:
                from squall.sandbox.linux.network import network_specs

                networks = network_specs("10.213.0.0/16", {})
            return create_linux_backend(scope, data_dir, networks, networks_required)
        except SandboxUnavailable as e:
            if isolation == "linux":
                raise SquallError(
                    f"isolation='linux' is not available on this machine: {e}. "
                    "Fix that, or use isolation 'process' (functions are then not isolated) or 'auto'."
                ) from None
            log.info("linux sandbox unavailable (%s); using the process backend (not isolated)", e)
            return ProcessBackend(scope)
    raise SquallError(f"unknown isolation {isolation!r}; use 'auto', 'linux' or 'process'.")
