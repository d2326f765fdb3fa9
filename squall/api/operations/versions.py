"""Published versions and aliases."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params
from squall.functions.aliases import alias_to_api


class VersionOperations(Operations):
    async def PublishVersion(self, p: Params, request: Request) -> dict[str, Any]:
        return (await self.engine.publish_version(self.arns.parse(p["FunctionName"]), p)).to_api(self.arns)

    async def ListVersionsByFunction(self, p: Params, request: Request) -> dict[str, Any]:
        versions, marker = await self.engine.list_versions(self.arns.parse(p["FunctionName"]), p.get("Marker"), p.get("MaxItems"))
        return {"Versions": [v.to_api(self.arns, v.version, listing=True) for v in versions], "NextMarker": marker}


class AliasOperations(Operations):
    async def CreateAlias(self, p: Params, request: Request) -> dict[str, Any]:
        return alias_to_api(await self.engine.create_alias(self.arns.parse(p["FunctionName"]), p), self.arns)

    async def GetAlias(self, p: Params, request: Request) -> dict[str, Any]:
        return alias_to_api(await self.engine.get_alias(self.arns.parse(p["FunctionName"]), p["Name"]), self.arns)

    async def UpdateAlias(self, p: Params, request: Request) -> dict[str, Any]:
        return alias_to_api(await self.engine.update_alias(self.arns.parse(p["FunctionName"]), p["Name"], p), self.arns)

    async def DeleteAlias(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_alias(self.arns.parse(p["FunctionName"]), p["Name"])
        return {}

    async def ListAliases(self, p: Params, request: Request) -> dict[str, Any]:
        aliases, marker = await self.engine.list_aliases(
            self.arns.parse(p["FunctionName"]), p.get("FunctionVersion"), p.get("Marker"), p.get("MaxItems")
        )
        return {"Aliases": [alias_to_api(a, self.arns) for a in aliases], "NextMarker": marker}
