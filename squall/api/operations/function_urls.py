"""Function URL configs (the HTTP side is squall/triggers/url_gateway.py)."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class FunctionUrlOperations(Operations):
    async def CreateFunctionUrlConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.create_function_url(self.ref(p), p)

    async def GetFunctionUrlConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.get_function_url(self.ref(p))

    async def UpdateFunctionUrlConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.update_function_url(self.ref(p), p)

    async def DeleteFunctionUrlConfig(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_function_url(self.ref(p))
        return {}

    async def ListFunctionUrlConfigs(self, p: Params, request: Request) -> dict[str, Any]:
        urls, marker = await self.engine.list_function_urls(self.ref(p), p.get("Marker"), p.get("MaxItems"))
        return {"FunctionUrlConfigs": urls, "NextMarker": marker}
