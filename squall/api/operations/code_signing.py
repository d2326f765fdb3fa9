"""Code signing: Squall has no signing service (AWS Signer), so no function has a code signing
configuration. The reads answer that truthfully (deployment tools read a function's configuration
after creating it); creating, updating or attaching one is not served: 501 with the reason
(``NO_SIGNING``, given by ``LambdaRoute``)."""

from __future__ import annotations

from typing import Any

from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params
from squall.errors import ResourceNotFound

NO_SIGNING = ("Squall does not verify code signatures: there is no signing service (AWS Signer) to check "
              "them against, so it cannot create or attach a code signing configuration. Deploy unsigned "
              "packages; Squall keeps each one by its SHA-256 (CodeSha256).")


class CodeSigningOperations(Operations):
    async def GetFunctionCodeSigningConfig(self, p: Params, request: Request) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        await self.engine.get_function(ref)  # ResourceNotFound for an unknown function
        return {"CodeSigningConfigArn": "", "FunctionName": ref.name}

    async def ListCodeSigningConfigs(self, p: Params, request: Request) -> dict[str, Any]:
        return {"CodeSigningConfigs": []}

    async def GetCodeSigningConfig(self, p: Params, request: Request) -> dict[str, Any]:
        raise ResourceNotFound(f"The code signing configuration {p['CodeSigningConfigArn']} does not exist.")

    async def ListFunctionsByCodeSigningConfig(self, p: Params, request: Request) -> dict[str, Any]:
        raise ResourceNotFound(f"The code signing configuration {p['CodeSigningConfigArn']} does not exist.")

    async def DeleteFunctionCodeSigningConfig(self, p: Params, request: Request) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        await self.engine.get_function(ref)
        raise ResourceNotFound(f"Function {ref.name} has no code signing configuration.")

    async def DeleteCodeSigningConfig(self, p: Params, request: Request) -> dict[str, Any]:
        raise ResourceNotFound(f"The code signing configuration {p['CodeSigningConfigArn']} does not exist.")
