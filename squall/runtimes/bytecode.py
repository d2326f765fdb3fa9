"""Byte-compile a Python function's code once, when it is deployed.

Lambda packages rarely carry ``__pycache__``, and ``/var/task`` is read-only inside the
sandbox, so without this every cold start would compile every module the function imports
again: ~140–250 ms for click + jmespath + python-dateutil on this machine, ~50 ms with
bytecode. Squall compiles the extracted tree once per (code, Python version), with the
runtime's own interpreter (its ``cpython-3XX`` cache tag), before the function becomes
Active.

It runs in a subprocess: compiling a large package holds the GIL for seconds, which the
server's event loop must not share. The subprocess is niced, capped in memory and time, and
only parses the code (nothing of it runs). A file that does not compile (Python 2 code in
a vendored package, say) is left alone, and compiled or reported at import as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
from pathlib import Path

from squall.runtimes.registry import Runtime

log = logging.getLogger("squall.runtimes")

COMPILE_TIMEOUT_S = 120.0
COMPILE_MEMORY_BYTES = 2 << 30


def _has_python_sources(tree: Path) -> bool:
    return next(tree.rglob("*.py"), None) is not None


async def precompile(runtime: Runtime, tree: Path, timeout: float = COMPILE_TIMEOUT_S) -> bool:
    """Write ``__pycache__`` next to the tree's modules; True when every module compiled."""
    if runtime.family != "python" or not runtime.interpreter:
        return False
    if not await asyncio.to_thread(_has_python_sources, tree):
        return True
    argv = [runtime.interpreter, "-I", "-S", "-m", "compileall", "-q", "--invalidation-mode", "timestamp", str(tree)]
    try:
        # subprocess (vfork + exec), not the event loop's fork: a fork marks every page of
        # the server copy-on-write, and the server would then fault on each page it writes
        # (several µs a page on a VM: milliseconds on the next invocations)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        log.warning("cannot byte-compile %s with %s: %s", tree, runtime.interpreter, e)
        return False
    _limit(proc.pid)  # the interpreter is still starting: it has parsed nothing yet
    try:
        await asyncio.wait_for(_exited(proc), timeout)
    except TimeoutError:
        proc.kill()
        await asyncio.to_thread(proc.wait)
        log.warning("byte-compiling %s took longer than %.0f s; its modules compile at import instead", tree, timeout)
        return False
    except BaseException:  # cancelled (the server is stopping): the compiler goes too
        proc.kill()
        proc.wait()
        raise
    return proc.returncode == 0


async def _exited(proc: subprocess.Popen[bytes]) -> None:
    """Wait for ``proc`` without a thread: its pidfd where there is one, else by polling."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        while proc.poll() is None:
            await asyncio.sleep(0.02)
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    proc.wait()  # it has exited: this only reaps it


class Precompiler:
    """Compiles each extracted tree once per interpreter and server run.

    A tree never changes (it is named after its code's hash), so an update of the
    configuration alone starts no compiler; a tree extracted again is a new directory. A
    tree with modules that do not compile is not tried again: they would fail again.
    """

    def __init__(self) -> None:
        self._done: set[tuple[str, int, str]] = set()

    async def ensure(self, runtime: Runtime, tree: Path) -> None:
        try:
            key = (str(tree), tree.stat().st_ino, runtime.interpreter or "")
        except OSError:
            return
        if key not in self._done:
            await precompile(runtime, tree)
            self._done.add(key)


def _limit(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 10)  # behind invocations for the CPU
        resource.prlimit(pid, resource.RLIMIT_AS, (COMPILE_MEMORY_BYTES, COMPILE_MEMORY_BYTES))
    except (OSError, AttributeError):  # gone already, or not Linux
        pass
