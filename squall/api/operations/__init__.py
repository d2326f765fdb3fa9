"""The Lambda REST API (rest-json, botocore's model), split by resource.

:class:`LambdaRoute` is the router's route for it: it matches a request to an operation of
the model, parses and validates its parameters, calls the operation and serialises the
output. An operation of the model that Squall does not serve yet answers 501
``NotImplementedException`` (never a 404, which a deployment tool reads as "no such
resource"); a path that is no operation at all answers 404 ``UnknownOperationException``.
"""

from __future__ import annotations

from typing import Any

from botocore.loaders import Loader
from botocore.model import ServiceModel

from squall.api.middleware import Request
from squall.api.operations.async_config import EventInvokeConfigOperations
from squall.api.operations.base import CodeLinks, Operation
from squall.api.operations.code_signing import NO_SIGNING, CodeSigningOperations
from squall.api.operations.concurrency import ConcurrencyOperations
from squall.api.operations.event_sources import EventSourceMappingOperations
from squall.api.operations.function_urls import FunctionUrlOperations
from squall.api.operations.function_settings import FunctionSettingsOperations
from squall.api.operations.functions import FunctionOperations
from squall.api.operations.invoke import InvokeOperations
from squall.api.operations.layers import LayerOperations
from squall.api.operations.permissions import PermissionOperations
from squall.api.operations.tags import TagOperations
from squall.api.operations.versions import AliasOperations, VersionOperations
from squall.api.protocol import HttpResponse, RestJsonProtocol
from squall.auth.actions import lambda_requests
from squall.engine.engine import Engine
from squall.errors import NotImplementedOperation
from squall.function import EPHEMERAL_MAX, MEMORY_MAX, TIMEOUT_MAX

GROUPS = (
    FunctionOperations,
    VersionOperations,
    AliasOperations,
    InvokeOperations,
    ConcurrencyOperations,
    EventInvokeConfigOperations,
    TagOperations,
    PermissionOperations,
    EventSourceMappingOperations,
    FunctionUrlOperations,
    LayerOperations,
    FunctionSettingsOperations,
    CodeSigningOperations,
)

__all__ = ["CodeLinks", "LambdaRoute", "service_model"]


def service_model() -> ServiceModel:
    """botocore's Lambda model, with what Lambda itself enforces more tightly than the model
    says (memory and ephemeral storage up to 10,240 MB, timeouts up to 900 s: AWS answers these with the model's
    wording) and Squall's one extension (http(s) URLs as destinations)."""
    description = Loader().load_service_model("lambda", "service-2")
    shapes = dict(description["shapes"])
    destination = dict(shapes["DestinationArn"])
    destination["pattern"] = r"https?://[^\s]+|" + destination["pattern"]
    shapes["DestinationArn"] = destination
    shapes["MemorySize"] = {**shapes["MemorySize"], "max": MEMORY_MAX}
    shapes["Timeout"] = {**shapes["Timeout"], "max": TIMEOUT_MAX}
    shapes["EphemeralStorageSize"] = {**shapes["EphemeralStorageSize"], "max": EPHEMERAL_MAX}
    runtime = dict(shapes["Runtime"])
    runtime.pop("enum", None)  # an unknown runtime is Lambda's own check (InvalidParameterValue)
    shapes["Runtime"] = runtime
    return ServiceModel({**description, "shapes": shapes}, service_name="lambda")


def _not_served(operation: str) -> str:
    """Why an operation of the model answers 501 (docs/lambda-operations.md lists them)."""
    if "CapacityProvider" in operation:
        reason = ("capacity providers (Lambda Managed Instances) are EC2 capacity that Squall does not have; "
                  "functions scale with reserved and provisioned concurrency")
    elif "CodeSigningConfig" in operation:
        return f"Squall does not implement the {operation} operation. {NO_SIGNING}"
    elif "DurableExecution" in operation:
        reason = "durable executions (checkpointed, resumable functions) are not built in Squall yet"
    else:
        reason = "it is not built yet"
    return f"Squall does not implement the {operation} operation: {reason}. See docs/lambda-operations.md."


class LambdaRoute:
    """Claims every request the other routes left (it must come last)."""

    def __init__(self, engine: Engine, links: CodeLinks, model: ServiceModel | None = None) -> None:
        self.engine = engine
        self.operations: dict[str, Operation] = {}
        for group in GROUPS:
            self.operations.update(group(engine, links).operations())
        self.protocol = RestJsonProtocol(model or service_model())

    def claims(self, request: Request) -> bool:
        return True

    def authorize(self, request: Request, operation: str, params: dict[str, Any]) -> None:
        """The caller's identity policies, with the function's own policy for its resource."""
        principal = request.state.get("principal")
        if principal is None:  # authentication is off
            return
        access = self.engine.identity.access
        context = access.context(principal)  # type: ignore[arg-type]
        for action, resource in lambda_requests(operation, params, self.engine.arns):
            access.check(principal, action, resource, self.engine.resource_policy(resource), context)  # type: ignore[arg-type]

    async def handle(self, request: Request) -> HttpResponse:
        op, path_params = self.protocol.match(request.method, request.path, request.query)
        operation = self.operations.get(op.name)
        if operation is None:
            raise NotImplementedOperation(_not_served(op.name))
        params = self.protocol.parse(op, path_params, request.query, request.headers, request.body)
        self.authorize(request, op.name, params)
        output = await operation(params, request)
        response = self.protocol.serialize(op, output)
        if op.name == "Invoke" and response.body:
            response.headers.append(("Content-Type", "application/json"))
        elif op.name == "InvokeAsync":  # Lambda's body; the model only maps the status
            response = HttpResponse(202, [("Content-Type", "application/json")], b'{"Status": 202}')
        return response
