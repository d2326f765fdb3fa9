"""Environments forked from a SnapStart template (the server's side of ``_squall_zygote/template.py``).

Two steps, so that the slow part happens ahead of need (as the zygote keeps spare sandboxes):

* :func:`prepare` — create the environment's cgroup, send the template a *fork* frame with a
  status socket and the cgroup's ``cgroup.procs`` files, and wait for D, the new environment's
  PID 1, to say "up" on the status socket: the datagram's credentials carry D's pid as this
  server sees it. The network is plumbed into D's namespace then and D configures it. On
  cgroup v1 joining a cgroup waits for an RCU grace period (milliseconds): not on the cold path.
* :func:`finish` — send D the environment's channel, log and variables ("go"): it forks the
  runtime. The status socket then brings the runtime's exit status (or EOF: it was killed).
"""

from __future__ import annotations

import asyncio
import array
import functools
import json
import logging
import os
import socket
import struct
from dataclasses import dataclass
from typing import Awaitable, Callable

from squall.sandbox.base import RestoreUnavailable, SandboxSpec
from squall.sandbox.linux.cgroups import CgroupLimits
from squall.sandbox.linux.handle import LinuxHandle

log = logging.getLogger("squall.sandbox.linux")

_UP_TIMEOUT_S = 10.0
_KILLED = -9
_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid

# (the fork frame's meta, the fds it carries) → the template's answer
SendFork = Callable[[dict[str, object], list[int]], Awaitable[dict[str, object]]]


class RestoreFailed(RestoreUnavailable):
    """The template could not fork this environment (the caller starts one from scratch)."""


@dataclass
class Prepared:
    """An environment forked from a template, waiting for its channel and log."""

    handle: LinuxHandle
    status: socket.socket
    gone: bool = False  # it ended (or was dropped) before it was used

    def drop(self) -> None:
        """A spare nobody will use: it exits at EOF; its cgroup goes with it."""
        if not self.gone:
            self.gone = True
            _unwatch(self.status)
            self.status.close()
            self.handle.kill()
            self.handle.remove_cgroup()
            self.handle.ended()


async def prepare(backend, template: LinuxHandle, send: SendFork, spec: SandboxSpec,  # type: ignore[no-untyped-def]
                  shared_bytes: int) -> Prepared:
    """Fork an environment of ``spec``'s version from ``template`` and make it ready but for its fds
    (``shared_bytes``: the template's memory, which it maps, charged to the template)."""
    limits = CgroupLimits(memory_bytes=spec.memory_mb << 20, cpu_cores=None, pids_max=spec.pids_max)
    cgroup = backend.cgroups.create(f"env-{spec.environment_id}", limits)
    handle = LinuxHandle(spec, cgroup, backend.removals.remove)
    handle.shared_bytes = shared_bytes
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    ours.setblocking(False)
    networks = backend.networks if spec.network is not None else None
    try:
        procs = list(cgroup.procs_fds())  # (the cgroup's own: it closes them)
        disk = await _disk(backend, spec)
        meta = {"t": "fork", "tmp_mb": spec.ephemeral_storage_mb, "disk": disk is not None}
        try:  # the template answers once P has forked D (D's "up" waits on the status socket)
            said = await send(meta, [theirs.fileno(), *([disk] if disk is not None else []), *procs])
        finally:
            theirs.close()
            if disk is not None:
                os.close(disk)
        if not said.get("ok"):
            raise RestoreFailed(str(said.get("error") or "the template could not fork"))
        handle._pid = await _up(ours)
        if networks is not None:
            plumbing = networks.reserve(spec.network)
            handle.on_ended.append(functools.partial(networks.release, plumbing))
            await networks.plumb(plumbing, handle._pid)
            ours.send(b"net " + json.dumps(plumbing.for_sandbox(networks.specs[plumbing.network])).encode())
        prepared = Prepared(handle, ours)
        _watch(prepared)
        return prepared
    except BaseException as e:
        _unwatch(ours)
        ours.close()
        handle.kill()
        handle.remove_cgroup()
        handle.ended()
        if isinstance(e, (RestoreFailed, asyncio.CancelledError)):
            raise
        raise RestoreFailed(str(e) or type(e).__name__) from e


def finish(backend, prepared: Prepared, spec: SandboxSpec, channel_fd: int, log_fd: int) -> LinuxHandle:  # type: ignore[no-untyped-def]
    """Start the runtime of a prepared environment: it is ``spec``'s from now on."""
    if prepared.gone:
        raise RestoreFailed("the prepared environment is gone")
    _, request = backend.request(spec)
    handle = prepared.handle
    handle.spec = spec
    message = b"go " + json.dumps({"env": request["env"]}).encode()
    try:
        prepared.status.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [channel_fd, log_fd]))])
    except OSError as e:
        prepared.drop()
        raise RestoreFailed(f"the prepared environment is gone: {e}") from e
    return handle


async def _disk(backend, spec: SandboxSpec) -> int | None:  # type: ignore[no-untyped-def]
    """A disk for /tmp (as a sandbox the zygote forks gets), or None: a tmpfs, in its memory."""
    if backend.disks is None:
        return None
    try:
        return await backend.disks.take(spec.ephemeral_storage_mb)
    except OSError as e:
        log.warning("environment %s gets a tmpfs /tmp (in its memory): %s", spec.environment_id, e)
        return None


async def _up(sock: socket.socket) -> int:
    """D's pid (from its "up" datagram's credentials); RestoreFailed if it never comes."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, _UP_TIMEOUT_S)
    except TimeoutError:
        raise RestoreFailed(f"the restored environment did not start within {_UP_TIMEOUT_S:.0f} s") from None
    finally:
        loop.remove_reader(sock.fileno())
    data, ancillary, _flags, _ = sock.recvmsg(64, socket.CMSG_SPACE(_CREDENTIALS.size))
    if data != b"up":
        raise RestoreFailed("the restored environment ended while it was set up (see the snapshot's log)")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CREDENTIALS.size:
            return _CREDENTIALS.unpack_from(payload)[0]
    raise RestoreFailed("the restored environment's pid is unknown (no credentials)")


def _watch(prepared: Prepared) -> None:
    """Report the runtime's exit status (or, at EOF, that it was killed) to the handle once."""
    sock = prepared.status
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        loop.remove_reader(sock.fileno())
        sock.close()
        prepared.gone = True
        status = struct.unpack("!i", data[:4])[0] if len(data) >= 4 else _KILLED
        prepared.handle.on_exit(status)

    loop.add_reader(sock.fileno(), readable)


def _unwatch(sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        asyncio.get_running_loop().remove_reader(sock.fileno())
