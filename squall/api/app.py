"""The ASGI application: a thin translator between HTTP and the engine facade.

It reads the request into a :class:`Request` (with its request id), runs the middleware
chain (``middleware.py``: errors → … → the router) and writes the response in one go. The
routes: the CloudWatch Logs subset (by ``X-Amz-Target``), Squall's own endpoints (health,
code downloads, the async queue report) and the Lambda REST API (by operation, last).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable

import orjson

from squall.api.apigateway_api import ApiGatewayRoute
from squall.api.authentication import authentication
from squall.api.cloudwatch_api import CloudWatchRoute
from squall.api.events_api import EventsRoute
from squall.api.guard import browser_guard
from squall.api.http_protocol import send_chunks
from squall.api.iam_api import QueryRoute
from squall.api.logs_api import LogsApi, LogsRoute
from squall.api.middleware import (
    Handler,
    Middleware,
    PathRoute,
    Request,
    Router,
    chain,
    error_middleware,
)
from squall.api.operations import CodeLinks, LambdaRoute
from squall.api.protocol import HttpResponse, parse_query
from squall.api.scheduler_api import SchedulerRoute
from squall.console import ConsoleRoute
from squall.engine.engine import Engine
from squall.errors import LambdaError, RequestEntityTooLarge
from squall.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from squall.triggers.api_gateway import ApiGateway
from squall.triggers.url_gateway import UrlGateway

log = logging.getLogger("squall.api")

# Largest request we read: a 50 MB zip, base64-encoded in a JSON body, with room to spare.
MAX_REQUEST_BYTES = 70_167_211

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SquallApp:
    def __init__(self, engine: Engine, links: CodeLinks, middlewares: tuple[Middleware, ...] = ()) -> None:
        self.engine = engine
        self.links = links
        self.lambda_route = LambdaRoute(engine, links)
        settings = engine.settings
        identity = engine.identity
        self.logs_route = LogsRoute(LogsApi(engine.logs()), identity.access, settings.region, settings.account_id)
        self.events_route = EventsRoute(engine.event_rules, identity.access)  # EventBridge (AWSEvents.*)
        self.query_route = QueryRoute(identity.iam, identity.access)
        self.request_ids = RequestIds()
        self.urls = UrlGateway(engine)
        self.http_apis = ApiGateway(engine)
        self.router = router = Router(
            [
                self.logs_route,
                self.events_route,
                CloudWatchRoute(engine.metrics.series, identity.access, engine.clock),  # CloudWatch metrics (AWS/Lambda)
                PathRoute("GET", "/health", self._health),
                ConsoleRoute(identity, settings.region, engine.clock),  # the web console: /console/ (docs/console.md)
                PathRoute("GET", "/metrics", self._metrics),  # Prometheus (signed, or the metrics token)
                PathRoute("GET", "/squall/code/", self._code_download, prefix=True),
                PathRoute("GET", "/squall/queue", self._queue),  # `squall queue`: the async queue per function
                PathRoute("GET", "/squall/cluster", self._cluster),  # `squall cluster status`
                PathRoute("POST", "/squall/triggers/", self._triggers, prefix=True),  # SNS and S3 webhooks
                PathRoute("GET", "/squall/triggers", self._list_triggers),
                PathRoute("DELETE", "/squall/triggers/", self._delete_trigger, prefix=True),  # `squall unsubscribe`
                PathRoute("GET", "/squall/event-sources", self._event_sources),  # `squall event-sources`
                self.query_route,  # IAM and STS: form-encoded requests to /
                ApiGatewayRoute(engine),  # API Gateway v2 (HTTP APIs): /v2/…
                SchedulerRoute(engine),  # EventBridge Scheduler: /schedules, /schedule-groups
                self.lambda_route,
            ]
        )
        errors = error_middleware(self._render_error, lambda: settings.shutdown_grace_seconds)
        gateways = engine.executor.gateways()  # environments call the API there
        guard = browser_guard(settings.host, [*settings.allowed_hosts, *gateways], settings.allowed_origins)
        auth = authentication(identity.directory if identity.enabled else None, settings.region, router.service_of,
                              engine.clock, settings.metrics_token)
        self.handler: Handler = chain((errors, guard, auth, *middlewares), router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.engine.start()
                except Exception as exc:  # report start-up failure to the server and stop
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = self.request_ids.next()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        url = self.urls.url_id(headers.get("host"), raw_path)
        if url is not None:  # a function URL: its own answers, its own auth and CORS
            await self.urls.serve(scope, receive, send, request_id, *url)
            return
        http_api = self.http_apis.api_id(headers.get("host"), raw_path)
        if http_api is not None:  # an HTTP API (execute-api): API Gateway's answers, no SigV4
            await self.http_apis.serve(scope, receive, send, request_id, *http_api)
            return
        query = parse_query(scope.get("query_string", b""))
        request = Request(method, raw_path, query, headers, b"", request_id, _base_url(scope, headers))
        try:
            request.body = await _read_body(receive, headers)
        except RequestEntityTooLarge as exc:
            response = self.lambda_route.protocol.serialize_error(self._too_large(request, exc))
        else:
            response = await self.handler(request)
        await _send(send, response, request_id)

    def _too_large(self, request: Request, exc: LambdaError) -> LambdaError:
        """AWS names the operation in this message."""
        try:
            op, _ = self.lambda_route.protocol.match(request.method, request.path, request.query)
        except LambdaError:
            return exc
        message = f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the {op.name} operation"
        if op.name in ("CreateFunction", "UpdateFunctionCode", "PublishLayerVersion"):
            message += ". A package over 50 MB zipped goes through S3 (Code.S3Bucket and S3Key), or its dependencies into layers"
        return RequestEntityTooLarge(message)

    def _render_error(self, request: Request, error: LambdaError) -> HttpResponse:
        """An error in the protocol of the API the request was for (Lambda's by default)."""
        route = self.router.route_for(request)
        render = getattr(route, "render_error", None)
        if render is not None:
            return render(request, error)
        return self.lambda_route.protocol.serialize_error(error)

    # ---- Squall's own endpoints ------------------------------------------------------
    async def _metrics(self, request: Request) -> HttpResponse:
        """Prometheus' text format; built in a thread (the async queue's counts are a database read)."""
        body = await asyncio.to_thread(self.engine.metrics.exposition)
        return HttpResponse(200, [("Content-Type", METRICS_CONTENT_TYPE)], body)

    async def _health(self, request: Request) -> HttpResponse:
        return _json(200, await asyncio.to_thread(self.engine.health))  # it asks the database

    async def _queue(self, request: Request) -> HttpResponse:
        name = request.query.get("function", [None])[0]
        resource = self.engine.arns.function(name) if name else "*"
        self.engine.identity.access.check(request.state.get("principal"), "lambda:GetFunctionEventInvokeConfig", resource)  # type: ignore[arg-type]
        return _json(200, await self.engine.queue_report(name))

    async def _cluster(self, request: Request) -> HttpResponse:
        self.engine.identity.access.check(request.state.get("principal"), "lambda:GetAccountSettings", "*")  # type: ignore[arg-type]
        return _json(200, await self.engine.cluster_status())

    async def _event_sources(self, request: Request) -> HttpResponse:
        self.engine.identity.access.check(request.state.get("principal"), "lambda:ListEventSourceMappings", "*")  # type: ignore[arg-type]
        return _json(200, {"mappings": self.engine.event_sources_report()})

    async def _triggers(self, request: Request) -> HttpResponse:
        """``/squall/triggers/sns|s3`` (signed): make a trigger; ``…/<id>`` (public): its webhook."""
        notifications = self.engine.notifications
        if request.path in ("/squall/triggers/sns", "/squall/triggers/s3"):
            return await notifications.create(request, request.path.rsplit("/", 1)[-1], self.engine.identity.access)
        kind = request.path.removeprefix("/squall/triggers/")
        if kind in ("mqtt", "nats", "redis-pubsub"):  # pub/sub subjects (squall/triggers/pubsub.py)
            return await self.engine.pubsub.create(request, kind, self.engine.identity.access,
                                                   notifications._function_arn)
        return await notifications.webhook(request)

    async def _delete_trigger(self, request: Request) -> HttpResponse:
        """``DELETE /squall/triggers/<id>`` (signed; ``squall unsubscribe``): the trigger stops and goes.
        Its function's resource-policy statements stay (remove them with RemovePermission)."""
        trigger_id = request.path.removeprefix("/squall/triggers/")
        repo = self.engine.stores.triggers
        trigger = await asyncio.to_thread(repo.get, trigger_id) if "/" not in trigger_id else None
        if trigger is None:
            return _json(404, {"Message": f"No trigger {trigger_id}. List them with `squall triggers`."})
        self.engine.identity.access.check(request.state.get("principal"), "lambda:RemovePermission",  # type: ignore[arg-type]
                                          trigger.function_arn)
        await self.engine.pubsub.forget(trigger_id)
        await asyncio.to_thread(repo.delete, trigger_id)
        return _json(200, {"TriggerId": trigger_id, "Kind": trigger.kind, "FunctionArn": trigger.function_arn,
                           "Deleted": True})

    async def _list_triggers(self, request: Request) -> HttpResponse:
        from squall.triggers.listing import triggers_report

        name = request.query.get("function", [None])[0]
        resource = self.engine.arns.function(name) if name else "*"
        self.engine.identity.access.check(request.state.get("principal"), "lambda:ListEventSourceMappings", "*")  # type: ignore[arg-type]
        self.engine.identity.access.check(request.state.get("principal"), "lambda:GetPolicy", resource)  # type: ignore[arg-type]
        return _json(200, {"triggers": await asyncio.to_thread(triggers_report, self.engine, name)})

    async def _code_download(self, request: Request) -> HttpResponse:
        name = request.path.rsplit("/", 1)[-1]
        sha = name.removesuffix(".zip")
        expires = request.query.get("expires", [""])[0]
        signature = request.query.get("signature", [""])[0]
        if not (len(sha) == 64 and self.links.verify(sha, expires, signature)):
            return HttpResponse(403, [("Content-Type", "text/plain")], b"This code link is invalid or has expired.\n")
        try:
            data = await self.engine.read_code(sha)
        except FileNotFoundError:
            return HttpResponse(404, [("Content-Type", "text/plain")], b"No such code package.\n")
        return HttpResponse(200, [("Content-Type", "application/zip")], data)


class RequestIds:
    """Request ids in UUID version 4 form, from a generator seeded once from the OS.

    They need to be unique, not secret: drawing them from ``random.Random`` (seeded with
    ``os.urandom``) saves the ``getrandom`` system call ``uuid.uuid4()`` makes per request.
    """

    _CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version nibble and the variant bits
    _SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def next(self) -> str:
        h = "%032x" % (self._random.getrandbits(128) & self._CLEAR | self._SET)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge(f"Request must be smaller than {MAX_REQUEST_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise RequestEntityTooLarge(f"Request must be smaller than {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _json(status: int, document: Any) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], orjson.dumps(document))


async def _send(send: Send, response: HttpResponse, request_id: str) -> None:
    headers = [(b"x-amzn-requestid", request_id.encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)
    if response.stream is not None:  # chunked, each piece sent as it comes
        await send_chunks(send, response.status, headers, response.stream)
        return
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
