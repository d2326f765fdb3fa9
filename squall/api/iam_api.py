"""IAM and STS, served at ``/`` in AWS's query protocol, so that boto3's ``iam`` and ``sts``
clients (and the AWS CLI) work unchanged against Squall.

The route claims a form-encoded POST (or GET) to ``/`` with an ``Action``; the ``Version``
tells IAM (2010-05-08) from STS (2011-06-15). Each operation is authorized as
``iam:<Operation>`` on the user or role it names (``sts:GetCallerIdentity`` needs nothing,
as on AWS) and answered in XML (``query_protocol.py``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from botocore.loaders import Loader
from botocore.model import ServiceModel

from squall.api.middleware import Request
from squall.api.protocol import HttpResponse
from squall.api.query_protocol import QueryProtocol
from squall.auth.access import Access
from squall.auth.actions import iam_resource
from squall.auth.directory import Principal
from squall.auth.iam import Iam
from squall.errors import LambdaError, NotImplementedOperation, UnknownOperation

IAM_VERSION, STS_VERSION = "2010-05-08", "2011-06-15"
SERVED = {
    IAM_VERSION: ("CreateUser", "GetUser", "ListUsers", "DeleteUser", "CreateAccessKey", "DeleteAccessKey",
                  "ListAccessKeys", "PutUserPolicy", "GetUserPolicy", "DeleteUserPolicy", "ListUserPolicies",
                  "CreateRole", "GetRole", "ListRoles", "DeleteRole", "PutRolePolicy", "GetRolePolicy",
                  "DeleteRolePolicy", "ListRolePolicies"),
    STS_VERSION: ("GetCallerIdentity",),
}
NEEDS_NO_PERMISSION = ("GetCallerIdentity",)


def _model(service: str, version: str) -> ServiceModel:
    return ServiceModel(Loader().load_service_model(service, "service-2", version), service_name=service)


class QueryRoute:
    def __init__(self, iam: Iam, access: Access) -> None:
        self.iam = iam
        self.access = access
        self.protocols = {IAM_VERSION: QueryProtocol(_model("iam", IAM_VERSION)),
                          STS_VERSION: QueryProtocol(_model("sts", STS_VERSION))}
        self.services = {IAM_VERSION: "iam", STS_VERSION: "sts"}

    def claims(self, request: Request) -> bool:
        if request.path != "/" or request.method not in ("POST", "GET"):
            return False
        if "Action" in request.query:
            return True
        content_type = request.headers.get("content-type", "")
        return request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded")

    def _form(self, request: Request) -> dict[str, list[str]]:
        cached = request.state.get("form")
        if cached is None:
            form = dict(request.query)
            if request.method == "POST" and request.body:
                for key, values in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items():
                    form.setdefault(key, []).extend(values)
            request.state["form"] = cached = form
        return cached  # type: ignore[return-value]

    def _version(self, request: Request) -> str:
        version = self._form(request).get("Version", [IAM_VERSION])[-1]
        return version if version in self.protocols else IAM_VERSION

    def service(self, request: Request) -> str:
        """The signing name the request must be scoped to."""
        return self.services[self._version(request)]

    def render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        return self.protocols[self._version(request)].serialize_error(error, request.request_id)

    async def handle(self, request: Request) -> HttpResponse:
        form = self._form(request)
        version = self._version(request)
        protocol = self.protocols[version]
        action = form.get("Action", [""])[-1]
        try:
            op = protocol.operation(action)
        except Exception:
            raise UnknownOperation(f"Could not find operation {action} for version {version}") from None
        if op.name not in SERVED[version]:
            raise NotImplementedOperation(f"Squall does not implement the {self.services[version]} {op.name} operation.")
        params = protocol.parse(op, form)
        principal: Principal | None = request.state.get("principal")  # type: ignore[assignment]
        if op.name not in NEEDS_NO_PERMISSION:
            caller_user = principal.name if principal is not None and principal.caller.kind == "user" else None
            resource = iam_resource(op.name, params, self.iam.directory.account_id, caller_user)
            self.access.check(principal, f"{self.services[version]}:{op.name}", resource)
        if principal is None:  # authentication is off: act as the administrator
            principal = self.iam.directory.user_principal(self.iam.directory.users["admin"].record)
        output: dict[str, Any] = await getattr(self.iam, op.name)(params, principal)
        return protocol.serialize(op, output, request.request_id)
