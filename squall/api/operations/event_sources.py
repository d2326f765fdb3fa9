"""Event source mappings (poll-based invocation)."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class EventSourceMappingOperations(Operations):
    async def CreateEventSourceMapping(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.create_event_source_mapping(p)

    async def GetEventSourceMapping(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.get_event_source_mapping(p["UUID"])

    async def UpdateEventSourceMapping(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.update_event_source_mapping(p["UUID"], p)

    async def DeleteEventSourceMapping(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.delete_event_source_mapping(p["UUID"])

    async def ListEventSourceMappings(self, p: Params, request: Request) -> dict[str, Any]:
        mappings, marker = await self.engine.list_event_source_mappings(
            p.get("EventSourceArn"), p.get("FunctionName"), p.get("Marker"), p.get("MaxItems"))
        return {"EventSourceMappings": mappings, "NextMarker": marker}
