"""Removing environments' cgroups without blocking the event loop.

:func:`remove_cgroup` tries once inline and, when a process of the group is still dying,
retries in a worker thread; :func:`removals_done` waits for those retries (at close).
"""

from __future__ import annotations

import asyncio
import logging

from squall.sandbox.linux.cgroups import Cgroup

log = logging.getLogger("squall.sandbox.linux")

_removals: set[asyncio.Future[None]] = set()


def remove_cgroup(cgroup: Cgroup) -> None:
    """Remove a cgroup whose processes are gone or going (retried off the event loop)."""
    try:
        if cgroup.remove(timeout=0):
            return
    except OSError:
        pass
    task = asyncio.get_running_loop().run_in_executor(None, _remove_slowly, cgroup)
    _removals.add(task)
    task.add_done_callback(_removals.discard)


async def removals_done() -> None:
    """Wait for the cgroup removals still in progress."""
    while _removals:
        await asyncio.gather(*_removals, return_exceptions=True)


def _remove_slowly(cgroup: Cgroup) -> None:
    try:
        if not cgroup.remove(timeout=5.0):
            log.warning("cgroup %s could not be removed (a process of it is stuck)", cgroup.name)
    except OSError as e:
        log.warning("cannot remove cgroup %s: %s", cgroup.name, e)
