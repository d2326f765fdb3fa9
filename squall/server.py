"""The composition root: build the engine and the HTTP app from settings, and serve them."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import sys
from types import FrameType
from typing import Any, Callable

import uvicorn
import uvloop

from squall.api.app import SquallApp
from squall.api.http_protocol import ConnectionLimits, HttpProtocol, watch_connections
from squall.api.operations import CodeLinks
from squall.auth import credentials_file
from squall.engine.engine import Engine
from squall.engine.stores import Stores
from squall.cluster.ray_cluster import RayCluster
from squall.cluster.ray_executor import RayExecutor
from squall.environments.executor import Executor, LocalExecutor
from squall.errors import SquallError
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.environments.snapshots import Snapshots
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox import select_backend
from squall.settings import Settings

log = logging.getLogger("squall.server")


def raise_fd_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every environment holds several fds
    here (control channel, log pipe, cgroup files), so the usual soft 1024 caps a server
    at ~120 environments (each fd past it fails a cold start with EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, e)


def build_app(settings: Settings) -> SquallApp:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.executor == "local":
        backend = select_backend(settings.isolation, settings.data_dir, settings.network_specs(), bool(settings.networks))
        reaped = backend.reap_orphans()
        if reaped:
            log.warning("killed %d environment process(es) left behind by a previous run", reaped)
    stores = Stores.open(settings)
    executor: Executor
    if settings.executor == "ray":  # environments on the Ray cluster's nodes (docs/cluster.md)
        executor = ray_executor(settings, stores)
    else:
        limits = PoolLimits(settings.memory_capacity, settings.keep_alive_seconds, settings.max_log_bytes_per_invocation)
        pool = EnvironmentPool(backend, stores.logs, settings.region, limits, code=stores.code)
        pool.snapshots = Snapshots(pool, settings.snapshot_memory_mb, settings.snap_start_latest)
        executor = LocalExecutor(pool)
    engine = Engine(settings, stores, executor, RuntimeRegistry.discover(settings.data_dir / "runtimes"))
    if isinstance(executor, RayExecutor):
        executor.api_url = lambda: engine.advertised_url
        executor.is_leader = lambda: engine.leadership.leader  # the leader places provisioned concurrency
    return SquallApp(engine, CodeLinks(stores.server_key))


def ray_executor(settings: Settings, stores: Stores) -> "RayExecutor":
    """Join the Ray cluster (raises what to do when it cannot) and run environments there."""
    if not settings.database_url.startswith("postgresql"):
        raise SquallError("--executor ray needs the front ends' shared PostgreSQL database (database_url) and code "
                          "bucket (code_bucket): the nodes' agents read functions' code from there (docs/cluster.md)")
    if not settings.code_bucket:
        raise SquallError("--executor ray needs a code bucket every node reads (code_bucket, at aws_endpoint)")
    cluster = RayCluster(settings)
    cluster.connect()
    return RayExecutor(settings, stores.logs, stores.server_key, cluster)


def describe_networks(networks: dict[str, Any]) -> str:
    """One line for the banner: each network and what it reaches, or why there are none."""
    if networks.get("available") is False:
        return f"NONE: environments have their loopback only ({networks.get('problem')})"
    parts = []
    for name, net in networks["networks"].items():
        reach = [*net["cidrs"]] + (["internet"] if net["internet"] else [])
        if net["ports"]:
            reach.append("ports " + ",".join(map(str, net["ports"])))
        if net["host_ports"]:
            reach.append("host ports " + ",".join(map(str, net["host_ports"])))
        parts.append(f"{name} {net['subnet']} ({', '.join(reach) or 'nothing'})")
    return "; ".join(parts)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; we exit 0 instead."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for in-flight requests
        self.should_exit = True


def serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    raise_fd_limit()
    app = build_app(settings)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    sockets = [sock, *environment_sockets(app, host, port)]
    app.engine.advertised_url = url if host not in ("0.0.0.0", "::") else f"http://{socket.gethostname()}:{port}"
    limits = ConnectionLimits(
        settings.request_header_timeout_seconds, settings.request_body_idle_seconds, settings.max_connections
    )
    protocol = type("HttpProtocol", (HttpProtocol,), {"limits": limits})
    config = uvicorn.Config(
        app,
        loop="none",
        http=protocol,  # uvicorn's httptools protocol, one write per response, limits on slow clients
        lifespan="on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        # SDK clients pool keep-alive connections; a short idle timeout races with their reuse
        timeout_keep_alive=60,
        # then requests still running are cancelled, and answered 503 (api/app.py)
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]  (a float works)
    )
    server = _Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        watchdog = asyncio.create_task(watch_connections(server.server_state.connections))
        task.add_done_callback(lambda _: watchdog.cancel())
        if server.started:
            backend = app.engine.describe_isolation()
            runtimes = ", ".join(app.engine.runtimes.identifiers()) or "none"
            announce(f"Squall {app.engine.health()['version']} listening on {url}")
            announce(f"  data dir:  {settings.data_dir}")
            announce(f"  isolation: {backend['name']} ({'isolated' if backend['isolated'] else 'NOT isolated'})")
            announce(f"  runtimes:  {runtimes}")
            if settings.auth:
                announce(f"  auth:      SigV4 and IAM policies; admin credentials in {credentials_file.path_of(settings.data_dir)}"
                         " (`squall credentials` prints them)")
            else:
                announce("  auth:      OFF — anyone who can connect may do anything (for throwaway local use only)")
            if backend.get("networks"):
                announce(f"  networks:  {describe_networks(backend['networks'])}")
            announce("  press Ctrl-C to stop")
        await task

    try:
        uvloop.run(main())
    finally:
        networks = app.engine.executor.networks
        if len(sockets) > 1 and networks is not None:
            networks.forbid_api(port)
    if not server.started:
        raise SystemExit(1)


def environment_sockets(app: SquallApp, host: str, port: int) -> list[socket.socket]:
    """Listen on the host's address on each environment network too (the same port), so that
    functions reach the API with their role's credentials; the host's filter lets them there."""
    app.engine.api_port = port
    networks = app.engine.executor.networks
    if networks is None:  # environments are elsewhere (--executor ray: agents forward to the API)
        return []
    gateways = app.engine.executor.gateways()
    if not gateways or host in ("0.0.0.0", "::"):  # a wildcard listener covers them already
        if gateways:
            networks.allow_api(port)
        return []
    sockets = []
    for gateway in gateways:
        try:
            sockets.append(bind(gateway, port))
        except OSError as e:
            log.warning("environments cannot reach the API at %s:%d: %s", gateway, port, e)
    if sockets:
        networks.allow_api(port)
    return sockets
