"""The node agent: one per Ray node, running that node's environments (``--executor ray``).

It is the single-machine executor moved onto a node — the sandbox backend (``linux``: zygotes,
namespaces, cgroups), the environment pool, the code cache — behind the data channel
(``wire.py``) front ends connect to directly. Ray starts it (one named actor per node, see
``ray_executor.py``), restarts it when it dies, and tells front ends which nodes are alive; the
invocations themselves never go through Ray.

Every environment here holds a Ray placement group bundle (memory = MemorySize, CPU in
proportion) that a front end created before asking for it: Ray's view of the node's resources
is the truth about room. The agent gives the bundle back when the environment stops.

What environments need from the front ends is brought to them: their code from the shared code
bucket (cached here by hash), their role's credentials with each new environment, their log
lines shipped back to the front end that invoked them, and the API at their gateway through a
forwarder to a front end (``api_forwarder.py``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from squall.cluster import wire
from squall.cluster.api_forwarder import ApiForwarder
from squall.engine.bus import EnvironmentStopped, EventBus
from squall.engine.stores import Stores
from squall.environments.environment import api_endpoint_env
from squall.environments.pool import EnvironmentPool, NoIdleEnvironment, PoolLimits
from squall.errors import LambdaError
from squall.functions.layer_trees import OptTrees
from squall.function import FunctionVersion
from squall.invoke.invocation import InvocationRequest, InvocationResult
from squall.invoke.resolver import Target
from squall.invoke.streaming import ResponseStream
from squall.runtimes.bytecode import Precompiler
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox import select_backend
from squall.settings import Settings

log = logging.getLogger("squall.node")

_LOG_FLUSH_S = 0.2
_MAX_UNOWNED_EVENTS = 10_000  # log lines of a stream no front end invoked yet (its init), kept at most


@dataclass(eq=False)
class _Connection:
    """One front end's channel."""

    writer: asyncio.StreamWriter
    front_end: str = ""

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.encode(header, body))


class ShippedLogs:
    """The log store of a node: lines go back to the front end that invoked the environment
    (``LogStore.append``'s signature; capture is its only writer)."""

    def __init__(self) -> None:
        self.owner: dict[str, _Connection] = {}  # log stream → the front end that invoked it last
        self._pending: dict[tuple[str, str], list[tuple[int, str]]] = {}

    def append(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        pending = self._pending.setdefault((group, stream), [])
        if len(pending) < _MAX_UNOWNED_EVENTS:
            pending.extend(events)

    def flush(self, stream: str | None = None) -> None:
        """Send what is pending (of one stream, or all that have an owner)."""
        for key in [k for k in self._pending if stream is None or k[1] == stream]:
            owner = self.owner.get(key[1])
            if owner is None:
                continue
            owner.send({"logs": [[key[0], key[1], self._pending.pop(key)]]})

    def adopt_unowned(self, connection: _Connection) -> None:
        """Lines of streams no front end invoked (an environment whose init failed): to ``connection``."""
        for key in [k for k in self._pending if k[1] not in self.owner]:
            connection.send({"logs": [[key[0], key[1], self._pending.pop(key)]]})

    def forget_environment(self, environment_id: str) -> None:
        for stream in {k[1] for k in self._pending if k[1].endswith(environment_id)} | {
                s for s in self.owner if s.endswith(environment_id)}:
            self.forget(stream)

    def forget(self, stream: str) -> None:
        self.flush(stream)
        self.owner.pop(stream, None)
        for key in [k for k in self._pending if k[1] == stream]:
            del self._pending[key]


class NodeAgent:
    """``release_placement(pg)``: give a placement group back (Ray's call, or a test's)."""

    def __init__(self, settings: Settings, node_id: str, host: str, memory_mb: int,
                 release_placement: Callable[[str], None]) -> None:
        self.settings = settings
        self.node_id = node_id
        self.host = host
        self.memory_mb = memory_mb
        self.release_placement = release_placement
        self.port: int | None = None
        self.logs = ShippedLogs()
        self.bus = EventBus()
        self._stores: Stores | None = None
        self._pool: EnvironmentPool | None = None
        self._runtimes: RuntimeRegistry | None = None
        self._opt_trees: OptTrees | None = None
        self._bytecode = Precompiler()
        self._targets: dict[tuple[str, str, str, str | None], Target] = {}
        self._extra_env: dict[tuple[str, str | None], dict[str, str]] = {}
        self._placements: dict[str, str] = {}  # environment id → its placement group
        self._arriving: set[str] = set()  # placement groups of environments being started
        self._connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._forwarder: ApiForwarder | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- life cycle ------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        backend = await asyncio.to_thread(select_backend, settings.isolation, settings.data_dir,
                                          settings.network_specs(), bool(settings.networks))
        await asyncio.to_thread(backend.reap_orphans)
        self._stores = await asyncio.to_thread(Stores.open, settings)
        self._runtimes = RuntimeRegistry.discover(settings.data_dir / "runtimes")
        self._opt_trees = OptTrees(settings.data_dir / "opt")
        limits = PoolLimits(self.memory_mb, settings.keep_alive_seconds, settings.max_log_bytes_per_invocation)
        pool = self._pool = EnvironmentPool(backend, self.logs, settings.region, limits,  # type: ignore[arg-type]
                                            code=self._stores.code, bus=self.bus)
        pool.environment_env = self._environment_env
        self.bus.subscribe(EnvironmentStopped, self._stopped)
        pool.start()
        self._forwarder = ApiForwarder(backend)
        await self._forwarder.start()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._flush_logs())
        log.info("node agent of %s serving front ends at %s:%d", self.node_id, self.host, self.port)
        return self.host, self.port

    async def stop(self, grace: float = 5.0) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.writer.close()
        if self._pool is not None:
            await self._pool.shutdown(grace)
            await self._pool.backend.close()
        if self._forwarder is not None:
            await self._forwarder.stop()
        if self._stores is not None:
            await self._stores.close()

    def status(self) -> dict[str, Any]:
        pool = self._pool
        counts = pool.counts() if pool is not None else {}
        return {"node": self.node_id, "address": f"{self.host}:{self.port}", **counts,
                "provisioned_sets": pool.provisioned_report() if pool is not None else {},
                "idle_memory_mb": pool.idle_memory_mb() if pool is not None else 0,
                "front_ends": sorted(c.front_end for c in self._connections),
                "isolation": pool.backend.describe() if pool is not None else {}}

    # ---- the channel ---------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._stores is not None
        connection = _Connection(writer)
        try:
            await wire.challenge(reader, writer, self._stores.server_key,
                                 {"node": self.node_id, "memory_mb": self.memory_mb})
            self._connections.add(connection)
            while True:
                header, body = await wire.read_frame(reader)
                op = header.get("op")
                if op == "invoke":
                    self._spawn(self._invoke(connection, header, body))
                elif op == "hello":  # the front end's API, for the forwarder
                    connection.front_end = str(header.get("api", ""))
                    if self._forwarder is not None and connection.front_end:
                        self._forwarder.add_upstream(connection.front_end)
                elif op == "status":
                    connection.send({"id": header.get("id"), "status": self.status()})
                elif op == "provision":  # keep this many environments of these versions for a qualifier
                    self._spawn(self._provision(connection, header))
                elif op == "retire":  # a new $LATEST, a deleted function or version: stop the old ones
                    self._retire(header.get("function"), header.get("version"), header.get("keep_revision"))
                    connection.send({"id": header.get("id")})
                elif op == "evict":
                    freed = self._pool.evict_idle(int(header.get("memory_mb", 0))) if self._pool else 0
                    connection.send({"id": header.get("id"), "freed_mb": freed})
        except (wire.ChannelClosed, asyncio.TimeoutError, ConnectionError) as exc:
            log.debug("front end channel closed: %s", exc)
        finally:
            self._connections.discard(connection)
            for stream, owner in list(self.logs.owner.items()):
                if owner is connection:
                    del self.logs.owner[stream]
            writer.close()

    async def _invoke(self, connection: _Connection, header: dict[str, Any], body: bytes) -> None:
        request_id = header.get("id")
        placement = header.get("pg")
        if placement:
            self._arriving.add(placement)  # held from now on, as far as the sweep is concerned
        try:
            key = tuple(header["key"])
            if "spec" in header:
                await self._learn(key, header["spec"])  # type: ignore[arg-type]
            target = self._targets.get(key)  # type: ignore[arg-type]
            if target is None:
                self._release(placement)
                connection.send({"id": request_id, "miss": True})
                return
            fields = header["req"]
            request = InvocationRequest(fields["request_id"], body, fields["invoked_arn"], fields.get("client_context"),
                                        fields.get("identity"), fields.get("trace_id"))
            relay = None
            if header.get("stream"):
                stream = ResponseStream()
                request.streaming_to(stream)
                relay = asyncio.get_running_loop().create_task(_relay_stream(stream, connection, request_id))
            assert self._pool is not None
            try:
                async with self._pool.lease(target, header.get("prov"), start_new=placement is not None) as env:
                    if placement is not None:
                        if env.id in self._placements or env.invocations:  # a warm one was there after all
                            self._release(placement)
                        else:
                            self._placements[env.id] = placement
                        self._arriving.discard(placement)
                        placement = None
                    self.logs.owner[env.stream] = connection
                    result = await env.invoke(request, header.get("prelude"))
                    self.logs.flush(env.stream)
            finally:
                if relay is not None:
                    request.stream.close()  # type: ignore[union-attr]
                    await relay
            idle = self._pool.idle_of(key)  # type: ignore[arg-type]
            connection.send({"id": request_id, "result": _result_fields(result, bool(header.get("tail"))),
                             "idle": idle}, result.payload)
        except NoIdleEnvironment:
            connection.send({"id": request_id, "miss": True})
        except LambdaError as exc:
            self._release(placement)
            self.logs.adopt_unowned(connection)  # e.g. its init failed: the lines that say why
            connection.send({"id": request_id, "error": {"type": type(exc).__name__, "message": exc.message,
                                                          "fields": exc.fields}})
        except Exception as exc:  # noqa: BLE001 - the front end must get an answer
            self._release(placement)
            log.exception("invocation on node %s failed", self.node_id)
            connection.send({"id": request_id, "error": {"type": "ServiceError", "message": f"node agent: {exc}",
                                                          "fields": {}}})

    async def _learn(self, key: tuple[str, str, str, str | None], spec: str) -> None:
        """A version's configuration (with a new environment's variables): its code here, its Target."""
        config, extra_env = pickle.loads(base64.b64decode(spec))  # the channel is authenticated
        assert isinstance(config, FunctionVersion) and self._stores is not None and self._runtimes is not None
        network = key[3]
        self._extra_env[(config.name, network)] = extra_env
        if key in self._targets:
            return
        code = self._stores.code
        tree = await code.tree(config.code.sha256_hex)
        opt = None
        if config.layers:
            trees = [await code.tree(use.sha256_hex) for use in config.layers]
            assert self._opt_trees is not None
            opt = await asyncio.to_thread(self._opt_trees.ensure, [u.sha256_hex for u in config.layers], trees)
        runtime = self._runtimes.get(config.runtime)
        await self._bytecode.ensure(runtime, tree)
        self._targets[key] = Target(config, runtime, tree, network, "", None, opt)

    async def _provision(self, connection: _Connection, header: dict[str, Any]) -> None:
        function, qualifier = str(header.get("function")), str(header.get("qualifier"))
        wanted = []
        try:
            for entry in header.get("sets") or []:
                key = tuple(entry["key"])
                await self._learn(key, entry["spec"])  # type: ignore[arg-type]
                wanted.append((self._targets[key], int(entry["count"])))  # type: ignore[index]
            assert self._pool is not None
            self._pool.provision(function, qualifier, wanted)
            connection.send({"id": header.get("id")})
        except Exception as exc:  # noqa: BLE001 - said to the leader, which tries again
            log.exception("provisioned concurrency of %s:%s on node %s", function, qualifier, self.node_id)
            connection.send({"id": header.get("id"), "error": {"type": "ServiceError", "message": str(exc), "fields": {}}})

    def _retire(self, function: Any, version: Any, keep_revision: Any) -> None:
        if not isinstance(function, str) or self._pool is None:
            return
        self._pool.retire(function, version, keep_revision)
        for key in [k for k in self._targets if k[0] == function and version in (None, k[1]) and k[2] != keep_revision]:
            del self._targets[key]

    def _environment_env(self, role: str, function: str, network: str | None) -> dict[str, str]:
        env = dict(self._extra_env.get((function, network), {}))
        assert self._pool is not None and self._forwarder is not None
        host = self._pool.backend.host_address(network)
        if host is not None and self._forwarder.port is not None:
            env.update(api_endpoint_env(f"http://{host}:{self._forwarder.port}"))
        return env

    # ---- placements ------------------------------------------------------------------------------
    def _stopped(self, event: EnvironmentStopped) -> None:
        self.logs.forget_environment(event.environment_id)
        self._release(self._placements.pop(event.environment_id, None))

    def _release(self, placement: str | None) -> None:
        if placement:
            self._arriving.discard(placement)
            self._spawn(asyncio.to_thread(self.release_placement, placement))

    def placements(self) -> list[str]:
        return [*self._placements.values(), *self._arriving]

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(_LOG_FLUSH_S)
            self.logs.flush()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _relay_stream(stream: ResponseStream, connection: _Connection, request_id: Any) -> None:
    """A streamed response's chunks to the front end, as they come."""
    await stream.ready()
    if not stream.opened:
        return
    connection.send({"id": request_id, "open": stream.content_type})
    while (data := await stream.read()) is not None:
        connection.send({"id": request_id, "chunk": True}, data)


def _result_fields(result: InvocationResult, tail: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": result.request_id, "executed_version": result.executed_version,
        "function_error": result.function_error, "error_type": result.error_type,
        "content_type": result.content_type, "duration_ms": result.duration_ms,
        "init_duration_ms": result.init_duration_ms,
    }
    if tail:
        fields["tail"] = base64.b64encode(result.log_tail).decode()
    return fields


def node_data_dir(root: Path, node_id: str) -> Path:
    return root / f"node-{node_id[:16]}"
