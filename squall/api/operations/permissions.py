"""Functions' resource-based policies: AddPermission, RemovePermission, GetPolicy, and the
whole-document forms PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class PermissionOperations(Operations):
    async def AddPermission(self, p: Params, request: Request) -> dict[str, Any]:
        return {"Statement": await self.engine.permissions.add(self.ref(p), p)}

    async def RemovePermission(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.permissions.remove(self.ref(p), p["StatementId"], p.get("RevisionId"))
        return {}

    async def GetPolicy(self, p: Params, request: Request) -> dict[str, Any]:
        policy, revision = await self.engine.permissions.get(self.ref(p))
        return {"Policy": policy, "RevisionId": revision}

    async def PutResourcePolicy(self, p: Params, request: Request) -> dict[str, Any]:
        policy, revision = await self.engine.permissions.put_document(
            self.arns.parse(p["ResourceArn"]), p["Policy"], p.get("RevisionId"))
        return {"Policy": policy, "RevisionId": revision}

    async def GetResourcePolicy(self, p: Params, request: Request) -> dict[str, Any]:
        policy, revision = await self.engine.permissions.get(self.arns.parse(p["ResourceArn"]))
        return {"Policy": policy, "RevisionId": revision}

    async def DeleteResourcePolicy(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.permissions.delete_document(self.arns.parse(p["ResourceArn"]), p.get("RevisionId"))
        return {}
