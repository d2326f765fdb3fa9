"""Reserved concurrency (per function) and provisioned concurrency (per version or alias)."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class ConcurrencyOperations(Operations):
    async def PutFunctionConcurrency(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.put_function_concurrency(self.ref(p), p["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": p["ReservedConcurrentExecutions"]}

    async def GetFunctionConcurrency(self, p: Params, request: Request) -> dict[str, Any]:
        return {"ReservedConcurrentExecutions": await self.engine.get_function_concurrency(self.ref(p))}

    async def DeleteFunctionConcurrency(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_function_concurrency(self.ref(p))
        return {}

    async def PutProvisionedConcurrencyConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.put_provisioned_concurrency(self.ref(p), p["ProvisionedConcurrentExecutions"])

    async def GetProvisionedConcurrencyConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.get_provisioned_concurrency(self.ref(p))

    async def DeleteProvisionedConcurrencyConfig(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_provisioned_concurrency(self.ref(p))
        return {}

    async def ListProvisionedConcurrencyConfigs(self, p: Params, request: Request) -> dict[str, Any]:
        configs = await self.engine.list_provisioned_concurrency(self.ref(p), p.get("Marker"), p.get("MaxItems"))
        return {"ProvisionedConcurrencyConfigs": configs}
