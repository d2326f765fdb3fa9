"""The server's side of a zygote: starts ``_squall_zygote``, sends it requests, dispatches its answers.

One :class:`Zygote` per interpreter. Requests (spawn, stock, restock) go over a
``SOCK_SEQPACKET`` socketpair, fds by SCM_RIGHTS (protocol in ``_squall_zygote``); answers
arrive through an event-loop reader: readiness, spawned pids, exit statuses. When the
zygote dies, everything that waits on it fails and its environments are reported dead.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

from squall.sandbox.linux.cgroups import Cgroup

log = logging.getLogger("squall.sandbox.linux")

ZYGOTE_SCRIPT = Path(__file__).resolve().parent / "_squall_zygote"  # a package, run by path

_ZYGOTE_START_TIMEOUT_S = 30.0
_SPAWN_TIMEOUT_S = 10.0
_FD_SIZE = array.array("i").itemsize


class ZygoteError(Exception):
    pass


class OnExit(Protocol):
    """Told once that an environment ended: its exit status (None: unknown, the zygote died)
    and, when its sandbox could not be built, why (B's own report)."""

    def __call__(self, status: int | None, reason: str | None = None) -> None: ...


def _ignore_exit(status: int | None, reason: str | None = None) -> None:
    pass


class Spare(NamedTuple):
    """A spare sandbox the zygote handed over: B's pid, B's sync socket, the cgroup it joined."""

    pid: int
    sync: socket.socket
    cgroup: str


class Zygote:
    """The server's side of one zygote process (one per interpreter)."""

    def __init__(
        self,
        interpreter: str,
        config: dict[str, object],
        remove: Callable[[Cgroup], None],
        on_ready: Callable[[Zygote], None] | None = None,
        on_spare: Callable[[Spare], None] | None = None,
        on_spare_gone: Callable[[Spare], None] | None = None,
    ) -> None:
        self.interpreter = interpreter
        self.config = config
        self._remove = remove  # how a cgroup it no longer needs is removed
        self._on_ready = on_ready  # called once each time a (new) zygote process is ready
        # told of each spare handed over (to prepare it further, e.g. its network) and of
        # each one dropped unused (it dies: its sync socket closes)
        self._on_spare = on_spare
        self._on_spare_gone = on_spare_gone
        self.pid: int | None = None
        self.rss_kb = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[int], OnExit]] = {}
        self._watched: dict[int, OnExit] = {}
        self._ids = itertools.count(1)
        self._starting: asyncio.Task[None] | None = None
        # One sender at a time: a loop keeps one writer callback per fd, so concurrent
        # senders each waiting for writability with add_writer() would replace each
        # other's callbacks and all but one would wait forever (a burst of cold starts
        # fills the socket's send buffer).
        self._send_lock = asyncio.Lock()
        self._notices: set[asyncio.Task[None]] = set()  # "taken" notices waiting for room
        self._writable: asyncio.Future[None] | None = None  # what the sender holding it waits on
        # the cgroup that the zygote's next spare sandbox joins ahead of time (see give_stock())
        self.stock: Cgroup | None = None
        self.trees = False  # its sandboxes enter the jail ahead and take the code as mount fds
        self.seccomp = False  # its sandboxes' runtimes run under the seccomp filter
        self.tmp_disks = False  # its sandboxes can take a disk for /tmp (ephemeral.py)
        # a spare that joined it, handed over by the zygote
        self._spare: Spare | None = None

    @property
    def alive(self) -> bool:
        return self._sock is not None

    async def ensure_started(self) -> None:
        if self.alive and self._ready is not None and self._ready.done() and not self._ready.exception():
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [self.interpreter, "-s", str(ZYGOTE_SCRIPT), "--fd", str(child.fileno()), "--config", json.dumps(self.config)],
                pass_fds=(child.fileno(),),
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_CTYPE": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,  # the server's stderr: the zygote only writes there when it breaks
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_readable)
        try:
            async with asyncio.timeout(_ZYGOTE_START_TIMEOUT_S):
                await asyncio.shield(self._ready)
        except TimeoutError:
            self._lost("did not start in time")
            raise ZygoteError(f"the zygote for {self.interpreter} did not start within {_ZYGOTE_START_TIMEOUT_S:.0f} s") from None
        log.info("zygote for %s started (pid %s, %d KiB)", self.interpreter, self.pid, self.rss_kb)
        if self._on_ready is not None:
            self._on_ready(self)

    async def spawn(self, request: dict[str, object], fds: list[int], on_exit: OnExit) -> int:
        """Fork an environment; ``on_exit(status)`` is called once when it ends (None: unknown)."""
        await self.ensure_started()
        sock = self._sock
        if sock is None:
            raise ZygoteError(f"the zygote for {self.interpreter} is not running")
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        future: asyncio.Future[int] = loop.create_future()
        self._pending[request_id] = (future, on_exit)
        data = json.dumps({**request, "op": "spawn", "id": request_id}).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        try:
            await self._send(sock, data, ancillary)
            try:
                async with asyncio.timeout(_SPAWN_TIMEOUT_S):
                    return await asyncio.shield(future)
            except TimeoutError:
                raise ZygoteError(
                    f"the zygote for {self.interpreter} did not answer a spawn request within {_SPAWN_TIMEOUT_S:.0f} s"
                ) from None
        except BaseException:
            self._pending.pop(request_id, None)
            if future.done() and not future.cancelled() and future.exception() is None:
                # the fork happened although we stopped waiting: the caller cleans up the
                # cgroup, which kills the environment; keep its exit notification quiet
                self._watched[future.result()] = _ignore_exit
            raise

    async def _send(self, sock: socket.socket, data: bytes, ancillary: list[tuple[int, int, array.array[int]]]) -> None:
        """Send one datagram to the zygote, waiting while its socket buffer is full.

        Senders queue on a lock (FIFO), so only one waits for writability at a time. A
        zygote that reads nothing for ``_SPAWN_TIMEOUT_S`` while requests wait is hung
        (each request takes it milliseconds): it is replaced, and every waiter fails.
        """
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            while True:
                if self._sock is not sock:
                    raise ZygoteError(f"the zygote for {self.interpreter} is not running")
                if self._try_send(sock, data, ancillary):
                    return
                fd = sock.fileno()
                writable = self._writable = loop.create_future()
                loop.add_writer(fd, _resolve, writable)
                try:
                    async with asyncio.timeout(_SPAWN_TIMEOUT_S):
                        await writable
                except TimeoutError:
                    if self._sock is sock:
                        if self._try_send(sock, data, ancillary):  # one last try: the loop may have been late
                            return
                        self._lost(f"read no request for {_SPAWN_TIMEOUT_S:.0f} s")
                    raise ZygoteError(
                        f"the zygote for {self.interpreter} accepted no request for {_SPAWN_TIMEOUT_S:.0f} s"
                    ) from None
                finally:
                    self._writable = None
                    if self._sock is sock:  # else _lost() removed it with the socket
                        loop.remove_writer(fd)

    def _try_send(self, sock: socket.socket, data: bytes, ancillary: list[tuple[int, int, array.array[int]]]) -> bool:
        """Sent (True), or the socket's buffer is full (False); other failures raise."""
        try:
            sock.sendmsg([data], ancillary)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            raise ZygoteError(f"cannot send a request to the zygote for {self.interpreter}: {e}") from e

    def restock(self) -> None:
        """Tell the zygote that now is a good time to fork its next spare sandbox."""
        if self._sock is not None:
            try:
                self._sock.send(b'{"op":"restock"}')
            except OSError:
                pass  # full or gone: the zygote restocks on its own after a while

    def give_stock(self, cgroup: Cgroup) -> bool:
        """Hand the zygote the cgroup its next spare joins now (a v1 migration can take
        tens of ms while the kernel waits for an RCU grace period: not on the cold path)."""
        if self._sock is None or self.stock is not None:
            return False
        message = json.dumps({"op": "stock", "cgroup": cgroup.name}).encode()
        fds = array.array("i", cgroup.procs_fds())
        try:
            self._sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError:
            return False
        self.stock = cgroup
        return True

    def take_spare(self, cgroup: Cgroup) -> Spare | None:
        """The zygote's spare sandbox that joined ``cgroup``, now ours to start (or None)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.cgroup != cgroup.name:
            self._spare, spare = spare, None
        return spare

    def start_spare(self, spare: Spare, fds: list[int], on_exit: OnExit) -> bool:
        """Send a spare its spawn (fds: request, channel, log, mount fds); False if it is gone."""
        try:
            message = b"spawn %d 0" % (len(fds) - 3)  # request, channel, log, mount fds (_squall_zygote)
            spare.sync.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        except OSError:  # it died (or, never seen, its buffer is full): the caller asks the zygote
            return False
        finally:
            spare.sync.close()
        pid = spare.pid
        self._watched[pid] = on_exit
        data = json.dumps({"op": "taken", "pid": pid}).encode()
        sock = self._sock
        if sock is not None and not self._try_send_quietly(sock, data):
            task = asyncio.get_running_loop().create_task(self._send_quietly(sock, data))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)
        return True

    def _try_send_quietly(self, sock: socket.socket, data: bytes) -> bool:
        try:
            return self._try_send(sock, data, [])
        except ZygoteError:
            return True  # the zygote is gone: nothing to tell

    async def _send_quietly(self, sock: socket.socket, data: bytes) -> None:
        try:
            await self._send(sock, data, [])
        except ZygoteError as e:
            log.warning("%s", e)

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data, ancillary, _flags, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4 * _FD_SIZE))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, ancillary = b"", []
            fds = _received_fds(ancillary)
            if not data:
                _close_all(fds)
                self._lost("exited")
                return
            try:
                message = json.loads(data)
            except ValueError:
                _close_all(fds)
                log.error("zygote for %s sent garbage: %r", self.interpreter, data[:200])
                continue
            if isinstance(message, dict) and "spare" in message and len(fds) == 1:
                self._take_offer(message, fds[0])
                continue
            _close_all(fds)
            if isinstance(message, dict):
                self._dispatch(message)

    def _take_offer(self, message: dict[str, object], fd: int) -> None:
        self._drop_spare()
        sync = socket.socket(fileno=fd)
        if self.stock is None or self.stock.name != message.get("cgroup"):
            sync.close()  # we have started an environment in that cgroup meanwhile: it took this spare
            return
        sync.setblocking(False)
        self._spare = Spare(int(message["spare"]), sync, self.stock.name)  # type: ignore[arg-type]
        if self._on_spare is not None:
            self._on_spare(self._spare)

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.sync.close()
            if self._on_spare_gone is not None:
                self._on_spare_gone(spare)

    def _dispatch(self, message: dict[str, object]) -> None:
        if "exited" in message:
            pid = int(message["exited"])  # type: ignore[arg-type]
            if self._spare is not None and self._spare.pid == pid:
                self._drop_spare()  # the spare we held died unused
            callback = self._watched.pop(pid, None)
            if callback is not None:
                reason = message.get("reason")
                callback(int(message["status"]), str(reason) if reason else None)  # type: ignore[arg-type]
        elif "ready" in message:
            self.pid = int(message["ready"])  # type: ignore[arg-type]
            self.rss_kb = int(message.get("rss_kb") or 0)  # type: ignore[arg-type]
            self.trees = bool(message.get("trees"))
            self.seccomp = bool(message.get("seccomp"))
            self.tmp_disks = bool(message.get("tmp_disks"))
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(message.get("id"), int):
            pending = self._pending.pop(message["id"], None)  # type: ignore[arg-type]
            if pending is None:
                return
            future, on_exit = pending
            if "pid" in message:
                pid = int(message["pid"])  # type: ignore[arg-type]
                self._watched[pid] = on_exit  # before any await: its exit may be next
                if not future.done():
                    future.set_result(pid)
            elif not future.done():
                future.set_exception(ZygoteError(f"zygote could not start the environment: {message.get('error')}"))
        elif message.get("error"):
            log.error("zygote for %s: %s", self.interpreter, message["error"])

    def _lost(self, why: str) -> None:
        """The zygote is gone: fail what waits on it; its environments are reported dead."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.remove_writer(sock.fileno())
        sock.close()
        if self._writable is not None:
            _resolve(self._writable)  # the sender waiting for room sees the socket gone
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ZygoteError(f"the zygote for {self.interpreter} {why} before it was ready (see the server's log)"))
            self._ready.exception()  # mark retrieved: the start task reports it
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ZygoteError(f"the zygote for {self.interpreter} {why}"))
        self._pending.clear()
        self._drop_spare()
        watched, self._watched = self._watched, {}
        for callback in watched.values():
            callback(None)
        stock, self.stock = self.stock, None
        if stock is not None:
            self._remove(stock)
        if self._proc is not None:
            self._reap(self._proc)
            self._proc = None
        if why != "closed":
            log.warning("zygote for %s %s; a new one starts on the next cold start", self.interpreter, why)

    def _reap(self, proc: subprocess.Popen[bytes], tries: int = 0) -> None:
        if proc.poll() is not None:
            return
        if tries == 20:
            proc.kill()
        asyncio.get_running_loop().call_later(0.05, self._reap, proc, tries + 1)

    async def close(self) -> None:
        proc = self._proc
        self._lost("closed")
        if proc is not None:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", data[: len(data) - len(data) % _FD_SIZE]))
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
