"""The resolver: which configuration an invocation runs, as a frozen :class:`Target`.

``resolve(FunctionRef)`` turns what a caller named — a function, ``NAME:$LATEST``, a
published version ``NAME:3`` or an alias ``NAME:live`` — into a snapshot of one version's
configuration, with alias routing applied (a weighted alias draws per invocation). On the
warm path it is a dictionary lookup; a miss reads the store once and the result is kept
until an event on the bus says it is stale (function updated or deleted, version deleted,
alias changed, sandbox settings changed). A read that raced such an event is not kept.

Invariant the callers rely on: when ``resolve`` returns, nothing has suspended since the
target was checked, so the environment created for it in the same turn of the event loop
holds its code before any delete can take it (see ``functions/code_store.py``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.engine.bus import (
    AliasChanged,
    EventBus,
    FunctionDeleted,
    FunctionUpdated,
    SandboxSettingsChanged,
    VersionDeleted,
)
from squall.errors import ResourceConflict, ResourceNotFound
from squall.function import FunctionVersion, State
from squall.runtimes.registry import Runtime, RuntimeRegistry
from squall.store.aliases import AliasRepository
from squall.store.functions import FunctionRepository

if TYPE_CHECKING:
    from squall.functions.service import FunctionService

_RETRIES = 5  # reads in a row that a change overtook before the last one is used uncached


@dataclass(frozen=True)
class Target:
    """One version's configuration, ready to run: what the admission and the executor need."""

    config: FunctionVersion
    runtime: Runtime
    code_dir: Path
    network: str | None  # the network its environments join (None: no network at all)
    invoked_arn: str  # the ARN as the caller named it (the context's invoked_function_arn)
    qualifier: str | None  # what the caller named: an alias, a version, $LATEST or nothing
    opt_dir: Path | None = None  # its layers, merged (seen at /opt); None: no layers

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version


@dataclass(frozen=True)
class AliasRoute:
    """An alias: its version, and maybe a second one that gets ``weight`` of the invocations."""

    primary: Target
    additional: Target | None
    weight: float

    def pick(self, draw: float) -> Target:
        if self.additional is not None and draw < self.weight:
            return self.additional
        return self.primary


class Resolver:
    def __init__(
        self,
        functions: FunctionService,
        repo: FunctionRepository,
        aliases: AliasRepository,
        runtimes: RuntimeRegistry,
        arns: Arns,
        bus: EventBus,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.functions = functions
        self.repo = repo
        self.aliases = aliases
        self.runtimes = runtimes
        self.arns = arns
        self.draw = draw
        self._cache: dict[tuple[str, str | None], Target | AliasRoute] = {}
        self._keys: dict[str, set[tuple[str, str | None]]] = {}  # function → its cached keys
        self._generation: dict[str, int] = {}
        for kind in (FunctionUpdated, FunctionDeleted, SandboxSettingsChanged, VersionDeleted, AliasChanged):
            bus.subscribe(kind, lambda event: self.forget(event.name))

    async def resolve(self, ref: FunctionRef) -> Target:
        entry = self._cache.get((ref.name, ref.qualifier))
        if entry is None:
            entry = await self._load(ref)
        if type(entry) is AliasRoute:
            return entry.pick(self.draw())
        return entry  # type: ignore[return-value]

    async def route(self, ref: FunctionRef) -> Target | AliasRoute:
        """Every target ``ref`` may run (an alias's two versions), without drawing."""
        entry = self._cache.get((ref.name, ref.qualifier))
        return entry if entry is not None else await self._load(ref)

    def forget(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1
        for key in self._keys.pop(name, ()):
            self._cache.pop(key, None)

    # ---- misses --------------------------------------------------------------------
    async def _load(self, ref: FunctionRef) -> Target | AliasRoute:
        for _ in range(_RETRIES):
            generation = self._generation.get(ref.name, 0)
            entry = await self._build(ref)
            if self._generation.get(ref.name, 0) == generation:
                key = (ref.name, ref.qualifier)
                self._cache[key] = entry
                self._keys.setdefault(ref.name, set()).add(key)
                return entry
        return entry  # changing faster than it can be read: use the last read, uncached

    async def _build(self, ref: FunctionRef) -> Target | AliasRoute:
        invoked = self.arns.function(ref.name, ref.qualifier)
        if ref.is_latest:
            latest = self.functions.invocable_latest(ref.name) or await self.functions.explain_not_invocable(
                ref.name, ref.qualifier or LATEST)
            return self._target(latest, invoked, ref.qualifier)
        if is_version(ref.qualifier or ""):
            return self._target(await self._version(ref.name, ref.qualifier), invoked, ref.qualifier)  # type: ignore[arg-type]
        alias = await asyncio.to_thread(self.aliases.get, ref.name, ref.qualifier)
        if alias is None:
            raise ResourceNotFound(f"Function not found: {invoked}")
        primary = await self._version_target(ref.name, alias.function_version, invoked, ref.qualifier)
        additional = alias.additional_version
        if additional is None:
            return AliasRoute(primary, None, 0.0)
        second = await self._version_target(ref.name, additional, invoked, ref.qualifier)
        return AliasRoute(primary, second, alias.weights[additional])

    async def _version_target(self, name: str, version: str, invoked: str, qualifier: str | None) -> Target:
        if version == LATEST:
            latest = self.functions.invocable_latest(name) or await self.functions.explain_not_invocable(name, LATEST)
            return self._target(latest, invoked, qualifier)
        return self._target(await self._version(name, version), invoked, qualifier)

    async def _version(self, name: str, version: str) -> FunctionVersion:
        found = await asyncio.to_thread(self.repo.get, name, version)
        if found is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(name, version)}")
        if found.state != State.ACTIVE:
            raise ResourceConflict(
                "The operation cannot be performed at this time. "
                f"The function is currently in the following state: {found.state}"
            )
        await self.functions.ensure_local(found)  # published on another front end: its code, here too
        return found

    def _target(self, config: FunctionVersion, invoked: str, qualifier: str | None) -> Target:
        return Target(
            config=config,
            runtime=self.runtimes.get(config.runtime),
            code_dir=self.functions.code_path(config),
            network=self.functions.network_of(config),
            invoked_arn=invoked,
            qualifier=qualifier,
            opt_dir=self.functions.opt_path(config),
        )
