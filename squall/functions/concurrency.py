"""The concurrency settings of a function: reserved (per function) and provisioned (per version
or alias), with Lambda's checks and messages. How they are enforced is ``invoke/admission.py``;
how provisioned environments are kept ready is ``environments/provisioned.py``. Both learn
of every change from the bus.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.engine.bus import EventBus, ProvisionedConcurrencyChanged, ReservedConcurrencyChanged
from squall.errors import InvalidParameterValue, ProvisionedConcurrencyConfigNotFound, ResourceConflict, ResourceNotFound
from squall.function import lambda_timestamp
from squall.invoke.admission import Admission
from squall.store.aliases import AliasRepository
from squall.store.functions import FunctionRepository
from squall.store.provisioned import ProvisionedRecord, ProvisionedRepository

QUALIFIED = (
    "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. "
    "Please specify either a function name or an unqualified function ARN."
)


class ReservedConcurrency:
    def __init__(self, repo: FunctionRepository, admission: Admission, arns: Arns, bus: EventBus) -> None:
        self.repo = repo
        self.admission = admission
        self.arns = arns
        self.bus = bus

    async def put(self, ref: FunctionRef, value: int) -> None:
        if ref.qualifier is not None:
            raise InvalidParameterValue(QUALIFIED)
        if not await asyncio.to_thread(self.repo.exists, ref.name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, LATEST)}")
        self.admission.check_reservation(ref.name, value)
        await asyncio.to_thread(self.repo.set_reserved_concurrency, ref.name, value)
        self.bus.publish(ReservedConcurrencyChanged(ref.name, value))

    async def get(self, ref: FunctionRef) -> int | None:
        await self._function(ref)
        return self.admission.reserved_of(ref.name)

    async def delete(self, ref: FunctionRef) -> None:
        await self._function(ref)
        await asyncio.to_thread(self.repo.set_reserved_concurrency, ref.name, None)
        self.bus.publish(ReservedConcurrencyChanged(ref.name, None))

    async def _function(self, ref: FunctionRef) -> None:
        if ref.qualifier is not None:
            raise InvalidParameterValue(QUALIFIED)
        if not await asyncio.to_thread(self.repo.exists, ref.name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")


@dataclass(frozen=True)
class ProvisionedStatus:
    allocated: int  # environments initialised and kept ready
    failure: str | None = None  # why it stopped trying (Lambda's StatusReason)


class ProvisionedConcurrency:
    """Put/Get/Delete/ListProvisionedConcurrencyConfigs; ``status`` asks the executor."""

    def __init__(
        self,
        repo: ProvisionedRepository,
        functions: FunctionRepository,
        aliases: AliasRepository,
        admission: Admission,
        arns: Arns,
        bus: EventBus,
        status: Callable[[str, str], ProvisionedStatus],
    ) -> None:
        self.repo = repo
        self.functions = functions
        self.aliases = aliases
        self.admission = admission
        self.arns = arns
        self.bus = bus
        self.status = status

    async def load(self) -> None:
        """At start: every stored config goes on the bus (admission and the executor act on it)."""
        for record in await asyncio.to_thread(self.repo.all):
            self.bus.publish(ProvisionedConcurrencyChanged(record.function_name, record.qualifier, record.requested))

    async def put(self, ref: FunctionRef, value: int) -> dict[str, Any]:
        if ref.qualifier is None or ref.qualifier == LATEST:
            raise InvalidParameterValue("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        versions = await self._target_versions(ref)
        if LATEST in versions:  # an alias of $LATEST
            raise InvalidParameterValue("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        configs = {r.qualifier: r for r in await asyncio.to_thread(self.repo.of_function, ref.name)}
        if not is_version(ref.qualifier):
            if any(v in configs for v in versions):
                raise ResourceConflict("Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version")
        else:
            for alias in await asyncio.to_thread(self.aliases.referencing, ref.name, ref.qualifier):
                if alias in configs:
                    raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
        self.admission.check_provisioning(ref.name, ref.qualifier, value)
        record = ProvisionedRecord(ref.name, ref.qualifier, value, lambda_timestamp())
        if not await asyncio.to_thread(self.repo.put, record):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        self.bus.publish(ProvisionedConcurrencyChanged(ref.name, ref.qualifier, value))
        return self.to_api(record, with_arn=False)

    async def get(self, ref: FunctionRef) -> dict[str, Any]:
        self._published(ref)
        await self._target_versions(ref)
        record = await asyncio.to_thread(self.repo.get, ref.name, ref.qualifier)  # type: ignore[arg-type]
        if record is None:
            raise ProvisionedConcurrencyConfigNotFound("No Provisioned Concurrency Config found for this function")
        return self.to_api(record, with_arn=False)

    async def delete(self, ref: FunctionRef) -> None:
        self._published(ref)
        await self._target_versions(ref)
        await self.drop(ref.name, ref.qualifier)  # type: ignore[arg-type]

    async def drop(self, name: str, qualifier: str) -> None:
        """Remove a config (a deleted alias's too); nothing to remove is no error."""
        if await asyncio.to_thread(self.repo.delete, name, qualifier):
            self.bus.publish(ProvisionedConcurrencyChanged(name, qualifier, None))

    async def page(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> list[dict[str, Any]]:
        if not await asyncio.to_thread(self.functions.exists, ref.name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        return [self.to_api(r, with_arn=True) for r in await asyncio.to_thread(self.repo.of_function, ref.name)]

    def to_api(self, record: ProvisionedRecord, with_arn: bool) -> dict[str, Any]:
        status = self.status(record.function_name, record.qualifier)
        allocated = min(status.allocated, record.requested)
        shown: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": record.requested,
            "AvailableProvisionedConcurrentExecutions": allocated,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "Status": "FAILED" if status.failure else ("READY" if allocated >= record.requested else "IN_PROGRESS"),
            "LastModified": record.last_modified,
        }
        if status.failure:
            shown["StatusReason"] = status.failure
        if with_arn:
            shown["FunctionArn"] = self.arns.function(record.function_name, record.qualifier)
        return shown

    def _published(self, ref: FunctionRef) -> None:
        if ref.qualifier is None or ref.qualifier == LATEST:
            raise InvalidParameterValue("The function resource provided must be an alias or a published version.")

    async def _target_versions(self, ref: FunctionRef) -> list[str]:
        """The versions a version or alias qualifier stands for (Lambda's not-found messages)."""
        qualifier = ref.qualifier or ""
        if is_version(qualifier):
            if await asyncio.to_thread(self.functions.get, ref.name, qualifier) is None:
                raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, qualifier)}")
            return [qualifier]
        alias = await asyncio.to_thread(self.aliases.get, ref.name, qualifier)
        if alias is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.arns.function(ref.name, qualifier)}")
        return [alias.function_version, *alias.weights]
