"""Aliases: names that point at a version, optionally splitting traffic with a second one.

``RoutingConfig.AdditionalVersionWeights`` holds at most one other published version and the
share of invocations it gets; the alias's own version gets the rest. Every invocation
chooses (the resolver does), so an update takes effect on the next invoke. Lambda's checks
and messages, including its two different "missing alias" texts (GetAlias: ``Cannot find
alias arn``, UpdateAlias: ``Alias not found``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, Awaitable, Callable

from squall.arn import LATEST, Arns, FunctionRef
from squall.engine.bus import AliasChanged, EventBus
from squall.errors import InvalidParameterValue, PreconditionFailed, ResourceConflict, ResourceNotFound
from squall.paging import decode_marker, encode_marker
from squall.store.aliases import AliasExists, AliasRecord, AliasRepository
from squall.store.functions import REVISION_MISMATCH, FunctionRepository

PAGE_MAX = 50


def alias_to_api(alias: AliasRecord, arns: Arns) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "AliasArn": arns.function(alias.function_name, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        shown["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return shown


class Aliases:
    def __init__(
        self,
        repo: AliasRepository,
        functions: FunctionRepository,
        arns: Arns,
        bus: EventBus,
        on_deleted: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.repo = repo
        self.functions = functions
        self.arns = arns
        self.bus = bus
        self.on_deleted = on_deleted  # what else goes with an alias (its provisioned concurrency)

    async def create(self, ref: FunctionRef, params: dict[str, Any]) -> AliasRecord:
        name = params["Name"]
        weights = await self._checked_routing(ref.name, params["FunctionVersion"], params.get("RoutingConfig"))
        alias = AliasRecord(ref.name, name, params["FunctionVersion"], str(uuid.uuid4()), params.get("Description") or "", weights)
        try:
            await asyncio.to_thread(self.repo.create, alias)
        except AliasExists:
            raise ResourceConflict(f"Alias already exists: {self.arns.function(ref.name, name)}") from None
        self.bus.publish(AliasChanged(ref.name, name))
        return alias

    async def get(self, ref: FunctionRef, name: str) -> AliasRecord:
        alias = await asyncio.to_thread(self.repo.get, ref.name, name)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.arns.function(ref.name, name)}")
        return alias

    async def update(self, ref: FunctionRef, name: str, params: dict[str, Any]) -> AliasRecord:
        current = await asyncio.to_thread(self.repo.get, ref.name, name)
        if current is None:
            raise ResourceNotFound(f"Alias not found: {self.arns.function(ref.name, name)}")
        if params.get("RevisionId") is not None and params["RevisionId"] != current.revision_id:
            raise PreconditionFailed(REVISION_MISMATCH)
        version = params.get("FunctionVersion") or current.function_version
        routing = params.get("RoutingConfig")  # absent: the weights stay as they are
        kept = {"AdditionalVersionWeights": current.weights}
        weights = await self._checked_routing(ref.name, version, routing if routing is not None else kept)
        updated = dataclasses.replace(
            current,
            function_version=version,
            description=params["Description"] if params.get("Description") is not None else current.description,
            weights=weights,
            revision_id=str(uuid.uuid4()),
        )
        if not await asyncio.to_thread(self.repo.save, updated, current.revision_id):
            raise PreconditionFailed(REVISION_MISMATCH)
        self.bus.publish(AliasChanged(ref.name, name))
        return updated

    async def delete(self, ref: FunctionRef, name: str) -> None:
        if await asyncio.to_thread(self.repo.delete, ref.name, name):  # a missing alias: 204 all the same
            self.bus.publish(AliasChanged(ref.name, name))
            if self.on_deleted is not None:
                await self.on_deleted(ref.name, name)

    async def page(
        self, ref: FunctionRef, version: str | None, marker: str | None, max_items: int | None
    ) -> tuple[list[AliasRecord], str | None]:
        if not await asyncio.to_thread(self.functions.exists, ref.name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        everything = await asyncio.to_thread(self.repo.of_function, ref.name, version)
        start = 0
        if marker:
            after = decode_marker(marker)
            start = next((i for i, a in enumerate(everything) if a.name > after), len(everything))
        limit = min(max_items or PAGE_MAX, PAGE_MAX)
        page = everything[start:start + limit]
        more = start + limit < len(everything)
        return page, (encode_marker(page[-1].name) if more and page else None)

    async def _checked_routing(self, function: str, version: str, routing: dict[str, Any] | None) -> dict[str, float]:
        """Lambda's checks of an alias's version and weights, in its order; the weights."""
        weights = {str(k): float(v) for k, v in ((routing or {}).get("AdditionalVersionWeights") or {}).items()}
        if len(weights) > 1:
            raise InvalidParameterValue("Number of items in AdditionalVersionWeights cannot be greater than 1")
        await self._version_exists(function, version)
        for other in weights:
            await self._version_exists(function, other)
        if weights and version == LATEST:
            raise InvalidParameterValue("$LATEST is not supported for an alias pointing to more than 1 version")
        if version in weights:
            raise InvalidParameterValue(
                f"Invalid function version {version}. Function version {version} is already included in routing configuration."
            )
        return weights

    async def _version_exists(self, function: str, version: str) -> None:
        if await asyncio.to_thread(self.functions.get, function, version) is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(function, version)}")

