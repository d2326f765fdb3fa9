"""Mount fds: a function's code handed to a sandbox that entered its jail ahead of time.

A spare sandbox builds its whole jail before a request (``zygote.Jail.enter_spare``), so
it can no longer see the host's paths; the server sends it the code as a detached copy of
the mount at the code's directory (``open_tree(OPEN_TREE_CLONE)``, Linux 5.2+), which the
sandbox attaches at /var/task (``move_mount``) and makes read-only.
"""

from __future__ import annotations

import ctypes
import os

OPEN_TREE = 428  # the same number on every architecture
AT_FDCWD = -100
OPEN_TREE_CLONE = 1

_libc = ctypes.CDLL(None, use_errno=True)


def open_tree(path: str) -> int:
    """A detached bind mount of ``path`` as a close-on-exec fd (the caller closes it)."""
    fd = _libc.syscall(
        ctypes.c_long(OPEN_TREE), ctypes.c_long(AT_FDCWD), ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_long(OPEN_TREE_CLONE | os.O_CLOEXEC),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree {path}: {os.strerror(err)}")
    return fd
