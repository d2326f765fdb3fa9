"""HTTP APIs (API Gateway v2, ``ProtocolType`` HTTP): the management operations with API
Gateway's checks, the in-memory APIs every request through ``execute-api`` reads, and route
selection (a pure function, :func:`select_route`).

An API is a document plus its integrations (Lambda proxy only: ``AWS_PROXY`` to a function,
version or alias ARN, payload format 1.0 or 2.0), routes (``GET /items/{id}``,
``ANY /{proxy+}``, ``$default``) and stages (``$default`` or named). Every stage serves the
API's current routes, as an auto-deployed stage does. Its address is
``http://<api-id>.execute-api.<region>.localhost:<port>/`` (any ``*.localhost`` name reaches
this machine), or ``http://127.0.0.1:<port>/execute-api/<api-id>/…`` for clients that cannot
send that ``Host``. The HTTP side is ``api_gateway.py``; the API at ``/v2/apis`` is
``squall/api/apigateway_api.py``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import secrets
import string
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from urllib.parse import unquote

from squall.arn import Arns
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.errors import LambdaError
from squall.store.http_apis import HttpApiRepository, StoredApi

Doc = dict[str, Any]

METHODS = ("ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
PATH_PREFIX = "/execute-api/"  # the fallback that needs no Host: /execute-api/<api-id>/<path>
DEFAULT = "$default"
ROUTE_SELECTION = "$request.method $request.path"
PAYLOAD_FORMATS = ("1.0", "2.0")
TIMEOUT_DEFAULT_MS = 30_000  # the most an HTTP API waits for an integration (and its default)
STATE_KIND = "http_apis"  # the bus's StateChanged kind of this cache (name: the API id)
_ALPHABET = string.ascii_lowercase + string.digits
# The check AWS reports in its message ("One or more path parts appear to be invalid. …").
_PART_SOURCE = r"^(\{[\w.:-]+\+?\}|[a-zA-Z0-9.:_-]+)$"
_PART = re.compile(_PART_SOURCE, re.ASCII)  # \w as Java reads it
_STAGE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_LAMBDA_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:(?P<name>[a-zA-Z0-9_-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?"
)
_INVOCATION_PATH = re.compile(r"arn:aws[a-zA-Z-]*:apigateway:[a-z0-9-]+:lambda:path/2015-03-31/functions/(?P<arn>.+)/invocations")


# ---- API Gateway's errors (the management API answers them in its own shape) -----------------------
class BadRequest(LambdaError):
    code = "BadRequestException"


class NotFound(LambdaError):
    code = "NotFoundException"


class Conflict(LambdaError):
    code = "ConflictException"


class RouteKeyError(ValueError):
    """A route key API Gateway refuses (the message is its BadRequestException's)."""


# ---- route keys and route selection (pure) ---------------------------------------------------------
@dataclass(frozen=True)
class RouteSpec:
    """A parsed route key: ``$default`` (method None), or a method and the path's parts, each a
    literal, a variable ``{name}`` or (last only) a greedy variable ``{name+}``."""

    key: str
    method: str | None
    parts: tuple[str, ...] = ()
    route_id: str = ""

    @property
    def path(self) -> str:
        """``/items/{id}`` (what payload 1.0 calls the resource), or ``$default``."""
        return "/" + "/".join(self.parts) if self.method is not None else DEFAULT

    @property
    def greedy(self) -> bool:
        return bool(self.parts) and self.parts[-1].endswith("+}")


def _is_variable(part: str) -> bool:
    return part.startswith("{")


def _variable(part: str) -> str:
    return part[1:-1].rstrip("+")


def parse_route_key(key: str) -> RouteSpec:
    """A route key of an HTTP API, or :class:`RouteKeyError` in API Gateway's words."""
    if key == DEFAULT:
        return RouteSpec(key, None)
    method, _, path = key.partition(" ")
    if method not in METHODS or not path.startswith("/"):
        raise RouteKeyError(
            f"Invalid route key specified: '{key}'. The route key of an HTTP API is $default, or an HTTP method "
            f"({', '.join(METHODS)}), a space and a path that starts with / (for example 'GET /pets/{{petId}}')."
        )
    parts = tuple(path[1:].split("/")) if path != "/" else ()
    if not all(_PART.match(part) for part in parts):
        raise RouteKeyError(
            f"One or more path parts appear to be invalid. Parts are validated against this regular expression: {_PART_SOURCE}"
        )
    if any(part.endswith("+}") for part in parts[:-1]):
        raise RouteKeyError(f"Invalid route key specified: '{key}'. A greedy path variable must be the last part of the path.")
    names = [_variable(part) for part in parts if _is_variable(part)]
    if len(names) != len(set(names)):
        raise RouteKeyError(f"Invalid route key specified: '{key}'. A path variable may appear only once in a path.")
    return RouteSpec(key, method, parts)


def conflicting_variable(new: RouteSpec, old: RouteSpec) -> bool:
    """Whether two routes name the variable at the same level of the same path differently
    (``/pets/{id}`` and ``/pets/{petId}``), which API Gateway refuses (409)."""
    if new.method is None or old.method is None:
        return False
    for a, b in zip(new.parts, old.parts):
        if a == b:
            continue
        return _is_variable(a) and _is_variable(b) and not a.endswith("+}") and not b.endswith("+}")
    return False


def _match(route: RouteSpec, segments: Sequence[str]) -> dict[str, str] | None:
    """The path parameters when ``segments`` (decoded) are on ``route``'s path, else None."""
    parts = route.parts
    if route.greedy:
        fixed = parts[:-1]
        rest = "/".join(segments[len(fixed):])
        if len(segments) <= len(fixed) or not rest:
            return None
    else:
        fixed = parts
        if len(segments) != len(parts):
            return None
    params: dict[str, str] = {}
    for part, segment in zip(fixed, segments):
        if _is_variable(part):
            if not segment:
                return None
            params[_variable(part)] = segment
        elif part != segment:
            return None
    if route.greedy:
        params[_variable(parts[-1])] = rest
    return params


def _rank(route: RouteSpec) -> tuple[Any, ...]:
    """Lower is more specific: full matches before greedy ones (the longer greedy prefix
    first); then literal parts before variables, from the left; then a method before ANY."""
    greedy = route.greedy
    return (greedy, -len(route.parts) if greedy else 0, tuple(_is_variable(p) for p in route.parts), route.method == "ANY")


def select_route(routes: Sequence[RouteSpec], method: str, raw_path: str) -> tuple[RouteSpec, dict[str, str]] | None:
    """The route API Gateway picks for a request, with its path parameters (decoded):
    a full match of path and method, else one with a greedy variable, else ``$default``;
    ``ANY`` matches the methods the path does not define. None: ``{"message":"Not Found"}``."""
    segments = [unquote(s) for s in raw_path[1:].split("/")] if raw_path not in ("", "/") else []
    best: tuple[RouteSpec, dict[str, str]] | None = None
    best_rank: tuple[Any, ...] | None = None
    default: RouteSpec | None = None
    for route in routes:
        if route.method is None:
            default = route
            continue
        if route.method != "ANY" and route.method != method:
            continue
        params = _match(route, segments)
        if params is None:
            continue
        rank = _rank(route)
        if best_rank is None or rank < best_rank:
            best, best_rank = (route, params), rank
    if best is not None:
        return best
    return (default, {}) if default is not None else None


# ---- integration targets -----------------------------------------------------------------------
@dataclass(frozen=True)
class LambdaTarget:
    region: str
    account: str
    name: str
    qualifier: str | None


def lambda_target(uri: str) -> LambdaTarget | None:
    """The function an integration URI names: a function (version, alias) ARN, or API
    Gateway's ``arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations``."""
    wrapped = _INVOCATION_PATH.fullmatch(uri)
    if wrapped is not None:
        uri = wrapped.group("arn")
    found = _LAMBDA_ARN.fullmatch(uri)
    if found is None:
        return None
    qualifier = found.group("qualifier")
    return LambdaTarget(found.group("region"), found.group("account"), found.group("name"),
                        None if qualifier in (None, "$LATEST") else qualifier)


# ---- the APIs --------------------------------------------------------------------------------------
@dataclass
class HttpApi:
    doc: Doc
    integrations: dict[str, Doc] = field(default_factory=dict)
    routes: dict[str, Doc] = field(default_factory=dict)
    stages: dict[str, Doc] = field(default_factory=dict)
    table: tuple[RouteSpec, ...] = ()

    @property
    def api_id(self) -> str:
        return str(self.doc["ApiId"])

    def compile(self) -> None:
        table = []
        for route_id, route in self.routes.items():
            try:
                table.append(replace(parse_route_key(route["RouteKey"]), route_id=route_id))
            except RouteKeyError:  # stored before a stricter check: not served
                continue
        self.table = tuple(table)

    def stage_for(self, raw_path: str) -> tuple[str, Doc, str] | None:
        """(stage name, stage, the path routes see): a stage the first part names, else
        ``$default``; None when neither exists."""
        first, slash, rest = raw_path[1:].partition("/")
        name = unquote(first)
        if name and name != DEFAULT and name in self.stages:
            return name, self.stages[name], "/" + rest if slash else "/"
        if DEFAULT in self.stages:
            return DEFAULT, self.stages[DEFAULT], raw_path
        return None

    def route_for(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        return select_route(self.table, method, path)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(items: list[Doc], key: str, p: Doc) -> Doc:
    """GetApis/GetRoutes/…: items in id order; ``MaxResults`` (a string in the model) per page."""
    limit = p.get("MaxResults")
    if limit is not None:
        if not str(limit).isdigit() or int(limit) < 1:
            raise BadRequest(f"Invalid MaxResults specified: {limit}")
        limit = int(limit)
    items = sorted(items, key=lambda item: str(item[key]))
    token = p.get("NextToken")
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(f"Invalid NextToken specified: {token}") from None
        items = [item for item in items if str(item[key]) > after]
    page = items[:limit] if limit else items
    out: Doc = {"Items": page}
    if len(page) < len(items):
        out["NextToken"] = base64.urlsafe_b64encode(str(page[-1][key]).encode()).decode()
    return out


class HttpApis:
    """The HTTP APIs of the server: the management operations (``call``) and the lookup every
    request through ``execute-api`` makes (``lookup``, a dictionary read)."""

    SERVED = frozenset({
        "CreateApi", "GetApi", "GetApis", "UpdateApi", "DeleteApi",
        "CreateIntegration", "GetIntegration", "GetIntegrations", "UpdateIntegration", "DeleteIntegration",
        "CreateRoute", "GetRoute", "GetRoutes", "UpdateRoute", "DeleteRoute",
        "CreateStage", "GetStage", "GetStages", "UpdateStage", "DeleteStage",
    })

    def __init__(self, repo: HttpApiRepository, arns: Arns, port: Callable[[], int | None],
                 bus: EventBus | None = None) -> None:
        self.repo = repo
        self.arns = arns
        self.port = port
        self.bus = bus
        self._apis: dict[str, HttpApi] = {}
        self._lock = asyncio.Lock()
        if bus is not None:
            bus.subscribe(StateChanged, self._state_changed)
            bus.subscribe(CachesReset, self._caches_reset)

    async def load(self) -> None:
        stored: dict[str, StoredApi] = await asyncio.to_thread(self.repo.all)
        for api_id, found in stored.items():
            self._apis[api_id] = self._built(found)

    @staticmethod
    def _built(found: StoredApi) -> HttpApi:
        api = HttpApi(found.document, found.resources["integration"], found.resources["route"], found.resources["stage"])
        api.compile()
        return api

    # ---- other front ends' changes (squall/cluster/relay.py) ----------------------------------------
    def _state_changed(self, event: StateChanged) -> None:
        assert self.bus is not None
        if event.kind != STATE_KIND or not self.bus.from_remote:  # our own changes are in memory already
            return
        api_id = event.name or None
        self.bus.defer(lambda: self._reread(api_id), f"the HTTP API {api_id}" if api_id else "the HTTP APIs")

    def _caches_reset(self, _event: CachesReset) -> None:
        assert self.bus is not None
        if self.bus.from_remote:
            self.bus.defer(lambda: self._reread(None), "the HTTP APIs")

    async def _reread(self, api_id: str | None) -> None:
        """Replace what memory holds of one API (``api_id``; dropped when gone), or of all, with the database's."""
        async with self._lock:  # not in the middle of one of our operations
            stored: dict[str, StoredApi] = await asyncio.to_thread(self.repo.all)
            if api_id is None:
                self._apis = {found_id: self._built(found) for found_id, found in stored.items()}
                return
            found = stored.get(api_id)
            if found is None:
                self._apis.pop(api_id, None)
            else:
                self._apis[api_id] = self._built(found)

    def lookup(self, api_id: str) -> HttpApi | None:
        return self._apis.get(api_id)

    def host(self, api_id: str) -> str:
        return f"{api_id}.execute-api.{self.arns.region}.localhost"

    def endpoint(self, api_id: str) -> str:
        port = self.port()
        return f"http://{self.host(api_id)}{f':{port}' if port else ''}"

    async def call(self, operation: str, params: Doc) -> Doc | None:
        """One management operation (``operation`` in :attr:`SERVED`), boto3's parameters in,
        boto3's result out (None for the operations without output)."""
        handler = getattr(self, f"_op_{operation}")
        async with self._lock:  # the checks (unique keys, references) and the writes, together
            out: Doc | None = await handler(params)
        if self.bus is not None and not operation.startswith("Get"):  # a change, committed: tell the others
            api_id = params.get("ApiId") or (out or {}).get("ApiId")
            if api_id:
                self.bus.publish(StateChanged(STATE_KIND, str(api_id)))
        return out

    # ---- helpers -------------------------------------------------------------------------------------
    def _api(self, api_id: str) -> HttpApi:
        api = self._apis.get(api_id)
        if api is None:
            raise NotFound(f"Invalid API identifier specified {self.arns.account_id}:{api_id}", resourceType="Api")
        return api

    @staticmethod
    def _integration(api: HttpApi, integration_id: str) -> Doc:
        found = api.integrations.get(integration_id)
        if found is None:
            raise NotFound(f"Invalid Integration identifier specified {integration_id}", resourceType="Integration")
        return found

    @staticmethod
    def _route(api: HttpApi, route_id: str) -> Doc:
        found = api.routes.get(route_id)
        if found is None:
            raise NotFound(f"Invalid Route identifier specified {route_id}", resourceType="Route")
        return found

    @staticmethod
    def _stage(api: HttpApi, name: str) -> Doc:
        found = api.stages.get(name)
        if found is None:
            raise NotFound("Invalid stage identifier specified", resourceType="Stage")
        return found

    @staticmethod
    def _new_id(length: int, taken: Any) -> str:
        for _ in range(1000):  # 36**7 ids: a clash is rare, a thousand in a row impossible in practice
            candidate = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            if candidate not in taken:
                return candidate
        raise LambdaError("Could not choose a new identifier")

    @staticmethod
    def _unmanaged(doc: Doc, what: str) -> None:
        if doc.get("ApiGatewayManaged"):
            raise Conflict(f"This {what} is managed by API Gateway (it was made by quick create): change it with "
                           "UpdateApi, or delete the API.")

    def _api_out(self, api: HttpApi) -> Doc:
        out = copy.deepcopy(api.doc)
        out["ApiEndpoint"] = self.endpoint(api.api_id)
        return out

    @staticmethod
    def _route_key(key: str) -> RouteSpec:
        try:
            return parse_route_key(key)
        except RouteKeyError as error:
            raise BadRequest(str(error)) from None

    @staticmethod
    def _check_target_uri(uri: str | None) -> str:
        if not uri:
            raise BadRequest("An AWS_PROXY integration needs an IntegrationUri: the ARN of a Lambda function, version or alias.")
        if lambda_target(uri) is None:
            if uri.startswith(("http://", "https://")):
                raise BadRequest("Squall serves Lambda (AWS_PROXY) integrations only: HTTP_PROXY targets are not supported.")
            raise BadRequest(f"Invalid integration URI specified: {uri}. Give the ARN of a Lambda function, version or alias.")
        return uri

    # ---- APIs ----------------------------------------------------------------------------------------
    async def _op_CreateApi(self, p: Doc) -> Doc:
        if p["ProtocolType"] != "HTTP":
            raise BadRequest("Squall serves HTTP APIs only: ProtocolType must be HTTP (WEBSOCKET APIs are not supported).")
        selection = p.get("RouteSelectionExpression")
        if selection not in (None, ROUTE_SELECTION, "${request.method} ${request.path}"):
            raise BadRequest("The route selection expression of an HTTP API must be ${request.method} ${request.path}.")
        target, route_key, credentials = p.get("Target"), p.get("RouteKey"), p.get("CredentialsArn")
        if target is None and (route_key is not None or credentials is not None):
            raise BadRequest("RouteKey and CredentialsArn are part of quick create: they need a Target.")
        api_id = self._new_id(10, self._apis)
        now = _now()
        doc: Doc = {
            "ApiId": api_id,
            "ApiKeySelectionExpression": "$request.header.x-api-key",
            "CreatedDate": now,
            "DisableExecuteApiEndpoint": bool(p.get("DisableExecuteApiEndpoint")),
            "IpAddressType": p.get("IpAddressType") or "ipv4",
            "Name": p["Name"],
            "ProtocolType": "HTTP",
            "RouteSelectionExpression": ROUTE_SELECTION,
            "Tags": dict(p.get("Tags") or {}),
        }
        for key in ("Description", "Version", "CorsConfiguration"):
            if p.get(key) is not None:
                doc[key] = p[key]
        api = HttpApi(doc)
        parts: list[tuple[str, str, Doc]] = []
        if target is not None:  # quick create: an integration, its route and an auto-deployed $default stage
            spec = self._route_key(route_key or DEFAULT)
            integration_id = self._new_id(7, ())
            integration: Doc = {
                "ApiGatewayManaged": True, "ConnectionType": "INTERNET", "IntegrationId": integration_id,
                "IntegrationMethod": "POST", "IntegrationType": "AWS_PROXY", "IntegrationUri": self._check_target_uri(target),
                "PayloadFormatVersion": "2.0", "TimeoutInMillis": TIMEOUT_DEFAULT_MS,
            }
            if credentials is not None:
                integration["CredentialsArn"] = credentials
            route_id = self._new_id(7, {integration_id})
            route: Doc = {"ApiGatewayManaged": True, "ApiKeyRequired": False, "AuthorizationType": "NONE",
                          "RouteId": route_id, "RouteKey": spec.key, "Target": f"integrations/{integration_id}"}
            stage = self._stage_doc({"StageName": DEFAULT, "AutoDeploy": True}, now)
            stage["ApiGatewayManaged"] = True
            api.integrations[integration_id], api.routes[route_id], api.stages[DEFAULT] = integration, route, stage
            parts = [("integration", integration_id, integration), ("route", route_id, route), ("stage", DEFAULT, stage)]
        await asyncio.to_thread(self.repo.create_api, api_id, doc, parts)
        api.compile()
        self._apis[api_id] = api
        return self._api_out(api)

    async def _op_GetApi(self, p: Doc) -> Doc:
        return self._api_out(self._api(p["ApiId"]))

    async def _op_GetApis(self, p: Doc) -> Doc:
        return _page([self._api_out(api) for api in self._apis.values()], "ApiId", p)

    async def _op_UpdateApi(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        doc = copy.deepcopy(api.doc)
        for key in ("Name", "Description", "Version", "CorsConfiguration", "DisableExecuteApiEndpoint", "IpAddressType"):
            if p.get(key) is not None:
                doc[key] = p[key]
        selection = p.get("RouteSelectionExpression")
        if selection not in (None, ROUTE_SELECTION, "${request.method} ${request.path}"):
            raise BadRequest("The route selection expression of an HTTP API must be ${request.method} ${request.path}.")
        changed: list[tuple[str, str, Doc]] = []
        if p.get("Target") is not None or p.get("RouteKey") is not None or p.get("CredentialsArn") is not None:
            # quick create's resources follow the API's Target, RouteKey and CredentialsArn
            managed = [(k, i) for k, i in api.integrations.items() if i.get("ApiGatewayManaged")]
            managed_routes = [(k, r) for k, r in api.routes.items() if r.get("ApiGatewayManaged")]
            if not managed or not managed_routes:
                raise BadRequest("Target, RouteKey and CredentialsArn can be updated only on an API made by quick create.")
            (integration_id, integration), (route_id, route) = managed[0], managed_routes[0]
            integration, route = dict(integration), dict(route)
            if p.get("Target") is not None:
                integration["IntegrationUri"] = self._check_target_uri(p["Target"])
            if p.get("CredentialsArn") is not None:
                integration["CredentialsArn"] = p["CredentialsArn"]
            if p.get("RouteKey") is not None:
                spec = self._route_key(p["RouteKey"])
                self._check_route_unique(api, spec, route_id)
                route["RouteKey"] = spec.key
            changed = [("integration", integration_id, integration), ("route", route_id, route)]
        await asyncio.to_thread(self._write_api, api.api_id, doc, changed)
        api.doc = doc
        for kind, resource_id, resource in changed:
            (api.integrations if kind == "integration" else api.routes)[resource_id] = resource
        api.compile()
        return self._api_out(api)

    def _write_api(self, api_id: str, doc: Doc, parts: list[tuple[str, str, Doc]]) -> None:
        self.repo.update_api(api_id, doc)
        if parts:
            self.repo.put_many(api_id, parts)

    async def _op_DeleteApi(self, p: Doc) -> None:
        api = self._api(p["ApiId"])
        await asyncio.to_thread(self.repo.delete_api, api.api_id)
        self._apis.pop(api.api_id, None)

    # ---- integrations --------------------------------------------------------------------------------
    def _integration_fields(self, p: Doc, doc: Doc) -> Doc:
        unsupported = [k for k in ("RequestParameters", "ResponseParameters", "RequestTemplates", "TlsConfig",
                                   "ConnectionId", "IntegrationSubtype", "TemplateSelectionExpression") if p.get(k)]
        if unsupported:
            raise BadRequest(f"Squall does not support {', '.join(unsupported)} on HTTP API integrations.")
        if p.get("ConnectionType") not in (None, "INTERNET"):
            raise BadRequest("Squall's HTTP APIs reach Lambda directly: ConnectionType must be INTERNET.")
        if p.get("IntegrationType") is not None:
            kind = p["IntegrationType"]
            if kind in ("AWS", "HTTP", "MOCK"):
                raise BadRequest("Currently, an API with a protocol type of HTTP may only be associated with proxy "
                                 "integrations (AWS_PROXY, HTTP_PROXY)")
            if kind != "AWS_PROXY":
                raise BadRequest("Squall serves Lambda (AWS_PROXY) integrations only: HTTP_PROXY is not supported.")
            doc["IntegrationType"] = kind
        if p.get("IntegrationUri") is not None:
            doc["IntegrationUri"] = self._check_target_uri(p["IntegrationUri"])
        if p.get("PayloadFormatVersion") is not None:
            if p["PayloadFormatVersion"] not in PAYLOAD_FORMATS:
                raise BadRequest(f"Invalid payload format version specified: {p['PayloadFormatVersion']}. "
                                 "A Lambda proxy integration of an HTTP API takes 1.0 or 2.0.")
            doc["PayloadFormatVersion"] = p["PayloadFormatVersion"]
        if p.get("IntegrationMethod") is not None and p["IntegrationMethod"] != "POST":
            raise BadRequest("A Lambda proxy integration is invoked with POST: IntegrationMethod must be POST.")
        for key in ("TimeoutInMillis", "Description", "CredentialsArn", "ContentHandlingStrategy", "PassthroughBehavior"):
            if p.get(key) is not None:
                doc[key] = p[key]
        return doc

    async def _op_CreateIntegration(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        integration_id = self._new_id(7, api.integrations.keys() | api.routes.keys())
        doc = self._integration_fields(p, {"ConnectionType": "INTERNET", "IntegrationId": integration_id,
                                            "IntegrationMethod": "POST", "TimeoutInMillis": TIMEOUT_DEFAULT_MS})
        self._check_target_uri(doc.get("IntegrationUri"))
        if "PayloadFormatVersion" not in doc:
            raise BadRequest("PayloadFormatVersion is required for a Lambda proxy integration of an HTTP API: 1.0 or 2.0.")
        await asyncio.to_thread(self.repo.put, api.api_id, "integration", integration_id, doc)
        api.integrations[integration_id] = doc
        return copy.deepcopy(doc)

    async def _op_GetIntegration(self, p: Doc) -> Doc:
        return copy.deepcopy(self._integration(self._api(p["ApiId"]), p["IntegrationId"]))

    async def _op_GetIntegrations(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        return _page([copy.deepcopy(i) for i in api.integrations.values()], "IntegrationId", p)

    async def _op_UpdateIntegration(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        current = self._integration(api, p["IntegrationId"])
        self._unmanaged(current, "integration")
        doc = self._integration_fields(p, copy.deepcopy(current))
        await asyncio.to_thread(self.repo.put, api.api_id, "integration", doc["IntegrationId"], doc)
        api.integrations[doc["IntegrationId"]] = doc
        return copy.deepcopy(doc)

    async def _op_DeleteIntegration(self, p: Doc) -> None:
        api = self._api(p["ApiId"])
        current = self._integration(api, p["IntegrationId"])
        self._unmanaged(current, "integration")
        target = f"integrations/{current['IntegrationId']}"
        users = sorted(r["RouteKey"] for r in api.routes.values() if r.get("Target") == target)
        if users:
            raise Conflict(f"Integration {current['IntegrationId']} is the target of route(s) {', '.join(users)}: "
                           "change or delete those routes first.")
        await asyncio.to_thread(self.repo.delete, api.api_id, "integration", current["IntegrationId"])
        api.integrations.pop(current["IntegrationId"], None)

    # ---- routes --------------------------------------------------------------------------------------
    @staticmethod
    def _check_route_unique(api: HttpApi, spec: RouteSpec, route_id: str | None) -> None:
        for other in api.table:
            if other.route_id == route_id:
                continue
            if other.key == spec.key:
                raise Conflict(f"Route with key {spec.key} already exists for this API")
            if conflicting_variable(spec, other):
                raise Conflict(f'The provided route key "{spec.key}" has a conflicting variable on the same '
                               f'hierarchical level as "{other.key}"')

    def _route_fields(self, api: HttpApi, p: Doc, doc: Doc) -> Doc:
        if p.get("Target") is not None:
            target = p["Target"]
            prefix, _, integration_id = target.partition("/")
            if prefix != "integrations" or not integration_id:
                raise BadRequest(f"Invalid target specified: {target}. A route's target is integrations/<integration id>.")
            self._integration(api, integration_id)
            doc["Target"] = target
        if p.get("AuthorizationType") not in (None, "NONE"):
            raise BadRequest("Squall's HTTP APIs serve routes without authorization only: AuthorizationType must be NONE.")
        if p.get("AuthorizerId") or p.get("AuthorizationScopes"):
            raise BadRequest("Squall's HTTP APIs do not support authorizers.")
        if p.get("ApiKeyRequired"):
            raise BadRequest("API keys are not supported for HTTP APIs.")
        for key in ("OperationName", "RequestParameters"):
            if p.get(key) is not None:
                doc[key] = p[key]
        return doc

    async def _op_CreateRoute(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        spec = self._route_key(p["RouteKey"])
        self._check_route_unique(api, spec, None)
        route_id = self._new_id(7, api.integrations.keys() | api.routes.keys())
        doc = self._route_fields(api, p, {"ApiKeyRequired": False, "AuthorizationType": "NONE", "RouteId": route_id,
                                          "RouteKey": spec.key})
        await asyncio.to_thread(self.repo.put, api.api_id, "route", route_id, doc)
        api.routes[route_id] = doc
        api.compile()
        return copy.deepcopy(doc)

    async def _op_GetRoute(self, p: Doc) -> Doc:
        return copy.deepcopy(self._route(self._api(p["ApiId"]), p["RouteId"]))

    async def _op_GetRoutes(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        return _page([copy.deepcopy(r) for r in api.routes.values()], "RouteId", p)

    async def _op_UpdateRoute(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        current = self._route(api, p["RouteId"])
        self._unmanaged(current, "route")
        doc = copy.deepcopy(current)
        if p.get("RouteKey") is not None:
            spec = self._route_key(p["RouteKey"])
            self._check_route_unique(api, spec, current["RouteId"])
            doc["RouteKey"] = spec.key
        doc = self._route_fields(api, p, doc)
        await asyncio.to_thread(self.repo.put, api.api_id, "route", doc["RouteId"], doc)
        api.routes[doc["RouteId"]] = doc
        api.compile()
        return copy.deepcopy(doc)

    async def _op_DeleteRoute(self, p: Doc) -> None:
        api = self._api(p["ApiId"])
        current = self._route(api, p["RouteId"])
        self._unmanaged(current, "route")
        await asyncio.to_thread(self.repo.delete, api.api_id, "route", current["RouteId"])
        api.routes.pop(current["RouteId"], None)
        api.compile()

    # ---- stages --------------------------------------------------------------------------------------
    @staticmethod
    def _stage_doc(p: Doc, now: str) -> Doc:
        doc: Doc = {
            "AutoDeploy": bool(p.get("AutoDeploy")),
            "CreatedDate": now,
            "DefaultRouteSettings": {"DetailedMetricsEnabled": False},
            "LastUpdatedDate": now,
            "RouteSettings": {},
            "StageName": p["StageName"],
            "StageVariables": {},
            "Tags": {},
        }
        return doc

    @staticmethod
    def _stage_fields(p: Doc, doc: Doc) -> Doc:
        variables = p.get("StageVariables")
        if variables is not None:
            for name in variables:
                if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    raise BadRequest(f"Stage variable names can contain only alphanumeric and underscore characters: {name}")
            doc["StageVariables"] = {**doc.get("StageVariables", {}), **variables}
        if p.get("AutoDeploy") is not None:
            doc["AutoDeploy"] = bool(p["AutoDeploy"])
        for key in ("Description", "DefaultRouteSettings", "RouteSettings", "AccessLogSettings", "DeploymentId"):
            if p.get(key) is not None:
                doc[key] = p[key]
        if p.get("Tags") is not None:
            doc["Tags"] = dict(p["Tags"])
        return doc

    async def _op_CreateStage(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        name = p["StageName"]
        if name != DEFAULT and not _STAGE_NAME.fullmatch(name):
            raise BadRequest(f"Invalid stage name specified: {name}. A stage name is $default, or letters, digits, "
                             "hyphens and underscores.")
        if name in api.stages:
            raise Conflict(f"Stage {name} already exists")
        doc = self._stage_fields(p, self._stage_doc(p, _now()))
        await asyncio.to_thread(self.repo.put, api.api_id, "stage", name, doc)
        api.stages[name] = doc
        return copy.deepcopy(doc)

    async def _op_GetStage(self, p: Doc) -> Doc:
        return copy.deepcopy(self._stage(self._api(p["ApiId"]), p["StageName"]))

    async def _op_GetStages(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        return _page([copy.deepcopy(s) for s in api.stages.values()], "StageName", p)

    async def _op_UpdateStage(self, p: Doc) -> Doc:
        api = self._api(p["ApiId"])
        current = self._stage(api, p["StageName"])
        doc = self._stage_fields(p, copy.deepcopy(current))
        doc["LastUpdatedDate"] = _now()
        await asyncio.to_thread(self.repo.put, api.api_id, "stage", doc["StageName"], doc)
        api.stages[doc["StageName"]] = doc
        return copy.deepcopy(doc)

    async def _op_DeleteStage(self, p: Doc) -> None:
        api = self._api(p["ApiId"])
        current = self._stage(api, p["StageName"])
        self._unmanaged(current, "stage")
        await asyncio.to_thread(self.repo.delete, api.api_id, "stage", current["StageName"])
        api.stages.pop(current["StageName"], None)
