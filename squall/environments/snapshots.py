"""SnapStart: a template per version, whose runtime ran init once; new environments are forked from it.

A version with ``SnapStart.ApplyOn = PublishedVersions`` (and, with the ``snap_start_latest``
setting, ``$LATEST`` of such a function) gets a *snapshot*: an :class:`Environment` started as a
template (``template=True``: its runtime imports the handler, runs the before-snapshot hooks and
then only forks). New environments of that version are forked from it by the sandbox backend
(``restore``), each in its own namespaces, cgroup and network, and skip the init: their first
REPORT says ``Restore Duration``. A snapshot is built when its version is published, or by the
first cold start that needs it (which waits for it: the init it runs is the one the cold start
would have run).

What a snapshot costs is its memory: measured once its init is over, reported (``/health``,
``squall functions``) and kept within ``snapshot_memory_mb``, the least recently used evicted
first. A snapshot dies when its version changes or is deleted. An init that fails leaves no
snapshot: the version's environments start from scratch (and report the init error as ever);
another snapshot is tried after ``RETRY_AFTER_S``.
"""

from __future__ import annotations

import array
import asyncio
import logging
import socket
import uuid
from typing import TYPE_CHECKING, Any, Callable

from squall.arn import LATEST
from squall.environments.environment import INIT_TIMEOUT_S, Environment, EnvironmentState
from squall.environments.prestarted import Bursts, Prestarted
from squall.runtimes.registry import FRAMES
from squall.runtimes.python.frames import encode_frame
from squall.sandbox.base import RestoreUnavailable, SandboxHandle, SandboxSpec

if TYPE_CHECKING:
    from squall.environments.pool import EnvironmentPool, PoolKey
    from squall.function import FunctionVersion
    from squall.functions.code_store import CodeHold
    from squall.invoke.resolver import Target

log = logging.getLogger("squall.snapshots")

RETRY_AFTER_S = 60.0  # after a snapshot's init failed, how long its version starts from scratch
_ANSWER_TIMEOUT_S = 10.0
_REFILL_DELAY_S = 0.05  # after a restore, when the next environment is forked ahead


class Snapshot:
    """One version's template and what it has done."""

    def __init__(self, key: PoolKey, env: Environment, hold: CodeHold | None, clock: Callable[[], float],
                 on_lost: Callable[[Snapshot], None] | None = None) -> None:
        self.key = key
        self.env = env
        self._hold = hold  # its code, given back once its sandbox is gone
        self._on_lost = on_lost  # told when the template ends on its own
        self._clock = clock
        self.ready = False
        self.failure: str | None = None
        self.built: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.created_at = clock()
        self.last_used = self.created_at
        self.forks = 0
        self.memory_bytes = 0
        self._lock = asyncio.Lock()  # one fork frame and its answer at a time
        # environments forked ahead, waiting for their channel and log (the backend's Prepared):
        # as many as the largest burst of restores of the last minute, up to four (Bursts)
        self._spares: list[Any] = []
        self._refilling: asyncio.Task[None] | None = None
        self._bursts = Bursts(clock)

    @property
    def function(self) -> FunctionVersion:
        return self.env.function

    @property
    def init_duration_ms(self) -> float | None:
        return self.env.init_duration_ms

    async def build(self) -> None:
        try:
            await self.env.start()
            if self.env.state == EnvironmentState.READY:
                self.memory_bytes = self.env.init_peak_kb * 1024
                self.ready = True
                if self.env.link is not None:
                    self.env.link.on_lost = self._lost  # type: ignore[union-attr]
                self._refill()
            else:
                self.failure = _init_error_text(self.env)
        except Exception as e:
            self.failure = str(e) or type(e).__name__
        finally:
            if not self.built.done():
                self.built.set_result(None)

    async def fork(self, spec: SandboxSpec, channel_fd: int, log_fd: int) -> SandboxHandle:
        """A new environment of this version, forked from the template (one forked ahead when
        there is one)."""
        env = self.env
        backend = env.backend
        if not self.ready or not env.alive or env.handle is None:
            raise RestoreUnavailable("the snapshot is gone")
        self._bursts.started()
        try:
            prepared = self._take_spare()
            if prepared is None and self._refilling is not None and not self._refilling.done():
                await asyncio.shield(self._refilling)  # one is on its way (one per task): sooner than a new one
                prepared = self._take_spare()
            if prepared is None:
                prepared = await self._prepare()
            handle = backend.finish_restore(prepared, spec, channel_fd, log_fd)
        finally:
            self._bursts.ended()
        self.forks += 1
        self.last_used = self._clock()
        asyncio.get_running_loop().call_later(_REFILL_DELAY_S, self._refill)
        return handle

    def _lost(self) -> None:
        if self.ready and self._on_lost is not None:
            self.ready = False
            self._on_lost(self)

    @property
    def alive(self) -> bool:
        link = self.env.link
        return self.env.alive and link is not None and not link.broken  # type: ignore[union-attr]

    def _take_spare(self) -> Any:
        while self._spares:
            spare = self._spares.pop()
            if not spare.gone:
                return spare
        return None

    def _spare_spec(self) -> SandboxSpec:
        """What preparing an environment ahead needs to know: its version's limits and network."""
        env, fn = self.env, self.env.function
        return SandboxSpec(environment_id=uuid.uuid4().hex, argv=(), code_dir=env.code_dir, env={},
                           memory_mb=fn.memory_size, ephemeral_storage_mb=fn.ephemeral_storage, network=env.network,
                           opt_dir=env.opt_dir)

    def _refill(self) -> None:
        """Fork the next environment ahead (off the cold path: a cgroup join can take milliseconds);
        each one done calls this again until there are as many as wanted."""
        if not self.ready or (self._refilling is not None and not self._refilling.done()):
            return
        self._spares = [spare for spare in self._spares if not spare.gone]
        if len(self._spares) < self._bursts.wanted:
            self._refilling = asyncio.get_running_loop().create_task(self._prepare_spare())

    async def _prepare(self) -> Any:
        """An environment forked from the template, waiting for its channel and log (the backend's
        ``Prepared``); it maps the template's memory, charged to the template."""
        env = self.env
        return await env.backend.prepare_restore(env.handle, self._send, self._spare_spec(), self.memory_bytes)

    async def _prepare_spare(self) -> None:
        env = self.env
        try:
            spare = await self._prepare()
        except Exception as e:
            log.warning("SnapStart: cannot fork an environment of %s:%s ahead: %s", env.function.name,
                        env.function.version or LATEST, e)
            return
        if not self.ready:
            spare.drop()
            return
        self._spares.append(spare)
        asyncio.get_running_loop().call_soon(self._refill)

    async def _send(self, meta: dict[str, object], fds: list[int]) -> dict[str, object]:
        async with self._lock:
            sock, link = self.env.fork_channel, self.env.link
            if sock is None or link is None:
                raise RestoreUnavailable("the snapshot is gone")
            try:
                sock.sendmsg([encode_frame(meta, b"")], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            except OSError as e:
                raise RestoreUnavailable(f"cannot reach the snapshot: {e}") from e
            try:
                return await link.next_meta(_ANSWER_TIMEOUT_S)  # type: ignore[union-attr]
            except TimeoutError:  # its answers can no longer be matched to requests: it goes
                self.env.kill("the template did not answer a fork")
                raise RestoreUnavailable(f"the snapshot did not answer within {_ANSWER_TIMEOUT_S:.0f} s") from None

    def stop(self, reason: str) -> asyncio.Task[None]:
        """Kill the template (environments forked from it live on); the task ends when its
        sandbox is gone, which is once they are too."""
        self.ready = False
        for spare in self._spares:
            spare.drop()
        self._spares = []
        if self._refilling is not None:
            self._refilling.cancel()
        self.env.kill(reason)
        task = asyncio.get_running_loop().create_task(self.env.stop(reason))
        if self._hold is not None:
            task.add_done_callback(lambda _: self._hold.release())  # type: ignore[union-attr]
        return task

    def report(self, now: float) -> dict[str, object]:
        fn = self.env.function
        return {
            "function": fn.name,
            "version": fn.version or LATEST,
            "kind": "snapshot",
            "state": "ready" if self.ready else ("failed" if self.failure else "initialising"),
            "memory_mb": round(self.memory_bytes / (1 << 20), 1),
            "init_duration_ms": round(self.init_duration_ms, 2) if self.init_duration_ms is not None else None,
            "restores": self.forks,
            "spares": len(self._spares),
            "pid": self.env.handle.pid if self.env.handle is not None else None,  # its sandbox's
            "age_s": round(now - self.created_at, 1),
            "idle_s": round(now - self.last_used, 1),
            **({"failure": self.failure} if self.failure else {}),
        }


class Snapshots:
    """Every version's snapshot on this machine (one per version, revision and network)."""

    def __init__(self, pool: EnvironmentPool, budget_mb: int, latest: bool = False) -> None:
        self.pool = pool
        self.budget_mb = budget_mb
        self.latest = latest  # $LATEST of SnapStart functions gets one too (setting snap_start_latest)
        self._snapshots: dict[PoolKey, Snapshot | Prestarted] = {}
        self._failed: dict[PoolKey, float] = {}  # key → when its snapshot's init failed

    def kind(self, target: Target) -> str | None:
        """How ``target``'s cold starts skip init: "template" (the built-in Python runtime on a
        sandbox that can fork from one), "prestarted" (other runtimes: environments initialised
        ahead), or None (no SnapStart)."""
        config = target.config
        if config.snap_start != "PublishedVersions" or (config.version == LATEST and not self.latest):
            return None
        if target.runtime.link == FRAMES and hasattr(self.pool.backend, "prepare_restore"):
            return "template"
        return "prestarted"

    def _retry_later(self, key: PoolKey) -> bool:
        failed_at = self._failed.get(key)
        return failed_at is not None and self.pool.clock() - failed_at < RETRY_AFTER_S

    def take_prestarted(self, target: Target) -> Environment | None:
        """An environment of ``target`` initialised ahead, handed to this cold start (None: it
        initialises as usual)."""
        if self.kind(target) != "prestarted":
            return None
        started = self.pool.clock()
        prestarted = self._prestarted(target)
        env = prestarted.take() if prestarted is not None else None
        if env is not None:
            env.handed_over((self.pool.clock() - started) * 1000)
        return env

    def _prestarted(self, target: Target) -> Prestarted | None:
        key = (target.name, target.version, target.config.revision_id, target.network)
        found = self._snapshots.get(key)
        if isinstance(found, Prestarted):
            return found
        if self._retry_later(key):
            return None
        prestarted = self._snapshots[key] = Prestarted(key, target, self.pool)
        prestarted.on_failed = self._prestarted_failed
        return prestarted

    def _prestarted_failed(self, prestarted: Prestarted) -> None:
        self._failed[prestarted.key] = self.pool.clock()
        self._drop(prestarted, "an init failed")

    def prepare(self, target: Target) -> Snapshot | None:
        """The version's snapshot, started now if it has none (None: it gets none; a runtime that
        cannot be forked gets environments initialised ahead instead)."""
        kind = self.kind(target)
        if kind == "prestarted":
            prestarted = self._prestarted(target)
            if prestarted is not None:
                prestarted.refill()
            return None
        if kind is None:
            return None
        key = (target.name, target.version, target.config.revision_id, target.network)
        snapshot = self._snapshots.get(key)
        if snapshot is not None and (not snapshot.built.done() or (snapshot.ready and snapshot.alive)):
            return snapshot
        if snapshot is not None:  # its template ended
            self._drop(snapshot, "its template ended")
        if self._retry_later(key):
            return None
        pool = self.pool
        config = target.config
        env = Environment(
            config, target.runtime, target.code_dir, pool.backend, pool.logs, pool.region, pool.limits.max_log_bytes,
            pool.clock, network=target.network, opt_dir=target.opt_dir, template=True,
            extra_env=pool.environment_env(config.role, config.name, target.network) if pool.environment_env else None,
        )
        hold = pool.code.hold(config.code.sha256_hex) if pool.code is not None else None
        snapshot = self._snapshots[key] = Snapshot(key, env, hold, pool.clock,
                                                   on_lost=lambda lost: self._drop(lost, "its template ended"))
        task = asyncio.get_running_loop().create_task(self._build(snapshot))
        pool.background(task)
        return snapshot

    async def for_target(self, target: Target) -> Snapshot | None:
        """The ready snapshot new environments of ``target`` are forked from (waiting for one
        being built), or None: they start from scratch."""
        snapshot = self.prepare(target)
        if snapshot is None:
            return None
        try:  # a long init (a snapshot's may take 15 minutes): this start goes on without it
            await asyncio.wait_for(asyncio.shield(snapshot.built), INIT_TIMEOUT_S)
        except TimeoutError:
            return None
        return snapshot if snapshot.ready else None

    async def _build(self, snapshot: Snapshot) -> None:
        await snapshot.build()
        if self._snapshots.get(snapshot.key) is not snapshot:
            self._stop(snapshot, "retired while it was built")
            return
        fn = snapshot.function
        if not snapshot.ready:
            log.warning("SnapStart: %s:%s gets no snapshot (its environments start from scratch): %s",
                        fn.name, fn.version or LATEST, snapshot.failure)
            self._failed[snapshot.key] = self.pool.clock()
            del self._snapshots[snapshot.key]
            self._stop(snapshot, "init failed")
            return
        log.info("SnapStart: snapshot of %s:%s ready (init %.1f ms, %.1f MB)", fn.name, fn.version or LATEST,
                 snapshot.init_duration_ms or 0.0, snapshot.memory_bytes / (1 << 20))
        self._keep_within_budget(snapshot)

    def _keep_within_budget(self, newest: Snapshot | Prestarted) -> None:
        budget = self.budget_mb << 20
        ready = sorted((s for s in self._snapshots.values() if s.ready and s is not newest), key=lambda s: s.last_used)
        total = newest.memory_bytes + sum(s.memory_bytes for s in ready)
        for snapshot in ready:
            if total <= budget:
                break
            total -= snapshot.memory_bytes
            self._drop(snapshot, "evicted for the snapshot memory budget")
        if total > budget:
            self._drop(newest, "larger than the snapshot memory budget")

    def _drop(self, snapshot: Snapshot | Prestarted, reason: str) -> None:
        if self._snapshots.get(snapshot.key) is snapshot:
            del self._snapshots[snapshot.key]
        fn = snapshot.function
        log.info("SnapStart: snapshot of %s:%s stopped: %s", fn.name, fn.version or LATEST, reason)
        self._stop(snapshot, reason)

    def _stop(self, snapshot: Snapshot | Prestarted, reason: str) -> None:
        stopping = snapshot.stop(reason)
        if stopping is not None:  # a template's sandbox ends once the environments forked from it have
            self.pool.background(stopping)

    def retire(self, function: str, version: str | None = None, keep_revision: str | None = None) -> None:
        """Stop a function's snapshots (of one version, or all; but those of ``keep_revision``)."""
        for key, snapshot in list(self._snapshots.items()):
            if key[0] == function and version in (None, key[1]) and key[2] != keep_revision:
                self._drop(snapshot, "function updated")
        for key in [k for k in self._failed if k[0] == function and version in (None, k[1])]:
            del self._failed[key]

    @property
    def memory_mb(self) -> float:
        return sum(s.memory_bytes for s in self._snapshots.values()) / (1 << 20)

    def report(self) -> dict[str, object]:
        now = self.pool.clock()
        return {
            "budget_mb": self.budget_mb,
            "memory_mb": round(self.memory_mb, 1),
            "snapshots": [s.report(now) for s in self._snapshots.values()],
        }

    def close(self) -> None:
        """Stop every snapshot (after the environments: a template's sandbox waits for theirs)."""
        snapshots, self._snapshots = list(self._snapshots.values()), {}
        for snapshot in snapshots:
            self._stop(snapshot, "shutdown")


def _init_error_text(env: Environment) -> str:
    error = env.init_error or b""
    try:
        import orjson

        body = orjson.loads(error)
        return f"{body.get('errorType')}: {body.get('errorMessage')}"
    except Exception:
        return error.decode("utf-8", "replace")[:500] or "init failed"
