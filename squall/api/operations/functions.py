"""Functions: create, read, update, delete, list; and the account's settings."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params


class FunctionOperations(Operations):
    def _noted(self, config: dict[str, Any]) -> dict[str, Any]:
        """A runtime served by an interpreter older than its label says so in RuntimeVersionConfig."""
        warning = self.engine.runtimes.warning(config.get("Runtime", ""))
        if warning and "RuntimeVersionConfig" in config:
            config["RuntimeVersionConfig"] = {**config["RuntimeVersionConfig"],
                                              "Error": {"ErrorCode": "OlderInterpreter", "Message": warning}}
        return config

    async def CreateFunction(self, p: Params, request: Request) -> dict[str, Any]:
        created = await self.engine.create_function(p)
        return self._noted(created.to_api(self.arns, arn_qualifier=None))  # with Publish: version 1, unqualified ARN

    async def GetFunction(self, p: Params, request: Request) -> dict[str, Any]:
        details = await self.engine.get_function(self.ref(p))
        result: dict[str, Any] = {
            "Configuration": self._noted(details.config.to_api(self.arns, details.arn_qualifier)),
            "Code": {"RepositoryType": "S3", "Location": self.links.url(request.base_url, details.config.code.sha256_hex)},
        }
        if details.tags:
            result["Tags"] = details.tags
        if details.reserved is not None:
            result["Concurrency"] = {"ReservedConcurrentExecutions": details.reserved}
        return result

    async def GetFunctionConfiguration(self, p: Params, request: Request) -> dict[str, Any]:
        details = await self.engine.get_function(self.ref(p))
        return self._noted(details.config.to_api(self.arns, details.arn_qualifier))

    async def UpdateFunctionCode(self, p: Params, request: Request) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        if p.get("DryRun"):
            details = await self.engine.get_function(ref)
            return details.config.to_api(self.arns)
        return (await self.engine.update_function_code(ref, p)).to_api(self.arns)

    async def UpdateFunctionConfiguration(self, p: Params, request: Request) -> dict[str, Any]:
        return self._noted((await self.engine.update_function_configuration(self.arns.parse(p["FunctionName"]), p)).to_api(self.arns))

    async def DeleteFunction(self, p: Params, request: Request) -> dict[str, Any]:
        await self.engine.delete_function(self.ref(p))
        return {"StatusCode": 204}

    async def ListFunctions(self, p: Params, request: Request) -> dict[str, Any]:
        all_versions = p.get("FunctionVersion") == "ALL"
        items, marker = await self.engine.list_functions(p.get("Marker"), p.get("MaxItems"), all_versions)
        return {
            "Functions": [v.to_api(self.arns, True if not all_versions else v.version, listing=True) for v in items],
            "NextMarker": marker,
        }

    async def GetAccountSettings(self, p: Params, request: Request) -> dict[str, Any]:
        return await self.engine.account_settings()
