"""Constants and the system calls the zygote makes through libc (ctypes)."""

import ctypes
import os

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
MAXFD = 1 << 20  # set from RLIMIT_NOFILE at start; closerange is close_range(2): O(1)
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
OPT_DIR = "/opt"

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)
libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)


class SetupError(Exception):
    pass


def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError("%s: %s" % (what, os.strerror(err)))


def mount(source, target, fstype, flags, data=None):
    if libc.mount(source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        what = target if source is None or fstype is not None else source + b" on " + target
        raise SetupError("mount %s: %s" % (what.decode(errors="replace"), os.strerror(err)))


def unshare(flags):
    check(libc.unshare(flags), "unshare")


def open_tree(path):
    """A detached copy of the mount at ``path``, as an fd (``OPEN_TREE_CLONE``)."""
    fd = libc.syscall(ctypes.c_long(OPEN_TREE), ctypes.c_long(AT_FDCWD), ctypes.c_char_p(as_bytes(path)),
                       ctypes.c_long(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "open_tree %s: %s" % (path, os.strerror(err)))
    return fd


def move_mount(fd, target):
    """Attach the mount ``fd`` (from ``open_tree``, maybe another namespace's) at ``target``."""
    check(libc.syscall(ctypes.c_long(MOVE_MOUNT), ctypes.c_long(fd), ctypes.c_char_p(b""), ctypes.c_long(AT_FDCWD),
                         ctypes.c_char_p(target), ctypes.c_long(MOVE_MOUNT_F_EMPTY_PATH)),
           "move_mount %s" % target.decode(errors="replace"))


def pivot_root(new_root, put_old):
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError("pivot_root: unsupported architecture %s" % os.uname().machine)
    check(libc.syscall(number, new_root, put_old), "pivot_root")


def prctl(option, value):
    check(libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl %d" % option)


PER_SANDBOX = ("/tmp", "/dev/shm")  # mounted afresh in every sandbox


def under(path, roots):
    return any(path == r or path.startswith(r + "/") for r in roots)


def as_bytes(path):
    return path.encode() if isinstance(path, str) else path


# --------------------------------------------------------------------------
# the jail: a read-only template root built once per zygote
