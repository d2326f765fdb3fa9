"""The API Gateway v2 management API (HTTP APIs), served at ``/v2/…`` in AWS's rest-json
protocol so that boto3's ``apigatewayv2`` client and ``aws apigatewayv2`` work unchanged.

Requests are routed, parsed and checked by :class:`~squall.api.protocol.RestJsonProtocol` from
botocore's ``apigatewayv2`` model. That model names its JSON members in lower camel case
(``locationName``: ``protocolType``, ``routeKey``) and writes timestamps in ISO 8601, where
the protocol (built for Lambda) reads and writes members by their own names: this module
renames the body's members both ways, recursively, from the model. Requests are signed for
``apigateway`` and authorized as IAM models API Gateway's management: action
``apigateway:<HTTP method>`` on ``arn:aws:apigateway:<region>::/apis/…`` (the path without
``/v2``). Errors are API Gateway's: ``x-amzn-ErrorType`` and a body ``{"message": …}``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import orjson
from botocore.loaders import Loader
from botocore.model import ServiceModel, Shape

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse, RestJsonProtocol
from squall.engine.engine import Engine
from squall.errors import InvalidRequestContent, LambdaError, NotImplementedOperation
from squall.triggers.http_apis import HttpApis

PREFIX = "/v2/"
# Codes of Squall's shared errors → API Gateway's, and the statuses of codes its model does not list.
_RENAMED = {
    "ValidationException": "BadRequestException",
    "InvalidParameterValueException": "BadRequestException",
    "InvalidRequestContentException": "BadRequestException",
    "ResourceNotFoundException": "NotFoundException",
    "ResourceConflictException": "ConflictException",
}
_STATUS = {
    "UnknownOperationException": 404, "NotImplementedException": 501, "ServiceUnavailableException": 503,
    "UnsupportedMediaTypeException": 415, "RequestEntityTooLargeException": 413, "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403, "InvalidSignatureException": 403, "UnrecognizedClientException": 403,
    "ExpiredTokenException": 403,
}


def service_model() -> ServiceModel:
    return ServiceModel(Loader().load_service_model("apigatewayv2", "service-2"), service_name="apigatewayv2")


def _wire_name(name: str, member: Shape) -> str:
    return str(member.serialization.get("name", name))


def from_wire(shape: Shape, value: Any) -> Any:
    """A JSON body as the model writes it (``{"routeKey": …}``) → by member name (``RouteKey``)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        by_wire = {_wire_name(name, member): (name, member) for name, member in shape.members.items()}
        out = {}
        for key, item in value.items():
            found = by_wire.get(key)
            if found is not None:
                out[found[0]] = from_wire(found[1], item)
        return out
    if kind == "list" and isinstance(value, list):
        return [from_wire(shape.member, item) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: from_wire(shape.value, v) for k, v in value.items()}
    return value


def to_wire(shape: Shape, value: Any) -> Any:
    """A result by member name → the model's JSON (lower camel case, ISO 8601 timestamps)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {_wire_name(name, member): to_wire(member, value[name])
                for name, member in shape.members.items() if value.get(name) is not None}
    if kind == "list" and isinstance(value, list):
        return [to_wire(shape.member, item) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: to_wire(shape.value, v) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


class ApiGatewayRoute:
    """The router's route for ``/v2/…`` (it must come before the Lambda API's catch-all)."""

    service = "apigateway"  # the signing name

    def __init__(self, engine: Engine, model: ServiceModel | None = None) -> None:
        self.engine = engine
        self.access = engine.identity.access
        self.region = engine.settings.region
        self.model = model or service_model()
        # the protocol names a URI label's regex group after it: leave out the few operations whose
        # labels are no Python identifiers ("/v2/tags/{resource-arn}"); they answer 404
        routable = {name for name in self.model.operation_names
                    if all(label.rstrip("+").isidentifier()
                           for label in re.findall(r"\{([^}]+)\}", self.model.operation_model(name).http["requestUri"]))}
        self.protocol = RestJsonProtocol(self.model, routable)

    def claims(self, request: Request) -> bool:
        return request.path.startswith(PREFIX) or request.path == PREFIX.rstrip("/")

    async def handle(self, request: Request) -> HttpResponse:
        op, path_params = self.protocol.match(request.method, request.path, request.query)
        if op.name not in HttpApis.SERVED:
            raise NotImplementedOperation(
                f"Squall does not implement the API Gateway {op.name} operation: it serves HTTP APIs (apis, "
                "integrations, routes and stages)."
            )
        body = request.body
        if body and op.input_shape is not None:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from exc
            body = orjson.dumps(from_wire(op.input_shape, document)) if isinstance(document, dict) else body
        params = self.protocol.parse(op, path_params, request.query, request.headers, body)
        resource = f"arn:aws:apigateway:{self.region}::{request.path[len(PREFIX) - 1:]}"
        self.access.check(request.state.get("principal"), f"apigateway:{request.method}", resource)  # type: ignore[arg-type]
        output = await self.engine.http_api_operation(op.name, params)
        status = op.http.get("responseCode", 200)
        if op.output_shape is None:
            return HttpResponse(status, [], b"")
        document = to_wire(op.output_shape, output or {})
        return HttpResponse(status, [("Content-Type", "application/json")], orjson.dumps(document))

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        """API Gateway's error shape: the code in ``x-amzn-ErrorType``, ``{"message": …}``
        (with the modelled extra members, e.g. NotFoundException's ``resourceType``)."""
        code = _RENAMED.get(error.code, error.code)
        status = _STATUS.get(code, 500)
        document: dict[str, Any] = {"message": error.message}
        if code in self.model.shape_names:
            shape = self.model.shape_for(code)
            if shape.metadata.get("exception"):
                status = shape.metadata.get("error", {}).get("httpStatusCode", 400)
                for name, member in shape.members.items():
                    if name != "Message" and error.fields.get(_wire_name(name, member)) is not None:
                        document[_wire_name(name, member)] = error.fields[_wire_name(name, member)]
        return HttpResponse(status, [("x-amzn-ErrorType", code), ("Content-Type", "application/json")],
                            orjson.dumps(document))
