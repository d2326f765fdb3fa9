"""What a front end asks Ray (``--executor ray``): which nodes live, each node's agent, and
room for a new environment. Every call here blocks (Ray's client API), so the executor runs
them on one thread of their own; none is on a warm invoke's path.

* **Membership and failure detection** are Ray's: ``ray.nodes()`` and its ``Alive`` flag.
* **The agents** are named, detached actors, one per node (``squall-agent-<node id>``), pinned
  to it (``NodeAffinitySchedulingStrategy``, not soft), restarted by Ray when they die.
* **Placement** is Ray's: each new environment is a placement group of one bundle —
  ``memory`` = MemorySize, ``CPU`` = Lambda's share (MemorySize / 1769 MB) times
  ``ray_cpu_share`` — created detached (a front end that dies does not take its environments'
  reservations with it) and named ``squall-env-…``; the node Ray puts the bundle on runs the
  environment, and its agent removes the group when the environment stops. Groups that no
  agent holds (an agent or node that died) are removed by :meth:`sweep`.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from squall.errors import SquallError
from squall.settings import Settings

log = logging.getLogger("squall.ray")

PLACEMENT_PREFIX = "squall-env-"
PROVISIONED_PREFIX = "squall-prov-"  # provisioned concurrency: one group per version and count, kept by the leader
AGENT_PREFIX = "squall-agent-"
LAMBDA_MB_PER_VCPU = 1769


class RayUnavailable(SquallError):
    """Ray is not installed, or the cluster cannot be reached."""


class NoRoom(Exception):
    """No node has room for the environment within the placement timeout."""


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    alive: bool
    memory_mb: int
    cpus: float


@dataclass(frozen=True)
class Placement:
    group: str  # the placement group's id (hex)
    node_id: str
    seconds: float  # how long Ray took


class RayCluster:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ray: Any = None
        self._unheld: set[str] = set()  # groups no agent held at the last sweep

    # ---- connection ----------------------------------------------------------------------
    def connect(self) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable("--executor ray needs Ray on this machine: pip install '.[cluster]' in Squall's "
                                 "source tree (or pip install ray)") from exc
        address = self.settings.ray_address or "auto"
        try:
            ray.init(address=address, namespace=self.settings.ray_namespace, log_to_driver=False,
                     ignore_reinit_error=True, logging_level=logging.WARNING, configure_logging=False)
        except Exception as exc:  # ConnectionError, ValueError: nothing listens at the address
            raise RayUnavailable(f"cannot join the Ray cluster at {address}: {exc}. Start one "
                                 "(ray start --head) or give its address (--ray-address HOST:PORT).") from exc
        self._ray = ray

    def shutdown(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()

    # ---- nodes and agents ------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        found = []
        for node in self._ray.nodes():
            resources = node.get("Resources", {})
            found.append(NodeInfo(node["NodeID"], node.get("NodeManagerAddress", ""), bool(node.get("Alive")),
                                  int(resources.get("memory", 0) // (1 << 20)), float(resources.get("CPU", 0))))
        return found

    def agent_endpoint(self, node: NodeInfo, timeout: float = 30.0) -> dict[str, Any]:
        """The node's agent (started now if it is not running): where its channel listens."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from squall.cluster.agent_actor import AgentActor

        actor_class = self._ray.remote(AgentActor)
        settings = self.settings.model_dump(mode="json")
        actor = actor_class.options(
            name=AGENT_PREFIX + node.node_id, lifetime="detached", get_if_exists=True, num_cpus=0,
            max_restarts=-1, max_concurrency=8,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote(settings, node.node_id, node.memory_mb)
        return self._ray.get(actor.endpoint.remote(), timeout=timeout)

    def agent_placements(self, node_id: str, timeout: float = 10.0) -> list[str] | None:
        """The placement groups the node's agent holds (None: no agent answers there)."""
        try:
            actor = self._ray.get_actor(AGENT_PREFIX + node_id)
            return list(self._ray.get(actor.placements.remote(), timeout=timeout))
        except Exception:  # noqa: BLE001 - dead, restarting, never started
            return None

    # ---- placement -----------------------------------------------------------------------------
    def place(self, memory_mb: int, timeout: float) -> Placement:
        from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

        started = time.perf_counter()
        bundle = {"memory": float(memory_mb << 20)}
        cpu = round(memory_mb / LAMBDA_MB_PER_VCPU * self.settings.ray_cpu_share, 4)
        if cpu > 0:
            bundle["CPU"] = cpu
        group = placement_group([bundle], strategy="STRICT_PACK", name=PLACEMENT_PREFIX + uuid.uuid4().hex[:16],
                                lifetime="detached")
        ready, _ = self._ray.wait([group.ready()], timeout=timeout)
        if not ready:
            remove_placement_group(group)
            raise NoRoom(f"No node of the Ray cluster has room for {memory_mb} MB"
                         + (f" and {cpu} CPU" if cpu > 0 else "") + f" within {timeout:g} s")
        node_id = placement_group_table(group)["bundles_to_node_id"][0]
        return Placement(group.id.hex(), node_id, time.perf_counter() - started)

    def release(self, group: str) -> None:
        release_placement(group)

    def place_spread(self, name: str, memory_mb: int, count: int) -> str:
        """A group of ``count`` bundles spread over the nodes (provisioned concurrency), named
        ``name``; not waited for: Ray places its bundles as room allows."""
        from ray.util.placement_group import placement_group

        bundle = {"memory": float(memory_mb << 20)}
        cpu = round(memory_mb / LAMBDA_MB_PER_VCPU * self.settings.ray_cpu_share, 4)
        if cpu > 0:
            bundle["CPU"] = cpu
        return placement_group([bundle] * count, strategy="SPREAD", name=name, lifetime="detached").id.hex()

    def groups_named(self, prefix: str) -> dict[str, tuple[str, list[str]]]:
        """Squall's groups whose name starts with ``prefix``: id → (name, the node of each placed bundle)."""
        from ray.util.placement_group import placement_group_table

        found = {}
        for group_id, info in placement_group_table().items():
            name = str(info.get("name", ""))
            if name.startswith(prefix) and info.get("state") != "REMOVED":
                nodes = [node for _, node in sorted((info.get("bundles_to_node_id") or {}).items(),
                                                    key=lambda kv: int(kv[0])) if node]
                found[group_id] = (name, nodes if info.get("state") == "CREATED" else [])
        return found

    def sweep(self) -> int:
        """Remove Squall's placement groups that no live agent held at this sweep and the one
        before (their environment died with its agent or node); how many. An agent counts a group
        as held from the moment the invocation that brings it arrives."""
        from ray.util.placement_group import placement_group_table

        table = placement_group_table()
        held: set[str] = set()
        for node in self.nodes():
            if node.alive:
                placements = self.agent_placements(node.node_id)
                if placements is None:
                    return 0  # an agent that does not answer may hold some: not now
                held.update(placements)
        removed = 0
        for group_id, info in table.items():
            if not str(info.get("name", "")).startswith(PLACEMENT_PREFIX) or info.get("state") == "REMOVED":
                continue
            if group_id in held:
                self._unheld.discard(group_id)
            elif group_id not in self._unheld:
                self._unheld.add(group_id)  # maybe placed a moment ago, its environment still starting
            else:  # unheld for a whole sweep period: its environment died with its agent or node
                release_placement(group_id)
                self._unheld.discard(group_id)
                removed += 1
        return removed


def release_placement(group: str) -> None:
    """Remove a placement group by id (the agents' way to give an environment's room back)."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group)))
    except Exception as exc:  # noqa: BLE001 - removed already, or Ray is away: the sweep gets it
        log.debug("cannot remove placement group %s: %s", group, exc)
