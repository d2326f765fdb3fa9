"""The ``linux`` backend: each environment in its own namespaces, cgroup and root filesystem.

Environments are forked from a zygote (``_squall_zygote``, a package run by path: one pre-initialised, single-threaded
Python per interpreter, started on first need and restarted if it dies), which builds the
sandbox in the child: new mount, pid, ipc, uts and net namespaces; a read-only root of tmpfs with read-only binds of /usr and the interpreter; the
code read-only at /var/task; a private, size-capped /tmp; its own /proc; pivot_root; an
unprivileged uid with no_new_privs. The server talks to the zygote over a
``SOCK_SEQPACKET`` socketpair (protocol in ``_squall_zygote``); tenant data (environment
variables, paths) goes in a memfd the zygote never reads. The server's side of that socket is
``zygote_client.py``; an environment's handle is ``handle.py``.

Limits live in the environment's cgroup (``cgroups.py``): memory = MemorySize (no swap),
pids.max, and a CPU quota proportional to memory, applied once init is done (Lambda's init
burst). ``kill()`` kills the whole cgroup; the exit status is reported by the zygote,
the parent of every environment. To keep slow work off cold starts, the zygote keeps a
spare sandbox forked ahead of time, and the backend gives it a cgroup to join ahead of
time too ("stock"): when an environment has finished starting, the next ones get ready.
A spare in the stocked cgroup is handed to the server, which then starts it without the
zygote: one process hop less on a cold start.

Networks (``network.py``): every sandbox has its own network namespace; a function on a
network gets an ``eth0`` there, a veth into its network's bridge. A spare handed to the
server is plumbed into the default network at once (off the cold path); a function of
another network moves its veth to that bridge, one without a network has it deleted. A
sandbox the zygote forks on demand is plumbed as soon as its pid is known, while it builds
its jail; it waits for ``eth0`` before its runtime may run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import squall.runtimes.python
from squall.sandbox.base import SandboxSpec
from squall.sandbox.linux.cgroup_removal import CgroupRemovals
from squall.sandbox.linux.cgroups import Cgroup, CgroupLimits, Cgroups, CgroupsUnavailable
from squall.sandbox.linux.ephemeral import EphemeralDisks, EphemeralUnavailable
from squall.sandbox.linux.handle import LinuxHandle, shared_resident_bytes
from squall.sandbox.linux import restore
from squall.sandbox.linux.restore import Prepared, SendFork
from squall.sandbox.linux.network import DEFAULT, NetworkFull, Networks, NetworkSpec, NetworkUnavailable, Plumbing
from squall.sandbox.linux.trees import open_tree
from squall.sandbox.linux.zygote_client import ZYGOTE_SCRIPT, Spare, Zygote, ZygoteError

PER_SANDBOX_DIRS = ("/tmp", "/dev/shm")  # what every sandbox mounts anew (as _squall_zygote/syscalls.py)

__all__ = [
    "LinuxBackend",
    "LinuxHandle",
    "SandboxUnavailable",
    "ZygoteError",
    "create_linux_backend",
    "prepare_jail_dir",
    "unavailable_reason",
]

log = logging.getLogger("squall.sandbox.linux")

PYTHON_RUNTIME_DIR = Path(squall.runtimes.python.__file__).resolve().parent
BOOTSTRAP = PYTHON_RUNTIME_DIR / "bootstrap.py"
TASK_ROOT = "/var/task"
OPT_DIR = "/opt"
RUNTIME_DIR = "/var/runtime"
NOBODY = 65534
PIVOT_ROOT_ARCHES = ("x86_64", "amd64", "aarch64", "arm64")
NAMESPACES = ("mnt", "pid", "ipc", "uts", "net")

# A stocked cgroup is created before anyone knows its environment's memory size: with the
# largest one (Lambda's maximum), lowered at spawn (cgroup v1 refuses memory above memsw).
_STOCK_LIMITS = CgroupLimits(memory_bytes=10240 << 20, cpu_cores=None, pids_max=1024)


class SandboxUnavailable(Exception):
    """This machine cannot run the linux backend; the message says why and what to do."""


class LinuxBackend:
    name = "linux"
    isolated = True
    layers = True  # a function's layers are mounted at /opt

    def __init__(
        self,
        scope: str,
        data_dir: Path,
        cgroups: Cgroups,
        uid: int = NOBODY,
        gid: int = NOBODY,
        hostname: str = "localhost",
        networks: Networks | None = None,
        networks_problem: str | None = None,
        disks: EphemeralDisks | None = None,
        disks_problem: str | None = None,
    ) -> None:
        self.scope = scope
        self.cgroups = cgroups
        # None: sandboxes have their loopback only (networks_problem says why)
        self.networks = networks
        self.networks_problem = networks_problem
        self._spare_plumbing: dict[int, tuple[Plumbing, asyncio.Task[None]]] = {}
        # /tmp on a disk of its own (None: a tmpfs, counted as the function's memory; disks_problem says why)
        self.disks = disks
        self.disks_problem = disks_problem
        self.uid = uid
        self.gid = gid
        self.hostname = hostname
        self.jail_dir = prepare_jail_dir(data_dir)
        self.removals = CgroupRemovals()
        self._zygotes: dict[str, Zygote] = {}
        self._zygote_shares: dict[str, int] = {}  # interpreter → bytes an environment maps from its zygote
        self._measuring: set[str] = set()
        # spares build their jail before a request, the code arriving as a mount fd (where the
        # kernel has open_tree/move_mount); False: each sandbox builds it after its request
        self.mount_fds = _can_open_tree(data_dir)

    def zygote_config(self) -> dict[str, object]:
        return {
            "jail_dir": str(self.jail_dir),
            "uid": self.uid,
            "gid": self.gid,
            "hostname": self.hostname,
            "runtime_dir": str(PYTHON_RUNTIME_DIR),
            "bootstrap": str(BOOTSTRAP),
            "mount_fds": self.mount_fds,
            "tmp_disks": self.disks is not None,  # spares leave /tmp for the request's disk
        }

    def _zygote(self, interpreter: str) -> Zygote:
        zygote = self._zygotes.get(interpreter)
        if zygote is None:
            zygote = self._zygotes[interpreter] = Zygote(
                interpreter, self.zygote_config(), self.removals.remove, on_ready=self.replenish,
                on_spare=self._plumb_spare, on_spare_gone=self._spare_gone,
            )
        return zygote

    def request(self, spec: SandboxSpec) -> tuple[str, dict[str, object]]:
        """The zygote that starts ``spec``, and what the sandbox is told (the tenant's data)."""
        code_dir = _resolved(str(spec.code_dir))
        runtime_dir = _resolved(str(spec.runtime_dir)) if spec.runtime_dir is not None else None
        opt_dir = _resolved(str(spec.opt_dir)) if spec.opt_dir is not None else None
        moves = [(code_dir, TASK_ROOT), (str(spec.code_dir), TASK_ROOT)]
        if runtime_dir is not None:
            moves += [(runtime_dir, RUNTIME_DIR), (str(spec.runtime_dir), RUNTIME_DIR)]
        if opt_dir is not None:
            moves += [(opt_dir, OPT_DIR), (str(spec.opt_dir), OPT_DIR)]
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
        jailed_argv = [_jail_path(arg, code_dir, runtime_dir, opt_dir) for arg in argv]
        if spec.template and not in_process:
            raise ZygoteError("only the built-in Python runtime, started in-process, can be a SnapStart template")
        request: dict[str, object] = {
            "mode": ("python-template" if spec.template else "python") if in_process else "exec",
            "argv": jailed_argv,
            "env": env,
            "code_dir": code_dir,
            "tmp_mb": spec.ephemeral_storage_mb,
        }
        if runtime_dir is not None:
            request["runtime_dir"] = runtime_dir
        if opt_dir is not None:
            request["opt_dir"] = opt_dir
        if spec.runtime_api:  # Lambda's address: the sandbox has a loopback of its own
            request["runtime_api_port"] = 9001
        return interpreter, request

    def _share_of(self, zygote: Zygote, handle: LinuxHandle) -> None:
        """What an environment forked from ``zygote`` maps from it (for Max Memory Used): measured
        once per zygote, off the event loop, on its first environment (``shared_resident_bytes``);
        until then the zygote's own resident size stands in for it."""
        known = self._zygote_shares.get(zygote.interpreter)
        handle.shared_bytes = known if known is not None else zygote.rss_kb * 1024
        if known is not None or zygote.interpreter in self._measuring:
            return
        self._measuring.add(zygote.interpreter)

        def measure() -> None:
            time.sleep(0.05)  # its runtime has started by then
            shared = shared_resident_bytes(handle.cgroup.pids())
            if shared:
                self._zygote_shares[zygote.interpreter] = handle.shared_bytes = shared
            self._measuring.discard(zygote.interpreter)

        asyncio.get_running_loop().run_in_executor(None, measure)

    # ---- networks ----------------------------------------------------------------------
    def _plumb_spare(self, spare: Spare) -> None:
        """A spare was handed over: give it its eth0 on the default network now, off the cold path."""
        if self.networks is None:
            return
        try:
            plumbing = self.networks.reserve(DEFAULT)
        except NetworkFull as e:
            log.warning("%s", e)
            return
        task = asyncio.get_running_loop().create_task(self._plumb_ahead(spare, plumbing))
        self._spare_plumbing[spare.pid] = (plumbing, task)

    async def _plumb_ahead(self, spare: Spare, plumbing: Plumbing) -> None:
        assert self.networks is not None
        await self.networks.plumb(plumbing, spare.pid)
        net = plumbing.for_sandbox(self.networks.specs[plumbing.network])
        try:  # B configures eth0 now, while it waits: a start then has nothing left to do for it
            spare.sync.send(b"net " + json.dumps(net).encode())
        except OSError:
            pass  # it died meanwhile: the zygote says so

    def _spare_gone(self, spare: Spare) -> None:
        entry = self._spare_plumbing.pop(spare.pid, None)
        if entry is not None:
            self._release_when_done(*entry)  # its veth goes with its namespace

    def _release_when_done(self, plumbing: Plumbing, task: asyncio.Task[None]) -> None:
        networks = self.networks
        assert networks is not None

        def release(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.debug("plumbing a spare that went away: %s", done.exception())
            networks.release(plumbing)

        task.add_done_callback(release)

    async def _network_of_spare(self, spare: Spare, network: str | None) -> Plumbing | None:
        """The spare's plumbing made right for ``network`` (None: no network at all); not
        done yet when the spare had none ready."""
        networks = self.networks
        entry = self._spare_plumbing.pop(spare.pid, None)
        if networks is None:
            return None
        if entry is None:
            return networks.reserve(network) if network is not None else None
        plumbing, task = entry
        try:
            await asyncio.shield(task)
        except Exception as e:
            log.warning("cannot plumb a spare sandbox ahead (it is plumbed on start): %s", e)
            plumbing.done = False
        except BaseException:  # cancelled: the address goes back once the plumbing is over
            self._release_when_done(plumbing, task)
            raise
        if network is None:
            networks.discard(plumbing)  # off the cold path: deleting a veth waits ~20 ms for RCU
            return None
        if plumbing.network != network:
            return await networks.move(plumbing, network)
        return plumbing

    async def _plumb_started(self, plumbing: Plumbing, pid: int) -> None:
        """Plumb a sandbox its start found without (its B waits for eth0)."""
        assert self.networks is not None
        if plumbing.done:  # the spare it was made for is gone: a new veth, same address
            plumbing.done = False
            plumbing.host_ifname = self.networks.new_ifname()
        await self.networks.plumb(plumbing, pid)

    async def start(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> LinuxHandle:
        interpreter, request = self.request(spec)
        zygote = self._zygote(interpreter)
        # Every start waits for the zygote to be ready, not only the one that started it: how
        # the code is handed over (mount fds or paths) is known only then (zygote.trees).
        await zygote.ensure_started()
        limits = CgroupLimits(memory_bytes=spec.memory_mb << 20, cpu_cores=None, pids_max=spec.pids_max)
        meta: dict[str, object] = {}
        cgroup = None
        spare = None
        network = spec.network if self.networks is not None else None
        plumbing: Plumbing | None = None
        if zygote.stock is not None:  # the next spare is in it already
            cgroup, zygote.stock = zygote.stock, None
            try:
                set_limits(cgroup, limits)
                meta["stocked"] = cgroup.name
                spare = zygote.take_spare(cgroup)
            except OSError as e:
                log.warning("cannot set the limits of a stocked cgroup: %s", e)
                self.removals.remove(cgroup)
                cgroup = None
        if cgroup is None:
            cgroup = self.cgroups.create(f"env-{spec.environment_id}", limits)
        handle = LinuxHandle(spec, cgroup, self.removals.remove, lambda: self.replenish(zygote))
        if request["mode"] in ("python", "python-template"):  # forked from the zygote: what it maps from it is not in its cgroup
            self._share_of(zygote, handle)
        payload = os.memfd_create("squall-request", os.MFD_CLOEXEC)
        trees: list[int] = []
        try:
            if spare is not None:
                plumbing = await self._network_of_spare(spare, network)
            elif network is not None:
                assert self.networks is not None
                plumbing = self.networks.reserve(network)  # plumbed once B's pid is known
            if plumbing is not None:
                assert self.networks is not None
                request["net"] = plumbing.for_sandbox(self.networks.specs[plumbing.network])
                handle.on_ended.append(functools.partial(self.networks.release, plumbing))
            if zygote.trees:  # its sandboxes enter the jail ahead: the code comes as mount fds
                trees.append(open_tree(str(request["code_dir"])))
                if "runtime_dir" in request:
                    trees.append(open_tree(str(request["runtime_dir"])))
                if "opt_dir" in request:
                    trees.append(open_tree(str(request["opt_dir"])))
            if self.disks is not None and zygote.tmp_disks:
                try:
                    trees.append(await self.disks.take(spec.ephemeral_storage_mb))
                    request["tmp_disk"] = True  # the last mount fd
                except OSError as e:
                    log.warning("environment %s gets a tmpfs /tmp (in its memory): %s", spec.environment_id, e)
            os.write(payload, json.dumps(request).encode())
            meta["trees"] = len(trees)
            fds = [payload, channel_fd, log_fd, *trees]
            if spare is not None and zygote.start_spare(spare, fds, handle.on_exit):
                handle._pid = spare.pid  # the spare had joined the cgroup: the zygote is not involved
            else:
                procs = list(cgroup.procs_fds())
                meta["procs"] = len(procs)
                handle._pid = await zygote.spawn(meta, [*fds, *procs], handle.on_exit)
            if plumbing is not None and (not plumbing.done or handle.pid != spare_pid(spare)):
                try:
                    await self._plumb_started(plumbing, handle.pid)
                except Exception as e:  # its sandbox may have ended first: then its own reason tells
                    try:
                        await asyncio.wait_for(handle.wait(), 1.0)
                    except TimeoutError:
                        raise ZygoteError(f"cannot give the environment its network: {e}") from e
        except BaseException:
            if spare is not None and handle.pid is None:
                spare.sync.close()  # not sent (start_spare closes it once it has)
            handle.kill()
            handle.remove_cgroup()
            handle.ended()
            raise
        finally:
            os.close(payload)
            for fd in trees:
                os.close(fd)
        return handle

    async def prepare_restore(self, template: LinuxHandle, send: SendFork, spec: SandboxSpec,
                              shared_bytes: int) -> Prepared:
        """An environment of ``spec``'s version forked from ``template``, made ready but for
        its channel and log (restore.py): ahead of need, or on a cold start without one."""
        return await restore.prepare(self, template, send, spec, shared_bytes)

    def finish_restore(self, prepared: Prepared, spec: SandboxSpec, channel_fd: int, log_fd: int) -> LinuxHandle:
        return restore.finish(self, prepared, spec, channel_fd, log_fd)

    def replenish(self, zygote: Zygote) -> None:
        """Let the zygote prepare its next spare sandbox, in a cgroup of its own already
        (and make the next /tmp disks)."""
        if self.disks is not None:
            self.disks.refill()
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
                self.removals.remove(cgroup)
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

    def gateways(self) -> list[str]:
        """The host's address on each network: the server listens there too (environments
        reach its API there, and only there)."""
        return [str(spec.gateway) for spec in self.networks.specs.values()] if self.networks is not None else []

    def host_address(self, network: str | None) -> str | None:
        """The gateway of the environment's network (the server listens there too)."""
        if network is None or self.networks is None or network not in self.networks.specs:
            return None
        return str(self.networks.specs[network].gateway)

    def _describe_tmp(self) -> str:
        if self.disks is None:
            return f"a tmpfs, EphemeralStorage in size, counted as the function's memory ({self.disks_problem})"
        interpreter = os.path.abspath(sys.prefix)  # the venv (or installation) the runtimes use
        if any(interpreter == top or interpreter.startswith(top + "/") for top in PER_SANDBOX_DIRS):
            # Each sandbox mounts /tmp (and /dev/shm) anew; an interpreter living there is bound in
            # after that mount, so its environments keep a tmpfs /tmp (see _squall_zygote/jail.py).
            return (f"a tmpfs for Python functions, counted as their memory: this server's Python "
                    f"({interpreter}) lives under /tmp or /dev/shm — install Squall elsewhere to give them a "
                    f"disk; {self.disks.describe()} for other runtimes")
        return self.disks.describe()

    def describe(self) -> dict[str, object]:
        cgroups = self.cgroups.describe()
        return {
            "name": self.name,
            "isolated": True,
            "cgroup_version": self.cgroups.version,
            "cgroups": cgroups,
            "namespaces": list(NAMESPACES),
            "networks": self.networks.describe() if self.networks is not None else {
                "available": False, "problem": self.networks_problem,
                "effect": "environments have their loopback only: no network"},
            "uid": self.uid,
            "gid": self.gid,
            "root": "tmpfs, read-only; /usr and the interpreter read-only; code at /var/task (ro); private /tmp",
            "tmp": self._describe_tmp(),
            "seccomp": "Docker's default refusals and stricter (no new namespaces, mounts, keys, bpf, io_uring, ptrace, …)",
            "zygotes": {
                z.interpreter: {"pid": z.pid, "rss_kb": z.rss_kb, "seccomp": z.seccomp}
                for z in self._zygotes.values() if z.alive
            },
        }

    async def close(self) -> None:
        zygotes, self._zygotes = list(self._zygotes.values()), {}
        for zygote in zygotes:
            await zygote.close()
        await self.removals.done()
        self.cgroups.close()
        if self.networks is not None:
            await asyncio.to_thread(self.networks.close)
        if self.disks is not None:
            await asyncio.to_thread(self.disks.close)


def _can_open_tree(data_dir: Path) -> bool:
    """Whether the server can hand out code under ``data_dir`` as mount fds."""
    try:
        os.close(open_tree(str(data_dir)))
    except OSError as e:
        log.info("sandboxes build their jail after each request: open_tree fails here (%s)", e)
        return False
    return True


def spare_pid(spare: Spare | None) -> int | None:
    return spare.pid if spare is not None else None


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


def _jail_path(arg: str, code_dir: str, runtime_dir: str | None = None, opt_dir: str | None = None) -> str:
    """An argument as the sandbox sees it (code at /var/task, the runtime at /var/runtime, layers at /opt)."""
    places = [(code_dir, TASK_ROOT), (runtime_dir or str(PYTHON_RUNTIME_DIR), RUNTIME_DIR)]
    if opt_dir is not None:
        places.append((opt_dir, OPT_DIR))
    for host, jailed in places:
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


def create_linux_backend(
    scope: str, data_dir: Path, networks: dict[str, NetworkSpec], networks_required: bool = False
) -> LinuxBackend:
    """The linux backend, or :class:`SandboxUnavailable` saying what is missing.

    Without networks (no nftables, say) environments have their loopback only; when
    ``networks_required`` (the settings name networks) that is an error instead."""
    reason = unavailable_reason(data_dir)
    if reason is not None:
        raise SandboxUnavailable(reason)
    try:
        cgroups = Cgroups.detect(scope)
    except CgroupsUnavailable as e:
        raise SandboxUnavailable(f"cgroups cannot enforce limits here: {e.reason}") from None
    try:
        ready: Networks | None = Networks.set_up(networks)
        problem = None
    except NetworkUnavailable as e:
        if networks_required:
            cgroups.close()
            raise SandboxUnavailable(f"the networks of the settings cannot be set up: {e}") from None
        ready, problem = None, str(e)
        log.warning("environments get no network (loopback only): %s", e)
    try:
        disks: EphemeralDisks | None = EphemeralDisks.set_up(data_dir / "sandbox" / "ephemeral")
        disks_problem = None
    except EphemeralUnavailable as e:
        disks, disks_problem = None, str(e)
        log.warning("environments' /tmp is a tmpfs, counted as their memory: %s", e)
    return LinuxBackend(scope, data_dir, cgroups, networks=ready, networks_problem=problem,
                        disks=disks, disks_problem=disks_problem)
