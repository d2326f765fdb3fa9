"""A function's recursion, runtime management and scaling configurations."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params
from squall.errors import InvalidParameterValue


class FunctionSettingsOperations(Operations):
    async def PutFunctionRecursionConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.recursion.put(self.arns.parse(p["FunctionName"]), p)

    async def GetFunctionRecursionConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.recursion.get(self.arns.parse(p["FunctionName"]))

    async def PutRuntimeManagementConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.runtime_management.put(self.ref(p), p)

    async def GetRuntimeManagementConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.runtime_management.get(self.ref(p))

    async def PutFunctionScalingConfig(self, p: Params, request: Request) -> dict[str, Any]:
        raise _no_capacity_provider(p)

    async def GetFunctionScalingConfig(self, p: Params, request: Request) -> dict[str, Any]:
        raise _no_capacity_provider(p)


def _no_capacity_provider(p: Params) -> InvalidParameterValue:
    """Lambda answers this for a function that does not run on a capacity provider; on Squall none does."""
    return InvalidParameterValue(
        f"Function {p['FunctionName']} does not run on a capacity provider (Lambda Managed Instances), which "
        "Squall does not have: its scaling is set with reserved concurrency (PutFunctionConcurrency) and "
        "provisioned concurrency (PutProvisionedConcurrencyConfig).")
