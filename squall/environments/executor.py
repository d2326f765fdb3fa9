"""The executor seam: where an invocation's environment comes from.

``Executor.lease(target, slot)`` hands back something to invoke — an environment of the
target's version on this machine, or (a later issue) one on another node of a cluster. The
interface carries no local file descriptors and no process: a remote executor implements
the same three things (lease, provisioned status, counts).

The local executor is the environment pool plus :class:`Environment` (which makes its own
control channel and log pipe). It learns from the bus which environments are stale (a new
``$LATEST``, a deleted function or version, new sandbox settings) and which provisioned
concurrency to keep (a config put or deleted, an alias moved).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncContextManager, Callable, Protocol

from squall.arn import LATEST, FunctionRef
from squall.engine.bus import (
    AliasChanged,
    EventBus,
    FunctionDeleted,
    FunctionUpdated,
    ProvisionedConcurrencyChanged,
    SandboxSettingsChanged,
    VersionDeleted,
    VersionPublished,
)
from squall.environments.pool import EnvironmentPool
from squall.errors import LambdaError, ResourceConflict, ResourceNotFound
from squall.functions.concurrency import ProvisionedStatus
from squall.invoke.admission import Slot
from squall.invoke.invocation import InvocationRequest, InvocationResult
from squall.invoke.resolver import AliasRoute, Resolver, Target

log = logging.getLogger("squall.executor")

_RESOLVE_RETRY_S = 0.5
_RESOLVE_PATIENCE_S = 300.0  # how long a provisioned config waits for its version to become Active


class Lease(Protocol):
    async def invoke(self, request: InvocationRequest, prelude: str | None = None) -> InvocationResult: ...


class Executor(Protocol):
    layers_mountable: bool  # whether environments see a function's layers at /opt

    def connect(self, bus: EventBus, resolver: Resolver,
                environment_env: Callable[[str, str, str | None], dict[str, str]] | None = None) -> None: ...

    def lease(self, target: Target, slot: Slot) -> AsyncContextManager[Lease]: ...

    def provisioned_status(self, function: str, qualifier: str) -> ProvisionedStatus: ...

    def counts(self) -> dict[str, int]: ...

    def describe_isolation(self) -> dict[str, object]:
        """What /health and the banner say about where environments run."""

    def host_address(self, network: str | None) -> str | None:
        """Where an environment on ``network`` reaches this front end's API (None: the executor
        tells its environments itself, or they cannot)."""

    def gateways(self) -> list[str]:
        """The addresses environments call the API at (the API answers to these host names)."""

    def nodes_report(self) -> list[dict[str, Any]] | None:
        """The machines environments run on, for ``squall cluster status`` (None: this one only)."""

    def snapshots_report(self) -> dict[str, Any] | None:
        """SnapStart's snapshots kept here and their memory (None: this executor keeps none)."""

    def start(self) -> None: ...

    async def shutdown(self, grace: float) -> None: ...


class LocalExecutor:
    def __init__(self, pool: EnvironmentPool) -> None:
        self.pool = pool
        self.resolver: Resolver | None = None
        self._requested: dict[tuple[str, str], int] = {}  # provisioned concurrency per (function, qualifier)
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, bus: EventBus, resolver: Resolver,
                environment_env: Callable[[str, str, str | None], dict[str, str]] | None = None) -> None:
        """Listen to the engine's bus; resolve provisioned qualifiers with its resolver;
        ``environment_env(role, function, network)``: what new environments get besides
        Lambda's variables (credentials, endpoints)."""
        self.resolver = resolver
        self.pool.bus = bus
        self.pool.environment_env = environment_env
        bus.subscribe(FunctionUpdated, self._latest_changed)
        bus.subscribe(FunctionDeleted, self._deleted)
        bus.subscribe(SandboxSettingsChanged, self._sandbox_changed)
        bus.subscribe(VersionDeleted, self._version_deleted)
        bus.subscribe(AliasChanged, self._alias_changed)
        bus.subscribe(ProvisionedConcurrencyChanged, self._provisioning_changed)
        bus.subscribe(VersionPublished, self._published)

    def lease(self, target: Target, slot: Slot) -> AsyncContextManager[Lease]:
        return self.pool.lease(target, slot.provisioned_qualifier)

    def provisioned_status(self, function: str, qualifier: str) -> ProvisionedStatus:
        allocated, failure = self.pool.provisioned_status(function, qualifier)
        return ProvisionedStatus(allocated, failure)

    def counts(self) -> dict[str, int]:
        return self.pool.counts()

    @property
    def layers_mountable(self) -> bool:
        return bool(getattr(self.pool.backend, "layers", False))

    def describe_isolation(self) -> dict[str, object]:
        return self.pool.backend.describe()

    def host_address(self, network: str | None) -> str | None:
        return self.pool.backend.host_address(network)

    def gateways(self) -> list[str]:
        return list(getattr(self.pool.backend, "gateways", list)())

    def nodes_report(self) -> list[dict[str, Any]] | None:
        return None

    def snapshots_report(self) -> dict[str, Any] | None:
        return self.pool.snapshots.report() if self.pool.snapshots is not None else None

    @property
    def networks(self):  # type: ignore[no-untyped-def]
        """The backend's networks (``allow_api``/``forbid_api``), None without."""
        return getattr(self.pool.backend, "networks", None)

    def start(self) -> None:
        self.pool.start()

    async def shutdown(self, grace: float) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.shutdown(grace)
        await self.pool.backend.close()

    # ---- what the bus says ---------------------------------------------------------
    def _latest_changed(self, event: FunctionUpdated) -> None:
        self.pool.retire(event.name, LATEST, keep_revision=event.revision)

    def _deleted(self, event: FunctionDeleted) -> None:
        self.pool.retire(event.name)
        self.pool.drop_provisioned(event.name)
        for key in [k for k in self._requested if k[0] == event.name]:
            del self._requested[key]

    def _sandbox_changed(self, event: SandboxSettingsChanged) -> None:
        self.pool.retire(event.name)
        self._reprovision(event.name, lambda qualifier: True)

    def _version_deleted(self, event: VersionDeleted) -> None:
        self.pool.retire(event.name, event.version)
        if self._requested.pop((event.name, event.version), None) is not None:
            self.pool.provision(event.name, event.version, [])

    def _published(self, event: VersionPublished) -> None:
        if self.pool.snapshots is not None:  # SnapStart: the snapshot is taken at publish, as on Lambda
            self._spawn(self._snapshot(event.name, event.version))

    async def _snapshot(self, name: str, version: str) -> None:
        route = await self._route(name, version, "the SnapStart snapshot")
        if route is not None and self.pool.snapshots is not None:
            self.pool.snapshots.prepare(route.primary if isinstance(route, AliasRoute) else route)

    async def _route(self, name: str, qualifier: str, what: str,
                     wanted: Callable[[], bool] = lambda: True) -> Target | AliasRoute | None:
        """The qualifier's route once its version is Active; waits while it is Pending (its code
        being prepared) and ``wanted()``. None: deleted, failed, never Active, or no longer wanted."""
        assert self.resolver is not None, "connect() first"
        waited = 0.0
        while wanted():
            try:
                return await self.resolver.route(FunctionRef(name, qualifier))
            except ResourceConflict:
                if waited >= _RESOLVE_PATIENCE_S:
                    log.warning("%s of %s:%s: the version never became Active", what, name, qualifier)
                    return None
                await asyncio.sleep(_RESOLVE_RETRY_S)
                waited += _RESOLVE_RETRY_S
            except ResourceNotFound:  # deleted meanwhile
                return None
            except LambdaError as exc:
                log.warning("%s of %s:%s cannot be set up: %s", what, name, qualifier, exc.message)
                return None
        return None

    def _alias_changed(self, event: AliasChanged) -> None:
        self._reprovision(event.name, lambda qualifier: qualifier == event.alias)

    def _provisioning_changed(self, event: ProvisionedConcurrencyChanged) -> None:
        key = (event.name, event.qualifier)
        if event.requested is None:
            self._requested.pop(key, None)
            self.pool.provision(event.name, event.qualifier, [])
            return
        self._requested[key] = event.requested
        self._spawn(self._provision(event.name, event.qualifier))

    def _reprovision(self, name: str, which) -> None:  # type: ignore[no-untyped-def]
        for function, qualifier in list(self._requested):
            if function == name and which(qualifier):
                self._spawn(self._provision(function, qualifier))

    async def _provision(self, name: str, qualifier: str) -> None:
        """Resolve the qualifier (an alias: both its versions, by weight), then keep the
        wanted environments of each; waits while the version is not Active yet."""
        count = self._requested.get((name, qualifier))
        route = await self._route(name, qualifier, "provisioned concurrency",
                                  lambda: (name, qualifier) in self._requested)
        if route is None:
            return
        if self._requested.get((name, qualifier)) != count:
            return  # changed meanwhile: the newer task does it
        if isinstance(route, AliasRoute) and route.additional is not None:
            extra = round(count * route.weight)
            wanted = [(route.primary, count - extra), (route.additional, extra)]
        else:
            wanted = [(route.primary if isinstance(route, AliasRoute) else route, count)]
        self.pool.provision(name, qualifier, [(target, n) for target, n in wanted if n > 0])

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
