"""Squall's zygote: a pre-initialised Python that forks sandboxed execution environments.

This file is a standalone script (standard library only, Python 3.8+ syntax, no import of
``squall``). The linux backend starts one per Python interpreter::

    <python> -s zygote.py --fd N --config JSON

with a clean environment, ``N`` = its end of a ``SOCK_SEQPACKET`` socketpair (the control
socket: no path, no abstract name, so nothing inside a sandbox can reach it). It imports
the runtime (``bootstrap.py``) and a few stdlib modules once, calls ``gc.freeze()`` and
then only forks: it is single-threaded, holds no other socket and never runs user code.

Control protocol: one JSON object per datagram.

* zygote → server, once: ``{"ready": pid, "rss_kb": n, "trees": bool}`` (trees: sandboxes
  take the code as mount fds)
* server → zygote: ``{"op": "spawn", "id": n, "network": bool, "trees": t, "procs": k,
  "stocked": name}`` with SCM_RIGHTS fds ``[request, channel, log, *mounts, *cgroup_procs]``. ``request`` is a memfd
  holding the tenant's part (env, code dir, argv, /tmp size): the zygote passes it on
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

    zygote ─ B  clone(mnt pid ipc uts [net]): PID 1 of a new pid namespace
               └ C  the runtime, forked by B (a random pid, not 1: it can signal itself)

The zygote keeps one *spare* sandbox ready: B has made its mounts private, mounted its
/proc and forked C; C has dropped privileges and rehearsed a request on a stand-in
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
the hostname — says "jailed" to C and drops its privileges too; meanwhile C has put fds
0-3 in place and set the environment; once jailed, it runs ``bootstrap.main()``
in-process (or execve(argv) for other runtimes). B then reaps orphans; when C ends, B
sends C's status to the zygote on its sync socket and exits, and the kernel kills what
is left in the namespace. The zygote reports C's status (exit code, or -signal).

Errors while building the sandbox go to the environment's log and end it with status 125.
"""

import ctypes
import fcntl
import gc
import json
import os
import py_compile
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
MS_SLAVE = 0x80000
MNT_DETACH = 0x2

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41}
OPEN_TREE, MOVE_MOUNT = 428, 429  # the same number on every architecture (Linux 5.2+)
AT_FDCWD = -100
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SPARE_TMP_MB = 512  # /tmp of a spare entered ahead: Lambda's default ephemeral storage
CLONE = {"x86_64": 56, "amd64": 56, "aarch64": 220, "arm64": 220}

SETUP_FAILED = 125
STATUS_REASON_MAX = 2048  # bytes of a setup failure's reason after B's 4-byte status
RUNTIME_PID_MIN = 8
_MAXFD = 1 << 20  # set from RLIMIT_NOFILE at start; closerange is close_range(2): O(1)
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
    if _libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        what = target if source is None or fstype is not None else source + b" on " + target
        raise SetupError("mount %s: %s" % (what.decode(errors="replace"), os.strerror(err)))


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def open_tree(path):
    """A detached copy of the mount at ``path``, as an fd (``OPEN_TREE_CLONE``)."""
    fd = _libc.syscall(ctypes.c_long(OPEN_TREE), ctypes.c_long(AT_FDCWD), ctypes.c_char_p(_b(path)),
                       ctypes.c_long(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "open_tree %s: %s" % (path, os.strerror(err)))
    return fd


def move_mount(fd, target):
    """Attach the mount ``fd`` (from ``open_tree``, maybe another namespace's) at ``target``."""
    _check(_libc.syscall(ctypes.c_long(MOVE_MOUNT), ctypes.c_long(fd), ctypes.c_char_p(b""), ctypes.c_long(AT_FDCWD),
                         ctypes.c_char_p(target), ctypes.c_long(MOVE_MOUNT_F_EMPTY_PATH)),
           "move_mount %s" % target.decode(errors="replace"))


def pivot_root(new_root, put_old):
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError("pivot_root: unsupported architecture %s" % os.uname().machine)
    _check(_libc.syscall(number, new_root, put_old), "pivot_root")


def prctl(option, value):
    _check(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl %d" % option)


PER_SANDBOX = ("/tmp", "/dev/shm")  # mounted afresh in every sandbox


def _under(path, roots):
    return any(path == r or path.startswith(r + "/") for r in roots)


def _b(path):
    return path.encode() if isinstance(path, str) else path


# --------------------------------------------------------------------------
# the jail: a read-only template root built once per zygote


class Jail(object):
    """Every sandbox's root filesystem.

    The zygote lives in a mount namespace of its own (a slave of the host's, so new host
    mounts still show up) where it builds, once, a template root on a tmpfs at
    ``mountpoint``: read-only binds of /usr (and /lib... when they are not symlinks), of
    the interpreter's prefixes at their own paths, of the runtime at /var/runtime and of a
    few /etc directories (ssl, alternatives); copies of the /etc files a program needs (not
    shadow & co.); device nodes; then the tmpfs is made read-only. A sandbox's mount
    namespace is a copy of the zygote's, so it only adds its own mounts — the code at
    /var/task, a private /tmp and /dev/shm, a /proc for its pid namespace — and
    pivot_roots into the template. Every sandbox shares the template's (read-only) files.
    """

    ROOT_DIRS = ("usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin")
    ETC_FILES = (
        "nsswitch.conf", "host.conf", "gai.conf", "services", "protocols", "networks",
        "mime.types", "ld.so.cache", "ld.so.conf", "timezone", "os-release", "localtime",
        "resolv.conf",
    )
    ETC_DIRS = ("ssl", "alternatives", "pki", "crypto-policies", "ca-certificates", "ld.so.conf.d")  # and /etc/java-*
    DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

    def __init__(self, config):
        self.mountpoint = _b(config["jail_dir"])
        self.uid = int(config["uid"])
        self.gid = int(config["gid"])
        self.hostname = _b(config.get("hostname") or "localhost")
        self.runtime_dir = config["runtime_dir"]
        self.shm_mb = int(config.get("shm_mb") or 64)
        self.ops = []
        self.late_binds = []  # interpreter prefixes under /tmp or /dev/shm, which each sandbox mounts
        self.late_links = []
        self.dirs = set()
        self._bound = []
        self._etc = {}  # path -> entry written in the template
        self.etc_checked = 0.0
        self._plan()

    def _mkdir(self, path, mode=0o755):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if sub not in self.dirs:
                self.dirs.add(sub)
                self.ops.append(("mkdir", _b(sub), mode))

    def _bind(self, source, target, flags):
        self._mkdir(target)
        self.ops.append(("bind", _b(source), _b(target), flags))

    def _covered(self, path):
        return any(path == d or path.startswith(d + "/") for d in self._bound)

    def _plan(self):
        for name in self.ROOT_DIRS:
            host = "/" + name
            if os.path.islink(host):
                self.ops.append(("symlink", _b(os.readlink(host)), _b(host)))
                self.dirs.add(host)
            elif os.path.isdir(host):
                self._bind(host, host, MS_NOSUID | MS_NODEV)  # programs run from here: exec allowed
                self._bound.append(os.path.realpath(host))
        # the interpreter's prefixes at their own paths (parents are 0755 dirs of the tmpfs,
        # so an unprivileged uid reaches them even under a 0700 /root)
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
        prefixes.append(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
        for prefix in prefixes:
            real = os.path.realpath(prefix)
            if os.path.isdir(real) and not self._covered(real):
                if _under(real, PER_SANDBOX):  # e.g. a venv in /tmp: bound after /tmp is mounted
                    self.late_binds.append(_b(real))
                else:
                    self._bind(real, real, MS_NOSUID | MS_NODEV)
                self._bound.append(real)
            if prefix != real and not self._covered(prefix) and prefix not in self.dirs:
                if _under(prefix, PER_SANDBOX):
                    self.late_links.append((_b(real), _b(prefix)))
                else:
                    self._mkdir(os.path.dirname(prefix))
                    self.ops.append(("symlink", _b(real), _b(prefix)))
                self.dirs.add(prefix)
        for path, mode in (("/etc", 0o755), ("/proc", 0o555), ("/dev", 0o755), ("/dev/shm", 0o1777),
                           ("/tmp", 0o1777), (TASK_ROOT, 0o755), (RUNTIME_DIR, 0o755), ("/opt", 0o755)):
            self._mkdir(path, mode)
        self._bind(self.runtime_dir, RUNTIME_DIR, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        names = list(self.ETC_DIRS)
        try:  # the JDK's configuration (java.security, …): its lib/ links there
            names += sorted(n for n in os.listdir("/etc") if n.startswith("java-") or n == "java")
        except OSError:
            pass
        for name in names:
            host = "/etc/" + name
            if os.path.isdir(host) and not os.path.islink(host):
                self._bind(host, host, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name, major, minor in self.DEVICES:
            self.ops.append(("mknod", _b("/dev/" + name), os.makedev(major, minor)))
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            self.ops.append(("symlink", _b(target), _b("/dev/" + name)))

    def etc_entries(self):
        """What the template's /etc holds: copies of host files, and our own identity files."""
        entries = {}
        for name in self.ETC_FILES:
            host = "/etc/" + name
            try:
                if os.path.islink(host) and name != "resolv.conf":
                    entries[_b(host)] = ("symlink", _b(os.readlink(host)))
                else:
                    with open(host, "rb") as f:
                        entries[_b(host)] = ("file", f.read())
            except OSError:
                continue
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
        entries[b"/etc/hosts"] = ("file", hosts)
        entries[b"/etc/hostname"] = ("file", self.hostname + b"\n")
        entries[b"/etc/passwd"] = ("file", b"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                   b"%s:x:%d:%d::/tmp:/usr/sbin/nologin\n" % (user, self.uid, self.gid))
        entries[b"/etc/group"] = ("file", b"root:x:0:\n%s:x:%d:\n" % (group, self.gid))
        return entries

    def _write_etc(self, entries):
        root = self.mountpoint
        for path, entry in entries.items():
            if self._etc.get(path) == entry:
                continue
            temp = root + path + b".squall-new"
            if entry[0] == "symlink":
                os.symlink(entry[1], temp)
            else:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, entry[1])
                finally:
                    os.close(fd)
            os.rename(temp, root + path)
            self._etc[path] = entry
        for path in list(self._etc):
            if path not in entries:
                os.unlink(root + path)
                del self._etc[path]

    def prepare(self):
        """In the zygote, once: a mount namespace of our own with the template root in it."""
        root = self.mountpoint
        unshare(CLONE_NEWNS)
        mount(None, b"/", None, MS_REC | MS_SLAVE)  # host mounts propagate in, ours never out
        mount(b"squall", root, b"tmpfs", MS_NOSUID, b"size=8m,nr_inodes=4096,mode=0755")
        for op in self.ops:
            kind = op[0]
            if kind == "mkdir":
                os.mkdir(root + op[1], op[2])
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
        self._write_etc(self.etc_entries())
        self.etc_checked = time.monotonic()
        mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)

    def refresh_etc(self, max_age):
        """Follow changes of the host's resolv.conf, hosts, ... (checked every ``max_age`` s)."""
        now = time.monotonic()
        if now - self.etc_checked < max_age:
            return
        self.etc_checked = now
        entries = self.etc_entries()
        if all(self._etc.get(path) == entry for path, entry in entries.items()) and len(entries) == len(self._etc):
            return
        root = self.mountpoint
        mount(None, root, None, MS_REMOUNT | MS_NOSUID)
        try:
            self._write_etc(entries)
        finally:
            mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)

    def prepare_sandbox(self):
        """In a spare sandbox (B, PID 1 of its namespaces): what needs no request yet."""
        root = self.mountpoint
        mount(None, b"/", None, MS_REC | MS_PRIVATE)
        mount(b"proc", root + b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def enter(self, code_dir, tmp_mb, runtime_dir=None):
        """In the sandbox (B) for a request: add its own mounts, pivot_root in."""
        root = self.mountpoint
        task = root + _b(TASK_ROOT)
        mount(_b(code_dir), task, None, MS_BIND)
        _read_only(task, MS_NOSUID | MS_NODEV)
        if runtime_dir:  # another language's runtime over the Python one at /var/runtime
            target = root + _b(RUNTIME_DIR)
            mount(_b(runtime_dir), target, None, MS_BIND)
            _read_only(target, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        self._private_dirs(tmp_mb)
        self._pivot()

    def enter_spare(self):
        """In a spare (B) where the code arrives as mount fds: the whole jail but the code,
        pivot_root included (its unmount of the host's mount tree costs ~0.4 ms)."""
        self._private_dirs(SPARE_TMP_MB)
        self._pivot()
        _check(_libc.sethostname(self.hostname, len(self.hostname)), "sethostname")

    def finish(self, trees, tmp_mb):
        """In a spare entered ahead (``enter_spare``), for a request: the code's mount at
        /var/task and, when there are two, a runtime's at /var/runtime (``open_tree`` fds
        from the server); /tmp resized to the function's ephemeral storage."""
        for fd, target, flags in zip(trees, (TASK_ROOT, RUNTIME_DIR), (MS_NOSUID | MS_NODEV, MS_NOSUID | MS_NODEV | MS_NOEXEC)):
            move_mount(fd, _b(target))
            mount(None, _b(target), None, MS_PRIVATE)  # a clone of a shared mount is in its peer group
            _read_only(_b(target), flags)
        if int(tmp_mb) != SPARE_TMP_MB:
            mount(None, b"/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))

    def _private_dirs(self, tmp_mb):
        root = self.mountpoint
        mount(b"tmpfs", root + b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))
        mount(b"shm", root + b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=%dm,mode=1777" % self.shm_mb)
        for source in self.late_binds:
            target = root + source
            os.makedirs(target, 0o755, exist_ok=True)  # root's, in the sticky /tmp: not removable
            mount(source, target, None, MS_BIND)
            _read_only(target, MS_NOSUID | MS_NODEV)
        for source, link in self.late_links:
            os.makedirs(os.path.dirname(root + link), 0o755, exist_ok=True)
            os.symlink(source, root + link)

    def _pivot(self):
        os.chdir(self.mountpoint)
        pivot_root(b".", b".")
        _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
        os.chdir("/")

    def trees_work(self):
        """Whether a mount fd (``open_tree``) can be attached in a sandbox's namespace here
        (Linux 5.2+, not filtered): tried in a throw-away child."""
        try:
            fd = open_tree(self.mountpoint + _b(RUNTIME_DIR))
        except OSError:
            return False
        pid = os.fork()
        if pid == 0:
            try:
                unshare(CLONE_NEWNS)
                mount(None, b"/", None, MS_REC | MS_PRIVATE)
                move_mount(fd, self.mountpoint + _b(TASK_ROOT))
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(fd)
        return os.waitpid(pid, 0)[1] == 0


def _read_only(target, flags):
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


# --------------------------------------------------------------------------
# the environment's processes


def loopback_up():
    """Bring ``lo`` up (in a network namespace of the sandbox's own, it starts down)."""

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))


def hand_over_runtime_api(port):
    """In C, before exec: listen for the Runtime API here (in the sandbox's network namespace)
    and pass the listening socket to Squall over the channel (fd 3), which then closes.
    Returns the address for AWS_LAMBDA_RUNTIME_API."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        send_fds(3, address.encode(), [listener.fileno()])
    finally:
        listener.close()
    os.close(3)
    return address


def _write_error(message):
    try:
        os.write(2, ("[squall] sandbox setup failed: %s\n" % message).encode("utf-8", "replace"))
    except OSError:
        pass


def _report_failure(reason):
    """B's last word on its sync socket (fd 4): SETUP_FAILED and why, read by whoever reaps it
    (the zygote), so that the server can say why an environment never started."""
    try:
        os.write(4, struct.pack("!i", SETUP_FAILED) + reason.encode("utf-8", "replace")[:STATUS_REASON_MAX])
    except OSError:
        pass


def _status_of(wait_status):
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return SETUP_FAILED


def read_all(fd):
    """The contents of a memfd (the request: the zygote only passes it on, unread)."""
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def send_fds(fd, data, fds):
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))] if fds else []
    sock = socket.socket(fileno=fd)
    try:
        sock.sendmsg([data], ancillary)
    finally:
        sock.detach()


def recv_fds(fd, size=1 << 18, max_fds=16):
    sock = socket.socket(fileno=fd)
    try:
        return _recv(sock, size, max_fds)
    finally:
        sock.detach()


def _recv(sock, size=1 << 18, max_fds=16):
    fd_size = struct.calcsize("i")
    msg, ancdata, flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(max_fds * fd_size))
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fd_size
            fds.extend(struct.unpack("%di" % (usable // fd_size), data[:usable]))
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        what = "file descriptors (out of fds?)" if flags & socket.MSG_CTRUNC else "data"
        raise TruncatedMessage(msg, "truncated message: lost %s" % what)
    return msg, fds


def _spawn_fds(data, fds):
    """A spawn message's fds: request, channel, log, mount fds, cgroup.procs fds.

    ``data`` is ``b"spawn T P"`` (``spawn_message``): the number of mount fds and of
    cgroup.procs fds.
    """
    words = data.split()
    if len(words) != 3 or words[0] != b"spawn":
        raise SetupError("unexpected message from the zygote")
    trees, procs = int(words[1]), int(words[2])
    if len(fds) != 3 + trees + procs:
        raise SetupError("a spawn with %d fds, expected %d" % (len(fds), 3 + trees + procs))
    return fds[0], fds[1], fds[2], fds[3:3 + trees], fds[3 + trees:]


def spawn_message(trees, procs):
    return b"spawn %d %d" % (trees, procs)


class TruncatedMessage(ValueError):
    def __init__(self, data, message):
        ValueError.__init__(self, message)
        self.data = data


class Spawner(object):
    """Forks sandboxes ahead of need; a request then only finishes one.

    A spare sandbox is B (cloned into new namespaces) and its child C (the future runtime),
    both waiting: B for a request from the zygote on its ``sync`` socket, C for B's go.
    """

    def __init__(self, config, bootstrap, rehearsal_fd=None):
        self.jail = Jail(config)
        self.bootstrap = bootstrap
        self.rehearsal_fd = rehearsal_fd  # the stand-in's directory; a sandbox has it as fd 5
        self.trees = False  # spares enter the jail ahead; the code comes as mount fds
        self.rehearsal_request = json.dumps(rehearsal_request()).encode()
        self.clone_number = CLONE.get(os.uname().machine)
        try:
            with open("/proc/sys/kernel/pid_max") as f:
                pid_max = int(f.read())
        except (OSError, ValueError):
            pid_max = 32768
        self.pid_span = max(1, min(pid_max - RUNTIME_PID_MIN - 2, 1 << 22))

    def clone(self, flags):
        """fork() into new namespaces in one system call (the child is PID 1 of its pid ns).

        A raw clone skips the C library's and Python's after-fork work: fine for B, which
        only runs the code below, never user code (the runtime is forked normally).
        """
        pid = _libc.syscall(self.clone_number, ctypes.c_long(flags | signal.SIGCHLD), 0, 0, 0, 0)
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, "clone: %s" % os.strerror(err))
        return pid

    def spare(self, flags, close_in_child=()):
        """Start a spare sandbox: (pid of B, the zygote's end of its sync socket)."""
        ours, theirs = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        try:
            pid = self.clone(flags)
        except BaseException:
            os.close(ours)
            os.close(theirs)
            raise
        if pid == 0:
            try:
                for fd in close_in_child:
                    os.close(fd)
                os.close(ours)
                self.run_b(theirs)
            finally:
                os._exit(SETUP_FAILED)
        os.close(theirs)
        return pid, ours

    # -- B: PID 1 of the sandbox's pid namespace

    def run_b(self, sync):
        """Never returns. ``sync``: requests in, the runtime's exit status out."""
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.setsid()
            os.dup2(sync, 4)
            os.dup2(0, 1)  # /dev/null; 2 stays the zygote's stderr until the log arrives
            kept = self._keep_rehearsal_fd()
            os.closerange(kept, _MAXFD)
            os.closerange(3, 4)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            jail = self.jail
            jail.prepare_sandbox()
            if self.trees:  # the code will come as mount fds: build the rest of the jail now (before C)
                jail.enter_spare()
            # the runtime's pid: not always 2, so that pids of different sandboxes differ
            # (software uses them as ids). ns_last_pid acts on the writer's pid namespace.
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write("%d" % (RUNTIME_PID_MIN + int.from_bytes(os.urandom(4), "big") % self.pid_span))
            b_end, c_end = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
            runtime = os.fork()  # C, in our namespaces
            if runtime == 0:
                os.close(b_end)
                self.run_c(c_end)
            os.close(c_end)
            os.closerange(5, kept)  # C's now
            while True:
                data, fds = recv_fds(4)
                if not data:
                    os._exit(0)  # the zygote is gone: a spare nobody will use
                if data != b"join":
                    break
                try:
                    for fd in fds:  # a spare joins a cgroup ahead of time (migrations can be slow)
                        os.write(fd, b"0")
                        os.write(fd, b"%d" % runtime)
                except OSError:
                    os._exit(SETUP_FAILED)  # its cgroup is gone (server closing): a spare nobody uses
                for fd in fds:
                    os.close(fd)
            request, chan, log, trees, procs = _spawn_fds(data, fds)
            os.dup2(log, 2)  # from here on, errors go to the environment's log
            data = read_all(request)
            send_fds(b_end, data, [chan, log])  # C prepares while we finish the jail
            req = json.loads(data)
            for fd in procs:  # the environment's cgroup, before C runs anything
                os.write(fd, b"0")
                os.write(fd, b"%d" % runtime)
            if self.trees:
                if len(trees) != 1 + int(bool(req.get("runtime_dir"))):
                    raise SetupError("expected the code's (and the runtime's) mount fds, got %d" % len(trees))
                jail.finish(trees, req.get("tmp_mb", SPARE_TMP_MB))
            else:
                jail.enter(req["code_dir"], req.get("tmp_mb", SPARE_TMP_MB), req.get("runtime_dir"))
                _check(_libc.sethostname(jail.hostname, len(jail.hostname)), "sethostname")
            for fd in fds:
                os.close(fd)
            if req.get("loopback"):
                loopback_up()
            os.write(b_end, b"j")  # jailed: C may run
            os.close(b_end)
            os.dup2(0, 2)
            os.setgroups([])
            os.setresgid(jail.gid, jail.gid, jail.gid)
            os.setresuid(jail.uid, jail.uid, jail.uid)
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            prctl(PR_SET_DUMPABLE, 0)  # the function (same uid) must not ptrace us or open our fds
            while True:
                try:
                    pid, wait_status = os.waitpid(-1, 0)
                except ChildProcessError:
                    os._exit(SETUP_FAILED)
                if pid == runtime:  # the rest of the namespace dies with us
                    os.write(4, struct.pack("!i", _status_of(wait_status)))
                    os._exit(0)
        except BaseException as e:
            reason = str(e) or repr(e)
            _write_error(reason)
            _report_failure(reason)
        os._exit(SETUP_FAILED)

    # -- C: the runtime

    def run_c(self, sock):
        """Never returns.

        As a spare: unprivileged already, waiting for B. Then B sends the request, the
        channel and the log (we set up while B builds the jail), then "j" once we are in
        the jail (and the cgroup): only then does anything of the function run.
        """
        try:
            jail = self.jail
            os.setgroups([])
            os.setresgid(jail.gid, jail.gid, jail.gid)
            os.setresuid(jail.uid, jail.uid, jail.uid)
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            prctl(PR_SET_DUMPABLE, 0)  # not yet: we are still outside the jail
            os.dup2(sock, 4)
            kept = 6 if self.rehearsal_fd is not None else 5  # B gave us the stand-in as fd 5
            os.closerange(kept, _MAXFD)
            self.warm_up()
            os.closerange(5, kept)
            data, fds = recv_fds(4)
            if len(fds) != 2:
                os._exit(0 if not data else SETUP_FAILED)  # a spare nobody used
            chan, log = fds
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(chan, 3)  # 0 = /dev/null, 1 and 2 = the log, 3 = the control channel
            os.closerange(5, _MAXFD)
            req = json.loads(data)
            env = req["env"]
            os.environ.clear()
            os.environ.update(env)
            if "TZ" in env:
                time.tzset()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if os.read(4, 1) != b"j":
                os._exit(SETUP_FAILED)  # B failed (and said why in the log)
            os.close(4)
            prctl(PR_SET_DUMPABLE, 1)  # the function's /proc/self/* must be its own
            os.chdir(TASK_ROOT)
            if req.get("mode") == "python":
                self.run_python()
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            if req.get("runtime_api_port") is not None:
                env["AWS_LAMBDA_RUNTIME_API"] = hand_over_runtime_api(int(req["runtime_api_port"]))
            argv = req["argv"]
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                _write_error("exec %s: %s" % (argv[0], e))
                os._exit(127)
        except BaseException as e:
            _write_error(str(e) or repr(e))
        os._exit(SETUP_FAILED)

    def _keep_rehearsal_fd(self):
        """Put the stand-in's directory at fd 5 (for C); returns the first fd not kept."""
        if self.rehearsal_fd is None:
            return 5
        os.dup2(self.rehearsal_fd, 5)
        return 6

    def warm_up(self):
        """While a spare: touch what the runtime's init will touch (copy-on-write and new
        pages cost several µs each in a VM), so that less of it happens once a request waits.
        Runs only our code: the compiler, then a rehearsal of a request (the steps of
        ``run_c`` and the runtime's ``main`` on a stand-in function, undone afterwards)."""
        if self.bootstrap is None:
            return
        try:
            self.bootstrap.setup_streams()
            exec(compile(_WARM_UP_SOURCE, "/var/task/_warm_up.py", "exec"), {"__name__": "_warm_up"})
            if self.rehearsal_fd is None:
                return
            saved = dict(os.environ)
            try:
                req = json.loads(self.rehearsal_request)
                os.environ.clear()
                os.environ.update(req["env"])
                time.tzset()
                # through the fd: its path (in the data dir) is not ours to traverse
                if not self.bootstrap.rehearse("/proc/self/fd/5", REHEARSAL_MODULE):
                    raise RuntimeError("the stand-in function did not answer")
            finally:
                os.environ.clear()
                os.environ.update(saved)
                time.tzset()
        except Exception as e:  # the spare still works, only its start is slower
            sys.stderr.write("squall zygote: a spare sandbox could not rehearse (slower cold starts): %s\n" % e)

    def run_python(self):
        """Run bootstrap.main() here and exit as the interpreter would. Never returns."""
        boot = self.bootstrap
        boot.__name__ = "__main__"
        sys.modules["__main__"] = boot
        sys.argv[:] = [boot.__file__]
        code = 0
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


DEFAULT_FLAGS = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
# The next spare is forked when the server says that the last sandbox has started (its
# init done: forking earlier takes the CPU from it), or after this long at the latest.
RESTOCK_DELAY_S = 0.25
# How stale the sandboxes' copies of the host's /etc files (resolv.conf, hosts, ...) may get.
ETC_MAX_AGE_S = 2.0


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


_WARM_UP_SOURCE = """
import json, os, sys


class Thing(object):
    def __init__(self, value):
        self.value = value


def handler(event, context):
    print("event %s" % (event,), file=sys.stderr)
    return {"statusCode": 200, "body": json.dumps([Thing(i).value for i in range(10)])}
"""


# A stand-in function that spare sandboxes rehearse a request with (``Spawner.warm_up``).
REHEARSAL_MODULE = "_squall_rehearsal"
REHEARSAL_SOURCE = """\
import json
import os


def handler(event, context):
    return {"echo": event, "request": context.aws_request_id, "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}
"""


def make_rehearsal_dir(directory):
    """``directory`` (beside the jail's) holding the stand-in module and its bytecode, the
    path a deployed function takes; returns an fd of it, placed above the fds that
    sandboxes rearrange."""
    os.makedirs(directory, 0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, REHEARSAL_MODULE + ".py")
    try:
        with open(path) as f:
            current = f.read()
    except OSError:
        current = None
    if current != REHEARSAL_SOURCE:  # zygotes of other interpreters may be here at once
        temp = "%s.%d.new" % (path, os.getpid())
        with open(temp, "w") as f:
            f.write(REHEARSAL_SOURCE)
        os.rename(temp, path)
    py_compile.compile(path, doraise=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)
    finally:
        os.close(fd)


def rehearsal_request():
    """A spawn request as the backend sends one (placeholder values of typical sizes)."""
    name = "rehearsal-function"
    stream = "2026/01/01/[$LATEST]" + "0" * 32
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + name,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_LOG_FORMAT": "Text",
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "_HANDLER": "lambda_function.handler",
        "_SQUALL_MEMORY_PROBE": "0",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
        "LD_LIBRARY_PATH": TASK_ROOT + ":" + TASK_ROOT + "/lib:/opt/lib",
    }
    return {"mode": "python", "argv": [sys.executable, "-s", RUNTIME_DIR + "/bootstrap.py"], "env": env,
            "code_dir": "/" + "x" * 80, "tmp_mb": 512, "loopback": False}


def warm_up(directory):
    """Run the import machinery on the stand-in module, so that forks find it warm
    (Python 3.11 specialises bytecode as it runs: done here once, not in every sandbox)."""
    import importlib

    sys.path.insert(0, directory)
    try:
        for _ in range(3):
            importlib.import_module(REHEARSAL_MODULE)
            del sys.modules[REHEARSAL_MODULE]
    finally:
        sys.path.remove(directory)
        sys.path_importer_cache.pop(directory, None)


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


class Zygote(object):
    def __init__(self, sock, spawner):
        self.sock = sock
        self.spawner = spawner
        self.children = {}  # pid of B -> its sync socket (ours)
        self.spares = {}  # clone flags -> pid of a spare B
        self.stock = None  # (name, procs fds) of the cgroup for the next spare
        self.joined = {}  # pid of a spare B -> the cgroup it has joined
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake_r = wake_r
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(wake_w)
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.selector.register(wake_r, selectors.EVENT_READ)
        self.spare_died_at = -1e9
        self.restock_at = None  # when to fork the next spare: once the last start is done
        self.offered = None  # pid of the spare handed to the server, until it is taken

    def make_spare(self, flags, join_stock=True):
        pid, sync = self.spawner.spare(flags, ())
        self.children[pid] = sync
        if join_stock and flags == DEFAULT_FLAGS and self.stock is not None:
            self.join(pid)
        return pid

    def join(self, pid):
        """Send the stocked cgroup to spare ``pid``: it joins it while nobody waits."""
        name, fds = self.stock
        self.stock = None
        try:
            send_fds(self.children[pid], b"join", fds)
            self.joined[pid] = name
        except OSError:
            pass  # the spare died; a spawn that wanted this cgroup brings its fds again
        finally:
            for fd in fds:
                os.close(fd)

    def drop_stock(self):
        if self.stock is not None:
            for fd in self.stock[1]:
                os.close(fd)
            self.stock = None

    def take_stock(self, name, fds):
        self.drop_stock()
        self.stock = (name, fds)
        spare = self.spares.get(DEFAULT_FLAGS)
        if spare is not None and spare not in self.joined:
            self.join(spare)
            self.offer()
        else:
            self.restock()

    def offer(self):
        """Hand the server the default spare once it has joined a stocked cgroup: B's sync
        socket, so that the server sends the spawn to B itself (a hop less)."""
        pid = self.spares.get(DEFAULT_FLAGS)
        if pid is None or pid not in self.joined or self.offered is not None:
            return
        message = json.dumps({"spare": pid, "cgroup": self.joined[pid]}).encode()
        try:
            send_fds(self.sock.fileno(), message, [self.children[pid]])
        except OSError:
            return  # the server is gone
        del self.spares[DEFAULT_FLAGS]
        self.offered = pid

    def taken(self, pid):
        """The server has sent the offered spare its spawn."""
        if self.offered == pid:
            self.offered = None
            self.joined.pop(pid, None)
            self.restock_at = time.monotonic() + RESTOCK_DELAY_S

    def reap(self):
        while self.children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sync = self.children.pop(pid, None)
            self.joined.pop(pid, None)
            for flags, spare in list(self.spares.items()):
                if spare == pid:  # a spare died unused: nobody to tell
                    del self.spares[flags]
                    self.spare_died_at = time.monotonic()
                    pid = None
            if pid is not None and pid == self.offered:  # the server holds it: it hears below
                self.offered = None
                self.spare_died_at = time.monotonic()
                self.restock_at = self.spare_died_at + 1.1
            status = _status_of(wait_status)
            reason = None
            if sync is not None:
                try:  # the runtime's status, sent by B before it exited (with why, if B failed)
                    data = os.read(sync, 4 + STATUS_REASON_MAX)
                    if len(data) >= 4:
                        status = struct.unpack("!i", data[:4])[0]
                        reason = data[4:].decode("utf-8", "replace") or None
                except OSError:
                    pass
                os.close(sync)
            if pid is not None:
                exited = {"exited": pid, "status": status}
                if reason:
                    exited["reason"] = reason
                _send(self.sock, exited)

    def spawn(self, req, fds):
        """``fds``: the request (a memfd we never read: no tenant data may enter the zygote,
        whose memory every later sandbox inherits), channel, log, mount fds of the code (and
        a runtime) when sandboxes are entered ahead, cgroup.procs files."""
        trees, procs = int(req.get("trees", 0)), int(req.get("procs", 0))
        if len(fds) != 3 + trees + procs:
            raise ValueError("expected the request, channel, log, %d mount and %d cgroup fds, got %d fds" % (trees, procs, len(fds)))
        flags = DEFAULT_FLAGS if req.get("network", True) else DEFAULT_FLAGS | CLONE_NEWNET
        stocked = req.get("stocked")
        pid = None
        if stocked and self.offered is not None and self.joined.get(self.offered) == stocked:
            pid, self.offered = self.offered, None  # the server asked before it heard of the offer
        if pid is None:
            pid = self.spares.pop(flags, None)
        if pid is None:
            pid = self.make_spare(flags, join_stock=False)
        joined = stocked and self.joined.pop(pid, None) == stocked
        if stocked and self.stock is not None and self.stock[0] == stocked:
            self.drop_stock()  # this environment has it now: no spare may join it
        try:
            if joined:
                send_fds(self.children[pid], spawn_message(trees, 0), fds[:3 + trees])
            else:  # B joins now
                send_fds(self.children[pid], spawn_message(trees, procs), fds)
        except OSError:  # the spare died: start a fresh one
            pid = self.make_spare(flags, join_stock=False)
            send_fds(self.children[pid], spawn_message(trees, procs), fds)
        return pid

    def refuse(self, data, error):
        """Answer a request we could not take (when we can tell which one it was)."""
        try:
            req = json.loads(data)
        except ValueError:
            return
        if isinstance(req, dict) and req.get("op") == "spawn" and req.get("id") is not None:
            _send(self.sock, {"id": req["id"], "error": "%s: %s" % (type(error).__name__, error)})

    def restock(self):
        self.restock_at = None
        if DEFAULT_FLAGS in self.spares or self.offered is not None:
            return
        if time.monotonic() - self.spare_died_at > 1.0:
            try:
                self.spares[DEFAULT_FLAGS] = self.make_spare(DEFAULT_FLAGS)
            except OSError as e:  # e.g. out of pids: the next spawn forks on demand
                self.spare_died_at = time.monotonic()
                sys.stderr.write("squall zygote: cannot fork a spare sandbox: %s\n" % e)
                return
            self.offer()

    def timeout(self):
        """Until the next restock, or the next look at the host's /etc files."""
        now = time.monotonic()
        etc_due = self.spawner.jail.etc_checked + ETC_MAX_AGE_S
        due = etc_due if self.restock_at is None else min(etc_due, self.restock_at)
        return max(0.0, due - now)

    def serve(self):
        sock = self.sock
        gc.freeze()
        _send(sock, {"ready": os.getpid(), "rss_kb": _rss_kb(), "trees": self.spawner.trees})
        self.restock()
        while True:
            events = self.selector.select(self.timeout())
            if not events:
                if self.restock_at is not None and time.monotonic() >= self.restock_at:
                    self.restock()  # idle for a moment: the last sandbox has started
                # resolv.conf and hosts may change; looked at while idle, never on a spawn's path
                self.spawner.jail.refresh_etc(max_age=ETC_MAX_AGE_S)
            for key, _ in events:
                if key.fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    continue
                try:
                    data, fds = _recv(sock)
                except (BlockingIOError, InterruptedError):
                    continue
                except ValueError as e:
                    sys.stderr.write("squall zygote: %s\n" % e)
                    self.refuse(getattr(e, "data", b""), e)  # a spawn must hear of it, not wait
                    continue
                if not data:
                    return
                req = {}
                try:
                    req = json.loads(data)
                    if req.get("op") == "restock":
                        self.restock()
                        continue
                    if req.get("op") == "stock":
                        self.take_stock(req["cgroup"], fds)
                        fds = []  # ours now
                        continue
                    if req.get("op") == "taken":
                        self.taken(req.get("pid"))
                        continue
                    if req.get("op") != "spawn":
                        raise ValueError("unknown op %r" % req.get("op"))
                    pid = self.spawn(req, fds)
                    _send(sock, {"id": req.get("id"), "pid": pid})
                    self.restock_at = time.monotonic() + RESTOCK_DELAY_S
                except Exception as e:
                    _send(sock, {"id": req.get("id"), "error": "%s: %s" % (type(e).__name__, e)})
                finally:
                    for fd in fds:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
            self.reap()
            if events:  # a zygote that is never idle follows /etc too, after what it had to do
                self.spawner.jail.refresh_etc(max_age=5 * ETC_MAX_AGE_S)


def probe(config):
    """Build one sandbox that runs ``true`` (checks the kernel allows all we need)."""
    spawner = Spawner(config, None)
    if spawner.clone_number is None:
        sys.stderr.write("unsupported architecture %s\n" % os.uname().machine)
        return 1
    try:
        spawner.jail.prepare()
        log_r, log_w = os.pipe()
        pid, sync = spawner.spare(DEFAULT_FLAGS | CLONE_NEWNET, (log_r,))
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
    status = struct.unpack("!i", data)[0] if len(data) == 4 else _status_of(wait_status)
    if status != 0:
        sys.stderr.write("%s\n" % (message or "status %d" % status))
    return 1 if status else 0


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
    global _MAXFD
    os.umask(0o022)
    os.chdir("/")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:  # one sync socket per live environment
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    _MAXFD = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    try:
        Zygote(sock, spawner).serve()
    except (BrokenPipeError, ConnectionError):
        pass  # the server went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
