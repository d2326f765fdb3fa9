"""Tags on functions (a function's unqualified ARN)."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params
from squall.arn import FunctionRef
from squall.errors import ResourceNotFound


class TagOperations(Operations):
    def _resource(self, resource: str) -> FunctionRef:
        if ":function:" not in resource:  # a layer, event source mapping, ...: none exists here yet
            kind = resource.split(":")[5] if resource.count(":") >= 5 else "resource"
            raise ResourceNotFound(f"{kind.replace('-', ' ').capitalize()} not found: {resource}")
        return self.arns.parse(resource)

    async def TagResource(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.tag_resource(self._resource(p["Resource"]), p["Tags"])
        return {}

    async def UntagResource(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.untag_resource(self._resource(p["Resource"]), p["TagKeys"])
        return {}

    async def ListTags(self, p: Params, request: Request) -> dict[str, Any]:
        return {"Tags": await self.engine.list_tags(self._resource(p["Resource"]))}
