"""What the server holds now for a stack: read once, before the plan, through the AWS APIs.

A stack owns the functions tagged ``squall:stack=<stack>`` (``squall:logical-id`` says which
resource of the template each is). What hangs off a function is found from it: its aliases,
URL, concurrency settings, its EventBridge rules and Scheduler schedules (named
``<function>-<EventId>``), its event source mappings, and its role (``<...>-role``, when the
template gave ``Policies``). Layers are looked up by name.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

STACK_TAG = "squall:stack"
LOGICAL_ID_TAG = "squall:logical-id"


def code_sha256(code: bytes) -> str:
    """Lambda's ``CodeSha256``: the package's SHA-256, base64."""
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


@dataclass
class FunctionState:
    name: str
    config: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    provisioned: dict[str, int] = field(default_factory=dict)  # alias -> requested
    url: dict[str, Any] | None = None  # of the alias when the template has one, else of $LATEST
    reserved: int | None = None
    invoke_config: dict[str, Any] | None = None
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {Rule, Targets}
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    sns: dict[str, str] = field(default_factory=dict)  # topic ARN -> Squall's trigger id


@dataclass
class LayerState:
    name: str
    version_arn: str
    sha256: str
    settings: dict[str, Any]


@dataclass
class Current:
    functions: dict[str, FunctionState] = field(default_factory=dict)  # logical id -> state
    foreign: dict[str, str] = field(default_factory=dict)  # function name -> its stack tag (or "")
    layers: dict[str, LayerState] = field(default_factory=dict)  # layer name -> latest version
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)  # role name -> {policy name: document}
    apis: dict[str, dict[str, Any]] = field(default_factory=dict)  # API name -> {ApiId, Routes: {key: route}}


class Clients:
    """boto3 clients for the services a stack touches (``lam``, ``events``, ...), made on first use."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def __getattr__(self, service: str) -> Any:
        name = {"lam": "lambda"}.get(service, service)
        return self.connection._client(name)


def read_current(clients: Any, stack: Any) -> Current:
    from squall.cli.output import step

    current = Current()
    wanted = {spec.name for spec in stack.functions.values()}
    with step(f"Reading the current state of stack {stack.name}") as reading:
        lam = clients.lam
        for page in lam.get_paginator("list_functions").paginate():
            for config in page["Functions"]:
                tags = lam.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
                owner = tags.get(STACK_TAG)
                if owner == stack.name and tags.get(LOGICAL_ID_TAG):
                    current.functions[tags[LOGICAL_ID_TAG]] = _function_state(clients, config, tags, stack)
                elif config["FunctionName"] in wanted:
                    current.foreign[config["FunctionName"]] = owner or ""
        for layer in stack.layers.values():
            state = _layer_state(lam, layer.name)
            if state is not None:
                current.layers[layer.name] = state
        for function in stack.functions.values():
            if function.role_name:
                role = _role_state(clients.iam, function.role_name)
                if role is not None:
                    current.roles[function.role_name] = role
        if any(e.kind in ("HttpApi", "Api") for f in stack.functions.values() for e in f.events) or current.functions:
            current.apis = _apis(clients.apigatewayv2, stack.name)
        reading.result = f"{len(current.functions)} function(s) in the stack"
    return current


def _function_state(clients: Any, config: dict[str, Any], tags: dict[str, str], stack: Any) -> FunctionState:
    lam = clients.lam
    name = config["FunctionName"]
    state = FunctionState(name, lam.get_function_configuration(FunctionName=name), tags)
    for page in lam.get_paginator("list_aliases").paginate(FunctionName=name):
        for alias in page["Aliases"]:
            state.aliases[alias["Name"]] = alias
    for alias in state.aliases:
        try:
            found = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=alias)
            state.provisioned[alias] = found["RequestedProvisionedConcurrentExecutions"]
        except lam.exceptions.ProvisionedConcurrencyConfigNotFoundException:
            pass
    spec = stack.functions.get(tags.get(LOGICAL_ID_TAG, ""))
    qualifier = {"Qualifier": spec.alias} if spec is not None and spec.alias and spec.alias in state.aliases else {}
    try:
        state.url = lam.get_function_url_config(FunctionName=name, **qualifier)
        state.url["Qualifier"] = qualifier.get("Qualifier")
    except lam.exceptions.ResourceNotFoundException:
        pass
    state.reserved = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    try:
        state.invoke_config = lam.get_function_event_invoke_config(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        pass
    for page in lam.get_paginator("list_event_source_mappings").paginate(FunctionName=name):
        state.mappings.extend(page["EventSourceMappings"])
    if hasattr(clients, "connection"):  # Squall's own triggers: SNS subscriptions it made
        from urllib.parse import quote

        from squall.cli.client import fetch_json

        connection = clients.connection
        rows = fetch_json(connection.endpoint, f"/squall/triggers?function={quote(name, safe='')}", 10.0,
                          region=connection.region).get("triggers", [])
        state.sns = {row["source"]: row["id"] for row in rows if row.get("kind") == "sns"}
    events = clients.events
    for rule in events.list_rules(NamePrefix=f"{name}-").get("Rules", []):
        targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        if any(t["Arn"].split(":")[6] == name for t in targets if t["Arn"].count(":") >= 6):
            state.rules[rule["Name"]] = {"Rule": rule, "Targets": targets}
    scheduler = clients.scheduler
    for page in scheduler.get_paginator("list_schedules").paginate(NamePrefix=f"{name}-"):
        for found in page["Schedules"]:
            state.schedules[found["Name"]] = scheduler.get_schedule(Name=found["Name"])
    return state


def api_names(stack_name: str) -> dict[str, str]:
    """The HTTP API each kind of event goes to: one per stack and kind, as SAM's implicit APIs."""
    return {"HttpApi": f"{stack_name}-HttpApi", "Api": f"{stack_name}-Api"}


def _apis(apigw: Any, stack_name: str) -> dict[str, dict[str, Any]]:
    wanted = set(api_names(stack_name).values())
    found: dict[str, dict[str, Any]] = {}
    for api in apigw.get_apis().get("Items", []):
        if api["Name"] not in wanted:
            continue
        integrations = {i["IntegrationId"]: i for i in apigw.get_integrations(ApiId=api["ApiId"]).get("Items", [])}
        routes = {}
        for route in apigw.get_routes(ApiId=api["ApiId"]).get("Items", []):
            integration = integrations.get(str(route.get("Target", "")).removeprefix("integrations/"), {})
            routes[route["RouteKey"]] = {"RouteId": route["RouteId"], "IntegrationId": integration.get("IntegrationId"),
                                         "Target": integration.get("IntegrationUri")}
        found[api["Name"]] = {"ApiId": api["ApiId"], "ApiEndpoint": api.get("ApiEndpoint"), "Routes": routes}
    return found


def _layer_state(lam: Any, name: str) -> LayerState | None:
    try:
        versions = lam.list_layer_versions(LayerName=name).get("LayerVersions", [])
    except lam.exceptions.ResourceNotFoundException:
        return None
    if not versions:
        return None
    latest = max(versions, key=lambda v: v["Version"])
    got = lam.get_layer_version_by_arn(Arn=latest["LayerVersionArn"])
    settings = {key: got[key] for key in ("Description", "CompatibleRuntimes", "LicenseInfo",
                                          "CompatibleArchitectures") if got.get(key)}
    return LayerState(name, latest["LayerVersionArn"], got["Content"]["CodeSha256"], settings)


def _role_state(iam: Any, name: str) -> dict[str, Any] | None:
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return None
    policies = {}
    for policy in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
        policies[policy] = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
    return policies
