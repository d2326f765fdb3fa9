"""Removing environments' cgroups without blocking the event loop.

One :class:`CgroupRemovals` per backend; the zygote clients and environment handles
get its ``remove``.
"""

from __future__ import annotations

import asyncio
import logging

from squall.sandbox.linux.cgroups import Cgroup

log = logging.getLogger("squall.sandbox.linux")

class CgroupRemovals:
    """Removes environments' cgroups: once inline and, while a process of the group is still
    dying, again in a worker thread; :meth:`done` waits for those retries (at close)."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[None]] = set()

    def remove(self, cgroup: Cgroup) -> None:
        """Remove a cgroup whose processes are gone or going (retried off the event loop)."""
        try:
            if cgroup.remove(timeout=0):
                return
        except OSError:
            pass
        task = asyncio.get_running_loop().run_in_executor(None, _remove_slowly, cgroup)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def done(self) -> None:
        """Wait for the cgroup removals still in progress."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _remove_slowly(cgroup: Cgroup) -> None:
    try:
        if not cgroup.remove(timeout=5.0):
            log.warning("cgroup %s could not be removed (a process of it is stuck)", cgroup.name)
    except OSError as e:
        log.warning("cannot remove cgroup %s: %s", cgroup.name, e)
