"""The zygote's loop: spawn requests from the server, spares, stock cgroups, reaping."""

import gc
import json
import os
import selectors
import signal
import struct
import sys
import time

from _squall_zygote.messages import recv_message, send_fds, spawn_message, status_of
from _squall_zygote.spawner import DEFAULT_FLAGS, ETC_MAX_AGE_S, RESTOCK_DELAY_S
from _squall_zygote.syscalls import STATUS_REASON_MAX


def send_json(sock, obj):
    sock.send(json.dumps(obj, separators=(",", ":")).encode())


def rss_kb():
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
            status = status_of(wait_status)
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
                send_json(self.sock, exited)

    def spawn(self, req, fds):
        """``fds``: the request (a memfd we never read: no tenant data may enter the zygote,
        whose memory every later sandbox inherits), channel, log, mount fds of the code (and
        a runtime) when sandboxes are entered ahead, cgroup.procs files."""
        trees, procs = int(req.get("trees", 0)), int(req.get("procs", 0))
        if len(fds) != 3 + trees + procs:
            raise ValueError("expected the request, channel, log, %d mount and %d cgroup fds, got %d fds" % (trees, procs, len(fds)))
        flags = DEFAULT_FLAGS
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
            send_json(self.sock, {"id": req["id"], "error": "%s: %s" % (type(error).__name__, error)})

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
        send_json(sock, {"ready": os.getpid(), "rss_kb": rss_kb(), "trees": self.spawner.trees,
                         "seccomp": self.spawner.seccomp is not None, "tmp_disks": self.spawner.jail.tmp_disks})
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
                    data, fds = recv_message(sock)
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
                    send_json(sock, {"id": req.get("id"), "pid": pid})
                    self.restock_at = time.monotonic() + RESTOCK_DELAY_S
                except Exception as e:
                    send_json(sock, {"id": req.get("id"), "error": "%s: %s" % (type(e).__name__, e)})
                finally:
                    for fd in fds:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
            self.reap()
            if events:  # a zygote that is never idle follows /etc too, after what it had to do
                self.spawner.jail.refresh_etc(max_age=5 * ETC_MAX_AGE_S)
