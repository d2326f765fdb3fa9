"""Squall's zygote: a pre-initialised Python that forks sandboxed execution environments.

This file is a standalone script (standard library only, Python 3.8+ syntax, no import of
``squall``). The linux backend starts one per Python interpreter::

    <python> -s <squall>/sandbox/linux/_squall_zygote --fd N --config JSON

with a clean environment, ``N`` = its end of a ``SOCK_SEQPACKET`` socketpair (the control
socket: no path, no abstract name, so nothing inside a sandbox can reach it). It imports
the runtime (``bootstrap.py``) and a few stdlib modules once, calls ``gc.freeze()`` and
then only forks: it is single-threaded, holds no other socket and never runs user code.

Control protocol: one JSON object per datagram.

* zygote → server, once: ``{"ready": pid, "rss_kb": n, "trees": bool}`` (trees: sandboxes
  take the code as mount fds)
* server → zygote: ``{"op": "spawn", "id": n, "trees": t, "procs": k, "stocked": name}``
  with SCM_RIGHTS fds ``[request, channel, log, *mounts, *cgroup_procs]``. ``request`` is a memfd
  holding the tenant's part (env, code dir, argv, /tmp size, and ``net``: the address,
  prefix and gateway of the ``eth0`` the server gives the sandbox): the zygote passes it on
  unread, so that no function's data (environment variables are secrets) ever sits in
  the memory that later sandboxes inherit. The zygote answers ``{"id": n, "pid": pid}``
  (or ``{"id": n, "error": "..."}``).
* server → zygote: ``{"op": "stock", "cgroup": name}`` with the cgroup.procs fds of a
  fresh cgroup: the next spare sandbox joins it ahead of time (on cgroup v1 a migration
  waits for an RCU grace period: milliseconds); a spawn with ``"stocked": name`` then
  needs no join. ``{"op": "restock"}``: a good moment to fork the next spare.
* zygote → server: ``{"spare": pid, "cgroup": name}`` with SCM_RIGHTS ``[sync]``: the
  spare that joined the stocked cgroup is the server's. It sends ``spawn T 0`` (fds
  ``[request, channel, log, *mounts]``) to B itself, a hop less on the cold path, then tells us
  ``{"op": "taken", "pid": pid}``; B's exit is reported as any other child's.
* zygote → server, for every child that ends: ``{"exited": pid, "status": s}`` with ``s``
  the exit code or ``-signal``, and ``"reason"`` when B could not build the sandbox (B's
  last datagram on its sync socket: SETUP_FAILED and why)
* EOF on the control socket: the zygote exits (its environments live on until their own
  control channel closes).

Process tree of one environment (B is the pid the server knows)::

    zygote ─ B  clone(mnt pid ipc uts net): PID 1 of a new pid namespace
               └ C  the runtime, forked by B (a random pid, not 1: it can signal itself)

The zygote keeps one *spare* sandbox ready: B has made its mounts private, mounted its
/proc, brought its loopback up and forked C; C has dropped privileges and rehearsed a request on a stand-in
function (so that the pages the runtime writes are copied before anyone waits); both
wait. Where the kernel can attach mount fds (``open_tree``/``move_mount``, Linux 5.2+;
tried once at start) B has also built the rest of the jail — /tmp, /dev/shm, pivot_root
into the template (see :class:`Jail`), the hostname — and the server sends the code as a
mount fd (``"trees"`` in the spawn: ``b"spawn T P"`` tells B how many mount fds and
cgroup.procs fds follow the request, channel and log). Once the spare has joined a
stocked cgroup, the zygote hands it to the server, which sends it the spawn itself.

A spawn then only finishes the spare: B passes the request, channel and log to C first,
joins the cgroup (unless the spare joined a stocked one already), then attaches the code
at /var/task (read-only) and resizes /tmp to the function's ephemeral storage — or,
without mount fds, bind-mounts the code, mounts /tmp and /dev/shm, pivot_roots and sets
the hostname — configures ``eth0`` when the request has ``net`` (waiting, if need be,
for the server to create it in the namespace), says "jailed" to C and drops its privileges too; meanwhile C has put fds
0-3 in place and set the environment; once jailed, it runs ``bootstrap.main()``
in-process (or execve(argv) for other runtimes). B then reaps orphans; when C ends, B
sends C's status to the zygote on its sync socket and exits, and the kernel kills what
is left in the namespace. The zygote reports C's status (exit code, or -signal).

Errors while building the sandbox go to the environment's log and end it with status 125.
"""

import json
import os
import resource
import signal
import socket
import struct
import sys

# Run by path: sys.path[0] is this directory. Its parent holds the package (and other squall
# modules): there only while the zygote's own modules are imported, never for a function's.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from _squall_zygote import syscalls  # noqa: E402
from _squall_zygote.messages import send_fds, spawn_message, status_of  # noqa: E402
from _squall_zygote.rehearsal import load_bootstrap, make_rehearsal_dir, warm_up  # noqa: E402
from _squall_zygote.seccomp import build_program as build_seccomp  # noqa: E402
from _squall_zygote.spawner import DEFAULT_FLAGS, Spawner  # noqa: E402
from _squall_zygote.syscalls import SetupError  # noqa: E402
from _squall_zygote.zygote import Zygote  # noqa: E402

del sys.path[0]

# Everything the child needs is imported here, before gc.freeze(), so that forks share it.
_PRELOAD = (
    "base64",
    "collections",
    "datetime",
    "decimal",
    "functools",
    "hashlib",
    "json",
    "logging",
    "re",
    "traceback",
    "typing",
    "urllib.parse",
    "uuid",
)


def probe(config):
    """Build one sandbox that runs ``true`` (checks the kernel allows all we need)."""
    spawner = Spawner(config, None)
    if spawner.clone_number is None:
        sys.stderr.write("unsupported architecture %s\n" % os.uname().machine)
        return 1
    try:
        spawner.jail.prepare()
        log_r, log_w = os.pipe()
        pid, sync = spawner.spare(DEFAULT_FLAGS, (log_r,))
        req = {"code_dir": config["runtime_dir"], "tmp_mb": 1, "env": {"PATH": "/usr/bin:/bin"},
               "mode": "exec", "argv": ["true"]}
        request = os.memfd_create("request", os.MFD_CLOEXEC)
        os.write(request, json.dumps(req).encode())
        send_fds(sync, spawn_message(0, 0), [request, 0, log_w])
    except (OSError, SetupError) as e:
        sys.stderr.write("%s\n" % e)
        return 1
    os.close(log_w)
    _, wait_status = os.waitpid(pid, 0)
    data = os.read(sync, 4)
    message = os.read(log_r, 65536).decode("utf-8", "replace").strip()
    status = struct.unpack("!i", data)[0] if len(data) == 4 else status_of(wait_status)
    if status != 0:
        sys.stderr.write("%s\n" % (message or "status %d" % status))
    return 1 if status else 0


def main(argv):
    config = None
    fd = None
    i = 1
    while i < len(argv):
        if argv[i] == "--config":
            config = json.loads(argv[i + 1])
            i += 2
        elif argv[i] == "--fd":
            fd = int(argv[i + 1])
            i += 2
        elif argv[i] == "--probe":
            i += 1
        else:
            raise SystemExit("zygote: unknown argument %r" % argv[i])
    if config is None:
        raise SystemExit("zygote: --config is required")

    os.umask(0o022)
    os.chdir("/")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:  # one sync socket per live environment
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    syscalls.MAXFD = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd is None:
        return probe(config)
    devnull = os.open(os.devnull, os.O_RDWR)
    if devnull != 0:
        os.dup2(devnull, 0)
        os.close(devnull)
    os.set_inheritable(0, True)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    bootstrap = load_bootstrap(config["bootstrap"])
    if hasattr(bootstrap, "hide_server_site"):  # once here: every sandbox forked from us inherits it
        bootstrap.hide_server_site()
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    rehearsal_dir = os.path.join(os.path.dirname(config["jail_dir"]), "rehearsal")
    try:
        rehearsal_fd = make_rehearsal_dir(rehearsal_dir)
        warm_up(rehearsal_dir)
    except Exception as e:  # a zygote without it still works: its spares start slower
        sys.stderr.write("squall zygote: spare sandboxes will not rehearse (slower cold starts): %s\n" % e)
        rehearsal_fd = None
    spawner = Spawner(config, bootstrap, rehearsal_fd)
    spawner.jail.prepare()
    spawner.trees = config.get("mount_fds", True) and spawner.jail.trees_work()
    if config.get("seccomp", True):
        spawner.seccomp, why = build_seccomp()
        spawner.template_seccomp, _ = build_seccomp(template=True)
        if spawner.seccomp is None:
            sys.stderr.write("squall zygote: functions run WITHOUT a seccomp filter: %s\n" % why)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    try:
        Zygote(sock, spawner).serve()
    except (BrokenPipeError, ConnectionError):
        pass  # the server went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
