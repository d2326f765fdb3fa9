"""The spawner: B (PID 1 of a sandbox) and C (the runtime), forked ahead as spares."""

import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
import time

from _squall_zygote import syscalls, template
from _squall_zygote.jail import Jail, configure_eth0, disable_ipv6_ahead, eth0_down, hand_over_runtime_api, loopback_up
from _squall_zygote.messages import (
    read_all,
    recv_fds,
    report_failure,
    send_fds,
    spawn_fds,
    status_of,
    write_error,
)
from _squall_zygote.seccomp import install as install_seccomp
from _squall_zygote.rehearsal import REHEARSAL_MODULE, WARM_UP_SOURCE, rehearsal_request
from _squall_zygote.syscalls import (
    CLONE,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    RUNTIME_PID_MIN,
    SETUP_FAILED,
    SPARE_TMP_MB,
    TASK_ROOT,
    SetupError,
    check,
    libc,
    prctl,
)


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
        self.seccomp = None  # the BPF program every runtime runs under (seccomp.py), where it can be built
        self.template_seccomp = None  # a template's (template.py): environments forked from it add the full one
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
        pid = libc.syscall(self.clone_number, ctypes.c_long(flags | signal.SIGCHLD), 0, 0, 0, 0)
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
            os.closerange(kept, syscalls.MAXFD)
            os.closerange(3, 4)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            jail = self.jail
            jail.prepare_sandbox()
            loopback_up()  # the sandbox's own network namespace: its lo starts down
            disable_ipv6_ahead()
            configured = None  # eth0 as configured ahead (a "net" message from the server)
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
                if data.startswith(b"net "):  # the server made our eth0 ahead: configure it now
                    configured = json.loads(data[4:])
                    configure_eth0(configured["address"], int(configured["prefix"]), configured["gateway"])
                    continue
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
            request, chan, log, trees, procs = spawn_fds(data, fds)
            os.dup2(log, 2)  # from here on, errors go to the environment's log
            data = read_all(request)
            send_fds(b_end, data, [chan, log])  # C prepares while we finish the jail
            req = json.loads(data)
            for fd in procs:  # the environment's cgroup, before C runs anything
                os.write(fd, b"0")
                os.write(fd, b"%d" % runtime)
            disk = None
            if req.get("tmp_disk"):  # the last mount fd: /tmp's disk (sandbox/linux/ephemeral.py)
                if not trees:
                    raise SetupError("expected the mount fd of /tmp's disk")
                disk, trees = trees[-1], trees[:-1]
            if self.trees:
                expected = 1 + int(bool(req.get("runtime_dir"))) + int(bool(req.get("opt_dir")))
                if len(trees) != expected:
                    raise SetupError("expected the code's (the runtime's, the layers') mount fds: %d, got %d"
                                     % (expected, len(trees)))
                jail.finish(trees, req.get("tmp_mb", SPARE_TMP_MB), disk, bool(req.get("runtime_dir")))
            else:
                if trees:
                    raise SetupError("mount fds for a sandbox that builds its jail from paths")
                jail.enter(req["code_dir"], req.get("tmp_mb", SPARE_TMP_MB), req.get("runtime_dir"), disk,
                           req.get("opt_dir"))
                check(libc.sethostname(jail.hostname, len(jail.hostname)), "sethostname")
            for fd in fds:
                os.close(fd)
            net = req.get("net")
            if net and net != configured:  # the server gives us eth0 (maybe a moment from now), or moved it
                configure_eth0(net["address"], int(net["prefix"]), net["gateway"], reconfigure=configured is not None)
            elif configured and not net:
                eth0_down()  # no network for this function (the server deletes eth0)
            os.write(b_end, b"j")  # jailed: C may run
            os.close(b_end)
            os.dup2(0, 2)
            os.setgroups([])
            os.setresgid(jail.gid, jail.gid, jail.gid)
            os.setresuid(jail.uid, jail.uid, jail.uid)
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            prctl(PR_SET_DUMPABLE, 0)  # the function (same uid) must not ptrace us or open our fds
            template = req.get("mode") == "python-template"
            runtime_status = None
            while True:
                try:
                    pid, wait_status = os.waitpid(-1, 0)
                except ChildProcessError:  # a template's environments are gone too
                    if runtime_status is None:
                        os._exit(SETUP_FAILED)
                    os.write(4, struct.pack("!i", runtime_status))
                    os._exit(0)
                if pid == runtime and not template:  # the rest of the namespace dies with us
                    os.write(4, struct.pack("!i", status_of(wait_status)))
                    os._exit(0)
                if pid == runtime:  # the environments forked from it live in namespaces nested in
                    runtime_status = status_of(wait_status)  # ours: we stay until they are gone
        except BaseException as e:
            reason = str(e) or repr(e)
            write_error(reason)
            report_failure(reason)
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
            os.closerange(kept, syscalls.MAXFD)
            self.warm_up()
            os.closerange(5, kept)
            data, fds = recv_fds(4)
            if len(fds) != 2:
                os._exit(0 if not data else SETUP_FAILED)  # a spare nobody used
            chan, log = fds
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(chan, 3)  # 0 = /dev/null, 1 and 2 = the log, 3 = the control channel
            os.closerange(5, syscalls.MAXFD)
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
            template = req.get("mode") == "python-template"
            program = self.template_seccomp if template else self.seccomp
            if template and program is None and self.seccomp is not None:
                raise SetupError("the template seccomp filter could not be built")
            if program is not None:  # from here on the kernel's surface is narrowed (seccomp.py)
                install_seccomp(program, libc)
            if req.get("mode") == "python":
                self.run_python()
            if template:
                self.run_python(template=True)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            if req.get("runtime_api_port") is not None:
                env["AWS_LAMBDA_RUNTIME_API"] = hand_over_runtime_api(int(req["runtime_api_port"]))
            argv = req["argv"]
            try:
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                write_error("exec %s: %s" % (argv[0], e))
                os._exit(127)
        except BaseException as e:
            write_error(str(e) or repr(e))
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
            exec(compile(WARM_UP_SOURCE, "/var/task/_warm_up.py", "exec"), {"__name__": "_warm_up"})
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

    def run_python(self, template=False):
        """Run bootstrap.main() here and exit as the interpreter would (a template: init, then
        fork environments, template.py). Never returns."""
        boot = self.bootstrap
        boot.__name__ = "__main__"
        sys.modules["__main__"] = boot
        sys.argv[:] = [boot.__file__]
        code = 0
        try:
            code = run_template(self, boot) if template else boot.main(3)
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
        finalize()
        os._exit(code & 0xFF)


def run_template(spawner, boot):
    """T: the function's init, the snapshot, then forks on request (template.py)."""
    boot.prepare_main()
    channel = boot.Channel(3)
    snapshot = template.Snapshot()

    def take_snapshot():
        template.before_snapshot()
        snapshot.take()

    try:
        handler = boot.initialise(channel, os.environ.get("_HANDLER", ""), before_ready=take_snapshot)
    except (BrokenPipeError, ConnectionError):
        return 0
    if handler is None:
        return 1
    return template.serve(spawner, boot, channel, handler, snapshot)


def finalize():
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


# Every sandbox has a network namespace of its own: loopback only, plus the eth0 the server
# gives it when its function is on a network (sandbox/linux/network.py).
DEFAULT_FLAGS = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
# The next spare is forked when the server says that the last sandbox has started (its
# init done: forking earlier takes the CPU from it), or after this long at the latest.
RESTOCK_DELAY_S = 0.25
# How stale the sandboxes' copies of the host's /etc files (resolv.conf, hosts, ...) may get.
ETC_MAX_AGE_S = 2.0
