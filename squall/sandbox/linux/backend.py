"""The ``linux`` backend: each environment in its own namespaces, cgroup and root filesystem.

Environments are forked from a zygote (``zygote.py``: one pre-initialised, single-threaded
Python per interpreter, started on first need and restarted if it dies), which builds the
sandbox in the child: new mount, pid, ipc, uts (and, for ``network=False``, net)
namespaces; a read-only root of tmpfs with read-only binds of /usr and the interpreter; the
code read-only at /var/task; a private, size-capped /tmp; its own /proc; pivot_root; an
unprivileged uid with no_new_privs. The server talks to the zygote over a
``SOCK_SEQPACKET`` socketpair (protocol in ``zygote.py``); tenant data (environment
variables, paths) goes in a memfd the zygote never reads.

Limits live in the environment's cgroup (``cgroups.py``): memory = MemorySize (no swap),
pids.max, and a CPU quota proportional to memory, applied once init is done (Lambda's init
burst). ``kill()`` kills the whole cgroup; the exit status is reported by the zygote,
the parent of every environment. To keep slow work off cold starts, the zygote keeps a
spare sandbox forked ahead of time, and the backend gives it a cgroup to join ahead of
time too ("stock"): when an environment has finished starting, the next ones get ready.
"""

from __future__ import annotations

import array
import asyncio
import functools
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

import squall.runtimes.python
from squall.sandbox.base import SandboxSpec
from squall.sandbox.linux.peers import peer_is_among
from squall.sandbox.linux.cgroups import Cgroup, CgroupLimits, Cgroups, CgroupsUnavailable

log = logging.getLogger("squall.sandbox.linux")

ZYGOTE_SCRIPT = Path(__file__).resolve().parent / "zygote.py"
PYTHON_RUNTIME_DIR = Path(squall.runtimes.python.__file__).resolve().parent
BOOTSTRAP = PYTHON_RUNTIME_DIR / "bootstrap.py"
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
NOBODY = 65534
PIVOT_ROOT_ARCHES = ("x86_64", "amd64", "aarch64", "arm64")
NAMESPACES = ("mnt", "pid", "ipc", "uts")

_ZYGOTE_START_TIMEOUT_S = 30.0
_SPAWN_TIMEOUT_S = 10.0
_KILLED = -9
# A stocked cgroup is created before anyone knows its environment's memory size: with the
# largest one (Lambda's maximum), lowered at spawn (cgroup v1 refuses memory above memsw).
_STOCK_LIMITS = CgroupLimits(memory_bytes=10240 << 20, cpu_cores=None, pids_max=1024)


class SandboxUnavailable(Exception):
    """This machine cannot run the linux backend; the message says why and what to do."""


class ZygoteError(Exception):
    pass


class Zygote:
    """The server's side of one zygote process (one per interpreter)."""

    def __init__(self, interpreter: str, config: dict[str, object]) -> None:
        self.interpreter = interpreter
        self.config = config
        self.pid: int | None = None
        self.rss_kb = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[int], Callable[[int | None], None]]] = {}
        self._watched: dict[int, Callable[[int | None], None]] = {}
        self._ids = itertools.count(1)
        self._starting: asyncio.Task[None] | None = None
        # One sender at a time: a loop keeps one writer callback per fd, so concurrent
        # senders each waiting for writability with add_writer() would replace each
        # other's callbacks and all but one would wait forever (a burst of cold starts
        # fills the socket's send buffer).
        self._send_lock = asyncio.Lock()
        self._writable: asyncio.Future[None] | None = None  # what the sender holding it waits on
        # the cgroup that the zygote's next spare sandbox joins ahead of time (see stock())
        self.stock: Cgroup | None = None

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

    async def spawn(self, request: dict[str, object], fds: list[int], on_exit: Callable[[int | None], None]) -> int:
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
                self._watched[future.result()] = lambda status: None
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
                try:
                    sock.sendmsg([data], ancillary)
                    return
                except BlockingIOError:
                    pass
                except OSError as e:
                    raise ZygoteError(f"cannot send a request to the zygote for {self.interpreter}: {e}") from e
                fd = sock.fileno()
                writable = self._writable = loop.create_future()
                loop.add_writer(fd, _resolve, writable)
                try:
                    async with asyncio.timeout(_SPAWN_TIMEOUT_S):
                        await writable
                except TimeoutError:
                    if self._sock is sock:
                        try:  # one last try: the loop itself may have been late
                            sock.sendmsg([data], ancillary)
                            return
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            raise ZygoteError(f"cannot send a request to the zygote for {self.interpreter}: {e}") from e
                        self._lost(f"read no request for {_SPAWN_TIMEOUT_S:.0f} s")
                    raise ZygoteError(
                        f"the zygote for {self.interpreter} accepted no request for {_SPAWN_TIMEOUT_S:.0f} s"
                    ) from None
                finally:
                    self._writable = None
                    if self._sock is sock:  # else _lost() removed it with the socket
                        loop.remove_writer(fd)

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

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost("exited")
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.error("zygote for %s sent garbage: %r", self.interpreter, data[:200])
                continue
            if isinstance(message, dict):
                self._dispatch(message)

    def _dispatch(self, message: dict[str, object]) -> None:
        if "exited" in message:
            callback = self._watched.pop(int(message["exited"]), None)  # type: ignore[arg-type]
            if callback is not None:
                callback(int(message["status"]))  # type: ignore[arg-type]
        elif "ready" in message:
            self.pid = int(message["ready"])  # type: ignore[arg-type]
            self.rss_kb = int(message.get("rss_kb") or 0)  # type: ignore[arg-type]
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
        watched, self._watched = self._watched, {}
        for callback in watched.values():
            callback(None)
        stock, self.stock = self.stock, None
        if stock is not None:
            remove_cgroup(stock)
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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LinuxHandle:
    """One environment: the zygote's child ``pid`` and the environment's cgroup."""

    def __init__(self, spec: SandboxSpec, cgroup: Cgroup, on_started: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.cgroup = cgroup
        self.on_started = on_started
        self._pid: int | None = None
        self._returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._oom = False
        self._peak: int | None = None
        self._removed = False

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self._removed:
            return
        try:
            self.cgroup.kill_all(timeout=0)  # one round; the exit report follows
        except OSError as e:
            log.warning("cannot kill environment %s: %s", self.spec.environment_id, e)

    def admits(self, connection: socket.socket) -> bool:
        """Whether a connection to this environment's Runtime API comes from its own processes.

        With a network namespace of its own, only they can reach it; on the host's loopback
        anyone could, so the peer socket must be held by a process in the environment's cgroup.
        """
        return not self.spec.network or peer_is_among(connection, self.cgroup.pids())

    def reset_peak_memory(self) -> None:
        if not self._removed:
            try:
                self.cgroup.reset_peak()
            except OSError:
                pass

    def peak_memory_bytes(self) -> int | None:
        if self._removed:
            return self._peak
        try:
            return self.cgroup.peak_bytes()
        except OSError:
            return self._peak

    def oom_killed(self) -> bool:
        if self._removed:
            return self._oom
        try:
            return self.cgroup.oom_kills() > 0
        except OSError:
            return self._oom

    def init_done(self) -> None:
        if self.on_started is not None:  # our start is over: prepare the next one, right after
            asyncio.get_running_loop().call_later(0.005, self.on_started)
            self.on_started = None
        if not self._removed:
            try:
                self.cgroup.set_cpu(self.spec.cpu_cores)  # capped at the host's cores
            except OSError as e:
                log.warning("cannot set the CPU quota of %s: %s", self.spec.environment_id, e)

    def on_exit(self, status: int | None) -> None:
        """Called by the zygote client when the environment's main process has ended."""
        if status is None:  # the zygote died: we cannot know; make sure it is gone
            self.kill()
            status = _KILLED
        try:
            self._oom = self.cgroup.oom_kills() > 0
            self._peak = self.cgroup.peak_bytes()
        except (OSError, ValueError):
            pass
        self._returncode = status
        self.remove_cgroup()
        if not self._exited.done():
            self._exited.set_result(status)

    def remove_cgroup(self) -> None:
        if not self._removed:
            self._removed = True
            remove_cgroup(self.cgroup)


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


class LinuxBackend:
    name = "linux"
    isolated = True

    def __init__(
        self,
        scope: str,
        data_dir: Path,
        cgroups: Cgroups,
        uid: int = NOBODY,
        gid: int = NOBODY,
        hostname: str = "localhost",
    ) -> None:
        self.scope = scope
        self.cgroups = cgroups
        self.uid = uid
        self.gid = gid
        self.hostname = hostname
        self.jail_dir = prepare_jail_dir(data_dir)
        self._zygotes: dict[str, Zygote] = {}

    def zygote_config(self) -> dict[str, object]:
        return {
            "jail_dir": str(self.jail_dir),
            "uid": self.uid,
            "gid": self.gid,
            "hostname": self.hostname,
            "runtime_dir": str(PYTHON_RUNTIME_DIR),
            "bootstrap": str(BOOTSTRAP),
        }

    def _zygote(self, interpreter: str) -> Zygote:
        zygote = self._zygotes.get(interpreter)
        if zygote is None:
            zygote = self._zygotes[interpreter] = Zygote(interpreter, self.zygote_config())
        return zygote

    def request(self, spec: SandboxSpec) -> tuple[str, dict[str, object]]:
        """The zygote that starts ``spec``, and what the sandbox is told (the tenant's data)."""
        code_dir = _resolved(str(spec.code_dir))
        runtime_dir = _resolved(str(spec.runtime_dir)) if spec.runtime_dir is not None else None
        moves = [(code_dir, TASK_ROOT), (str(spec.code_dir), TASK_ROOT)]
        if runtime_dir is not None:
            moves += [(runtime_dir, RUNTIME_DIR), (str(spec.runtime_dir), RUNTIME_DIR)]
        env = {key: _jail_value(value, moves) for key, value in spec.env.items()}
        env.pop("_SQUALL_CHANNEL_FD", None)  # always fd 3 here
        env["LAMBDA_TASK_ROOT"] = TASK_ROOT
        env["LAMBDA_RUNTIME_DIR"] = RUNTIME_DIR
        env["_SQUALL_MEMORY_PROBE"] = "0"  # the cgroup measures peak memory
        argv = list(spec.argv)
        python = len(argv) == 3 and argv[1] == "-s" and _resolved(argv[2]) == str(BOOTSTRAP) and os.path.isabs(argv[0])
        # PYTHON* variables act at interpreter start-up: such a function gets a fresh one
        in_process = python and not any(key.startswith("PYTHON") for key in env)
        interpreter = argv[0] if python else sys.executable
        jailed_argv = [_jail_path(arg, code_dir, runtime_dir) for arg in argv]
        request: dict[str, object] = {
            "mode": "python" if in_process else "exec",
            "argv": jailed_argv,
            "env": env,
            "code_dir": code_dir,
            "tmp_mb": spec.ephemeral_storage_mb,
            "loopback": not spec.network,  # a network namespace of its own: bring lo up
        }
        if runtime_dir is not None:
            request["runtime_dir"] = runtime_dir
        if spec.runtime_api:  # Lambda's address where the sandbox has its own loopback
            request["runtime_api_port"] = 0 if spec.network else 9001
        return interpreter, request

    async def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> LinuxHandle:
        interpreter, request = self.request(spec)
        zygote = self._zygote(interpreter)
        if not zygote.alive:
            await zygote.ensure_started()
            self.replenish(zygote)
        limits = CgroupLimits(memory_bytes=spec.memory_mb << 20, cpu_cores=None, pids_max=spec.pids_max)
        meta: dict[str, object] = {"network": spec.network}
        cgroup = None
        if spec.network and zygote.stock is not None:  # the next spare is in it already
            cgroup, zygote.stock = zygote.stock, None
            try:
                set_limits(cgroup, limits)
                meta["stocked"] = cgroup.name
            except OSError as e:
                log.warning("cannot set the limits of a stocked cgroup: %s", e)
                remove_cgroup(cgroup)
                cgroup = None
        if cgroup is None:
            cgroup = self.cgroups.create(f"env-{spec.environment_id}", limits)
        handle = LinuxHandle(spec, cgroup, lambda: self.replenish(zygote))
        payload = os.memfd_create("squall-request", os.MFD_CLOEXEC)
        try:
            os.write(payload, json.dumps(request).encode())
            procs = list(cgroup.procs_fds())
            meta["procs"] = len(procs)
            handle._pid = await zygote.spawn(meta, [payload, channel_fd, log_fd, *procs], handle.on_exit)
        except BaseException:
            handle.kill()
            handle.remove_cgroup()
            raise
        finally:
            os.close(payload)
        return handle

    def replenish(self, zygote: Zygote) -> None:
        """Let the zygote prepare its next spare sandbox, in a cgroup of its own already."""
        if not zygote.alive:
            return
        if zygote.stock is None:
            try:
                cgroup = self.cgroups.create(f"env-{uuid.uuid4().hex}", _STOCK_LIMITS)
            except OSError as e:
                log.warning("cannot create a cgroup ahead of time: %s", e)
            else:
                if zygote.give_stock(cgroup):
                    return
                remove_cgroup(cgroup)
        zygote.restock()

    def reap_orphans(self) -> int:
        """Kill and remove the cgroups a previous run of this server left behind."""
        count = 0
        for group in self.cgroups.leftovers():
            try:
                if group.pids():
                    count += 1
                group.kill_all()
                group.remove()
            except OSError as e:
                log.warning("cannot clean up leftover cgroup %s: %s", group.name, e)
        return count

    def describe(self) -> dict[str, object]:
        cgroups = self.cgroups.describe()
        return {
            "name": self.name,
            "isolated": True,
            "cgroup_version": self.cgroups.version,
            "cgroups": cgroups,
            "namespaces": list(NAMESPACES) + ["net (tag squall:network=none)"],
            "uid": self.uid,
            "gid": self.gid,
            "root": "tmpfs, read-only; /usr and the interpreter read-only; code at /var/task (ro); private /tmp",
            "zygotes": {z.interpreter: {"pid": z.pid, "rss_kb": z.rss_kb} for z in self._zygotes.values() if z.alive},
        }

    async def close(self) -> None:
        zygotes, self._zygotes = list(self._zygotes.values()), {}
        for zygote in zygotes:
            await zygote.close()
        await removals_done()
        self.cgroups.close()


def set_limits(cgroup: Cgroup, limits: CgroupLimits) -> None:
    """Give a stocked cgroup its environment's limits (memory only ever goes down here)."""
    cgroup._apply(limits)  # the cgroups module's own writer, in the right order for v1


@functools.lru_cache(maxsize=4096)
def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def _jail_value(value: str, moves: list[tuple[str, str]]) -> str:
    for host, jailed in moves:
        value = value.replace(host, jailed)
    return value


def _jail_path(arg: str, code_dir: str, runtime_dir: str | None = None) -> str:
    """An argument as the sandbox sees it (code at /var/task, the runtime at /var/runtime)."""
    for host, jailed in ((code_dir, TASK_ROOT), (runtime_dir or str(PYTHON_RUNTIME_DIR), RUNTIME_DIR)):
        if arg == host or arg.startswith(host + "/"):
            return jailed + arg[len(host):]
    return arg


def prepare_jail_dir(data_dir: Path) -> Path:
    """The empty directory each sandbox mounts its root on (in its own mount namespace)."""
    run = data_dir / "sandbox"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    jail = run / "root"
    jail.mkdir(mode=0o700, exist_ok=True)
    return jail.resolve()


def unavailable_reason(data_dir: Path) -> str | None:
    """Why a sandbox cannot be built here (kernel, privileges), or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"it needs Linux (this is {sys.platform})"
    machine = os.uname().machine
    if machine not in PIVOT_ROOT_ARCHES:
        return f"architecture {machine} is not supported yet (x86_64 and aarch64 are)"
    if os.geteuid() != 0:
        return "it needs root (namespaces, mounts and cgroups); run `squall server` as root"
    config = {
        "jail_dir": str(prepare_jail_dir(data_dir)),
        "uid": NOBODY,
        "gid": NOBODY,
        "runtime_dir": str(PYTHON_RUNTIME_DIR),
        "bootstrap": str(BOOTSTRAP),
    }
    try:
        probe = subprocess.run(
            [sys.executable, "-s", str(ZYGOTE_SCRIPT), "--probe", "--config", json.dumps(config)],
            env={"PATH": "/usr/bin:/bin", "LC_CTYPE": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"the sandbox probe could not run: {e}"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        return "building a test sandbox failed: " + (detail[-1] if detail else f"status {probe.returncode}") + (
            " (namespaces or mounts are not permitted here: a container needs CAP_SYS_ADMIN and an unconfined "
            "seccomp/AppArmor profile)"
        )
    return None


def create_linux_backend(scope: str, data_dir: Path) -> LinuxBackend:
    """The linux backend, or :class:`SandboxUnavailable` saying what is missing."""
    reason = unavailable_reason(data_dir)
    if reason is not None:
        raise SandboxUnavailable(reason)
    try:
        cgroups = Cgroups.detect(scope)
    except CgroupsUnavailable as e:
        raise SandboxUnavailable(f"cgroups cannot enforce limits here: {e.reason}") from None
    return LinuxBackend(scope, data_dir, cgroups)
