"""HTTP APIs, the HTTP side: a request to ``<api-id>.execute-api.<region>.localhost`` (or to
``/execute-api/<api-id>/…``) picks a stage and a route as API Gateway does, becomes a
synchronous invocation of the route's Lambda integration with the payload format 1.0 or 2.0
event, and the function's answer becomes the response (``http_payload.py``'s rules).

API Gateway's own answers are ``{"message": ...}``: 404 ``Not Found`` (no such API, stage or
route), 403 ``Forbidden`` (the default endpoint is disabled), 413, 503 ``Service Unavailable``
(the integration's ``TimeoutInMillis`` passed; the function goes on running), and 500
``Internal Server Error`` for every failure of the integration: the function's error, an
answer that cannot be mapped, a throttle, a missing function, and a function whose resource
policy does not let ``apigateway.amazonaws.com`` invoke it for this API (``lambda:InvokeFunction``,
with an ``AWS:SourceArn`` condition such as ``arn:aws:execute-api:<region>:<account>:<api-id>/*/*``),
as on AWS. With ``--auth off`` no permission is checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import orjson

from squall.api.guard import host_name
from squall.arn import FunctionRef
from squall.auth.policy import Caller, evaluate
from squall.engine.engine import Engine, InvokeOptions
from squall.errors import LambdaError
from squall.invoke.invocation import MAX_SYNC_PAYLOAD, InvocationResult
from squall.triggers.http_apis import DEFAULT, PATH_PREFIX, TIMEOUT_DEFAULT_MS, HttpApi, RouteSpec, lambda_target
from squall.triggers.http_payload import (BadFunctionResponse, HttpRequest, RequestContext, event_v1, event_v2, response_v1,
                                          response_v2)
from squall.triggers.url_gateway import read_limited

log = logging.getLogger("squall.apigateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

SERVICE = "apigateway.amazonaws.com"
APIGATEWAY = Caller(arn=SERVICE, account="", kind="service", service=SERVICE)
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # an HTTP API's payload quota
JSON = [(b"content-type", b"application/json")]


def _message(status: int, text: str) -> Answer:
    return status, list(JSON), orjson.dumps({"message": text})


def source_arn(region: str, account: str, api_id: str, stage: str, method: str, route: RouteSpec) -> str:
    """The ``AWS:SourceArn`` API Gateway invokes with: ``…:<api-id>/<stage>/<METHOD><route path>``,
    or ``…:<api-id>/<stage>/$default`` for the ``$default`` route."""
    tail = DEFAULT if route.method is None else f"{method}{route.path}"
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{tail}"


class ApiGateway:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.apis = engine.http_apis
        self.suffix = f".execute-api.{engine.settings.region}.localhost"
        self._running: set[asyncio.Future[Any]] = set()  # invocations that outlived their integration timeout

    def api_id(self, host: str | None, raw_path: str) -> tuple[str, str, bool] | None:
        """(API id, the path after it, whether the Host named it) when the request is for an HTTP API."""
        if host:
            name = host_name(host)
            if name.endswith(self.suffix):
                return name[: -len(self.suffix)], raw_path, True
        if raw_path.startswith(PATH_PREFIX):
            api_id, _, path = raw_path[len(PATH_PREFIX):].partition("/")
            return api_id, "/" + path, False
        return None

    async def serve(self, scope: Scope, receive: Receive, send: Send, request_id: str, api_id: str, path: str,
                    by_host: bool) -> None:
        status, headers, body = await self._answer(scope, receive, request_id, api_id, path, by_host)
        headers.append((b"apigw-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive, request_id: str, api_id: str, path: str,
                      by_host: bool) -> Answer:
        api = self.engine.http_api(api_id)
        if api is None:
            return _message(404, "Not Found")
        if api.doc.get("DisableExecuteApiEndpoint"):
            return _message(403, "Forbidden")
        staged = api.stage_for(path)
        if staged is None:
            return _message(404, "Not Found")
        stage_name, stage, route_path = staged
        method = scope["method"]
        selected = api.route_for(method, route_path)
        if selected is None:
            return _message(404, "Not Found")
        route, params = selected
        integration = self._integration_of(api, route)
        if integration is None:
            return _message(404, "Not Found")
        body = await read_limited(receive, MAX_REQUEST_BYTES)
        if body is None:
            return _message(413, "Request Entity Too Large")
        target = lambda_target(integration.get("IntegrationUri", ""))
        settings = self.engine.settings
        if target is None or target.region != settings.region or target.account != settings.account_id:
            log.info("HTTP API %s: integration %s names no function of this server", api_id, integration.get("IntegrationId"))
            return _message(500, "Internal Server Error")
        ref = FunctionRef(target.name, target.qualifier)
        if self.engine.identity.enabled and not self._permitted(api_id, stage_name, method, route, ref, integration):
            log.info("HTTP API %s: the policy of %s does not allow %s to invoke it for %s", api_id,
                     self.engine.arns.function(ref.name, ref.qualifier), SERVICE,
                     source_arn(settings.region, settings.account_id, api_id, stage_name, method, route))
            return _message(500, "Internal Server Error")
        payload = self._event(scope, request_id, api_id, path, by_host, method, body, route, params, stage_name, stage,
                              integration.get("PayloadFormatVersion") == "1.0")
        if len(payload) > MAX_SYNC_PAYLOAD:
            return _message(413, "Request Entity Too Large")
        timeout_ms = integration.get("TimeoutInMillis") or TIMEOUT_DEFAULT_MS
        return await self._invoke(api_id, ref, payload, request_id, timeout_ms / 1000, integration.get("PayloadFormatVersion"))

    @staticmethod
    def _integration_of(api: HttpApi, route: RouteSpec) -> dict[str, Any] | None:
        target = api.routes.get(route.route_id, {}).get("Target") or ""
        prefix, _, integration_id = target.partition("/")
        return api.integrations.get(integration_id) if prefix == "integrations" else None

    def _event(self, scope: Scope, request_id: str, api_id: str, path: str, by_host: bool, method: str, body: bytes,
               route: RouteSpec, params: dict[str, str], stage_name: str, stage: dict[str, Any], v1: bool) -> bytes:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        names = {name.lower() for name, _ in headers}
        client = scope.get("client") or ("127.0.0.1", 0)
        server = scope.get("server") or ("127.0.0.1", 0)
        for name, value in (("x-forwarded-for", client[0]), ("x-forwarded-port", str(server[1])),
                            ("x-forwarded-proto", scope.get("scheme", "http"))):
            if name not in names:
                headers.append((name, value))
        host = next((v for k, v in headers if k.lower() == "host"), "")
        domain = host_name(host) if by_host and host else self.apis.host(api_id)
        query = scope.get("query_string", b"").decode("latin-1")
        request = HttpRequest(method, path, query, headers, body, client[0], f"HTTP/{scope.get('http_version', '1.1')}",
                              int(time.time() * 1000))
        context = RequestContext(self.engine.settings.account_id, api_id, domain, request_id, route_key=route.key,
                                 stage=stage_name, path_parameters=params or None,
                                 stage_variables=dict(stage.get("StageVariables") or {}) or None)
        event = event_v1(request, context, route.path) if v1 else event_v2(request, context, for_function_url=False)
        return orjson.dumps(event)

    def _permitted(self, api_id: str, stage: str, method: str, route: RouteSpec, ref: FunctionRef,
                   integration: dict[str, Any]) -> bool:
        """Whether API Gateway may invoke the function for this request: through the integration's
        credentials role, or (none given) the function's resource-based policy."""
        engine = self.engine
        settings = engine.settings
        resource = engine.arns.function(ref.name, ref.qualifier)
        policy = engine.resource_policy(resource)
        role_arn = integration.get("CredentialsArn")
        if role_arn:
            directory = engine.identity.directory
            name = directory.role_name_of(role_arn)
            if name is None:
                return False
            role = directory.roles[name]
            if not evaluate(APIGATEWAY, "sts:AssumeRole", role_arn, (), role.trust).allowed:
                return False
            principal = directory.role_principal(role.record, "apigateway")
            return engine.identity.access.allowed(principal, "lambda:InvokeFunction", resource, policy)
        context = {
            "aws:sourcearn": source_arn(settings.region, settings.account_id, api_id, stage, method, route),
            "aws:sourceaccount": settings.account_id,
        }
        return evaluate(APIGATEWAY, "lambda:InvokeFunction", resource, (), policy, context).allowed

    async def _invoke(self, api_id: str, ref: FunctionRef, payload: bytes, request_id: str, timeout_s: float,
                      payload_format: str | None) -> Answer:
        task = asyncio.ensure_future(self.engine.invoke(ref, payload, InvokeOptions(request_id)))
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:  # API Gateway stops waiting; the function runs on (as on AWS)
            self._running.add(task)
            task.add_done_callback(self._finished_late)
            log.info("HTTP API %s: %s did not answer within the integration timeout (%g s)", api_id, ref.name, timeout_s)
            return _message(503, "Service Unavailable")
        try:
            result: InvocationResult | None = task.result()
        except LambdaError as error:  # a throttle, a missing function, …: the integration failed
            log.info("HTTP API %s: invoking %s failed: %s: %s", api_id, ref.name, error.code, error.message)
            return _message(500, "Internal Server Error")
        except Exception:  # Squall's own failure: still API Gateway's answer, and the traceback in the log
            log.exception("HTTP API %s: invoking %s failed", api_id, ref.name)
            return _message(500, "Internal Server Error")
        assert result is not None
        if result.function_error:
            return _message(500, "Internal Server Error")
        try:
            response = response_v1(result.payload) if payload_format == "1.0" else response_v2(result.payload)
        except BadFunctionResponse as error:
            log.info("HTTP API %s: the answer of %s cannot be sent: %s", api_id, ref.name, error)
            return _message(500, "Internal Server Error")
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        return response.status, headers, response.body

    def _finished_late(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("an invocation that outlived its HTTP API's timeout failed: %s", task.exception())
