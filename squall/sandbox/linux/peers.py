"""Who is at the other end of a loopback TCP connection: the kernel's sock_diag, asked once.

An environment that shares the host's network has its Runtime API on a loopback port that
every local process can reach. So that no other function (nor anything else on the host)
can take its events or answer for it, each connection is admitted only when the socket at
the other end belongs to a process of that environment: ``sock_diag`` names the peer
socket's inode in one netlink round trip, and ``/proc/<pid>/fd`` of the environment's
processes must hold it.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterable

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2 before its sockid
_SOCKID = struct.Struct("!HH16s16s")  # ports and addresses, network order
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie
_MSG_HEAD = struct.Struct("=BBBB")  # family, state, timer, retrans
_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode


def socket_inode(source: tuple[str, int], destination: tuple[str, int], family: int = socket.AF_INET) -> int | None:
    """The inode of the TCP socket bound to ``source`` and connected to ``destination``."""
    src = socket.inet_pton(family, source[0]).ljust(16, b"\0")
    dst = socket.inet_pton(family, destination[0]).ljust(16, b"\0")
    sockid = _SOCKID.pack(source[1], destination[1], src, dst) + _SOCKID_TAIL.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + sockid
    message = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.sendto(message, (0, 0))
        reply = netlink.recv(8192)
    if len(reply) < _HEADER.size:
        return None
    _length, kind, _flags, _seq, _pid = _HEADER.unpack_from(reply)
    if kind != SOCK_DIAG_BY_FAMILY:  # NLMSG_ERROR: no such socket
        return None
    offset = _HEADER.size + _MSG_HEAD.size + _SOCKID.size + _SOCKID_TAIL.size
    if len(reply) < offset + _MSG_TAIL.size:
        return None
    return _MSG_TAIL.unpack_from(reply, offset)[4]


def held_by(pids: Iterable[int], inode: int) -> bool:
    """Whether one of ``pids`` has the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") == target:
                    return True
            except OSError:
                continue
    return False


def peer_is_among(connection: socket.socket, pids: Iterable[int]) -> bool:
    """Whether the process at the other end of ``connection`` (loopback TCP) is one of ``pids``."""
    try:
        local = connection.getsockname()[:2]
        peer = connection.getpeername()[:2]
        inode = socket_inode(peer, local, connection.family)
    except OSError:
        return False
    return inode is not None and held_by(pids, inode)
