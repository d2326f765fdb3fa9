"""A template: a runtime that ran its function's init once; environments are forked from it.

This is Squall's SnapStart for Python. The template (T) is an ordinary sandbox whose runtime
ran the function's init — imported the handler module and all it imports — and, instead of
waiting for invocations, waits for *fork* frames on its control channel. Each fork frame
brings the new environment's fds (SCM_RIGHTS): its channel, its log, a status socket to the
server and the cgroup.procs files of its cgroup; later, on the status socket, its channel, log
and variables. Every environment gets its own namespaces, cgroup, /proc, /tmp and network, as
one the zygote forks::

    T ─ P  fork: joins the environment's cgroup, unshares user/mnt/pid/net/ipc/uts, maps
             its uid (it has capabilities in its own user namespace only), forks D, exits
          └ D  PID 1 of the new pid namespace: mounts its /proc, a fresh /tmp and /dev/shm,
               brings lo up, says "up" to the server (which learns D's pid from the socket's
               credentials, and gives it eth0), configures eth0 — all this ahead of need: the
               server keeps one such spare per template — then, once an environment is wanted,
               takes its channel, log and variables ("go") and hands them to C; reaps; reports
               C's exit status to the server and exits (the namespace dies with it)
               └ C  the runtime, forked ahead by D: drops every capability, installs the full
                    seccomp filter on top of the template's and waits; then takes the
                    environment's variables and fds, runs the after-restore hooks and serves
                    invocations

T runs under a filter that allows what P and D need (unshare of those namespaces, mount);
C adds the full filter, which refuses both again. Mounts inherited from T's jail are locked
in the new namespaces (a user namespace cannot unmount or make writable what it inherited).

T's sandbox (its B) outlives T while environments forked from it live: B is the init of the
pid namespace that theirs nest in, and lingers until they are gone (spawner.run_b).
"""

import gc
import json
import os
import random
import socket
import stat
import struct
import sys
import threading
import time

from _squall_zygote import syscalls
from _squall_zygote.jail import configure_eth0, disable_ipv6_ahead, loopback_up
from _squall_zygote.messages import recv_fds, send_fds, status_of, write_error
from _squall_zygote.seccomp import install as install_seccomp
from _squall_zygote.syscalls import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    RUNTIME_PID_MIN,
    SETUP_FAILED,
    check,
    libc,
    mount,
    move_mount,
    prctl,
)

CLONE_NEWUSER = 0x10000000
RESTORE_FLAGS = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
PR_CAPBSET_DROP = 24
_HEADER = struct.Struct("!II")
_MAX_FDS = 16


# --------------------------------------------------------------------------
# in T: the snapshot


def connections():
    """This process's open network sockets as the snapshot sees them: fd → (family, type, peer)."""
    found = {}
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return found
    for fd in fds:
        if fd <= 3:
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                peer = "%s:%s" % sock.getpeername()[:2]
            except OSError:
                peer = None
            found[fd] = (sock.family, sock.type, peer)
        finally:
            sock.close()
    return found


def before_snapshot():
    """Run the before-snapshot hooks (snapshot_restore_py: in the reverse order of registration)."""
    module = sys.modules.get("snapshot_restore_py")
    if module is None:
        return
    hooks = module.get_before_snapshot()
    while hooks:
        func, args, kwargs = hooks.pop()
        func(*args, **kwargs)


def after_restore():
    module = sys.modules.get("snapshot_restore_py")
    if module is None:
        return
    for func, args, kwargs in list(module.get_after_restore()):
        func(*args, **kwargs)


class Snapshot(object):
    """What T knows of its own state once init is over."""

    def __init__(self):
        self.connections = {}
        self.threads = []

    def take(self):
        """After init and the before-snapshot hooks: warn of what a fork cannot carry over."""
        gc.collect()
        gc.freeze()  # what init made is kept: a collection in an environment would copy its pages
        self.connections = connections()
        self.threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        for fd, (_family, _type, peer) in sorted(self.connections.items()):
            sys.stderr.write(
                "[squall] SnapStart: a network connection opened during init (fd %d%s) is not carried into the "
                "environments restored from this snapshot: there it is a new socket, not connected (sending fails "
                "with \"Broken pipe\", receiving with \"Transport endpoint is not connected\"). Close it in a "
                "before-snapshot hook and open it again in an after-restore hook (snapshot_restore_py).\n" % (fd, ", to " + peer if peer else ""))
        if self.threads:
            sys.stderr.write(
                "[squall] SnapStart: init started %d thread(s) (%s); the environments restored from this snapshot "
                "do not have them (a fork copies one thread). Start them in an after-restore hook "
                "(snapshot_restore_py).\n" % (len(self.threads), ", ".join(self.threads[:5])))
        sys.stderr.flush()


# --------------------------------------------------------------------------
# in T: the fork loop


def recv_frame(sock):
    """The next (meta, fds) from the server, or None at EOF. One request at a time."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, _MAX_FDS)
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    buf = bytearray(data)
    while True:
        if len(buf) >= _HEADER.size:
            meta_len, body_len = _HEADER.unpack_from(buf)
            if len(buf) >= _HEADER.size + meta_len + body_len:
                break
        chunk = sock.recv(1 << 20)
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None
        buf += chunk
    return json.loads(bytes(buf[_HEADER.size:_HEADER.size + meta_len])), fds


def send_frame(sock, meta):
    data = json.dumps(meta, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(data), 0) + data)


def serve(spawner, boot, channel, handler, snapshot):
    """T's loop: fork an environment per request until the server closes the channel."""
    sock = channel.sock
    while True:
        try:
            frame = recv_frame(sock)
        except (ConnectionError, OSError):
            return 0
        if frame is None:
            return 0
        meta, fds = frame
        if meta.get("t") != "fork":
            for fd in fds:
                os.close(fd)
            continue
        started = time.perf_counter()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            send_frame(sock, {"t": "forked", "ok": False, "error": "fork: %s" % e})
            continue
        if pid == 0:
            become_environment(spawner, boot, channel, handler, snapshot, meta, fds)  # never returns
        for fd in fds:
            os.close(fd)
        _, wait_status = os.waitpid(pid, 0)  # P only joins, unshares and forks D: about a millisecond
        status = status_of(wait_status)
        answer = {"t": "forked", "ok": status == 0, "fork_ms": round((time.perf_counter() - started) * 1000, 3)}
        if status != 0:
            answer["error"] = "the restore process ended with status %d (see the environment's log)" % status
        send_frame(sock, answer)


# --------------------------------------------------------------------------
# P, D and C: one environment


def become_environment(spawner, boot, channel, handler, snapshot, meta, fds):
    """In P, a fresh fork of T. Never returns."""
    code = SETUP_FAILED
    try:
        channel.sock.detach()
        os.dup2(0, 3)  # not T's channel: the server must see it close when T ends (fd 3 stays taken)
        status = fds[0]
        disk = fds[1] if meta.get("disk") else None  # /tmp's own disk (sandbox/linux/ephemeral.py)
        for fd in fds[2 if disk is not None else 1:]:  # the environment's cgroup, before anything else happens
            os.write(fd, b"0")
            os.close(fd)
        uid, gid = os.geteuid(), os.getegid()
        check(libc.unshare(RESTORE_FLAGS), "unshare")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write("%d %d 1" % (uid, uid))
        with open("/proc/self/gid_map", "w") as f:
            f.write("%d %d 1" % (gid, gid))
        pid = os.fork()  # D: PID 1 of the new pid namespace
        if pid == 0:
            run_d(spawner, boot, channel, handler, snapshot, meta, status, disk)
        code = 0
    except BaseException as e:
        write_error("preparing an environment from the snapshot: %s" % (str(e) or repr(e)))
    os._exit(code)


def run_d(spawner, boot, channel, handler, snapshot, meta, status, disk):
    """D: the environment's init. Prepared ahead (a spare), with C forked and waiting too, it
    waits on the status socket for ``net {...}`` (its eth0, configured now) and ``go {env}`` with
    the environment's channel and log, which it hands to C; EOF: a spare nobody took. Never returns."""
    try:
        os.setsid()
        jail = spawner.jail
        mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if disk is not None:
            move_mount(disk, b"/tmp")
            os.close(disk)
        else:  # in the environment's memory, as a tmpfs
            mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(meta.get("tmp_mb", 512))))
        mount(b"shm", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=%dm,mode=1777" % jail.shm_mb)
        loopback_up()
        disable_ipv6_ahead()
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write("%d" % (RUNTIME_PID_MIN + int.from_bytes(os.urandom(4), "big") % spawner.pid_span))
        d_end, c_end = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        runtime = os.fork()  # C, ahead of time too: it waits for its fds
        if runtime == 0:
            os.close(status)
            os.close(d_end)
            run_c(spawner, boot, channel, handler, snapshot, c_end)
        os.close(c_end)
        os.write(status, b"up")  # the server reads our pid from this datagram's credentials
        while True:
            data, fds = recv_fds(status, 1 << 18, 4)
            if data.startswith(b"net "):
                net = json.loads(data[4:])
                configure_eth0(net["address"], int(net["prefix"]), net["gateway"])
                continue
            if data.startswith(b"go ") and len(fds) == 2:
                break
            os._exit(0 if not data else SETUP_FAILED)  # a spare nobody took (C dies with us)
        send_fds(d_end, data[3:], fds)
        for fd in fds:
            os.close(fd)
        os.close(d_end)
        while True:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(SETUP_FAILED)
            if pid == runtime:
                os.write(status, struct.pack("!i", status_of(wait_status)))
                os._exit(0)
    except BaseException as e:
        write_error("restoring from the snapshot: %s" % (str(e) or repr(e)))
    os._exit(SETUP_FAILED)


def drop_capabilities():
    """C keeps none of the capabilities D has in the environment's user namespace."""
    last = 40
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        pass
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = bytes(24)  # effective, permitted, inheritable: none (two 32-bit words each)
    check(libc.capset(header, data), "capset")


def run_c(spawner, boot, channel, handler, snapshot, sock):
    """C: the runtime of the new environment, forked ahead: unprivileged and filtered before it
    waits on ``sock`` (from D) for its variables, channel and log. Never returns."""
    try:
        drop_capabilities()
        if spawner.seccomp is not None:
            install_seccomp(spawner.seccomp, libc)
        os.chdir(syscalls.TASK_ROOT)
        data, fds = recv_fds(sock, 1 << 18, 4)
        if len(fds) != 2:
            os._exit(0)  # a spare nobody took
        chan, log = fds
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(chan, 3)
        os.close(chan)
        os.close(log)
        os.close(sock)
        prctl(syscalls.PR_SET_DUMPABLE, 1)
        env = json.loads(data).get("env") or {}
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
    except BaseException as e:
        write_error("restoring from the snapshot: %s" % (str(e) or repr(e)))
        os._exit(SETUP_FAILED)
    code = boot_restored(boot, handler, snapshot)
    from _squall_zygote.spawner import finalize

    finalize()
    os._exit(code & 0xFF)


def close_connections(snapshot):
    """The connections init left open are the template's (and every sibling's): here each fd
    becomes a fresh socket of its kind, not connected, so that using it fails clearly (and
    connection pools that check their sockets, as urllib3's, open new ones)."""
    for fd, (family, kind, _peer) in snapshot.connections.items():
        try:
            fresh = socket.socket(family, kind)
        except OSError:
            continue
        try:
            os.dup2(fresh.fileno(), fd, inheritable=False)
        except OSError:
            pass
        finally:
            fresh.close()


def reseed():
    """Nothing that must be unique is shared with the template or the siblings."""
    random.seed()  # (Python does it at fork too: kept explicit)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:
            pass


def boot_restored(boot, handler, snapshot):
    """The restored runtime: after-restore hooks, "ready", then invocations. Returns the exit code."""
    channel = boot.Channel(3)
    close_connections(snapshot)
    reseed()
    try:
        boot.restored(channel, after_restore)
    except (BrokenPipeError, ConnectionError):
        return 0
    except boot.RestoreFailed:
        return 1
    boot.serve(channel, handler)
    return 0
