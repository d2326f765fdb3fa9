"""Squall's zygote: a pre-initialised Python that forks sandboxed execution environments.

This file is a standalone script (standard library only, Python 3.8+ syntax, no import of
``squall``). The linux backend starts one per Python interpreter::

    <python> -s zygote.py --fd N --config JSON

with a clean environment, ``N`` = its end of a ``SOCK_SEQPACKET`` socketpair (the control
socket: no path, no abstract name, so nothing inside a sandbox can reach it). It imports
the runtime (``bootstrap.py``) and a few stdlib modules once, calls ``gc.freeze()`` and
then only forks: it is single-threaded, holds no other socket and never runs user code.

Control protocol: one JSON object per datagram.

* zygote → server, once: ``{"ready": pid, "rss_kb": n}``
* server → zygote: ``{"op": "spawn", "id": n, ...}`` with SCM_RIGHTS fds
  ``[channel, log, *cgroup_procs]``; the zygote forks and answers
  ``{"id": n, "pid": pid}`` (or ``{"id": n, "error": "..."}``)
* zygote → server, for every child that ends: ``{"exited": pid, "status": s}`` with ``s``
  the exit code or ``-signal``
* EOF on the control socket: the zygote exits (its environments live on until their own
  control channel closes).

Process tree of one environment (A is the pid the server knows)::

    zygote ─ A: setsid, join cgroup, rlimits, unshare(mnt pid ipc uts [net]), fork;
               waits for B and exits with the runtime's status (code, or the same signal)
             └ B = PID 1 of the new pid namespace: builds the jail (tmpfs root,
               read-only binds, pivot_root), drops privileges, forks, reaps orphans;
               when the runtime ends it reports the status to A and exits, and the
               kernel kills whatever is left in the namespace
               └ C = the runtime (PID 2): fds 0-3 in place, environment, cwd /var/task;
                 runs bootstrap.main() in-process, or execve(argv) for other runtimes

Errors while building the sandbox go to the environment's log and end it with status 125.
"""

import ctypes
import gc
import json
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import sys
import time
import types

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
    "random",
    "re",
    "traceback",
    "typing",
    "urllib.parse",
    "uuid",
)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41}

SETUP_FAILED = 125
_MAXFD = max(256, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)


class SetupError(Exception):
    pass


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError("%s: %s" % (what, os.strerror(err)))


def mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source, target, fstype, flags, data), "mount %s" % target.decode(errors="replace"))


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def pivot_root(new_root, put_old):
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError("pivot_root: unsupported architecture %s" % os.uname().machine)
    _check(_libc.syscall(number, new_root, put_old), "pivot_root")


def prctl(option, value):
    _check(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl %d" % option)


def _b(path):
    return path.encode() if isinstance(path, str) else path


# --------------------------------------------------------------------------
# the jail, planned once per zygote


class Jail(object):
    """What every sandbox's root filesystem contains, computed once in the zygote.

    ``ops`` is a flat list of (kind, args) executed in the child with the jail's mount
    point as prefix; only the per-environment parts (code, /tmp size) are added there.
    """

    ROOT_DIRS = ("usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin")
    ETC_FILES = (
        "nsswitch.conf", "host.conf", "gai.conf", "services", "protocols", "networks",
        "mime.types", "ld.so.cache", "ld.so.conf", "timezone", "os-release", "localtime",
        "resolv.conf",
    )
    ETC_DIRS = ("ssl", "alternatives", "pki", "crypto-policies", "ca-certificates", "ld.so.conf.d")
    DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

    def __init__(self, config):
        self.mountpoint = _b(config["jail_dir"])
        self.uid = int(config["uid"])
        self.gid = int(config["gid"])
        self.hostname = _b(config.get("hostname") or "localhost")
        self.runtime_dir = config["runtime_dir"]
        self.shm_mb = int(config.get("shm_mb") or 64)
        self.ops = []
        self.dirs = set()
        self._etc_sources = {}
        self._etc_checked = 0.0
        self._plan(config)

    def _mkdir(self, path, mode=0o755):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if sub not in self.dirs:
                self.dirs.add(sub)
                self.ops.append(("mkdir", _b(sub), mode))

    def _bind(self, source, target, flags=MS_NOSUID | MS_NODEV):
        self._mkdir(target)
        self.ops.append(("bind", _b(source), _b(target), flags))

    def _covered(self, path):
        return any(path == d or path.startswith(d + "/") for d, kind in self._bound)

    def _plan(self, config):
        self._bound = []
        for name in self.ROOT_DIRS:
            host = "/" + name
            if os.path.islink(host):
                self.ops.append(("symlink", _b(os.readlink(host)), _b(host)))
                self.dirs.add(host)
            elif os.path.isdir(host):
                self._bind(host, host, MS_NOSUID | MS_NODEV)  # binaries run from here: keep exec
                self._bound.append((os.path.realpath(host), "ro"))
        # the interpreter's prefixes, at the same paths (parents created 0755 in the tmpfs)
        for prefix in config.get("prefixes") or ():
            real = os.path.realpath(prefix)
            if not os.path.isdir(real) or self._covered(real):
                continue
            self._bind(real, real)
            self._bound.append((real, "ro"))
            if real != prefix and not self._covered(prefix):
                self._mkdir(os.path.dirname(prefix))
                self.ops.append(("symlink", _b(real), _b(prefix)))
        self._mkdir("/etc")
        self._mkdir("/proc")
        self._mkdir("/dev")
        self._mkdir("/dev/shm", 0o1777)
        self._mkdir("/tmp", 0o1777)
        self._mkdir(TASK_ROOT)
        self._mkdir(RUNTIME_DIR)
        self._mkdir("/opt")
        self._bind(self.runtime_dir, RUNTIME_DIR, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name in self.ETC_DIRS:
            host = "/etc/" + name
            if os.path.isdir(host) and not os.path.islink(host):
                self._bind(host, host, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name, major, minor in self.DEVICES:
            self.ops.append(("mknod", _b("/dev/" + name), os.makedev(major, minor)))
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            self.ops.append(("symlink", _b(target), _b("/dev/" + name)))
        self.refresh_etc()

    def refresh_etc(self, max_age=None):
        """(Re)read the host's /etc files the jail copies (at most every ``max_age`` s)."""
        now = time.monotonic()
        if max_age is not None and now - self._etc_checked < max_age:
            return
        self._etc_checked = now
        files = []
        for name in self.ETC_FILES:
            host = "/etc/" + name
            try:
                st = os.lstat(host)
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._etc_sources.get(name)
            if cached is not None and cached[0] == key:
                files.append(cached[1])
                continue
            if stat.S_ISLNK(st.st_mode) and name != "resolv.conf":
                entry = ("symlink", _b(os.readlink(host)), _b(host))
            else:
                try:
                    with open(host, "rb") as f:
                        entry = ("file", _b(host), f.read(), 0o644)
                except OSError:
                    continue
            self._etc_sources[name] = (key, entry)
            files.append(entry)
        hosts = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        try:
            with open("/etc/hosts", "rb") as f:
                hosts = f.read()
            if hosts and not hosts.endswith(b"\n"):
                hosts += b"\n"
        except OSError:
            pass
        hosts += b"127.0.1.1\t" + self.hostname + b"\n"
        user = b"nobody" if self.uid == 65534 else b"sbx_user"
        group = b"nogroup" if self.gid == 65534 else b"sbx_group"
        passwd = b"root:x:0:0:root:/root:/usr/sbin/nologin\n%s:x:%d:%d::/tmp:/usr/sbin/nologin\n" % (user, self.uid, self.gid)
        groups = b"root:x:0:\n%s:x:%d:\n" % (group, self.gid)
        files.append(("file", b"/etc/hosts", hosts, 0o644))
        files.append(("file", b"/etc/hostname", self.hostname + b"\n", 0o644))
        files.append(("file", b"/etc/passwd", passwd, 0o644))
        files.append(("file", b"/etc/group", groups, 0o644))
        self.etc_ops = files

    def build(self, code_dir, tmp_mb):
        """In the child (B): build the root, pivot into it. Mounts must be private first."""
        root = self.mountpoint
        mount(None, b"/", None, MS_REC | MS_PRIVATE)
        mount(b"squall", root, b"tmpfs", MS_NOSUID, b"size=8m,nr_inodes=4096,mode=0755")
        for op in self.ops:
            kind = op[0]
            if kind == "mkdir":
                os.mkdir(root + op[1], op[2])
                if op[2] & 0o7000:
                    os.chmod(root + op[1], op[2])
            elif kind == "bind":
                target = root + op[2]
                mount(op[1], target, None, MS_BIND)
                mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | op[3])
            elif kind == "symlink":
                os.symlink(op[1], root + op[2])
            elif kind == "mknod":
                path = root + op[1]
                os.mknod(path, 0o666 | stat.S_IFCHR, op[2])
                os.chmod(path, 0o666)
        for op in self.etc_ops:
            if op[0] == "symlink":
                os.symlink(op[1], root + op[2])
            else:
                fd = os.open(root + op[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, op[3])
                try:
                    os.write(fd, op[2])
                finally:
                    os.close(fd)
        task = root + _b(TASK_ROOT)
        mount(_b(code_dir), task, None, MS_BIND)
        mount(None, task, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        mount(b"tmpfs", root + b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))
        mount(b"shm", root + b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=%dm,mode=1777" % self.shm_mb)
        mount(b"proc", root + b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chdir(root)
        pivot_root(b".", b".")
        _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
        os.chdir("/")
        mount(None, b"/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)


# --------------------------------------------------------------------------
# the environment's processes


_T = []
def _t(name):
    _T.append((name, time.monotonic()))
def _dump():
    if os.environ.get("SQTRACE"):
        os.write(2, (" ".join("%s=%.3f" % (n, t * 1000) for n, t in _T) + "\n").encode())

def _write_error(message):
    try:
        os.write(2, ("[squall] sandbox setup failed: %s\n" % message).encode("utf-8", "replace"))
    except OSError:
        pass


def _status_of(wait_status):
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return SETUP_FAILED


def _exit_like(status):
    """End this process the way the runtime ended: same code, or the same signal."""
    if status < 0:
        sig = -status
        try:
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        os._exit(128 + sig)
    os._exit(status & 0xFF)


class Spawner(object):
    def __init__(self, config, bootstrap):
        self.jail = Jail(config)
        self.bootstrap = bootstrap
        self.zygote_fds = ()

    # -- A: in the zygote's pid namespace

    def run_a(self, req, chan, log, procs):
        """Never returns."""
        try:
            _t("A")
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            pid = b"%d" % os.getpid()
            for fd in procs:  # join the environment's cgroup before anything else
                os.write(fd, pid)
            # fds 0 = /dev/null (the zygote's), 1 and 2 = the log, 3 = the channel
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(chan, 3)
            os.closerange(4, _MAXFD)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
            if not req.get("network", True):
                flags |= CLONE_NEWNET
            _t("A.pre-unshare")
            unshare(flags)
            _t("A.unshared")
            r, w = os.pipe()
            child = os.fork()
            if child == 0:
                os.close(r)
                self.run_b(req, w)
            os.close(w)
            os.closerange(1, 4)
            data = b""
            while True:
                chunk = os.read(r, 16)
                if not chunk:
                    break
                data += chunk
            _, wait_status = os.waitpid(child, 0)
            status = struct.unpack("!i", data)[0] if len(data) == 4 else _status_of(wait_status)
            _exit_like(status)
        except BaseException as e:
            _write_error(str(e) or repr(e))
        os._exit(SETUP_FAILED)

    # -- B: PID 1 of the new pid namespace

    def run_b(self, req, status_fd):
        try:
            _t("B")
            jail = self.jail
            jail.build(req["code_dir"], req.get("tmp_mb", 512))
            _t("B.built")
            _check(_libc.sethostname(jail.hostname, len(jail.hostname)), "sethostname")
            os.setgroups([])
            os.setresgid(jail.gid, jail.gid, jail.gid)
            os.setresuid(jail.uid, jail.uid, jail.uid)
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            prctl(PR_SET_DUMPABLE, 1)  # reset by setuid; /proc/self/* must stay the process's own
            _t("B.dropped")
            runtime = os.fork()
            if runtime == 0:
                _t("C")
                os.close(status_fd)
                self.run_c(req)
            os.closerange(0, 4)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            while True:
                try:
                    pid, wait_status = os.waitpid(-1, 0)
                except ChildProcessError:
                    os._exit(SETUP_FAILED)
                if pid == runtime:
                    os.write(status_fd, struct.pack("!i", _status_of(wait_status)))
                    os._exit(0)
        except BaseException as e:
            _write_error(str(e) or repr(e))
        os._exit(SETUP_FAILED)

    # -- C: the runtime

    def run_c(self, req):
        try:
            os.chdir(TASK_ROOT)
            env = req["env"]
            os.environ.clear()
            os.environ.update(env)
            if "TZ" in env:
                time.tzset()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if req.get("mode") == "python":
                self.run_python()
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            argv = req["argv"]
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                _write_error("exec %s: %s" % (argv[0], e))
                os._exit(127)
        except BaseException as e:
            _write_error(str(e) or repr(e))
        os._exit(SETUP_FAILED)

    def run_python(self):
        """Run bootstrap.main() here and exit as the interpreter would. Never returns."""
        boot = self.bootstrap
        boot.__name__ = "__main__"
        sys.modules["__main__"] = boot
        sys.argv[:] = [boot.__file__]
        code = 0
        _t("C.main")
        _dump()
        try:
            code = boot.main(3)
        except SystemExit as e:
            code = e.code
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        if code is None:
            code = 0
        elif not isinstance(code, int):
            try:
                sys.stderr.write("%s\n" % (code,))
            except Exception:
                pass
            code = 1
        _finalize()
        os._exit(code & 0xFF)


def _finalize():
    """What interpreter shutdown does that user code can observe: threads, atexit, flush."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except Exception:
            pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except Exception:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# --------------------------------------------------------------------------
# the zygote's loop


def load_bootstrap(path):
    """Compile the runtime as it appears inside the jail (/var/runtime/bootstrap.py)."""
    with open(path, "rb") as f:
        source = f.read()
    jail_path = RUNTIME_DIR + "/" + os.path.basename(path)
    module = types.ModuleType("bootstrap")
    module.__file__ = jail_path
    module.__builtins__ = __builtins__
    exec(compile(source, jail_path, "exec"), module.__dict__)
    return module


def _recv(sock):
    fd_size = struct.calcsize("i")
    msg, ancdata, flags, _ = sock.recvmsg(1 << 18, socket.CMSG_SPACE(16 * fd_size))
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fd_size
            fds.extend(struct.unpack("%di" % (usable // fd_size), data[:usable]))
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("truncated message")
    return msg, fds


def _send(sock, obj):
    sock.send(json.dumps(obj, separators=(",", ":")).encode())


def _rss_kb():
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def serve(sock, spawner):
    children = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def reap():
        while children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            children.discard(pid)
            _send(sock, {"exited": pid, "status": _status_of(wait_status)})

    def spawn(req, fds):
        if len(fds) < 2:
            raise ValueError("spawn needs the channel and log fds")
        chan, log, procs = fds[0], fds[1], fds[2:]
        if len(procs) != int(req.get("procs", 0)):
            raise ValueError("expected %s cgroup fds, got %d" % (req.get("procs"), len(procs)))
        spawner.jail.refresh_etc(max_age=2.0)  # resolv.conf and hosts may change
        _T[:] = [("Z.fork", time.monotonic())]
        pid = os.fork()
        if pid == 0:
            try:
                sock.detach()
                spawner.run_a(req, chan, log, procs)
            finally:
                os._exit(SETUP_FAILED)
        children.add(pid)
        return pid

    gc.freeze()
    _send(sock, {"ready": os.getpid(), "rss_kb": _rss_kb()})
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                reap()
                continue
            try:
                data, fds = _recv(sock)
            except (BlockingIOError, InterruptedError):
                continue
            except ValueError as e:
                sys.stderr.write("squall zygote: %s\n" % e)
                continue
            if not data:
                return
            req = {}
            try:
                req = json.loads(data)
                if req.get("op") != "spawn":
                    raise ValueError("unknown op %r" % req.get("op"))
                pid = spawn(req, fds)
                _send(sock, {"id": req.get("id"), "pid": pid})
            except Exception as e:
                _send(sock, {"id": req.get("id"), "error": "%s: %s" % (type(e).__name__, e)})
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        reap()


def probe(config):
    """Check that this machine can build a sandbox (used before choosing the backend)."""
    jail = Jail(config)
    pid = os.fork()
    if pid == 0:
        try:
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)
            inner = os.fork()
            if inner == 0:
                try:
                    jail.build(config["runtime_dir"], 1)
                    _check(_libc.sethostname(jail.hostname, len(jail.hostname)), "sethostname")
                    os.setresuid(jail.uid, jail.uid, jail.uid)
                    prctl(PR_SET_NO_NEW_PRIVS, 1)
                    os.listdir("/proc/self/fd")
                    os._exit(0)
                except BaseException as e:
                    sys.stderr.write("%s\n" % (str(e) or repr(e)))
                    sys.stderr.flush()
                os._exit(1)
            _, st = os.waitpid(inner, 0)
            os._exit(_status_of(st) & 0xFF)
        except BaseException as e:
            sys.stderr.write("%s\n" % (str(e) or repr(e)))
            sys.stderr.flush()
        os._exit(1)
    _, st = os.waitpid(pid, 0)
    return _status_of(st)


def main(argv):
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this directory holds squall modules, not the function's
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
    if fd is None:
        return probe(config)
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    if devnull != 0:
        os.dup2(devnull, 0)
        os.close(devnull)
    os.set_inheritable(0, True)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    bootstrap = load_bootstrap(config["bootstrap"])
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    spawner = Spawner(config, bootstrap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    try:
        serve(sock, spawner)
    except (BrokenPipeError, ConnectionError):
        pass  # the server went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
