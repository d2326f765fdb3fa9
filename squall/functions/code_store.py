"""Function code by content, and the rule for when it may be removed.

Functions (and versions) with the same zip share one stored zip and one extracted tree
(``BlobStore``). Code is removed only when nothing refers to it and nothing uses it:

* **references** live in the database: a version row whose code is that SHA-256 (the
  repository answers ``in_use``); layers will add theirs;
* **holds** live in this process, each taken with :meth:`CodeStore.hold` and let go once:
  - an upload holds its code from before the zip is stored until the version that refers to
    it is committed and its tree is ready (so a delete of another function with the same zip,
    in between, cannot take the code away);
  - the invoke cache holds the code of every version it can serve;
  - an environment holds its code from its creation (in the same turn of the event loop as the
    resolution of its version) until its processes are gone: a delete cannot pull a tree away
    from a sandbox that is being built on it.

:meth:`collect` asks the database, then, without yielding to the event loop, looks at the
holds and moves the zip and the tree out of their places at once; only the deletion of the
moved tree runs in a thread. A hold is taken on the event loop too, so it is either seen by
that check or taken after the code has gone, and an upload that finds its code gone stores it
again. Code that is unreferenced but held is collected when its last hold is let go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from squall.code import CodePackage
from squall.errors import CodeStorageExceeded
from squall.store.blobs import BlobStore

log = logging.getLogger("squall.code")

_TRASH_PREFIX = ".trash."


def _tree_size(tree: Path) -> int:
    total = 0
    for root, _, files in os.walk(tree):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class CodeHold:
    """One hold on one code SHA-256; :meth:`release` lets it go (once, however often called)."""

    __slots__ = ("_store", "sha256_hex")

    def __init__(self, store: CodeStore, sha256_hex: str) -> None:
        self._store: CodeStore | None = store
        self.sha256_hex = sha256_hex

    def release(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store._let_go(self.sha256_hex)


class CodeStore:
    """See the module's docstring. ``limit_bytes`` caps what stored zips and extracted trees
    take together (Lambda's code storage quota); ``sweep`` measures what is there at start."""

    def __init__(self, blobs: BlobStore, in_use: Callable[[str], bool], limit_bytes: int | None = None) -> None:
        self.blobs = blobs
        self._in_use = in_use  # blocking: does any row of the database refer to this code?
        self.limit_bytes = limit_bytes
        self.used_bytes = 0  # zips + trees, as charged (a tree by its zip's declared unzipped size)
        self._holds: Counter[str] = Counter()
        self._candidates: set[str] = set()  # unreferenced when last asked, but held then
        self._charged: dict[str, int] = {}  # code → bytes charged for it
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- holds -------------------------------------------------------------------
    def hold(self, sha256_hex: str) -> CodeHold:
        self._holds[sha256_hex] += 1
        return CodeHold(self, sha256_hex)

    def held(self, sha256_hex: str) -> int:
        return self._holds[sha256_hex]

    def _let_go(self, sha256_hex: str) -> None:
        self._holds[sha256_hex] -= 1
        if self._holds[sha256_hex] <= 0:
            del self._holds[sha256_hex]
            if sha256_hex in self._candidates:
                self._spawn(self.collect([sha256_hex]))

    # ---- storing -----------------------------------------------------------------
    def tree_path(self, sha256_hex: str) -> Path:
        return self.blobs.tree_path(sha256_hex)

    def has_zip(self, sha256_hex: str) -> bool:
        return self.blobs.has_zip(sha256_hex)  # here or in the code bucket: blocking

    async def put(self, package: CodePackage) -> None:
        """Store the zip (the caller holds it: see the module's docstring), within the quota."""
        sha = package.sha256_hex
        if sha not in self._charged:  # charged in this turn of the loop: two uploads cannot both slip in
            cost = package.size + package.unzipped_size
            if self.limit_bytes is not None and self.used_bytes + cost > self.limit_bytes:
                raise CodeStorageExceeded("Code storage limit exceeded.")
            self._charged[sha] = cost
            self.used_bytes += cost
        await asyncio.to_thread(self.blobs.put, package)

    async def read(self, sha256_hex: str) -> bytes:
        return await asyncio.to_thread(self.blobs.read, sha256_hex)

    async def tree(self, sha256_hex: str, package: CodePackage | None = None) -> Path:
        """The extracted tree, extracted now if it is missing (the caller holds it)."""
        if package is not None:
            return await asyncio.to_thread(self.blobs.extract, package)
        return await asyncio.to_thread(self.blobs.ensure_tree, sha256_hex)

    # ---- removing ----------------------------------------------------------------
    async def collect(self, hashes: Iterable[str]) -> None:
        """Remove each code that no row refers to and nothing holds (references were dropped)."""
        for sha in set(hashes):
            if await asyncio.to_thread(self._in_use, sha):
                self._candidates.discard(sha)
                continue
            # from here to the move, no await: a hold is either counted now or comes after
            if self._holds[sha]:
                self._candidates.add(sha)
                continue
            self._candidates.discard(sha)
            trash = self._move_out(sha)
            if trash is not None:
                await asyncio.to_thread(shutil.rmtree, trash, True)

    def _move_out(self, sha: str) -> Path | None:
        """Take the zip and the tree away from their places (fast, on the loop: the code
        bucket's copy, if any, is deleted in the background); the moved tree (or None) is the
        caller's to delete."""
        self.used_bytes -= self._charged.pop(sha, 0)
        try:
            self.blobs.remove_zip(sha)
        except OSError as e:
            log.warning("cannot remove the zip of code %s: %s", sha, e)
        tree = self.blobs.tree_path(sha)
        trash = tree.with_name(f"{_TRASH_PREFIX}{sha}.{uuid.uuid4().hex[:8]}")
        try:
            os.rename(tree, trash)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot remove the code tree %s: %s", tree, e)
            return None
        return trash

    def sweep(self) -> None:
        """At start (blocking): remove what a previous run left half-done (trees it was
        deleting or extracting, zips it was writing), and measure what is stored."""
        for entry in self.blobs.trees.iterdir():
            if entry.name.startswith(_TRASH_PREFIX) or entry.name.endswith(".partial"):
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.blobs.blobs.iterdir():
            if ".tmp-" in entry.name:
                entry.unlink(missing_ok=True)
            elif entry.suffix == ".zip":
                self._charged[entry.stem] = entry.stat().st_size + _tree_size(self.blobs.tree_path(entry.stem))
        self.used_bytes = sum(self._charged.values())

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
