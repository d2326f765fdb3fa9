"""The seccomp filter every environment's runtime runs under: Docker's default profile's
refusals, and stricter.

The zygote builds the filter once with libseccomp (through ctypes: the library is on every
Linux that has systemd) and exports it as a BPF program; C, the runtime, loads that program
with one ``prctl`` right before the function's code runs (``no_new_privs`` is set already).
It is a deny list over the native architecture (a call through another ABI, e.g. 32-bit
``int 0x80``, kills the process):

* ``EPERM`` for what could reach the kernel's or the host's state: new namespaces
  (``unshare``/``clone`` with a namespace flag, ``setns``), mounts (old and new API), keys
  (``keyctl``, ``add_key``, ``request_key``), ``bpf``, ``userfaultfd``, ``perf_event_open``,
  ``ptrace`` and cross-process memory access, kernel modules, ``kexec``, ``reboot``, swap,
  clocks, accounting, handles, NUMA policy, ``iopl``/``ioperm``, …;
* ``ENOSYS`` for ``io_uring_*`` and ``clone3`` (runtimes — libuv, glibc — fall back to what
  they used before, instead of failing).
"""

import ctypes
import ctypes.util
import errno
import os

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def SCMP_ACT_ERRNO(code):  # noqa: N802 - libseccomp's macro
    return 0x00050000 | (code & 0xFFFF)


DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
    "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl",
    "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
    "perf_event_open", "pidfd_getfd", "pivot_root", "process_madvise", "process_vm_readv", "process_vm_writev",
    "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "umount", "umount2", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old", "syslog", "fanotify_init", "lsm_set_self_attr",
)
NOT_THERE = ("io_uring_setup", "io_uring_enter", "io_uring_register", "clone3")
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


# What a SnapStart template's runtime may do besides (``template.py``): create the namespaces of
# each environment forked from it, owned by a user namespace of its own, and mount its /proc and
# /tmp there. Without a capability outside such a namespace, that is all mount can do; every
# environment forked from the template adds the full filter, which refuses both again.
TEMPLATE_ALLOWED = ("mount", "move_mount")
TEMPLATE_NAMESPACES = (0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000)  # USER NS PID NET IPC UTS


def build_program(template=False):
    """The filter as a BPF program (bytes), or None with the reason when libseccomp is missing.
    ``template``: a SnapStart template's (``TEMPLATE_ALLOWED``, unshare of its namespaces)."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        return None, "libseccomp is not installed (%s)" % e
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp))
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        return None, "seccomp_init failed"
    try:
        def rule(action, syscall, *comparisons):
            number = lib.seccomp_syscall_resolve_name(syscall.encode())
            if number < 0:  # not a call of this architecture (e.g. vm86 on aarch64)
                return
            array = (ArgCmp * len(comparisons))(*comparisons) if comparisons else None
            result = lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array)
            if result < 0:
                raise OSError(-result, "seccomp rule for %s: %s" % (syscall, os.strerror(-result)))

        for syscall in DENIED:
            if not (template and syscall in TEMPLATE_ALLOWED):
                rule(SCMP_ACT_ERRNO(errno.EPERM), syscall)
        for syscall in NOT_THERE:
            rule(SCMP_ACT_ERRNO(errno.ENOSYS), syscall)
        for flag in NAMESPACE_FLAGS:  # clone(flags, …) and unshare(flags) with any namespace flag
            for syscall in ("clone", "unshare"):
                if template and syscall == "unshare" and flag in TEMPLATE_NAMESPACES:
                    continue
                rule(SCMP_ACT_ERRNO(errno.EPERM), syscall, ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        read_end, write_end = os.pipe()
        try:
            result = lib.seccomp_export_bpf(ctx, write_end)
            os.close(write_end)
            write_end = -1
            if result < 0:
                raise OSError(-result, "seccomp_export_bpf: %s" % os.strerror(-result))
            chunks = []
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    except OSError as e:
        return None, str(e)
    finally:
        lib.seccomp_release(ctx)
    return b"".join(chunks), None


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def install(program, libc):
    """Load ``program`` for this process and its children (needs no_new_privs)."""
    prog = SockFprog(len(program) // 8, program)
    if libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "seccomp: %s" % os.strerror(err))
