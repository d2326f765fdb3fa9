"""Lambda operations: translate API parameters into engine calls and results into API output.

Each public coroutine is named after the operation in botocore's model and takes the
parameters exactly as boto3 would send them (already parsed and shape-checked by
``squall.api.protocol``). Nothing here touches the store or sandboxes directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from botocore.loaders import Loader
from botocore.model import ServiceModel

from squall.arn import FunctionRef
from squall.async_invoke.pipeline import MAX_EVENT_PAYLOAD, MAX_INVOKE_ASYNC_PAYLOAD
from squall.engine.engine import Engine, InvokeOptions
from squall.invoke.invocation import MAX_SYNC_PAYLOAD
from squall.errors import InvalidParameterValue, InvalidRequestContent, RequestTooLarge

CLIENT_CONTEXT_MAX = 3583
CODE_LINK_TTL = 600  # seconds, like the presigned S3 URL Lambda returns


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    base_url: str  # how the client reached us, e.g. http://127.0.0.1:9000


class CodeLinks:
    """Signed, expiring download links for function code (GetFunction's Code.Location)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def url(self, base_url: str, sha256_hex: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + CODE_LINK_TTL)
        return f"{base_url}/squall/code/{sha256_hex}.zip?expires={expires}&signature={self._sign(sha256_hex, expires)}"

    def verify(self, sha256_hex: str, expires: str, signature: str, now: float | None = None) -> bool:
        try:
            deadline = int(expires)
        except ValueError:
            return False
        if deadline < (now or time.time()):
            return False
        return hmac.compare_digest(self._sign(sha256_hex, deadline), signature)

    def _sign(self, sha256_hex: str, expires: int) -> str:
        return hmac.new(self.secret, f"{sha256_hex}:{expires}".encode(), hashlib.sha256).hexdigest()


class LambdaApi:
    def __init__(self, engine: Engine, links: CodeLinks) -> None:
        self.engine = engine
        self.arns = engine.arns
        self.links = links

    def operations(self) -> dict[str, Callable[[dict[str, Any], RequestContext], Awaitable[dict[str, Any]]]]:
        names = (
            "CreateFunction",
            "GetFunction",
            "GetFunctionConfiguration",
            "UpdateFunctionCode",
            "UpdateFunctionConfiguration",
            "DeleteFunction",
            "ListFunctions",
            "GetAccountSettings",
            "Invoke",
            "InvokeAsync",
            "PutFunctionEventInvokeConfig",
            "UpdateFunctionEventInvokeConfig",
            "GetFunctionEventInvokeConfig",
            "DeleteFunctionEventInvokeConfig",
            "ListFunctionEventInvokeConfigs",
            "PutFunctionConcurrency",
            "GetFunctionConcurrency",
            "DeleteFunctionConcurrency",
            "TagResource",
            "UntagResource",
            "ListTags",
        )
        return {name: getattr(self, name) for name in names}

    # ---- functions ---------------------------------------------------------------
    async def CreateFunction(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        version = await self.engine.functions.create(p)
        return version.to_api(self.arns)

    async def GetFunction(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        version = await self.engine.functions.get(ref)
        result: dict[str, Any] = {
            "Configuration": version.to_api(self.arns),
            "Code": {"RepositoryType": "S3", "Location": self.links.url(ctx.base_url, version.code.sha256_hex)},
        }
        tags = await self.engine.functions.tags(version.name)
        if tags:
            result["Tags"] = tags
        return result

    async def GetFunctionConfiguration(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        return (await self.engine.functions.get(ref)).to_api(self.arns)

    async def UpdateFunctionCode(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        if p.get("DryRun"):
            version = await self.engine.functions.get(ref)
            return version.to_api(self.arns)
        return (await self.engine.functions.update_code(ref, p)).to_api(self.arns)

    async def UpdateFunctionConfiguration(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        return (await self.engine.functions.update_configuration(ref, p)).to_api(self.arns)

    async def DeleteFunction(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        await self.engine.functions.delete(ref)
        return {"StatusCode": 204}

    async def ListFunctions(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        items, marker = await self.engine.functions.page(p.get("Marker"), p.get("MaxItems"))
        return {"Functions": [v.to_api(self.arns) for v in items], "NextMarker": marker}

    async def GetAccountSettings(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return await self.engine.account_settings()

    # ---- concurrency -------------------------------------------------------------
    async def PutFunctionConcurrency(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        await self.engine.functions.put_concurrency(ref, p["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": p["ReservedConcurrentExecutions"]}

    async def GetFunctionConcurrency(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        value = await self.engine.functions.get_concurrency(self.arns.parse(p["FunctionName"]))
        return {"ReservedConcurrentExecutions": value}

    async def DeleteFunctionConcurrency(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await self.engine.functions.delete_concurrency(self.arns.parse(p["FunctionName"]))
        return {}

    # ---- tags --------------------------------------------------------------------
    def _tagged(self, resource: str) -> FunctionRef:
        if not resource.startswith("arn:"):
            raise InvalidParameterValue(f"Resource must be a full ARN: {resource}")
        ref = self.arns.parse(resource)
        if ref.qualifier is not None:
            raise InvalidParameterValue("Tags apply to functions, not to versions or aliases: use the unqualified ARN.")
        return ref

    async def TagResource(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await self.engine.functions.tag(self._tagged(p["Resource"]), p["Tags"])
        return {}

    async def UntagResource(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await self.engine.functions.untag(self._tagged(p["Resource"]), p["TagKeys"])
        return {}

    async def ListTags(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self._tagged(p["Resource"])
        version = await self.engine.functions.get(ref)
        return {"Tags": await self.engine.functions.tags(version.name)}

    # ---- invoke ------------------------------------------------------------------
    async def Invoke(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        invocation_type = p.get("InvocationType", "RequestResponse")
        payload: bytes = p.get("Payload") or b""
        if invocation_type == "Event":
            if len(payload) > MAX_EVENT_PAYLOAD:
                raise RequestTooLarge(
                    f"{len(payload)} byte payload is too large for the Event invocation type "
                    f"(limit {MAX_EVENT_PAYLOAD} bytes)"
                )
            _check_json(payload)
            # 202 only once the event is committed; the request id is the event's.
            await self.engine.async_invocations.accept(ref, payload, ctx.request_id)
            return {"StatusCode": 202}
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise RequestTooLarge(
                f"{len(payload)} byte payload is too large for the RequestResponse invocation type "
                f"(limit {MAX_SYNC_PAYLOAD} bytes)"
            )
        _check_json(payload)
        options = InvokeOptions(
            request_id=ctx.request_id,
            client_context=_client_context(p.get("ClientContext")),
            dry_run=invocation_type == "DryRun",
        )
        result = await self.engine.invoke(ref, payload, options)
        if result is None:
            return {"StatusCode": 204}
        output: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": result.payload,
            "ExecutedVersion": result.executed_version,
            "FunctionError": result.function_error,
        }
        if p.get("LogType") == "Tail":
            output["LogResult"] = base64.b64encode(result.log_tail).decode()
        return output


    async def InvokeAsync(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """The deprecated asynchronous invoke (256 KB events); answers 202 ``{"Status": 202}``."""
        ref = self.arns.parse(p["FunctionName"])
        payload: bytes = p.get("InvokeArgs") or b""
        if len(payload) > MAX_INVOKE_ASYNC_PAYLOAD:
            raise RequestTooLarge(
                f"Request must be smaller than {MAX_INVOKE_ASYNC_PAYLOAD} bytes for the InvokeAsync operation"
            )
        _check_json(payload)
        await self.engine.async_invocations.accept(ref, payload, ctx.request_id)
        return {"Status": 202}

    # ---- asynchronous invocation settings -------------------------------------------
    async def PutFunctionEventInvokeConfig(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        return (await self.engine.async_invocations.configs.put(ref, p)).to_api(self.arns)

    async def UpdateFunctionEventInvokeConfig(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        return (await self.engine.async_invocations.configs.update(ref, p)).to_api(self.arns)

    async def GetFunctionEventInvokeConfig(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        return (await self.engine.async_invocations.configs.get(ref)).to_api(self.arns)

    async def DeleteFunctionEventInvokeConfig(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"], p.get("Qualifier"))
        await self.engine.async_invocations.configs.delete(ref)
        return {}

    async def ListFunctionEventInvokeConfigs(self, p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = self.arns.parse(p["FunctionName"])
        configs = await self.engine.async_invocations.configs.page(ref, p.get("Marker"), p.get("MaxItems"))
        return {"FunctionEventInvokeConfigs": [c.to_api(self.arns) for c in configs]}


def service_model() -> ServiceModel:
    """botocore's Lambda model with Squall's one extension: http(s) URLs as destinations."""
    description = Loader().load_service_model("lambda", "service-2")
    shapes = dict(description["shapes"])
    destination = dict(shapes["DestinationArn"])
    destination["pattern"] = r"https?://[^\s]+|" + destination["pattern"]
    shapes["DestinationArn"] = destination
    return ServiceModel({**description, "shapes": shapes}, service_name="lambda")


def _check_json(payload: bytes) -> None:
    if payload:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContent(
                f"Could not parse request body into json: Could not parse payload into json: {exc}"
            ) from exc


def _client_context(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > CLIENT_CONTEXT_MAX * 4 // 3 + 4:
        raise InvalidParameterValue(f"Client context must be at most {CLIENT_CONTEXT_MAX} bytes.")
    try:
        decoded = base64.b64decode(value, validate=True)
        if len(decoded) > CLIENT_CONTEXT_MAX:
            raise InvalidParameterValue(f"Client context must be at most {CLIENT_CONTEXT_MAX} bytes.")
        document = orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidParameterValue("Client context must be a valid Base64-encoded JSON object.") from exc
    if not isinstance(document, dict):
        raise InvalidParameterValue("Client context must be a valid Base64-encoded JSON object.")
    return decoded.decode()
