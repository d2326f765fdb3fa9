"""The EventBridge Scheduler API (``/schedules``, ``/schedule-groups``) in AWS's rest-json protocol,
so that boto3's ``scheduler`` client and ``aws scheduler`` work unchanged.

Requests are routed, parsed and checked by :class:`~squall.api.protocol.RestJsonProtocol` from
botocore's ``scheduler`` model; they are signed for ``scheduler`` and authorized as
``scheduler:<Operation>`` on ``arn:aws:scheduler:<region>:<account>:schedule/<group>/<name>``
(``*`` for ListSchedules). Served: CreateSchedule, GetSchedule, UpdateSchedule, DeleteSchedule and
ListSchedules, in the ``default`` group. Errors are Scheduler's: ``x-amzn-ErrorType`` and a body
``{"Message": …}`` with the model's status for the code.
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.loaders import Loader
from botocore.model import ServiceModel

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse, RestJsonProtocol
from squall.engine.engine import Engine
from squall.errors import LambdaError, NotImplementedOperation

SERVED = ("CreateSchedule", "GetSchedule", "UpdateSchedule", "DeleteSchedule", "ListSchedules")
_STATUS = {
    "UnknownOperationException": 404, "NotImplementedException": 501, "ServiceUnavailableException": 503,
    "UnsupportedMediaTypeException": 415, "RequestEntityTooLargeException": 413, "AccessDeniedException": 403,
    "MissingAuthenticationTokenException": 403, "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403, "UnrecognizedClientException": 403, "ExpiredTokenException": 403,
    "InvalidRequestContentException": 400, "InvalidParameterValueException": 400,
}
_RENAMED = {"InvalidRequestContentException": "ValidationException",
            "InvalidParameterValueException": "ValidationException"}


def service_model() -> ServiceModel:
    return ServiceModel(Loader().load_service_model("scheduler", "service-2"), service_name="scheduler")


class SchedulerRoute:
    """The router's route for ``/schedules`` and ``/schedule-groups`` (before Lambda's catch-all)."""

    service = "scheduler"  # the signing name

    def __init__(self, engine: Engine, model: ServiceModel | None = None) -> None:
        self.engine = engine
        self.schedules = engine.schedules
        self.access = engine.identity.access
        self.region = engine.settings.region
        self.account_id = engine.settings.account_id
        self.model = model or service_model()
        routable = {name for name in self.model.operation_names if not name.endswith("TagsForResource")
                    and "Tag" not in name}
        self.protocol = RestJsonProtocol(self.model, routable)

    def claims(self, request: Request) -> bool:
        path = request.path
        return any(path == prefix or path.startswith(prefix + "/") for prefix in ("/schedules", "/schedule-groups"))

    async def handle(self, request: Request) -> HttpResponse:
        op, path_params = self.protocol.match(request.method, request.path, request.query)
        if op.name not in SERVED:
            raise NotImplementedOperation(
                f"Squall does not implement the EventBridge Scheduler {op.name} operation: it serves schedules "
                "in the default group (CreateSchedule, GetSchedule, UpdateSchedule, DeleteSchedule, ListSchedules)."
            )
        params = self.protocol.parse(op, path_params, request.query, request.headers, request.body)
        if op.name == "ListSchedules":
            resource = "*"
        else:
            group = params.get("GroupName") or "default"
            resource = f"arn:aws:scheduler:{self.region}:{self.account_id}:schedule/{group}/{params['Name']}"
        self.access.check(request.state.get("principal"), f"scheduler:{op.name}", resource)  # type: ignore[arg-type]
        output = await self.schedules.operation(op.name, params)
        return self.protocol.serialize(op, output)

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        code = _RENAMED.get(error.code, error.code)
        status = _STATUS.get(code, 500)
        if code in self.model.shape_names:
            shape = self.model.shape_for(code)
            if shape.metadata.get("exception"):
                status = shape.metadata.get("error", {}).get("httpStatusCode", 400)
        document: dict[str, Any] = {"Message": error.message}
        return HttpResponse(status, [("x-amzn-ErrorType", code), ("Content-Type", "application/json")],
                            orjson.dumps(document))
