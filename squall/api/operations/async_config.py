"""Asynchronous invocation settings (EventInvokeConfig) per function qualifier."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class EventInvokeConfigOperations(Operations):
    async def PutFunctionEventInvokeConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return (await self.engine.put_event_invoke_config(self.ref(p), p, merge=False)).to_api(self.arns)

    async def UpdateFunctionEventInvokeConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return (await self.engine.put_event_invoke_config(self.ref(p), p, merge=True)).to_api(self.arns)

    async def GetFunctionEventInvokeConfig(self, p: Params, request: Request) -> dict[str, Any]:
        return (await self.engine.get_event_invoke_config(self.ref(p))).to_api(self.arns)

    async def DeleteFunctionEventInvokeConfig(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_event_invoke_config(self.ref(p))
        return {}

    async def ListFunctionEventInvokeConfigs(self, p: Params, request: Request) -> dict[str, Any]:
        configs, marker = await self.engine.list_event_invoke_configs(self.ref(p), p.get("Marker"), p.get("MaxItems"))
        return {"FunctionEventInvokeConfigs": [c.to_api(self.arns) for c in configs], "NextMarker": marker}
