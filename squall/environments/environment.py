"""An execution environment: one sandboxed runtime process serving one function version.

States (one invocation at a time, as on Lambda)::

    CREATED ─start→ STARTING ─ready→ READY ─invoke→ BUSY ─done→ READY
                       │                  │             │
                       └─ init error ─────┴─ stop ──────┴─ timeout / crash → STOPPED

The environment talks to its runtime over a link (``squall.environments.runtime_link``): frames on
a unix socket for the built-in Python runtime, the Lambda Runtime API for every other
runtime. The runtime's stdout/stderr are captured as its log stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import orjson

from squall.arn import LATEST
from squall.environments.capture import InvocationLog, OutputCapture
from squall.environments.platform_log import PlatformLog
from squall.invoke.invocation import (
    InvocationRequest,
    InvocationResult,
    error_payload,
    exit_error,
    response_too_large,
    timeout_error,
)
from squall.environments.runtime_link import FramesLink, LinkBroken, Reply, ResponseTooLarge, RuntimeApiLink
from squall.function import FunctionVersion
from squall.observe.logs import LogStore
from squall.runtimes.registry import BOOTSTRAP_NAME, RUNTIME_API, Launch, Runtime
from squall.sandbox.base import RestoreUnavailable, SandboxBackend, SandboxHandle, SandboxSpec, exit_description

if TYPE_CHECKING:
    from squall.environments.snapshots import Snapshot

logger = logging.getLogger("squall.environment")

INIT_TIMEOUT_S = 10.0  # Lambda's cap on the init phase of on-demand environments
SNAPSHOT_INIT_TIMEOUT_S = 900.0  # and of a SnapStart snapshot's (15 minutes)
_EXIT_GRACE_S = 0.5  # after the channel closes, how long to wait for the exit status


API_SERVICES = ("LAMBDA", "IAM", "STS", "CLOUDWATCH_LOGS")  # the APIs a server serves its functions


def api_endpoint_env(url: str) -> dict[str, str]:
    """Where the SDKs inside an environment find this server's APIs (``AWS_ENDPOINT_URL_<SERVICE>``)."""
    return {f"AWS_ENDPOINT_URL_{service}": url for service in API_SERVICES}


class EnvironmentState(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPED = "stopped"


TRANSITIONS: dict[EnvironmentState, frozenset[EnvironmentState]] = {
    EnvironmentState.CREATED: frozenset({EnvironmentState.STARTING, EnvironmentState.STOPPED}),
    EnvironmentState.STARTING: frozenset({EnvironmentState.READY, EnvironmentState.STOPPED}),
    EnvironmentState.READY: frozenset({EnvironmentState.BUSY, EnvironmentState.STOPPED}),
    EnvironmentState.BUSY: frozenset({EnvironmentState.READY, EnvironmentState.STOPPED}),
    EnvironmentState.STOPPED: frozenset(),
}


class Environment:
    def __init__(
        self,
        function: FunctionVersion,
        runtime: Runtime,
        code_dir: Path,
        backend: SandboxBackend,
        logs: LogStore,
        region: str,
        max_log_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        network: str | None = "default",
        provisioned: bool = False,
        extra_env: Mapping[str, str] | None = None,
        opt_dir: Path | None = None,
        template: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.function = function
        self.runtime = runtime
        self.code_dir = code_dir
        self.backend = backend
        self.logs = logs
        self.region = region
        self.max_log_bytes = max_log_bytes
        self.clock = clock
        self.network = network
        self.opt_dir = opt_dir  # the function's layers, merged: mounted at /opt (None: no layers)
        self.extra_env = dict(extra_env or {})
        self.platform_log = PlatformLog(function.logging_config)  # START/REPORT… in the function's LogFormat  # its role's credentials, the API's endpoints (engine)
        self.provisioned = provisioned  # started ahead for provisioned concurrency: no Init Duration
        self.retired = False  # set while busy when its function changed: stop instead of reuse
        # SnapStart: ``template`` — this environment's runtime runs init, then only forks new
        # environments (squall.environments.snapshots); ``snapshot`` — the template this one is
        # to be forked from (set before start()); ``restored`` — it was (no init: Restore Duration)
        self.template = template
        self.snap_start = template  # (set too for one restored or initialised ahead: the initialization type)
        self.init_timeout = SNAPSHOT_INIT_TIMEOUT_S if template else INIT_TIMEOUT_S
        self.snapshot: Snapshot | None = None
        self.restored = False
        self.state = EnvironmentState.CREATED
        self.group = function.log_group
        today = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        self.stream = f"{today}/[{function.version}]{self.id}"
        self.last_used = clock()
        self.created_at = self.last_used  # replaced after the pool's maximum age (credentials expire)
        self.invocations = 0
        self.init_duration_ms: float | None = None
        self.init_error: bytes | None = None
        self.setup_failure: str | None = None  # why the sandbox could not be built (then init_error says so)
        self.stop_reason: str | None = None
        self._init_log: InvocationLog | None = None
        self._init_peak_kb = 0
        self.fork_channel: socket.socket | None = None  # a template's: where fork frames go
        self._handle: SandboxHandle | None = None
        self._capture: OutputCapture | None = None
        self._link: FramesLink | RuntimeApiLink | None = None

    # ---- lifecycle ---------------------------------------------------------------
    def _move(self, state: EnvironmentState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"environment {self.id}: illegal transition {self.state} -> {state}")
        self.state = state

    @property
    def pool_key(self) -> tuple[str, str, str, bool]:
        return (self.function.name, self.function.version, self.function.revision_id, self.network)

    @property
    def alive(self) -> bool:
        return self.state in (EnvironmentState.READY, EnvironmentState.BUSY)

    @property
    def handle(self) -> SandboxHandle | None:
        """Its sandbox's processes (None before start() built them)."""
        return self._handle

    @property
    def link(self) -> FramesLink | RuntimeApiLink | None:
        return self._link

    @property
    def init_peak_kb(self) -> int:
        """The memory its init reached (a SnapStart template's: what restored environments map)."""
        return self._init_peak_kb

    @property
    def initialization_type(self) -> str:
        if self.snap_start:
            return "snap-start"
        return "provisioned-concurrency" if self.provisioned else "on-demand"

    def environment_variables(self, launch: Launch | None = None) -> dict[str, str]:
        fn = self.function
        runtime = self.runtime
        launch = launch or runtime.launch(self.code_dir, fn.memory_size, fn.environment)
        bin_dirs = f"{os.path.dirname(runtime.interpreter)}:" if runtime.interpreter else ""
        runtime_dir = launch.runtime_dir or os.path.dirname(runtime.command()[-1])
        env = {
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": fn.version,
            "AWS_LAMBDA_LOG_GROUP_NAME": self.group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.initialization_type,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "LAMBDA_TASK_ROOT": str(self.code_dir),
            "LAMBDA_RUNTIME_DIR": str(runtime_dir),
            "_HANDLER": fn.handler,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": f"{bin_dirs}/usr/local/bin:/usr/bin:/bin:/opt/bin",
            "LD_LIBRARY_PATH": f"{self.code_dir}:{self.code_dir}/lib:/opt/lib",
            # (/opt is the jail's path of the layers: a jailing backend mounts opt_dir there)
            "AWS_LAMBDA_LOG_FORMAT": fn.logging_config.get("LogFormat", "Text"),
            **launch.env,
        }
        if runtime.execution_env:
            env["AWS_EXECUTION_ENV"] = runtime.execution_env
        if fn.logging_config.get("LogFormat") == "JSON":  # levels exist in JSON format only (INFO by default)
            env["AWS_LAMBDA_LOG_LEVEL"] = fn.logging_config.get("ApplicationLogLevel") or "INFO"
        env.update(self.extra_env)
        env.update(fn.environment)
        return env

    async def start(self) -> None:
        """Start the runtime and run its init phase (import the handler)."""
        self._move(EnvironmentState.STARTING)
        started = time.perf_counter()
        runtime = self.runtime
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_read, log_write = os.pipe()
        entrypoint_error: bytes | None = None
        try:
            self._capture = OutputCapture(log_read, self.logs, self.group, self.stream)
            self._init_log = InvocationLog(self.max_log_bytes)
            self._capture.current = self._init_log
            snapshot = self.snapshot if self.snapshot is not None and self.snapshot.ready else None
            self._start_line(restored=snapshot is not None)
            try:
                if not runtime.prepared:  # e.g. the Java library's first build: seconds, off the loop
                    launch = await asyncio.to_thread(runtime.launch, self.code_dir, self.function.memory_size, self.function.environment)
                else:
                    launch = runtime.launch(self.code_dir, self.function.memory_size, self.function.environment)
            except RuntimeError as e:  # the runtime cannot be prepared on this machine (e.g. javac failed)
                launch = Launch((), None)
                entrypoint_error = error_payload("Runtime.InvalidRuntime", f"The {runtime.identifier} runtime cannot start: {e}")
            else:
                launch = _layer_bootstrap(runtime, launch, self.code_dir, self.opt_dir)
                entrypoint_error = _entrypoint_error(runtime, self.code_dir, self.opt_dir)
            if entrypoint_error is None:
                spec = SandboxSpec(
                    environment_id=self.id,
                    argv=launch.argv,
                    code_dir=self.code_dir,
                    env=self.environment_variables(launch),
                    memory_mb=self.function.memory_size,
                    ephemeral_storage_mb=self.function.ephemeral_storage,
                    network=self.network,
                    opt_dir=self.opt_dir,
                    runtime_dir=launch.runtime_dir,
                    runtime_api=runtime.link == RUNTIME_API,
                    template=self.template,
                )
                try:
                    self._handle = await self._start_sandbox(snapshot, spec, child.fileno(), log_write)
                except OSError as e:  # the process backend could not exec it
                    if runtime.link != RUNTIME_API:
                        raise
                    entrypoint_error = error_payload("Runtime.InvalidEntrypoint", f"fork/exec {launch.argv[0]}: {e.strerror or e}")
        except BaseException:
            parent.close()
            if self._capture is None:
                os.close(log_read)
            self._finish_stop("failed to start")
            raise
        finally:
            child.close()
            os.close(log_write)
        if entrypoint_error is not None:
            parent.close()
            self.init_duration_ms = (time.perf_counter() - started) * 1000
            self._init_failed(entrypoint_error)
            return
        assert self._handle is not None
        try:
            async with asyncio.timeout(self.init_timeout):
                if runtime.link == RUNTIME_API:
                    self._link = await RuntimeApiLink.open(parent, self._handle)
                else:
                    if self.template:  # fork frames go out with fds: sendmsg on a second handle of it
                        self.fork_channel = parent.dup()
                    self._link = await FramesLink.open(parent)
                reply = await self._link.init()
        except TimeoutError:
            reply = Reply(False, error_payload("Sandbox.Timedout", f"Init timed out after {self.init_timeout:.2f} seconds"))
        except LinkBroken:
            returncode = await self._exit_status()
            reply = Reply(False, self._exit_error(returncode))
        finally:
            if runtime.link == RUNTIME_API:
                parent.close()  # the listener was handed over; the channel has no other use
        self.init_duration_ms = (time.perf_counter() - started) * 1000
        if reply.ok:
            measured = self._handle.peak_memory_bytes()
            self._init_peak_kb = measured // 1024 if measured is not None else reply.max_rss_kb
            self._handle.reset_peak_memory()  # the first invocation's own measurement starts here
            self._handle.init_done()
            assert self._capture is not None
            self._capture.current = None
            self._move(EnvironmentState.READY)
            return
        self._init_failed(reply.body)

    def handed_over(self, waited_ms: float) -> None:
        """An environment initialised ahead (SnapStart, a runtime that cannot be forked) is a cold
        start's now: its first REPORT says how long the invocation waited for it (Restore Duration)."""
        self.restored = True
        self.init_duration_ms = waited_ms
        assert self._capture is not None
        self._init_log = self._capture.current = InvocationLog(self.max_log_bytes)  # the cold invoke's tail
        self._start_line(restored=True)
        self._capture.current = None

    def _start_line(self, restored: bool) -> None:
        """INIT_START, or RESTORE_START for an environment that skips its init (SnapStart)."""
        runtime = self.runtime
        arn = f"arn:aws:lambda:{self.region}::runtime:{runtime.identifier}"
        if restored:
            self._platform(self.platform_log.restore_start(runtime.family, runtime.version, arn))
        else:
            self._platform(self.platform_log.init_start(runtime.family, runtime.version, arn, self.initialization_type))

    async def _start_sandbox(self, snapshot: Snapshot | None, spec: SandboxSpec, channel_fd: int,
                             log_fd: int) -> SandboxHandle:
        """Forked from the version's snapshot when there is one, else started from scratch."""
        if snapshot is not None:
            try:
                handle = await snapshot.fork(spec, channel_fd, log_fd)
                self.restored = True
                return handle
            except RestoreUnavailable as e:
                logger.warning("environment %s of %s:%s is initialised from scratch: its snapshot could not "
                               "fork it: %s", self.id, self.function.name, self.function.version, e)
                self._start_line(restored=False)
        return await self.backend.start(spec, channel_fd, log_fd)

    def _exit_error(self, returncode: int) -> bytes:
        """The init error of a runtime that ended during init."""
        if self.runtime.link == RUNTIME_API and returncode in (126, 127):  # exec failed (the sandbox logged why)
            return error_payload("Runtime.InvalidEntrypoint", f"Runtime exited with error: {exit_description(returncode)}")
        assert self._handle is not None
        self.setup_failure = self._handle.setup_failure
        why = f" (sandbox setup failed: {self.setup_failure})" if self.setup_failure else ""
        return error_payload("Runtime.ExitError", f"Runtime exited with error: {exit_description(returncode)}{why}")

    def _platform(self, line: str | None) -> None:
        """A platform line (None: filtered out by SystemLogLevel)."""
        if line is not None:
            assert self._capture is not None
            self._capture.emit(line)

    def _init_failed(self, error: bytes) -> None:
        self.init_error = error
        error_type = _error_type(error)
        capture = self._capture
        assert capture is not None
        capture.drain()
        self._platform(self.platform_log.init_report(self.init_duration_ms or 0.0, error_type,
                                                     "restore" if self.restored else "init"))
        # The environment is discarded; the error is served to the invoke that started it.
        capture.current = None
        self.kill("init error")

    async def invoke(self, request: InvocationRequest, prelude: str | None = None) -> InvocationResult:
        """Run one invocation. Never raises for function failures: they are in the result.

        ``prelude``: a platform line written to the log stream before START (async attempts)."""
        fn = self.function
        cold_ms = self.init_duration_ms if self.invocations == 0 and not self.provisioned else None
        self.invocations += 1
        log = InvocationLog(self.max_log_bytes)
        capture = self._capture
        assert capture is not None
        if cold_ms is not None and self._init_log is not None:
            log = self._init_log  # the cold invoke's tail includes the init phase
        capture.current = log
        platform = self.platform_log
        if prelude:
            self._platform(platform.async_event(prelude, request.request_id))
        self._platform(platform.start(request.request_id, fn.version))
        if self.init_error is not None:
            if self.setup_failure is not None:  # Squall's fault, not the function's: the operator must see it
                logger.error(
                    "request %s: the sandbox of environment %s (%s:%s) could not be built: %s",
                    request.request_id, self.id, fn.name, fn.version, self.setup_failure,
                )
            return self._complete(request, log, 0.0, cold_ms, self.init_error, True, "error")

        self._move(EnvironmentState.BUSY)
        deadline_ms = int(time.time() * 1000 + fn.timeout * 1000)
        started = time.perf_counter()
        link = self._link
        handle = self._handle
        assert link is not None and handle is not None
        try:
            reply = await link.invoke(request, deadline_ms, fn.timeout)
        except TimeoutError:
            duration = (time.perf_counter() - started) * 1000
            peak_kb = self._peak_kb(handle)
            self.kill("timeout")
            capture.drain()
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self._platform(self.platform_log.failure(
                f"{stamp} {request.request_id} Task timed out after {fn.timeout:.2f} seconds", request.request_id))
            return self._complete(
                request, log, duration, cold_ms, timeout_error(request.request_id, fn.timeout), True, "timeout", peak_kb
            )
        except ResponseTooLarge:
            duration = (time.perf_counter() - started) * 1000
            self.kill("response too large")
            return self._complete(request, log, duration, cold_ms, response_too_large(), True)
        except LinkBroken:  # the runtime went away mid-invocation
            duration = (time.perf_counter() - started) * 1000
            returncode = await self._exit_status()
            self.kill("runtime exited")
            capture.drain()
            how = exit_description(returncode)
            oom = f" (out of memory: the function used more than its {fn.memory_size} MB)" if handle.oom_killed() else ""
            self._platform(self.platform_log.failure(
                f"RequestId: {request.request_id} Error: Runtime exited with error: {how}{oom}", request.request_id))
            self._platform(self.platform_log.failure("Runtime.ExitError", request.request_id))
            peak_kb = self._peak_kb(handle)  # an out-of-memory kill: what it had reached
            return self._complete(
                request, log, duration, cold_ms, exit_error(request.request_id, how), True, "error", peak_kb
            )
        duration = (time.perf_counter() - started) * 1000
        capture.drain()
        self._move(EnvironmentState.READY)
        measured = handle.peak_memory_bytes()
        # The next invocation's measurement starts now; the reset (a cgroup file write) runs
        # after this turn of the event loop, so after the response has been sent.
        asyncio.get_running_loop().call_soon(handle.reset_peak_memory)
        peak_kb = measured // 1024 if measured is not None else reply.max_rss_kb
        if cold_ms is not None:
            peak_kb = max(peak_kb, self._init_peak_kb)
        return self._complete(
            request, log, duration, cold_ms, reply.body, not reply.ok, peak_kb=peak_kb, content_type=reply.content_type
        )

    def _peak_kb(self, handle: SandboxHandle) -> int:
        measured = handle.peak_memory_bytes()
        return measured // 1024 if measured is not None else 0

    def _complete(
        self,
        request: InvocationRequest,
        log: InvocationLog,
        duration_ms: float,
        init_ms: float | None,
        payload: bytes,
        failed: bool,
        report_status: str | None = None,
        peak_kb: int = 0,
        content_type: str | None = None,
    ) -> InvocationResult:
        """Finish an invocation's log (END, REPORT) and build its result.

        ``report_status`` ("timeout", "error") marks platform-level failures in REPORT.
        """
        capture = self._capture
        assert capture is not None
        error_type = _error_type(payload) if failed else None
        capture.flush_partial()
        if log.dropped:
            log.cap += 1 << 20  # room for the platform lines
            capture.emit(f"[squall] {log.dropped} bytes of log output from this invocation were dropped (limit {self.max_log_bytes} bytes)")
        self._platform(self.platform_log.end(request.request_id))
        self._platform(self.platform_log.report(
            request.request_id, duration_ms, self.function.memory_size,
            max(1, round((peak_kb or self._init_peak_kb) / 1024)), None if self.restored else init_ms, report_status,
            error_type if report_status else None, restore_ms=init_ms if self.restored else None))
        capture.current = None
        self.last_used = self.clock()
        return InvocationResult(
            request_id=request.request_id,
            payload=payload,
            executed_version=self.function.version or LATEST,
            function_error="Unhandled" if failed else None,
            error_type=error_type,
            content_type=content_type or "application/json",
            tail_source=log.tail,
            duration_ms=duration_ms,
            init_duration_ms=init_ms,
        )

    async def _exit_status(self) -> int:
        assert self._handle is not None
        try:
            async with asyncio.timeout(_EXIT_GRACE_S):
                return await self._handle.wait()
        except TimeoutError:
            self._handle.kill()
            return await self._handle.wait()

    def kill(self, reason: str) -> None:
        """Kill every process of the environment now (timeout, crash, update, shutdown)."""
        if self._handle is not None:
            self._handle.kill()
        if self._link is not None:
            self._link.close()
            self._link = None
        if self.fork_channel is not None:
            self.fork_channel.close()
            self.fork_channel = None
        self._finish_stop(reason)

    def _finish_stop(self, reason: str) -> None:
        if self.state != EnvironmentState.STOPPED:
            self.stop_reason = reason
            self.state = EnvironmentState.STOPPED

    async def stop(self, reason: str) -> None:
        """Stop the environment and wait until its processes are gone and its log is read."""
        self.kill(reason)
        if self._handle is not None:
            await self._handle.wait()
        if self._capture is not None:
            self._capture.close()


def _layer_bootstrap(runtime: Runtime, launch: Launch, code_dir: Path, opt_dir: Path | None) -> Launch:
    """A custom runtime without /var/task/bootstrap starts a layer's /opt/bootstrap, as on Lambda."""
    if runtime.family != "provided" or opt_dir is None or (code_dir / BOOTSTRAP_NAME).exists():
        return launch
    if not (opt_dir / BOOTSTRAP_NAME).exists():
        return launch
    return Launch((str(opt_dir / BOOTSTRAP_NAME), *launch.argv[1:]), launch.runtime_dir, launch.env)


def _entrypoint_error(runtime: Runtime, code_dir: Path, opt_dir: Path | None = None) -> bytes | None:
    """A custom runtime's ``bootstrap`` that cannot run: Lambda's Runtime.InvalidEntrypoint."""
    if runtime.family != "provided":
        return None
    bootstrap, shown = code_dir / BOOTSTRAP_NAME, "/var/task/bootstrap"
    if not bootstrap.exists() and opt_dir is not None and (opt_dir / BOOTSTRAP_NAME).exists():
        bootstrap, shown = opt_dir / BOOTSTRAP_NAME, "/opt/bootstrap"
    if not bootstrap.is_file():
        return error_payload("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]")
    if not os.stat(bootstrap).st_mode & 0o111:
        return error_payload("Runtime.InvalidEntrypoint", f"fork/exec {shown}: permission denied")
    return None


def _error_type(payload: bytes) -> str:
    try:
        return str(orjson.loads(payload).get("errorType") or "Unknown")
    except (orjson.JSONDecodeError, AttributeError):
        return "Unknown"
