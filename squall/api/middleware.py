"""The HTTP layer's middleware chain and router.

Every request goes through an ordered chain of middlewares, then to the router::

    errors → browser guard → authentication (SigV4) → router: by header (JSON-protocol services
    such as CloudWatch Logs), by path (Squall's own endpoints), by form (IAM and STS, query
    protocol), by host (function URLs, later), or by operation (the Lambda REST API, from its model)

A middleware is ``async (request, next) -> response``. Adding a protocol is adding a route
(something that claims requests and answers them), not editing a chain of ifs. The error
middleware is the one place where exceptions become Lambda errors.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, Sequence

from squall.api.protocol import HttpResponse
from squall.errors import LambdaError, ServiceError, ServiceUnavailable, UnknownOperation

log = logging.getLogger("squall.api")


@dataclass
class Request:
    method: str
    path: str  # raw, percent-encoded, without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_id: str
    base_url: str  # how the client reached us, e.g. http://127.0.0.1:9000
    state: dict[str, object] = field(default_factory=dict)  # what middlewares learn (the caller, …)


Handler = Callable[[Request], Awaitable[HttpResponse]]
Middleware = Callable[[Request, Handler], Awaitable[HttpResponse]]


def chain(middlewares: Sequence[Middleware], endpoint: Handler) -> Handler:
    """One handler that runs ``middlewares`` in order around ``endpoint``."""
    handler = endpoint
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, following: Handler) -> Handler:
    async def handle(request: Request) -> HttpResponse:
        return await middleware(request, following)

    return handle


class Route(Protocol):
    """A service the router may give a request to. It may also say which signing name its
    requests are scoped to (``service(request)``, "lambda" otherwise) and render errors in
    its own protocol (``render_error(request, error)``, Lambda's otherwise)."""

    def claims(self, request: Request) -> bool: ...

    async def handle(self, request: Request) -> HttpResponse: ...


class Router:
    """The end of the chain: the first route that claims a request answers it."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def route_for(self, request: Request) -> Route | None:
        found = request.state.get("route", False)
        if found is False:
            found = next((route for route in self.routes if route.claims(request)), None)
            request.state["route"] = found
        return found  # type: ignore[return-value]

    def service_of(self, request: Request) -> str:
        route = self.route_for(request)
        service = getattr(route, "service", "lambda")
        return service(request) if callable(service) else service

    async def __call__(self, request: Request) -> HttpResponse:
        route = self.route_for(request)
        if route is None:
            raise UnknownOperation(f"Unknown operation {request.method} {request.path}")
        return await route.handle(request)


@dataclass(frozen=True)
class PathRoute:
    """Squall's own endpoints: an exact path (or, with ``prefix``, every path under it)."""

    method: str
    path: str
    handler: Handler
    prefix: bool = False
    service: str = "lambda"

    def claims(self, request: Request) -> bool:
        if request.method != self.method:
            return False
        return request.path.startswith(self.path) if self.prefix else request.path == self.path

    async def handle(self, request: Request) -> HttpResponse:
        return await self.handler(request)


@dataclass(frozen=True)
class TargetRoute:
    """A JSON-protocol service: requests whose ``X-Amz-Target`` starts with ``prefix``."""

    prefix: str
    handler: Handler
    service: str = "lambda"  # the signing name of its requests

    def claims(self, request: Request) -> bool:
        return request.headers.get("x-amz-target", "").startswith(self.prefix)

    async def handle(self, request: Request) -> HttpResponse:
        return await self.handler(request)


def error_middleware(render: Callable[[Request, LambdaError], HttpResponse], grace: Callable[[], float]) -> Middleware:
    """Lambda errors become their modelled responses (a 5xx one also logged under the request
    id); anything unexpected a 500 that names the request id (and the traceback goes to the
    server's log); a request the shutdown cancelled a 503 (a closed connection would look like
    a network failure, which clients retry)."""

    async def errors(request: Request, following: Handler) -> HttpResponse:
        try:
            return await following(request)
        except LambdaError as exc:
            response = render(request, exc)
            # the status the error's protocol gave it (one map, in the renderer); a 501 explains itself
            if response.status >= 500 and response.status != 501:
                _log_server_error(request, exc, response.status)
            return response
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the shutdown grace period is over;
            # answer them, then end normally so the shutdown goes on
            log.warning("request %s (%s %s) stopped by the server's shutdown", request.request_id, request.method, request.path)
            return render(
                request,
                ServiceUnavailable(
                    "Squall is shutting down: this request was still running when the shutdown grace period "
                    f"({grace():g} s) ended, and was stopped before it finished. An invocation may have run "
                    "in part. Retry it once the server is back."
                )
            )
        except Exception:
            log.exception("internal error serving request %s: %s %s", request.request_id, request.method, request.path)
            return render(request, ServiceError(f"Squall hit an internal error; see the server log for request {request.request_id}."))

    return errors


def _log_server_error(request: Request, exc: LambdaError, status: int) -> None:
    """A Lambda error answered with a 5xx, in the log under its request id (its message may
    send the client there); with its cause, on the same line."""
    cause = exc.__cause__
    caused_by = "" if cause is None else " (caused by " + " ".join(f"{type(cause).__name__}: {cause}".split()) + ")"
    log.warning(
        "request %s (%s %s) answered %d %s: %s%s",
        request.request_id, request.method, request.path, status, exc.code, exc.message, caused_by,
    )
