"""The Ray executor (``--executor ray``): environments on the nodes of a Ray cluster.

A warm invoke is one frame to the node agent that holds an idle environment of the version
and one frame back, over a TCP connection this front end keeps to every agent
(``wire.py``): no Ray call. A cold one asks Ray for room first (a placement group of one
bundle, ``ray_cluster.py``) and sends the invocation, with the version's configuration and the
new environment's credentials, to the node Ray chose.

Which node holds idle environments of which version is learned from the answers (each says
how many of its kind are idle after it) and is only a hint: an agent that has none left says
so and the invocation is placed anew. When a node's channel breaks, invocations in flight
there fail with a retryable ServiceException (the SDKs retry 5xx; asynchronous events are
retried by the queue), and its environments are forgotten; Ray's own failure detection takes
the node out of placement.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import pickle
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from squall import errors
from squall import tasks as background
from squall.arn import FunctionRef
from squall.cluster import wire
from squall.cluster.node_link import NodeLink
from squall.cluster.ray_cluster import PROVISIONED_PREFIX, NodeInfo, NoRoom, RayCluster
from squall.engine.bus import (
    EventBus,
    FunctionDeleted,
    FunctionUpdated,
    ProvisionedConcurrencyChanged,
    SandboxSettingsChanged,
    VersionDeleted,
)
from squall.errors import LambdaError, ResourceConflict, ServiceError, TooManyRequests
from squall.functions.concurrency import ProvisionedStatus
from squall.invoke.admission import Slot
from squall.invoke.invocation import InvocationRequest, InvocationResult
from squall.invoke.resolver import AliasRoute, Resolver, Target
from squall.observe.logs import LogStore
from squall.settings import Settings

log = logging.getLogger("squall.ray")

_WATCH_S = 1.0  # how often the nodes and the agents' status are read
_SWEEP_EVERY = 30  # watch rounds between sweeps of placement groups no agent holds
_ATTEMPTS = 4  # placements tried for one invocation (an agent may have no idle one left)
_MAKE_ROOM_AFTER_S = 0.25  # a placement still waiting then: idle environments are evicted for it
_EVICT_AHEAD = 4  # room made for this many environments of the size that lacked it
_AGENT_START_S = 30.0  # how long a node's agent may take to start (or restart) before it is tried again
_LINK_WAIT_S = 5.0  # how long an invocation waits for a channel to a node's agent

PoolKey = tuple[str, str, str, str | None]


class RayExecutor:
    layers_mountable = True  # agents merge and mount layers as the local backend does
    networks = None  # no environments on this machine: nothing listens at their gateways here

    def __init__(self, settings: Settings, logs: LogStore, server_key: bytes,
                 cluster: RayCluster | None = None) -> None:
        self.settings = settings
        self.logs = logs
        self.server_key = server_key
        self.cluster = cluster or RayCluster(settings)
        self.api_url: Callable[[], str | None] = lambda: None  # this front end's API, for the agents' forwarders
        self.environment_env: Callable[[str, str, str | None], dict[str, str]] | None = None
        self.placement_seconds: list[float] = []  # the last placements' latencies (status, bench)
        # Ray's quick calls (nodes, placement) on threads of their own: starting an agent may wait
        # long (a node that is dying, an agent restarting) and must not hold them up
        self._ray_thread = ThreadPoolExecutor(2, thread_name_prefix="squall-ray")
        self._agent_thread = ThreadPoolExecutor(4, thread_name_prefix="squall-ray-agents")
        # placements wait for room (up to ray_placement_timeout_seconds each): threads of their own
        self._placement_thread = ThreadPoolExecutor(16, thread_name_prefix="squall-ray-place")
        self._nodes: dict[str, NodeInfo] = {}
        self._links: dict[str, NodeLink] = {}
        self._linking: dict[str, asyncio.Task[NodeLink]] = {}
        self._idle: dict[PoolKey, dict[str, int]] = {}  # what the agents said is idle, per node
        self._watcher: asyncio.Task[None] | None = None
        self._bus: EventBus | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # provisioned concurrency: what is asked (every front end knows it), placed by the leader only
        self.is_leader: Callable[[], bool] = lambda: True
        self.resolver: Resolver | None = None
        self._requested: dict[tuple[str, str], int] = {}
        self._told: dict[str, dict[str, Any]] = {}  # node → (function, qualifier) → what its agent was told
        self._turn = itertools.count()
        self._sweeps_due = 0

    # ---- the executor seam ----------------------------------------------------------------------
    def connect(self, bus: EventBus, resolver: Resolver,
                environment_env: Callable[[str, str, str | None], dict[str, str]] | None = None) -> None:
        self._bus = bus
        self.resolver = resolver
        self.environment_env = environment_env
        bus.subscribe(ProvisionedConcurrencyChanged, self._provisioning_changed)
        bus.subscribe(FunctionUpdated, lambda e: self._retire(e.name, None, e.revision))
        bus.subscribe(FunctionDeleted, lambda e: self._retire(e.name, None, None))
        bus.subscribe(SandboxSettingsChanged, lambda e: self._retire(e.name, None, None))
        bus.subscribe(VersionDeleted, lambda e: self._retire(e.name, e.version, None))

    @asynccontextmanager
    async def lease(self, target: Target, slot: Slot) -> AsyncIterator["RemoteLease"]:
        yield RemoteLease(self, target, slot.provisioned_qualifier)

    def provisioned_status(self, function: str, qualifier: str) -> ProvisionedStatus:
        """What the nodes' agents report (every second) for this qualifier, summed."""
        allocated, failure = 0, None
        for link in self._links.values():
            state = (link.status.get("provisioned_sets") or {}).get(f"{function}:{qualifier}")
            if state:
                allocated += int(state[0])
                failure = failure or state[1]
        return ProvisionedStatus(allocated, failure)

    def provisioned_node(self, function: str, qualifier: str) -> str | None:
        """A node whose agent keeps provisioned environments of this qualifier (in turn)."""
        key = f"{function}:{qualifier}"
        nodes = [node for node, link in self._links.items() if not link.closed
                 and int(((link.status.get("provisioned_sets") or {}).get(key) or (0,))[0]) > 0]
        return nodes[next(self._turn) % len(nodes)] if nodes else None

    def counts(self) -> dict[str, int]:
        totals = {"busy": 0, "idle": 0, "provisioned": 0, "memory_mb": 0, "memory_capacity_mb": 0}
        for link in self._links.values():
            for name in totals:
                totals[name] += int(link.status.get(name, 0))
        return totals

    def describe_isolation(self) -> dict[str, object]:
        isolation = next((link.status.get("isolation") for link in self._links.values() if link.status), None)
        isolated = isolation.get("isolated") if isolation else self.settings.isolation != "process"
        return {"name": "ray", "isolated": bool(isolated),
                "note": f"environments on the nodes of the Ray cluster at {self.settings.ray_address or 'auto'}",
                "nodes": self.nodes_report()}

    def host_address(self, network: str | None) -> str | None:
        return None  # the agents point their environments at their own forwarders

    def gateways(self) -> list[str]:
        return [str(spec.gateway) for spec in self.settings.network_specs().values()]

    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def shutdown(self, grace: float) -> None:
        await background.cancel(self._watcher)
        for task in list(self._tasks):
            task.cancel()
        for link in list(self._links.values()):
            await link.close()
        await asyncio.get_running_loop().run_in_executor(self._ray_thread, self.cluster.shutdown)
        self._ray_thread.shutdown(wait=False)
        self._placement_thread.shutdown(wait=False, cancel_futures=True)
        self._agent_thread.shutdown(wait=False, cancel_futures=True)

    async def connect_cluster(self) -> None:
        """Join the Ray cluster and open channels to the agents of its live nodes (at start)."""
        await self._ray(self.cluster.connect)
        await self._refresh_nodes()

    # ---- nodes ------------------------------------------------------------------------------------
    def snapshots_report(self) -> dict[str, Any] | None:
        return None  # SnapStart snapshots are kept by single-machine servers only (docs/cluster.md)

    def nodes_report(self) -> list[dict[str, Any]]:
        report = []
        for node in self._nodes.values():
            link = self._links.get(node.node_id)
            status = link.status if link is not None and not link.closed else {}
            report.append({"node": node.node_id, "address": node.address, "alive": node.alive,
                           "agent": "connected" if status else "not connected",
                           "memory_capacity_mb": node.memory_mb, "cpus": node.cpus,
                           **{k: status.get(k, 0) for k in ("busy", "idle", "provisioned", "memory_mb")}})
        return report

    async def _watch(self) -> None:
        rounds = 0
        while True:
            if rounds:
                await asyncio.sleep(_WATCH_S)
            rounds += 1
            try:
                await self._refresh_nodes()
                await self._read_statuses()
                if self.is_leader():
                    await self._provision()
                if rounds % _SWEEP_EVERY == 0 or self._sweeps_due > 0:
                    self._sweeps_due = max(0, self._sweeps_due - 1)
                    removed = await self._ray(self.cluster.sweep)
                    if removed:
                        log.warning("removed %d placement group(s) whose environments died with their node", removed)
            except Exception:  # noqa: BLE001 - keep watching; the next round tries again
                log.exception("watching the Ray cluster failed")

    async def _refresh_nodes(self) -> None:
        nodes = {n.node_id: n for n in await self._ray(self.cluster.nodes)}
        if any(node.alive and not nodes.get(node_id, node).alive for node_id, node in self._nodes.items()):
            # a node died: Ray places its environments' groups again elsewhere, where they would hold
            # room for environments that are gone: swept now and in the next rounds, not in a minute
            self._sweeps_due = 3
        self._nodes = nodes
        for node_id, link in list(self._links.items()):
            if link.closed or not nodes.get(node_id, NodeInfo(node_id, "", False, 0, 0)).alive:
                self._drop(node_id)
        for node in nodes.values():
            if node.alive and node.node_id not in self._links and node.node_id not in self._linking:
                self._spawn_link(node)

    async def _read_statuses(self) -> None:
        async def read(link: NodeLink) -> None:
            answer = await _quietly(link.call({"op": "status"}), 5)
            if answer is not None:
                link.status = answer[0].get("status", {})

        await asyncio.gather(*(read(link) for link in list(self._links.values())))

    def _spawn_link(self, node: NodeInfo) -> asyncio.Task[NodeLink]:
        task = asyncio.get_running_loop().create_task(self._open_link(node))
        self._linking[node.node_id] = task
        task.add_done_callback(lambda t: self._linking.pop(node.node_id, None))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: logged in _open_link
        return task

    async def _open_link(self, node: NodeInfo) -> NodeLink:
        try:
            endpoint = await asyncio.get_running_loop().run_in_executor(
                self._agent_thread, self.cluster.agent_endpoint, node, _AGENT_START_S)
            link = await NodeLink.open(endpoint, self.server_key, self.api_url(), self.logs)
        except Exception as exc:
            log.warning("no channel to the agent of node %s yet: %s", node.node_id[:12], exc)
            raise
        self._links[node.node_id] = link
        return link

    async def _link(self, node_id: str) -> NodeLink:
        link = self._links.get(node_id)
        if link is not None and not link.closed:
            return link
        if link is not None:
            self._drop(node_id)
        pending = self._linking.get(node_id)
        if pending is None:
            node = self._nodes.get(node_id)
            if node is None:  # placed on a node this front end has not seen yet
                self._nodes = {n.node_id: n for n in await self._ray(self.cluster.nodes)}
                node = self._nodes.get(node_id)
            if node is None:
                raise ServiceError(f"Ray placed the environment on node {node_id}, which Squall cannot find.")
            if not node.alive:
                raise ServiceError(f"Node {node_id[:12]} is dead. Retry the invocation.")
            pending = self._spawn_link(node)
        try:  # an invocation waits a little for a node's agent; the connecting goes on meanwhile
            return await asyncio.wait_for(asyncio.shield(pending), _LINK_WAIT_S)
        except Exception as exc:
            raise ServiceError(f"The agent of node {node_id[:12]} cannot be reached: "
                               f"{exc or type(exc).__name__}. Retry the invocation.") from None

    def _drop(self, node_id: str) -> None:
        link = self._links.pop(node_id, None)
        if link is not None:
            self._spawn(link.close())
        for nodes in self._idle.values():
            nodes.pop(node_id, None)

    # ---- invoking -----------------------------------------------------------------------------------
    def warm_node(self, key: PoolKey) -> str | None:
        nodes = self._idle.get(key)
        if not nodes:
            return None
        for node_id, idle in nodes.items():
            if idle > 0 and node_id in self._links and not self._links[node_id].closed:
                nodes[node_id] = idle - 1  # taken, as far as this front end knows
                return node_id
        return None

    def heard_idle(self, key: PoolKey, node_id: str, idle: int) -> None:
        self._idle.setdefault(key, {})[node_id] = idle

    async def place(self, memory_mb: int) -> tuple[str, str]:
        """Room for a new environment: (placement group, node). Idle environments are evicted
        for it (on the node with the most idle memory) when Ray finds none at once."""
        timeout = self.settings.ray_placement_timeout_seconds
        loop = asyncio.get_running_loop()
        try:
            placed = await loop.run_in_executor(self._placement_thread, self.cluster.place, memory_mb, _MAKE_ROOM_AFTER_S)
        except NoRoom:
            await self._make_room(memory_mb)
            try:
                placed = await loop.run_in_executor(self._placement_thread, self.cluster.place, memory_mb, timeout)
            except NoRoom as exc:
                raise TooManyRequests(f"Rate Exceeded. {exc}.", "ConcurrentInvocationLimitExceeded") from None
        self.placement_seconds = [*self.placement_seconds[-199:], placed.seconds]
        return placed.group, placed.node_id

    async def _make_room(self, memory_mb: int) -> None:
        """Evict idle environments on the node with the most idle memory: a few times what is
        needed, since Ray learns of the room only on its next round (~1 s) and the next cold
        starts would wait for it again."""
        links = sorted((link for link in self._links.values() if not link.closed),
                       key=lambda link: -int(link.status.get("idle_memory_mb", 0)))
        if links:
            await _quietly(links[0].call({"op": "evict", "memory_mb": memory_mb * _EVICT_AHEAD}), 5)

    def release(self, group: str) -> None:
        self._spawn(self._ray(self.cluster.release, group))

    def spec(self, target: Target) -> str:
        config = target.config
        extra = self.environment_env(config.role, config.name, target.network) if self.environment_env else {}
        return base64.b64encode(pickle.dumps((config, extra))).decode()

    # ---- provisioned concurrency (the leader) -----------------------------------------------------------
    def _provisioning_changed(self, event: ProvisionedConcurrencyChanged) -> None:
        if event.requested is None:
            self._requested.pop((event.name, event.qualifier), None)
        else:
            self._requested[(event.name, event.qualifier)] = event.requested

    async def _wanted(self) -> dict[str, tuple[str, str, Target, int]]:
        """Group name → (function, qualifier, target, count) for every provisioned qualifier that resolves."""
        assert self.resolver is not None
        wanted = {}
        for (function, qualifier), count in list(self._requested.items()):
            try:
                route = await self.resolver.route(FunctionRef(function, qualifier))
            except ResourceConflict:  # its version is not Active yet: next round
                continue
            except LambdaError:
                continue
            if isinstance(route, AliasRoute) and route.additional is not None:
                extra = round(count * route.weight)
                parts = [(route.primary, count - extra), (route.additional, extra)]
            else:
                parts = [(route.primary if isinstance(route, AliasRoute) else route, count)]
            for target, n in parts:
                if n > 0:
                    config = target.config
                    identity = f"{function}\0{qualifier}\0{config.version}\0{config.revision_id}\0{target.network}\0{n}"
                    name = PROVISIONED_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]
                    wanted[name] = (function, qualifier, target, n)
        return wanted

    async def _provision(self) -> None:
        """Keep one spread placement group per provisioned version (its bundles: where its
        environments go), and tell every agent how many of which to keep. Groups of versions no
        longer wanted (or of another count) are removed; a dead node's bundles are placed again by
        Ray, and the node that gets them is told on the next round."""
        wanted = await self._wanted()
        groups = await self._ray(self.cluster.groups_named, PROVISIONED_PREFIX)
        by_name = {name: (group_id, nodes) for group_id, (name, nodes) in groups.items()}
        for group_id, (name, _) in groups.items():
            if name not in wanted:
                await self._ray(self.cluster.release, group_id)
        per_node: dict[str, dict[tuple[str, str], list[tuple[Target, int]]]] = {}
        for name, (function, qualifier, target, n) in wanted.items():
            if name not in by_name:
                await self._ray(self.cluster.place_spread, name, target.config.memory_size, n)
                continue  # placed by the next round
            if len(by_name[name][1]) < n:  # not placed yet: idle on-demand environments make room
                await self._make_room(target.config.memory_size * n)
            counts: dict[str, int] = {}
            for node in by_name[name][1]:
                counts[node] = counts.get(node, 0) + 1
            for node, k in counts.items():
                per_node.setdefault(node, {}).setdefault((function, qualifier), []).append((target, k))
        for node_id, link in list(self._links.items()):
            if link.closed:
                continue
            desired = per_node.get(node_id, {})
            told = self._told.setdefault(node_id, {})
            reported = set(link.status.get("provisioned_sets") or {})  # "function:qualifier" the agent keeps sets of
            keys = {f"{f}:{q}" for f, q in desired} | set(told) | reported
            for key in keys:
                function, qualifier = key.split(":", 1)
                sets = desired.get((function, qualifier), [])
                shape = [[t.config.version, t.config.revision_id, k] for t, k in sets]
                if told.get(key) == shape and (key in reported) == bool(shape):
                    continue  # the agent keeps what it should (a restarted agent lost its sets: told again)
                header = {"op": "provision", "function": function, "qualifier": qualifier,
                          "sets": [{"key": [t.config.name, t.config.version, t.config.revision_id, t.network],
                                    "count": k, "spec": self.spec(t)} for t, k in sets]}
                if await _quietly(link.call(header)) is not None:
                    told[key] = shape

    # ---- what the bus says ---------------------------------------------------------------------------
    def _retire(self, function: str, version: str | None, keep_revision: str | None) -> None:
        for key in [k for k in self._idle if k[0] == function and version in (None, k[1]) and k[2] != keep_revision]:
            del self._idle[key]
        for link in list(self._links.values()):
            if not link.closed:
                self._spawn(_quietly(link.call({"op": "retire", "function": function, "version": version,
                                                "keep_revision": keep_revision})))

    # ---- helpers --------------------------------------------------------------------------------------
    async def _ray(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._ray_thread, fn, *args)

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class RemoteLease:
    def __init__(self, executor: RayExecutor, target: Target, provisioned: str | None) -> None:
        self.executor = executor
        self.target = target
        self.provisioned = provisioned

    async def invoke(self, request: InvocationRequest, prelude: str | None = None) -> InvocationResult:
        executor, target = self.executor, self.target
        config = target.config
        key: PoolKey = (config.name, config.version, config.revision_id, target.network)
        stream = request.stream
        header: dict[str, Any] = {
            "op": "invoke", "key": list(key), "prelude": prelude, "prov": self.provisioned,
            "req": {"request_id": request.request_id, "invoked_arn": request.invoked_arn,
                    "client_context": request.client_context, "identity": request.identity,
                    "trace_id": request.trace_id},
        }
        if stream is not None:
            header["stream"] = True
        if request.wants_tail:
            header["tail"] = True

        def on_frame(frame: dict[str, Any], body: bytes) -> None:
            assert stream is not None
            if "open" in frame:
                stream.open(str(frame["open"]))
            else:
                stream.feed(body)

        last: LambdaError = ServiceError("No node of the Ray cluster kept an environment for this invocation; retry it.")
        for attempt in range(_ATTEMPTS):
            node_id = executor.warm_node(key)
            if self.provisioned is not None and attempt == 0:  # where its provisioned environments are kept
                node_id = executor.provisioned_node(config.name, self.provisioned) or node_id
            group = None
            header.pop("pg", None)
            header.pop("spec", None)
            if node_id is None:
                group, node_id = await executor.place(config.memory_size)
                header["pg"], header["spec"] = group, executor.spec(target)
            try:
                link = await executor._link(node_id)
            except ServiceError as exc:
                if group is not None:
                    executor.release(group)
                last = exc
                continue  # a dying node Ray has not given up on yet: placed anew
            except BaseException:
                if group is not None:
                    executor.release(group)
                raise
            try:
                reply, payload = await link.call(header, request.payload, on_frame if stream is not None else None)
            except wire.ChannelClosed as exc:
                executor._drop(node_id)
                raise ServiceError(
                    f"The node running this invocation's environment ({node_id[:12]}) was lost: {exc}. "
                    "The function may or may not have run; retry the invocation.") from None
            if reply.get("miss"):
                executor.heard_idle(key, node_id, 0)
                continue
            if "error" in reply:
                raise rebuild_error(reply["error"])
            executor.heard_idle(key, node_id, int(reply.get("idle", 0)))
            return _result(reply["result"], payload)
        raise last


def _result(fields: dict[str, Any], payload: bytes) -> InvocationResult:
    tail = base64.b64decode(fields["tail"]) if fields.get("tail") else b""
    return InvocationResult(fields["request_id"], payload, fields["executed_version"], fields.get("function_error"),
                            fields.get("error_type"), fields.get("content_type") or "application/json",
                            float(fields.get("duration_ms") or 0.0), fields.get("init_duration_ms"),
                            tail_source=lambda: tail)


def rebuild_error(error: dict[str, Any]) -> LambdaError:
    """The agent's LambdaError as this front end raises it (same class, message and fields)."""
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, LambdaError)):
        cls = ServiceError
    fields = dict(error.get("fields") or {})
    exc = cls.__new__(cls)
    LambdaError.__init__(exc, str(error.get("message", "")), **fields)
    if isinstance(exc, TooManyRequests):
        exc.reason = str(fields.get("Reason", ""))
    return exc


async def _quietly(coro, timeout: float = 10.0) -> Any:  # type: ignore[no-untyped-def]
    """A call on an agent's channel whose failure changes nothing now (the next round tries again):
    its answer, or None when the channel broke or the agent did not answer in time."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except (wire.ChannelClosed, asyncio.TimeoutError):
        return None
