"""An AWS SAM template read into what Squall should hold: functions, layers, and what is skipped.

``load`` parses YAML (or JSON) with CloudFormation's short-form tags (``!Ref``, ``!GetAtt``,
``!Sub``, ``!Join``, ``!Select``, ``!Split``, ``!If``...) turned into their ``Fn::`` long forms;
``read_stack`` then merges ``Globals.Function`` into every function (scalars: the function's
wins; maps: merged, the function's keys win; lists: the Globals' first, then the function's, as
SAM does), resolves ``Parameters`` (defaults, ``--parameter-overrides``) and the pseudo
parameters, and builds a :class:`StackSpec`. Nothing here talks to a server.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "123456789012"  # Squall's one account
DEFAULT_ROLE = "arn:aws:iam::123456789012:role/squall-function"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"


class TemplateError(ValueError):
    """The template cannot be deployed as written (with what to change)."""


class Unresolvable(TemplateError):
    """An intrinsic names something Squall cannot know (a resource it skips)."""


# ---------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's ``!Tag`` short forms."""


def _tag(name: str):
    long = name if name == "Ref" else f"Fn::{name}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":  # !GetAtt Fn.Arn is short for [Fn, Arn]
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {long: value}

    return construct


for _name in ("Ref", "GetAtt", "Sub", "Join", "Select", "Split", "If", "Equals", "Not", "And", "Or", "FindInMap",
              "Base64", "GetAZs", "ImportValue", "Condition", "Cidr", "Length", "ToJsonString"):
    _Loader.add_constructor(f"!{_name}", _tag(_name))


def load(text: str) -> dict[str, Any]:
    """A template's text (YAML or JSON) as a document."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise TemplateError(f"The template is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError("The template has no Resources section.")
    return document


# ---------------------------------------------------------------------- intrinsics


@dataclass(frozen=True)
class LayerRef:
    """``!Ref`` to a LayerVersion of this template: its version ARN is known only once published."""

    logical_id: str

    def __str__(self) -> str:
        return f"<{self.logical_id}>"


@dataclass
class Context:
    """What intrinsics resolve against."""

    stack: str
    region: str
    parameters: dict[str, Any]
    resources: dict[str, dict[str, Any]]  # logical id -> the template's resource
    function_names: dict[str, str] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        return {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::StackName": self.stack,
                "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{self.stack}/squall"}

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{self.function_names[logical_id]}"

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name in self.function_names:
            return self.function_names[name]
        resource = self.resources.get(name)
        if resource is not None and resource.get("Type") == LAYER:
            return LayerRef(name)
        if resource is not None:
            raise Unresolvable(f"!Ref {name}: a {resource.get('Type')}, which Squall does not deploy")
        raise TemplateError(f"!Ref {name}: no parameter or resource of that name in the template.")

    def get_att(self, name: str, attribute: str) -> Any:
        if name in self.function_names:
            if attribute == "Arn":
                return self.function_arn(name)
            raise Unresolvable(f"!GetAtt {name}.{attribute}: only Arn is known for a function")
        resource = self.resources.get(name)
        if resource is None:
            raise TemplateError(f"!GetAtt {name}.{attribute}: no resource {name} in the template.")
        raise Unresolvable(f"!GetAtt {name}.{attribute}: a {resource.get('Type')}, which Squall does not deploy")


_NO_VALUE = object()
_SUB = re.compile(r"\$\{(!?)([^}]*)\}")


def resolve(value: Any, ctx: Context) -> Any:
    """``value`` with every intrinsic function replaced by what it stands for."""
    if isinstance(value, list):
        return [item for item in (resolve(v, ctx) for v in value) if item is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return _NO_VALUE if arg == "AWS::NoValue" else ctx.ref(resolve(arg, ctx))
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else resolve(arg, ctx)
            if len(parts) != 2:
                raise TemplateError(f"!GetAtt {arg!r}: write it as Resource.Attribute.")
            return ctx.get_att(parts[0], parts[1])
        if key == "Fn::Sub":
            return _sub(arg, ctx)
        if key == "Fn::Join":
            separator, items = arg
            return str(separator).join(str(i) for i in resolve(items, ctx))
        if key == "Fn::Select":
            index, items = resolve(arg, ctx)
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = resolve(arg, ctx)
            return str(text).split(separator)
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(resolve(arg, ctx)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(resolve(arg, ctx), separators=(",", ":"))
        if key.startswith("Fn::") or key == "Condition":
            raise Unresolvable(f"{key} is not supported by squall deploy (supported: Ref, Fn::GetAtt, Fn::Sub, "
                               "Fn::Join, Fn::Select, Fn::Split, Fn::Base64, Fn::ToJsonString)")
    resolved = {k: resolve(v, ctx) for k, v in value.items()}
    return {k: v for k, v in resolved.items() if v is not _NO_VALUE}


def _sub(arg: Any, ctx: Context) -> str:
    if isinstance(arg, list):
        text, variables = arg[0], {k: resolve(v, ctx) for k, v in (arg[1] if len(arg) > 1 else {}).items()}
    else:
        text, variables = arg, {}

    def one(match: re.Match[str]) -> str:
        if match.group(1):  # ${!Literal}
            return "${" + match.group(2) + "}"
        name = match.group(2).strip()
        if name in variables:
            return str(variables[name])
        if "." in name and name.split(".", 1)[0] in ctx.resources:
            return str(ctx.get_att(*name.split(".", 1)))
        found = ctx.ref(name)
        if isinstance(found, LayerRef):
            raise Unresolvable(f"!Sub ${{{name}}}: a layer's version ARN is only known when it is published")
        return str(found)

    return _SUB.sub(one, str(text))


# ---------------------------------------------------------------------- parameters and Globals


def parameters(document: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    declared = document.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"--parameter-overrides names {', '.join(unknown)}, which the template does not declare.",)
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            value: Any = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"Parameter {name} has no Default.", )
        kind = str(spec.get("Type", "String"))
        if kind == "Number":
            try:
                value = float(value) if "." in str(value) else int(value)
            except ValueError:
                raise TemplateError(f"Parameter {name} is a Number, not {value!r}.") from None
        elif kind in ("CommaDelimitedList", "List<Number>") or kind.startswith("List<"):
            value = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        else:
            value = str(value)
        allowed = spec.get("AllowedValues")
        if allowed and value not in allowed and str(value) not in [str(a) for a in allowed]:
            raise TemplateError(f"Parameter {name} is {value!r}; allowed: {', '.join(map(str, allowed))}.")
        values[name] = value
    return values


def merge_globals(global_props: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge (the resource's keys win), lists add up (Globals' first),
    anything else: the resource's value wins."""
    merged = copy.deepcopy(global_props)
    for key, value in props.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict) and not _intrinsic(value):
            merged[key] = merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + value
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _intrinsic(value: dict[str, Any]) -> bool:
    return len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))


# ---------------------------------------------------------------------- the stack


_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def stack_name_for(template: Path) -> str:
    name = _NOT_NAME.sub("-", template.resolve().parent.name).strip("-")
    return name or "stack"


def derived_name(stack: str, logical_id: str, limit: int = 64) -> str:
    """``<stack>-<LogicalId>-<8 hex>``: stable (a hash of both), at most ``limit`` characters."""
    digest = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:8]
    room = limit - len(digest) - 2
    head = f"{stack}-{logical_id}"[:room].rstrip("-")
    return f"{head}-{digest}"


@dataclass
class Skipped:
    kind: str
    logical_id: str
    reason: str


@dataclass
class EventSpec:
    logical_id: str  # the event's key under Events
    kind: str  # Schedule, SQS, ...
    properties: dict[str, Any]


@dataclass
class LayerSpec:
    logical_id: str
    name: str
    content_dir: Path
    settings: dict[str, Any]  # Description, CompatibleRuntimes, LicenseInfo, CompatibleArchitectures


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    config: dict[str, Any]  # CreateFunction's settings (Layers may hold LayerRef)
    tags: dict[str, str]
    alias: str | None = None
    provisioned: int | None = None
    url: dict[str, Any] | None = None
    reserved: int | None = None
    invoke_config: dict[str, Any] | None = None
    policies: list[dict[str, Any]] | None = None  # inline policy documents: the stack makes the role
    role_name: str | None = None
    events: list[EventSpec] = field(default_factory=list)


@dataclass
class StackSpec:
    name: str
    region: str
    template: Path
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    layers: dict[str, LayerSpec] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


SUPPORTED_EVENTS = ("Schedule", "ScheduleV2", "HttpApi", "Api", "SQS", "Kinesis", "DynamoDB", "SNS")
_FUNCTION_PROPS = {
    "CodeUri", "Handler", "Runtime", "MemorySize", "Timeout", "Environment", "Layers", "AutoPublishAlias",
    "ProvisionedConcurrencyConfig", "FunctionUrlConfig", "Policies", "Role", "EventInvokeConfig",
    "ReservedConcurrentExecutions", "FunctionName", "Description", "Architectures", "EphemeralStorage", "Tags", "Events",
}
_LAYER_PROPS = {"ContentUri", "CompatibleRuntimes", "LayerName", "Description", "LicenseInfo",
                "CompatibleArchitectures", "RetentionPolicy"}


def read_stack(template: Path, stack: str | None = None, overrides: dict[str, str] | None = None,
               region: str = "us-east-1", text: str | None = None) -> StackSpec:
    """The template at ``template`` (or ``text``, with paths relative to ``template``'s directory)."""
    if text is None:
        try:
            text = template.read_text()
        except OSError as exc:
            raise TemplateError(f"Cannot read {template}: {exc}") from None
    document = load(text)
    base = template.resolve().parent
    name = stack or stack_name_for(template)
    resources: dict[str, dict[str, Any]] = document["Resources"]
    ctx = Context(name, region, parameters(document, overrides or {}), resources)
    spec = StackSpec(name, region, template)
    global_function = ((document.get("Globals") or {}).get("Function")) or {}
    for section in sorted(set(document.get("Globals") or {}) - {"Function"}):
        spec.skipped.append(Skipped("Globals", section, "only Globals.Function is applied"))
    for key in ("Conditions", "Outputs", "Mappings"):
        if document.get(key):
            spec.skipped.append(Skipped(key, "-", f"the {key} section is not applied by squall deploy"))

    merged: dict[str, dict[str, Any]] = {}
    for logical_id, resource in resources.items():  # function names first: !Ref Fn anywhere
        if not isinstance(resource, dict):
            raise TemplateError(f"Resource {logical_id} is not a mapping.")
        if resource.get("Type") != FUNCTION:
            continue
        props = merge_globals(global_function, resource.get("Properties") or {})
        merged[logical_id] = props
        given = resolve(props.get("FunctionName"), ctx) if props.get("FunctionName") else None
        ctx.function_names[logical_id] = str(given) if given else derived_name(name, logical_id)

    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind == FUNCTION:
            try:
                spec.functions[logical_id] = _function(logical_id, merged[logical_id], ctx, base, spec)
            except Unresolvable as exc:
                raise TemplateError(f"{logical_id}: {exc}") from None
        elif kind == LAYER:
            spec.layers[logical_id] = _layer(logical_id, resource.get("Properties") or {}, ctx, base, spec)
        else:
            spec.skipped.append(Skipped(str(kind), logical_id, "resource type not supported by Squall"))
    return spec


def _directory(base: Path, value: Any, what: str) -> Path:
    if not isinstance(value, str):
        raise TemplateError(f"{what} must be a directory relative to the template (S3 locations are not supported).")
    if value.startswith("s3://"):
        raise TemplateError(f"{what} {value} is in S3; give a local directory instead.")
    path = (base / value).resolve()
    if not path.is_dir():
        raise TemplateError(f"{what} {value} is not a directory (looked at {path}).")
    return path


def _layer(logical_id: str, props: dict[str, Any], ctx: Context, base: Path, spec: StackSpec) -> LayerSpec:
    props = resolve(props, ctx)
    for key in sorted(set(props) - _LAYER_PROPS):
        spec.skipped.append(Skipped("Property", f"{logical_id}.{key}", "not supported on a LayerVersion"))
    if props.get("RetentionPolicy", "Retain") != "Retain":
        spec.skipped.append(Skipped("Property", f"{logical_id}.RetentionPolicy",
                                    "old layer versions are always retained"))
    settings = {key: props[key] for key in ("Description", "CompatibleRuntimes", "LicenseInfo",
                                            "CompatibleArchitectures") if key in props}
    name = str(props.get("LayerName") or derived_name(ctx.stack, logical_id, 140))
    content = _directory(base, props.get("ContentUri", "."), f"{logical_id}: ContentUri")
    return LayerSpec(logical_id, name, content, settings)


def _function(logical_id: str, raw: dict[str, Any], ctx: Context, base: Path, spec: StackSpec) -> FunctionSpec:
    events_raw = raw.get("Events") or {}
    props: dict[str, Any] = {}
    for key, value in raw.items():  # one property (one variable) at a time: what cannot be known is skipped
        if key == "Events":
            continue
        if key == "Environment" and isinstance(value, dict) and isinstance(value.get("Variables"), dict):
            variables = {}
            for variable, text in value["Variables"].items():
                try:
                    variables[variable] = resolve(text, ctx)
                except Unresolvable as exc:
                    spec.skipped.append(Skipped("Variable", f"{logical_id}.Environment.{variable}", str(exc)))
            props[key] = {"Variables": variables}
            continue
        try:
            resolved = resolve(value, ctx)
        except Unresolvable as exc:
            spec.skipped.append(Skipped("Property", f"{logical_id}.{key}", str(exc)))
            continue
        if resolved is not _NO_VALUE:
            props[key] = resolved
    for key in sorted(set(props) - _FUNCTION_PROPS):
        spec.skipped.append(Skipped("Property", f"{logical_id}.{key}", "not supported by squall deploy"))
    name = ctx.function_names[logical_id]
    if "Runtime" not in props or "Handler" not in props:
        raise TemplateError(f"{logical_id} needs Runtime and Handler (container images are not supported).")
    config: dict[str, Any] = {
        "Runtime": props["Runtime"],
        "Handler": props["Handler"],
        "MemorySize": int(props.get("MemorySize", 128)),
        "Timeout": int(props.get("Timeout", 3)),
        "Description": str(props.get("Description", "")),
        "Environment": {"Variables": {k: str(v) for k, v in
                                      ((props.get("Environment") or {}).get("Variables") or {}).items()}},
        "Layers": list(props.get("Layers") or []),
        "Architectures": list(props.get("Architectures") or ["x86_64"]),
        "EphemeralStorage": {"Size": int((props.get("EphemeralStorage") or {}).get("Size", 512))},
    }
    function = FunctionSpec(logical_id, name, _directory(base, props.get("CodeUri", "."), f"{logical_id}: CodeUri"),
                            config, {str(k): str(v) for k, v in (props.get("Tags") or {}).items()})
    if props.get("Role"):
        config["Role"] = props["Role"]
    elif props.get("Policies"):
        function.policies = _policies(logical_id, props["Policies"], spec)
        function.role_name = derived_name(ctx.stack, logical_id, 64 - len("-role")) + "-role"
        config["Role"] = f"arn:aws:iam::{ACCOUNT}:role/{function.role_name}"
    else:
        config["Role"] = DEFAULT_ROLE
    function.alias = props.get("AutoPublishAlias") or None
    provisioned = props.get("ProvisionedConcurrencyConfig")
    if provisioned:
        if not function.alias:
            spec.skipped.append(Skipped("Property", f"{logical_id}.ProvisionedConcurrencyConfig",
                                        "needs AutoPublishAlias (it is set on the alias)"))
        else:
            function.provisioned = int(provisioned["ProvisionedConcurrentExecutions"])
    if props.get("FunctionUrlConfig"):
        url = props["FunctionUrlConfig"]
        function.url = {"AuthType": url.get("AuthType", "NONE"), "InvokeMode": url.get("InvokeMode", "BUFFERED")}
        if url.get("Cors"):
            function.url["Cors"] = url["Cors"]
    if props.get("ReservedConcurrentExecutions") is not None:
        function.reserved = int(props["ReservedConcurrentExecutions"])
    if props.get("EventInvokeConfig"):
        function.invoke_config = _invoke_config(logical_id, props["EventInvokeConfig"], ctx)
    for event_id, event in events_raw.items():
        kind = (event or {}).get("Type")
        where = f"{logical_id}.Events.{event_id}"
        if kind not in SUPPORTED_EVENTS:
            reason = ("S3 notifications come from a bucket: use `squall subscribe --bucket-webhook`"
                      if kind == "S3" else f"event type {kind} is not supported by Squall")
            spec.skipped.append(Skipped(f"Event {kind}", where, reason))
            continue
        try:
            event_props = resolve(event.get("Properties") or {}, ctx)
        except Unresolvable as exc:
            spec.skipped.append(Skipped(f"Event {kind}", where, str(exc)))
            continue
        function.events.append(EventSpec(event_id, kind, event_props))
    return function


def _policies(logical_id: str, value: Any, spec: StackSpec) -> list[dict[str, Any]]:
    """SAM's Policies: inline documents become the role's inline policies; named managed
    policies and SAM policy templates are skipped (Squall's IAM has neither)."""
    documents: list[dict[str, Any]] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and "Statement" in item:
            documents.append({"Version": item.get("Version", "2012-10-17"), "Statement": item["Statement"]})
        elif isinstance(item, str):
            spec.skipped.append(Skipped("Policy", f"{logical_id}.Policies.{item}",
                                        "managed policies do not exist on Squall; write the statements inline"))
        else:
            template = next(iter(item)) if isinstance(item, dict) and item else str(item)
            spec.skipped.append(Skipped("Policy", f"{logical_id}.Policies.{template}",
                                        "SAM policy templates are not expanded; write the statements inline"))
    return documents


def _invoke_config(logical_id: str, value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if "MaximumRetryAttempts" in value:
        config["MaximumRetryAttempts"] = int(value["MaximumRetryAttempts"])
    if "MaximumEventAgeInSeconds" in value:
        config["MaximumEventAgeInSeconds"] = int(value["MaximumEventAgeInSeconds"])
    destinations = value.get("DestinationConfig") or {}
    out: dict[str, Any] = {}
    for key in ("OnSuccess", "OnFailure"):
        target = destinations.get(key)
        if target:
            if not target.get("Destination"):
                raise TemplateError(f"{logical_id}: EventInvokeConfig.DestinationConfig.{key} needs a Destination ARN "
                                    "(SAM's implicit destinations are not made).")
            out[key] = {"Destination": target["Destination"]}
    if out:
        config["DestinationConfig"] = out
    return config
