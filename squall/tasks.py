"""Helpers for the server's background tasks (one scheduler: asyncio, no thread per timer)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task and wait until it has really finished."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def finish(tasks: set[asyncio.Task[Any]], grace: float) -> None:
    """Give running tasks up to ``grace`` seconds, then cancel the rest and wait for them."""
    if tasks:
        await asyncio.wait(set(tasks), timeout=grace)
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
