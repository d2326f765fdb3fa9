"""Runtime parts built once and cached by content (the Java library, the C# runtime): a build made
aside is made world-readable and renamed into place, whoever else builds it at the same time."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def publish_modes(root: Path) -> None:
    """Directories 0755, files 0644: readable by the function's unprivileged user."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def install(work: Path, final: Path, marker: str) -> None:
    """Move the finished build ``work`` to ``final``: if another process won the race (``final``
    has ``marker``), drop ours; a damaged leftover (no ``marker``) is set aside and replaced."""
    publish_modes(work)
    try:
        os.rename(work, final)
    except OSError:
        if (final / marker).is_file():
            shutil.rmtree(work, ignore_errors=True)
        else:
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=final.parent))
            os.rename(final, trash / "old")
            os.rename(work, final)
            shutil.rmtree(trash, ignore_errors=True)
