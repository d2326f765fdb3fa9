"""What the zygote, B and C say to each other: fds by SCM_RIGHTS, spawn messages, exit statuses."""

import os
import socket
import struct

from _squall_zygote.syscalls import SETUP_FAILED, STATUS_REASON_MAX, SetupError


def write_error(message):
    try:
        os.write(2, ("[squall] sandbox setup failed: %s\n" % message).encode("utf-8", "replace"))
    except OSError:
        pass


def report_failure(reason):
    """B's last word on its sync socket (fd 4): SETUP_FAILED and why, read by whoever reaps it
    (the zygote), so that the server can say why an environment never started."""
    try:
        os.write(4, struct.pack("!i", SETUP_FAILED) + reason.encode("utf-8", "replace")[:STATUS_REASON_MAX])
    except OSError:
        pass


def status_of(wait_status):
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
        return recv_message(sock, size, max_fds)
    finally:
        sock.detach()


def recv_message(sock, size=1 << 18, max_fds=16):
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


def spawn_fds(data, fds):
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
