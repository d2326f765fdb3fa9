"""Ephemeral storage: each environment's /tmp on a disk of its own, not in its memory.

A tmpfs /tmp keeps files in memory, charged to the environment's cgroup: a function writing
its 512 MB of /tmp would be killed at 128 MB of memory. Lambda's /tmp is a disk. Here each
environment gets a small ext4 filesystem of exactly its ``EphemeralStorage`` size:

* one **template** image per size, made once with ``mkfs.ext4`` (sparse: ~100 KB on disk for
  512 MB) and cleaned with ``debugfs`` (no lost+found; the root is 1777);
* per environment, a sparse **copy** of it (``SEEK_DATA``/``copy_file_range``), unlinked at
  once, on a **loop device** (``LOOP_CONFIGURE`` with autoclear and direct I/O: its pages are
  cached once, in the filesystem's cache, charged to the writer but reclaimable, so writing
  /tmp does not run a function out of memory);
* mounted with the new mount API (``fsopen``/``fsconfig``/``fsmount``): a **detached mount**
  that B attaches at the sandbox's /tmp (``move_mount``), as it attaches the code.

When the environment ends its namespace goes, the mount with it, the loop device clears
itself and the unlinked copy is freed. Making a disk takes ~5 ms (mostly the loop device and
the mount), so one is made ahead for each of the sizes in use, on a thread of its own, once
the start that took the last one is over.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import fcntl
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("squall.sandbox.linux")

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO = 4, 16
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432  # the same on x86_64 and aarch64
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC = 1, 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x2, 0x4
# mkfs options: no journal (a scratch disk that dies with its environment), no reserved
# blocks, no room to grow; inode tables are never zeroed (noinit_itable at mount)
MKFS_OPTIONS = ("-q", "-F", "-m", "0", "-b", "4096", "-i", "16384", "-I", "256", "-O", "^has_journal,^resize_inode",
                "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard")
DEBUGFS_SCRIPT = "rmdir lost+found\nsif / mode 041777\nsif / uid 0\nsif / gid 0\n"
READY_SIZES = 3  # sizes (MB) a disk is kept ready for: the most recently used ones
_CONFIG = struct.Struct("II")  # struct loop_config: fd, block_size, then loop_info64 and reserved
_INFO64 = struct.Struct("QQQQQIIII64s64s32sQQ")


class EphemeralUnavailable(Exception):
    """Environments' /tmp cannot be disks here; the message says why."""


_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


class EphemeralDisks:
    """Makes the disks, keeps a few ready, hands them out as detached mount fds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squall-disk")
        self._templates: dict[int, Path] = {}
        self._ready: collections.OrderedDict[int, list[int]] = collections.OrderedDict()  # size → mount fds
        self._refills: dict[int, asyncio.Future[None]] = {}
        self._closed = False

    @classmethod
    def set_up(cls, directory: Path) -> EphemeralDisks:
        """Ready to make disks (one is made and dropped as a trial), or :class:`EphemeralUnavailable`."""
        for tool in ("mkfs.ext4", "debugfs"):
            if shutil.which(tool) is None:
                raise EphemeralUnavailable(f"{tool} is not installed (apt install e2fsprogs)")
        if not os.path.exists("/dev/loop-control"):
            raise EphemeralUnavailable("there are no loop devices (/dev/loop-control is missing: modprobe loop)")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("env-*"):  # copies a killed server had not unlinked yet
            stale.unlink(missing_ok=True)
        disks = cls(directory)
        try:
            os.close(disks._make(512))
        except (OSError, subprocess.SubprocessError) as e:
            disks.close()
            raise EphemeralUnavailable(f"cannot make a loop-mounted ext4 disk: {e}") from None
        return disks

    async def take(self, size_mb: int) -> int:
        """A detached mount of a fresh, empty ``size_mb`` MB filesystem (the caller closes it)."""
        ready = self._ready.get(size_mb)
        if ready:
            fd = ready.pop()
        else:
            fd = await asyncio.get_running_loop().run_in_executor(self._thread, self._make, size_mb)
        self._ready.setdefault(size_mb, [])
        self._ready.move_to_end(size_mb)
        while len(self._ready) > READY_SIZES:  # forget sizes no longer in use
            _, dropped = self._ready.popitem(last=False)
            for dropped_fd in dropped:
                os.close(dropped_fd)
        return fd

    def refill(self) -> None:
        """Make a disk ahead for each size in use that has none ready. Called once a start is
        over (making one takes the CPU for ~5 ms: not while a sandbox starts)."""
        for size_mb, ready in list(self._ready.items()):
            if not ready:
                self._refill(size_mb)

    def _refill(self, size_mb: int) -> None:
        if self._closed or size_mb in self._refills:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._thread, self._make, size_mb)
        self._refills[size_mb] = future

        def done(made: asyncio.Future[int]) -> None:
            self._refills.pop(size_mb, None)
            if made.cancelled():
                return
            if made.exception() is not None:
                log.warning("cannot make an ephemeral disk of %d MB ahead: %s", size_mb, made.exception())
                return
            kept = self._ready.get(size_mb)
            if kept is None or self._closed or kept:
                os.close(made.result())  # not wanted any more
            else:
                kept.append(made.result())

        future.add_done_callback(done)

    # ---- on the disk thread -------------------------------------------------------------
    def _make(self, size_mb: int) -> int:
        template = self._template(size_mb)
        path = self.directory / f"env-{uuid.uuid4().hex}.img"
        image = _sparse_copy(template, path)
        try:
            path.unlink()  # the loop device holds it; freed when the environment's mount goes
            device = _attach_loop(image)
        finally:
            os.close(image)
        try:
            return _mount(device)
        finally:
            os.close(device)

    def _template(self, size_mb: int) -> Path:
        path = self._templates.get(size_mb)
        if path is not None and path.exists():
            return path
        tag = hashlib.sha256(repr((MKFS_OPTIONS, DEBUGFS_SCRIPT)).encode()).hexdigest()[:8]
        path = self.directory / f"template-{size_mb}m-{tag}.img"
        if not path.exists():
            making = self.directory / f"making-{uuid.uuid4().hex}.img"
            try:
                with open(making, "wb") as f:
                    f.truncate(image_bytes(size_mb))
                subprocess.run(["mkfs.ext4", *MKFS_OPTIONS, str(making)], check=True, capture_output=True, timeout=120)
                subprocess.run(["debugfs", "-w", "-f", "-", str(making)], input=DEBUGFS_SCRIPT.encode(),
                               check=True, capture_output=True, timeout=60)
                os.rename(making, path)  # whole or not at all (another server may make it too)
            finally:
                making.unlink(missing_ok=True)
        self._templates[size_mb] = path
        return path

    def describe(self) -> str:
        return "a disk of its own (ext4 on a loop device), EphemeralStorage in size; not counted as memory"

    def close(self) -> None:
        self._closed = True
        for fds in self._ready.values():
            for fd in fds:
                os.close(fd)
        self._ready.clear()
        self._thread.shutdown(wait=True)


def image_bytes(size_mb: int) -> int:
    """An image that holds ``size_mb`` MB of files: the size plus ext4's metadata (256-byte
    inodes, one per 16 KB: 1/64 of the size, then bitmaps and descriptors)."""
    return (size_mb + -(-size_mb // 64) + 2) << 20


def _sparse_copy(source: Path, target: Path) -> int:
    """A copy of ``source`` with its holes (an open fd of ``target``)."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            os.ftruncate(dst, size)
            offset = 0
            while offset < size:
                try:
                    data = os.lseek(src, offset, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                hole = os.lseek(src, data, os.SEEK_HOLE)
                position, left = data, hole - data
                while left > 0:
                    copied = os.copy_file_range(src, dst, left, position, position)
                    if copied <= 0:
                        raise OSError(f"copying {source}: copy_file_range stopped at {position}")
                    position += copied
                    left -= copied
                offset = hole
        except BaseException:
            os.close(dst)
            raise
        return dst
    finally:
        os.close(src)


def _attach_loop(image: int) -> int:
    """A free loop device backed by ``image`` (an open fd of the device)."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(16):  # another process may take the free device first
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            try:
                device = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # no udev here: make the node ourselves
                os.mknod(f"/dev/loop{number}", 0o600 | 0o060000, os.makedev(7, number))
                device = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            info = _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
                                b"squall-ephemeral", b"", b"", 0, 0)
            try:
                fcntl.ioctl(device, LOOP_CONFIGURE, _CONFIG.pack(image, 4096) + info + bytes(64))
                return device
            except OSError as e:
                os.close(device)
                if e.errno != 16:  # EBUSY: taken meanwhile
                    raise
        raise OSError("no free loop device (all taken while trying)")
    finally:
        os.close(control)


def _mount(device: int) -> int:
    """A detached mount of the ext4 filesystem on ``device`` (nosuid, nodev)."""
    fs = _syscall(SYS_FSOPEN, b"ext4", FSOPEN_CLOEXEC)
    try:
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, b"source", f"/proc/self/fd/{device}".encode(), 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_FLAG, b"noinit_itable", None, 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0)
        return _syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)
