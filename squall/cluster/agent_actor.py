"""The Ray actor that keeps a node's agent running (``ray_cluster.RayCluster.agent_endpoint``).

Ray calls reach it only to learn where the agent's channel listens and which placement groups
it holds; the agent itself runs on an event loop of its own thread, so that those calls (on
the actor's thread) never wait for an invocation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import Future
from typing import Any

from squall.cluster.node_agent import NodeAgent, node_data_dir
from squall.settings import Settings


class AgentActor:
    def __init__(self, settings: dict[str, Any], node_id: str, memory_mb: int) -> None:
        import ray
        import uvloop

        from squall.cluster.ray_cluster import release_placement

        # Ray's workers install uvloop's policy; pyroute2 (the environments' networks) makes event
        # loops of its own for netlink sockets, which uvloop cannot open: the stock policy again
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        base = Settings(**settings)
        node_settings = base.model_copy(update={"data_dir": node_data_dir(base.ray_node_dir, node_id)})
        host = ray.util.get_node_ip_address()
        self.agent = NodeAgent(node_settings, node_id, host, memory_mb, release_placement)
        self._loop = uvloop.new_event_loop()
        started: Future[tuple[str, int]] = Future()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                started.set_result(self._loop.run_until_complete(self.agent.start()))
            except BaseException as exc:  # noqa: BLE001 - reported to whoever asks for the endpoint
                started.set_exception(exc)
                return
            self._loop.run_forever()

        threading.Thread(target=run, name="squall-node-agent", daemon=True).start()
        self._endpoint = started.result(timeout=120)

    def endpoint(self) -> dict[str, Any]:
        host, port = self._endpoint
        return {"host": host, "port": port, "node": self.agent.node_id, "memory_mb": self.agent.memory_mb}

    def placements(self) -> list[str]:
        return asyncio.run_coroutine_threadsafe(self._placements(), self._loop).result(timeout=10)

    async def _placements(self) -> list[str]:
        return self.agent.placements()


def local_agent_pids() -> list[int]:
    """The node agents running on this machine (Ray names its actor processes ``ray::AgentActor``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::AgentActor"):
                        found.append(int(entry))
            except OSError:
                pass
    return found
