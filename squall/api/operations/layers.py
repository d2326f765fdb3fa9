"""Layers: publish, read, list and delete layer versions, and their permissions."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class LayerOperations(Operations):
    def _with_location(self, version: dict[str, Any], request: Request) -> dict[str, Any]:
        content = dict(version["Content"])
        content["Location"] = self.links.url(request.base_url, content.pop("_sha256_hex"))
        return {**version, "Content": content}

    async def PublishLayerVersion(self, p: Params, request: Request) -> dict[str, Any]:
        return self._with_location(await self.engine.layers.publish(p), request)

    async def GetLayerVersion(self, p: Params, request: Request) -> dict[str, Any]:
        return self._with_location(await self.engine.layers.get(p), request)

    async def GetLayerVersionByArn(self, p: Params, request: Request) -> dict[str, Any]:
        return self._with_location(await self.engine.layers.get_by_arn(p), request)

    async def ListLayers(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.layers.list_layers(p)

    async def ListLayerVersions(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.layers.list_versions(p)

    async def DeleteLayerVersion(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.layers.delete(p)
        return {}

    async def AddLayerVersionPermission(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.layers.add_permission(p)

    async def GetLayerVersionPolicy(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.layers.get_policy(p)

    async def RemoveLayerVersionPermission(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.layers.remove_permission(p)
        return {}
