"""The API at an environment's gateway, on a node without a front end (``--executor ray``).

On one machine the server itself listens at each network's gateway, where the host's filter
lets environments in (their SDKs' ``AWS_ENDPOINT_URL_*`` point there). A node agent has no API
of its own: it listens at the gateways on one port and pipes each connection to a front end (the
one that said hello last and still answers; the others in turn). Requests are signed by the
environment's role credentials, which every front end accepts; the front ends answer to the
gateways' addresses as host names (``RayExecutor.gateways``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("squall.node")

_CONNECT_TIMEOUT_S = 3.0


class ApiForwarder:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.port: int | None = None
        self._upstreams: list[tuple[str, int]] = []  # the front ends' APIs, last said hello first
        self._servers: list[asyncio.base_events.Server] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        addresses = list(getattr(self.backend, "gateways", list)()) or ["127.0.0.1"]
        port = 0
        for address in addresses:
            try:
                server = await asyncio.start_server(self._forward, address, port, family=socket.AF_INET)
            except OSError as exc:
                log.warning("environments cannot reach the API at %s: %s", address, exc)
                continue
            port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        self.port = port or None
        networks = getattr(self.backend, "networks", None)
        if self.port is not None and networks is not None:
            await asyncio.to_thread(networks.allow_api, self.port)

    def add_upstream(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            return
        upstream = (parts.hostname, parts.port)
        if upstream in self._upstreams:
            self._upstreams.remove(upstream)
        self._upstreams.insert(0, upstream)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._pipes):
            task.cancel()
        networks = getattr(self.backend, "networks", None)
        if self.port is not None and networks is not None:
            await asyncio.to_thread(networks.forbid_api, self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in list(self._upstreams):
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                continue
            down = asyncio.ensure_future(_pipe(reader, up_writer))
            up = asyncio.ensure_future(_pipe(up_reader, writer))
            for task in (down, up):
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            await asyncio.gather(down, up, return_exceptions=True)
            up_writer.close()
            writer.close()
            return
        writer.close()  # no front end answers: the SDK sees a refused connection and retries


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()  # the other direction may still carry the answer
        except (OSError, RuntimeError):
            pass
