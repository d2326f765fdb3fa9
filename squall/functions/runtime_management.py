"""Put/GetRuntimeManagementConfig. Squall serves one version of each runtime (the interpreter the
machine has; ``Arns.runtime_version`` names it), so ``UpdateRuntimeOn`` is recorded and shown,
and ``Manual`` accepts only that version's ARN: a function cannot be pinned to another one."""

from __future__ import annotations

import asyncio
from typing import Any

from squall.arn import LATEST, Arns, FunctionRef
from squall.errors import InvalidParameterValue, ResourceNotFound
from squall.store.function_settings import FunctionSettingsRepository
from squall.store.functions import FunctionRepository

KIND = "runtime-management"


class RuntimeManagement:
    def __init__(self, repo: FunctionSettingsRepository, functions: FunctionRepository, arns: Arns) -> None:
        self.repo = repo
        self.functions = functions
        self.arns = arns

    async def _version(self, ref: FunctionRef) -> tuple[str, str]:
        """(the stored qualifier, the version's runtime); ResourceNotFound when there is none."""
        qualifier = ref.qualifier or LATEST
        if qualifier not in (LATEST,) and not qualifier.isdigit():
            raise InvalidParameterValue(
                "The qualifier of a runtime management configuration is $LATEST or a version number.")
        version = await asyncio.to_thread(self.functions.get, ref.name, qualifier)
        if version is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name, ref.qualifier)}")
        return ("" if qualifier == LATEST else qualifier), version.runtime

    def _answer(self, ref: FunctionRef, document: dict[str, Any]) -> dict[str, Any]:
        answer = {"UpdateRuntimeOn": document.get("UpdateRuntimeOn", "Auto"),
                  "FunctionArn": self.arns.function(ref.name, ref.qualifier)}
        if document.get("RuntimeVersionArn"):
            answer["RuntimeVersionArn"] = document["RuntimeVersionArn"]
        return answer

    async def put(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        stored_qualifier, runtime = await self._version(ref)
        mode, arn = params["UpdateRuntimeOn"], params.get("RuntimeVersionArn")
        if mode == "Manual" and not arn:
            raise InvalidParameterValue("RuntimeVersionArn is required when UpdateRuntimeOn is Manual.")
        if mode != "Manual" and arn:
            raise InvalidParameterValue("RuntimeVersionArn can only be given when UpdateRuntimeOn is Manual.")
        served = self.arns.runtime_version(runtime)
        if arn and arn != served:
            raise InvalidParameterValue(
                f"This server serves one version of {runtime}: {served}. A function cannot be pinned to {arn}.")
        document = {"UpdateRuntimeOn": mode, **({"RuntimeVersionArn": arn} if arn else {})}
        if not await asyncio.to_thread(self.repo.put, ref.name, KIND, stored_qualifier, document):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        return self._answer(ref, document)

    async def get(self, ref: FunctionRef) -> dict[str, Any]:
        stored_qualifier, _ = await self._version(ref)
        document = await asyncio.to_thread(self.repo.get, ref.name, KIND, stored_qualifier) or {}
        return self._answer(ref, document)
