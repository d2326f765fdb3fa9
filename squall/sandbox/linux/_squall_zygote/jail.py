"""The jail: the read-only template root every sandbox pivots into, and its network bits."""

import ctypes
import fcntl
import os
import socket
import stat
import struct
import sys
import time

from _squall_zygote.messages import send_fds
from _squall_zygote.syscalls import (
    CLONE_NEWNS,
    IFF_UP,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    OPT_DIR,
    PER_SANDBOX,
    RUNTIME_DIR,
    SIOCGIFFLAGS,
    SIOCSIFFLAGS,
    SPARE_TMP_MB,
    TASK_ROOT,
    SetupError,
    as_bytes,
    check,
    libc,
    mount,
    move_mount,
    open_tree,
    pivot_root,
    under,
    unshare,
)


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
    ETC_DIRS = ("ssl", "alternatives", "pki", "crypto-policies", "ca-certificates", "ld.so.conf.d", "mono")  # and /etc/java-*
    DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))

    def __init__(self, config):
        self.mountpoint = as_bytes(config["jail_dir"])
        self.uid = int(config["uid"])
        self.gid = int(config["gid"])
        self.hostname = as_bytes(config.get("hostname") or "localhost")
        self.runtime_dir = config["runtime_dir"]
        self.shm_mb = int(config.get("shm_mb") or 64)
        self.disk_expected = bool(config.get("tmp_disks"))  # requests bring a disk for /tmp
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
                self.ops.append(("mkdir", as_bytes(sub), mode))

    def _bind(self, source, target, flags):
        self._mkdir(target)
        self.ops.append(("bind", as_bytes(source), as_bytes(target), flags))

    def _covered(self, path):
        return any(path == d or path.startswith(d + "/") for d in self._bound)

    def _plan(self):
        for name in self.ROOT_DIRS:
            host = "/" + name
            if os.path.islink(host):
                self.ops.append(("symlink", as_bytes(os.readlink(host)), as_bytes(host)))
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
                if under(real, PER_SANDBOX):  # e.g. a venv in /tmp: bound after /tmp is mounted
                    self.late_binds.append(as_bytes(real))
                else:
                    self._bind(real, real, MS_NOSUID | MS_NODEV)
                self._bound.append(real)
            if prefix != real and not self._covered(prefix) and prefix not in self.dirs:
                if under(prefix, PER_SANDBOX):
                    self.late_links.append((as_bytes(real), as_bytes(prefix)))
                else:
                    self._mkdir(os.path.dirname(prefix))
                    self.ops.append(("symlink", as_bytes(real), as_bytes(prefix)))
                self.dirs.add(prefix)
        for path, mode in (("/etc", 0o755), ("/proc", 0o555), ("/dev", 0o755), ("/dev/shm", 0o1777),
                           ("/tmp", 0o1777), (TASK_ROOT, 0o755), (RUNTIME_DIR, 0o755), (OPT_DIR, 0o755)):
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
            self.ops.append(("mknod", as_bytes("/dev/" + name), os.makedev(major, minor)))
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            self.ops.append(("symlink", as_bytes(target), as_bytes("/dev/" + name)))

    def etc_entries(self):
        """What the template's /etc holds: copies of host files, and our own identity files."""
        entries = {}
        for name in self.ETC_FILES:
            host = "/etc/" + name
            try:
                if os.path.islink(host) and name != "resolv.conf":
                    entries[as_bytes(host)] = ("symlink", as_bytes(os.readlink(host)))
                else:
                    with open(host, "rb") as f:
                        entries[as_bytes(host)] = ("file", f.read())
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

    def enter(self, code_dir, tmp_mb, runtime_dir=None, disk=None, opt_dir=None):
        """In the sandbox (B) for a request: add its own mounts, pivot_root in (``disk``: the
        mount fd of the /tmp disk the server made, or None for a tmpfs /tmp; ``opt_dir``: the
        function's layers, merged, mounted read-only at /opt)."""
        root = self.mountpoint
        task = root + as_bytes(TASK_ROOT)
        mount(as_bytes(code_dir), task, None, MS_BIND)
        read_only(task, MS_NOSUID | MS_NODEV)
        if runtime_dir:  # another language's runtime over the Python one at /var/runtime
            target = root + as_bytes(RUNTIME_DIR)
            mount(as_bytes(runtime_dir), target, None, MS_BIND)
            read_only(target, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if opt_dir:  # layers: programs run from /opt/bin, /opt/bootstrap (exec allowed)
            target = root + as_bytes(OPT_DIR)
            mount(as_bytes(opt_dir), target, None, MS_BIND)
            read_only(target, MS_NOSUID | MS_NODEV)
        self._private_dirs(tmp_mb, disk)
        self._pivot()

    def enter_spare(self):
        """In a spare (B) where the code arrives as mount fds: the whole jail but the code,
        pivot_root included (its unmount of the host's mount tree costs ~0.4 ms)."""
        self._private_dirs(SPARE_TMP_MB, tmp=not (self.disk_expected and self.tmp_disks))
        self._pivot()
        check(libc.sethostname(self.hostname, len(self.hostname)), "sethostname")

    def finish(self, trees, tmp_mb, disk=None, runtime=None):
        """In a spare entered ahead (``enter_spare``), for a request: the code's mount at
        /var/task, then a runtime's at /var/runtime (when ``runtime``) and the layers' at /opt
        (any fd left) (``open_tree`` fds from the server); /tmp: the server's disk (``disk``, a
        mount fd) in place of the spare's tmpfs, or that tmpfs resized to the function's
        ephemeral storage."""
        places = [(TASK_ROOT, MS_NOSUID | MS_NODEV)]
        if runtime is None:  # (an older caller: two fds meant the code and a runtime)
            runtime = len(trees) > 1
        if runtime:
            places.append((RUNTIME_DIR, MS_NOSUID | MS_NODEV | MS_NOEXEC))
        places.append((OPT_DIR, MS_NOSUID | MS_NODEV))
        if len(trees) > len(places):
            raise ValueError("more mount fds than places for them: %d" % len(trees))
        for fd, (target, flags) in zip(trees, places):
            move_mount(fd, as_bytes(target))
            mount(None, as_bytes(target), None, MS_PRIVATE)  # a clone of a shared mount is in its peer group
            read_only(as_bytes(target), flags)
        spare_tmp = not (self.disk_expected and self.tmp_disks)  # enter_spare mounted a tmpfs
        if disk is not None:
            if spare_tmp:
                check(libc.umount2(b"/tmp", MNT_DETACH), "umount the spare's /tmp")
            move_mount(disk, b"/tmp")
        elif not spare_tmp:  # no disk after all: a tmpfs now
            mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))
        elif int(tmp_mb) != SPARE_TMP_MB:
            mount(None, b"/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))

    @property
    def tmp_disks(self):
        """Whether a sandbox entered ahead may swap its /tmp for a disk: not when an
        interpreter's prefix is bound under /tmp (it would be hidden)."""
        return not (self.late_binds or self.late_links)

    def _private_dirs(self, tmp_mb, disk=None, tmp=True):
        root = self.mountpoint
        if disk is not None:
            move_mount(disk, root + b"/tmp")
        elif tmp:
            mount(b"tmpfs", root + b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=%dm,mode=1777" % max(1, int(tmp_mb)))
        mount(b"shm", root + b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=%dm,mode=1777" % self.shm_mb)
        for source in self.late_binds:
            target = root + source
            os.makedirs(target, 0o755, exist_ok=True)  # root's, in the sticky /tmp: not removable
            mount(source, target, None, MS_BIND)
            read_only(target, MS_NOSUID | MS_NODEV)
        for source, link in self.late_links:
            os.makedirs(os.path.dirname(root + link), 0o755, exist_ok=True)
            os.symlink(source, root + link)

    def _pivot(self):
        os.chdir(self.mountpoint)
        pivot_root(b".", b".")
        check(libc.umount2(b".", MNT_DETACH), "umount old root")
        os.chdir("/")

    def trees_work(self):
        """Whether a mount fd (``open_tree``) can be attached in a sandbox's namespace here
        (Linux 5.2+, not filtered): tried in a throw-away child."""
        try:
            fd = open_tree(self.mountpoint + as_bytes(RUNTIME_DIR))
        except OSError:
            return False
        pid = os.fork()
        if pid == 0:
            try:
                unshare(CLONE_NEWNS)
                mount(None, b"/", None, MS_REC | MS_PRIVATE)
                move_mount(fd, self.mountpoint + as_bytes(TASK_ROOT))
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(fd)
        return os.waitpid(pid, 0)[1] == 0


def read_only(target, flags):
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


SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
RTF_UP, RTF_GATEWAY = 0x1, 0x2
ETH0_WAIT_S = 10.0  # how long B waits for the server to move eth0 into its namespace


class _Rtentry(ctypes.Structure):
    """struct rtentry (linux/route.h), for SIOCADDRT."""

    _fields_ = [
        ("rt_pad1", ctypes.c_ulong), ("rt_dst", ctypes.c_ubyte * 16), ("rt_gateway", ctypes.c_ubyte * 16),
        ("rt_genmask", ctypes.c_ubyte * 16), ("rt_flags", ctypes.c_ushort), ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong), ("rt_pad4", ctypes.c_void_p), ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p), ("rt_mtu", ctypes.c_ulong), ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def _sockaddr_in(address):
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _sockaddr_field(address):
    return (ctypes.c_ubyte * 16).from_buffer_copy(_sockaddr_in(address))


def disable_ipv6_ahead():
    """Interfaces created in this network namespace from now on (eth0) get no IPv6: their
    networks are IPv4, and IPv6 autoconfiguration would only cost time when eth0 comes up."""
    try:
        with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass  # a kernel without IPv6


def _set_flags(fd, up):
    flags = struct.unpack("16sh14x", fcntl.ioctl(fd, SIOCGIFFLAGS, struct.pack("16sh14x", b"eth0", 0)))[1]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sh14x", b"eth0", flags))


def configure_eth0(address, prefix, gateway, reconfigure=False):
    """In B, in the sandbox's network namespace: give ``eth0`` (made by the server, maybe a
    moment from now) its address, bring it up and route through the gateway. ``reconfigure``:
    it had another address (a spare configured ahead for another network)."""
    deadline = time.monotonic() + ETH0_WAIT_S
    while True:
        try:
            socket.if_nametoindex("eth0")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SetupError("the network interface never arrived (waited %.0f s)" % ETH0_WAIT_S)
            time.sleep(0.0002)
    netmask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fd = sock.fileno()
        if reconfigure:
            _set_flags(fd, False)  # its routes go with it
        fcntl.ioctl(fd, SIOCSIFADDR, struct.pack("16s", b"eth0") + _sockaddr_in(address))
        fcntl.ioctl(fd, SIOCSIFNETMASK, struct.pack("16s", b"eth0") + _sockaddr_in(netmask))
        _set_flags(fd, True)
        route = _Rtentry(rt_dst=_sockaddr_field("0.0.0.0"), rt_gateway=_sockaddr_field(gateway),
                         rt_genmask=_sockaddr_field("0.0.0.0"), rt_flags=RTF_UP | RTF_GATEWAY)
        try:
            fcntl.ioctl(fd, SIOCADDRT, bytes(route))
        except OSError as e:
            raise SetupError("default route via %s: %s" % (gateway, e.strerror))


def eth0_down():
    """A spare configured ahead, taken by a function with no network: eth0 down and without
    its address (the server deletes it; the function could not bring it up again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            _set_flags(sock.fileno(), False)
            fcntl.ioctl(sock.fileno(), SIOCSIFADDR, struct.pack("16s", b"eth0") + _sockaddr_in("0.0.0.0"))
        except OSError:
            pass  # gone already


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
