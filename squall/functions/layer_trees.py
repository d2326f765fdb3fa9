"""What a function sees at /opt: its layers merged, in order, into one read-only tree.

Lambda extracts a function's layers into /opt in the order the function lists them; a later
layer's file replaces an earlier one's at the same path. Squall builds that merged tree once per
ordered list of layer codes, at ``<data dir>/opt/<key>`` (``key``: a hash of the layers' code
hashes in order), from the layers' extracted trees, by hard links (no copy of the bytes; a copy
where the file system refuses links). The sandbox mounts it read-only at /opt.

A merged tree does not depend on its layers' trees once built: hard links keep the files when a
layer's code is removed, so a function keeps working after its layer version is deleted. Trees
no function version uses any more are removed at start (:meth:`OptTrees.sweep`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path


def opt_key(code_hashes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(code_hashes).encode()).hexdigest()[:32]


def merge_trees(sources: Iterable[Path], dest: Path) -> None:
    """Merge ``sources`` in order into the new directory ``dest`` (later ones win)."""
    dest.mkdir(mode=0o755)
    for source in sources:
        _merge_dir(source, dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _merge_dir(source: Path, dest: Path) -> None:
    with os.scandir(source) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_dir(follow_symlinks=False):
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    _remove(target)
                if not target.exists():
                    target.mkdir(mode=0o755)
                    shutil.copystat(entry.path, target)
                _merge_dir(Path(entry.path), target)
                continue
            if target.is_symlink() or target.exists():
                _remove(target)
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
                continue
            try:
                os.link(entry.path, target)
            except OSError:  # another file system, or links refused: copy
                shutil.copy2(entry.path, target)


class OptTrees:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._paths: dict[str, Path] = {}

    def path(self, code_hashes: Sequence[str]) -> Path:
        return self.root / opt_key(code_hashes)

    def ensure(self, code_hashes: Sequence[str], trees: Sequence[Path]) -> Path:
        """The merged tree of these layers (built now if missing; blocking)."""
        path = self.path(code_hashes)
        if path.is_dir():
            return path
        partial = path.with_name(f"{path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            merge_trees(trees, partial)
            os.chmod(partial, 0o755)
            try:
                os.rename(partial, path)
            except OSError:  # built meanwhile by another request: same content
                if not path.is_dir():
                    raise
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        return path

    def sweep(self, used: set[str]) -> int:
        """Remove the trees (and half-built ones) whose key is not in ``used``; how many."""
        removed = 0
        for entry in self.root.iterdir():
            if entry.name not in used:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed
