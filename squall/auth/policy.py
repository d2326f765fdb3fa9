"""IAM policy documents and their evaluation, with IAM's semantics.

A :class:`Policy` is parsed and checked once (``Policy.parse``: IAM's
``MalformedPolicyDocument`` errors); :func:`evaluate` then decides one request against the
caller's identity policies and the resource's policy:

* an explicit ``Deny`` in any of them wins;
* else an ``Allow`` in an identity policy, or in the resource policy for this principal,
  allows (one account: a same-account principal needs either, as in IAM);
* else the implicit deny.

A statement applies when its ``Action``/``NotAction`` matches the action (case-insensitive
wildcards ``*`` and ``?``), its ``Resource``/``NotResource`` the resource ARN (case-sensitive
wildcards, across ``:`` and ``/``, so ``function:f*`` covers ``function:f:1``), its
``Principal``/``NotPrincipal`` the caller (resource policies) and every operator of its
``Condition`` holds on the request's context keys (``StringEquals``, ``StringLike``,
``ArnLike``, ``Numeric*``, ``Date*``, ``Bool``, ``IpAddress``, ``Null``, the ``…IfExists``
forms and the ``ForAllValues:``/``ForAnyValue:`` set qualifiers).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from squall.errors import MalformedPolicyDocument

VERSIONS = ("2012-10-17", "2008-10-17")
EFFECTS = ("Allow", "Deny")
Context = Mapping[str, Any]  # condition keys (lower-case) → a value or a list of values


@dataclass(frozen=True)
class Caller:
    """Who asks, as policies see it."""

    arn: str  # arn:aws:iam::ACCT:user/NAME, arn:aws:sts::ACCT:assumed-role/ROLE/SESSION, or a service
    account: str
    kind: str = "user"  # "user", "assumed-role", "root" or "service"
    role_arn: str | None = None  # an assumed role's own ARN (a policy naming the role names its sessions)
    service: str | None = None  # "s3.amazonaws.com" for a service principal


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] | None = None
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] | None = None
    principal: Mapping[str, tuple[str, ...]] | str | None = None  # "*" or {"AWS": (...), "Service": (...)}
    not_principal: Mapping[str, tuple[str, ...]] | str | None = None
    conditions: tuple[tuple[str, str, tuple[Any, ...]], ...] = ()  # (operator, key, values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sid is not None:
            out["Sid"] = self.sid
        out["Effect"] = self.effect
        if self.principal is not None:
            out["Principal"] = _principal_json(self.principal)
        if self.not_principal is not None:
            out["NotPrincipal"] = _principal_json(self.not_principal)
        if self.not_actions is not None:
            out["NotAction"] = _one_or_many(self.not_actions)
        else:
            out["Action"] = _one_or_many(self.actions)
        if self.not_resources is not None:
            out["NotResource"] = _one_or_many(self.not_resources)
        else:
            out["Resource"] = _one_or_many(self.resources)
        if self.conditions:
            condition: dict[str, dict[str, Any]] = {}
            for operator, key, values in self.conditions:
                condition.setdefault(operator, {})[key] = _one_or_many(values)
            out["Condition"] = condition
        return out


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    version: str = "2012-10-17"
    id: str | None = None
    source: str = field(default="", compare=False)  # the document as given (IAM returns it as stored)

    @classmethod
    def parse(cls, document: str | Mapping[str, Any], resource_policy: bool = False) -> Policy:
        """A policy document, or :class:`MalformedPolicyDocument` saying what is wrong."""
        source = document if isinstance(document, str) else json.dumps(document)
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                raise MalformedPolicyDocument("This policy contains invalid Json") from None
        if not isinstance(document, dict):
            raise MalformedPolicyDocument("Syntax errors in policy.")
        unknown = set(document) - {"Version", "Id", "Statement"}
        if unknown:
            raise MalformedPolicyDocument(f"Policy document contains unknown element {sorted(unknown)[0]}.")
        version = document.get("Version", "2008-10-17")
        if version not in VERSIONS:
            raise MalformedPolicyDocument(f"The policy Version {version} is not supported; use 2012-10-17.")
        raw = document.get("Statement")
        if raw is None:
            raise MalformedPolicyDocument("Policy document must contain Statement.")
        raw_statements = raw if isinstance(raw, list) else [raw]
        if not raw_statements:
            raise MalformedPolicyDocument("Policy document must contain at least one Statement.")
        statements = tuple(_statement(s, resource_policy) for s in raw_statements)
        sids = [s.sid for s in statements if s.sid is not None]
        if len(sids) != len(set(sids)):
            raise MalformedPolicyDocument("Statement IDs (SID) in a single policy must be unique.")
        return cls(statements, version, document.get("Id"), source)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Version": self.version}
        if self.id is not None:
            out["Id"] = self.id
        out["Statement"] = [s.to_json() for s in self.statements]
        return out


_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal", "Condition"}


def _statement(raw: Any, resource_policy: bool) -> Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicyDocument("Syntax errors in policy.")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise MalformedPolicyDocument(f"Policy statement contains unknown element {sorted(unknown)[0]}.")
    effect = raw.get("Effect")
    if effect not in EFFECTS:
        raise MalformedPolicyDocument("Policy statement must contain a valid Effect (Allow or Deny).")
    sid = raw.get("Sid")
    if sid is not None and (not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9 _.\-]*", sid) or
                            (not resource_policy and not re.fullmatch(r"[A-Za-z0-9]*", sid))):
        raise MalformedPolicyDocument(f"Statement IDs (SID) must be alpha-numeric; got {sid!r}.")
    if ("Action" in raw) == ("NotAction" in raw):
        raise MalformedPolicyDocument("Policy statement must contain one of Action or NotAction.")
    if ("Resource" in raw) and ("NotResource" in raw):
        raise MalformedPolicyDocument("Policy statement must contain one of Resource or NotResource, not both.")
    if "Resource" not in raw and "NotResource" not in raw and not resource_policy:
        raise MalformedPolicyDocument("Policy statement must contain resources.")
    has_principal = "Principal" in raw or "NotPrincipal" in raw
    if has_principal and not resource_policy:
        raise MalformedPolicyDocument("Policy document should not specify a principal.")
    if resource_policy and not has_principal:
        raise MalformedPolicyDocument("Policy statement must contain a Principal.")
    actions = _strings(raw.get("Action"), "Action") if "Action" in raw else ()
    for action in actions + (_strings(raw["NotAction"], "NotAction") if "NotAction" in raw else ()):
        if action != "*" and not re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", action):
            raise MalformedPolicyDocument(f"Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.; got {action!r}.")
    return Statement(
        sid=sid,
        effect=effect,
        actions=actions,
        not_actions=_strings(raw["NotAction"], "NotAction") if "NotAction" in raw else None,
        resources=_strings(raw["Resource"], "Resource") if "Resource" in raw else (("*",) if resource_policy and "NotResource" not in raw else ()),
        not_resources=_strings(raw["NotResource"], "NotResource") if "NotResource" in raw else None,
        principal=_principal(raw["Principal"]) if "Principal" in raw else None,
        not_principal=_principal(raw["NotPrincipal"]) if "NotPrincipal" in raw else None,
        conditions=_conditions(raw.get("Condition")),
    )


def _strings(value: Any, element: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise MalformedPolicyDocument(f"{element} must be a non-empty string or a list of them.")
    return tuple(values)


def _principal(value: Any) -> Mapping[str, tuple[str, ...]] | str:
    if value == "*":
        return "*"
    if not isinstance(value, dict) or not value:
        raise MalformedPolicyDocument("Invalid principal in policy.")
    out = {}
    for kind, names in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise MalformedPolicyDocument(f"Invalid principal in policy: {kind}.")
        out[kind] = _strings(names, "Principal")
    return out


def _principal_json(value: Mapping[str, tuple[str, ...]] | str) -> Any:
    if value == "*":
        return "*"
    assert not isinstance(value, str)
    return {kind: _one_or_many(names) for kind, names in value.items()}


def _one_or_many(values: Sequence[Any]) -> Any:
    return values[0] if len(values) == 1 else list(values)


# ---- conditions ------------------------------------------------------------------------------
def _conditions(raw: Any) -> tuple[tuple[str, str, tuple[Any, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise MalformedPolicyDocument("Syntax errors in policy.")
    out = []
    for operator, block in raw.items():
        _, base, _ = _operator_parts(operator)
        if base not in _OPERATORS:
            raise MalformedPolicyDocument(f"Invalid Condition type : {operator}.")
        if not isinstance(block, dict) or not block:
            raise MalformedPolicyDocument("Syntax errors in policy.")
        for key, values in block.items():
            values = values if isinstance(values, list) else [values]
            if not all(isinstance(v, (str, int, float, bool)) for v in values):
                raise MalformedPolicyDocument("Syntax errors in policy.")
            out.append((operator, key, tuple(values)))
    return tuple(out)


def _operator_parts(operator: str) -> tuple[str | None, str, bool]:
    """("ForAllValues"/"ForAnyValue"/None, base operator, IfExists)."""
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            return qualifier, "?", False
    if_exists = operator.endswith("IfExists") and operator != "Null"
    return qualifier, operator[: -len("IfExists")] if if_exists else operator, if_exists


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _ip(value: Any, cidr: Any) -> bool:
    try:
        return ipaddress.ip_address(str(value)) in ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False


def _arn_like(value: Any, pattern: Any) -> bool:
    """ArnLike: each of the six ARN components matched on its own."""
    have, want = str(value).split(":", 5), str(pattern).split(":", 5)
    if len(have) != 6 or len(want) != 6:
        return False
    return all(_glob(w, case=True).fullmatch(h) is not None for h, w in zip(have, want))


_OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], bool]] = {  # base → (one value matches one pattern, negated)
    "StringEquals": (lambda v, p: _str(v) == _str(p), False),
    "StringNotEquals": (lambda v, p: _str(v) == _str(p), True),
    "StringEqualsIgnoreCase": (lambda v, p: _str(v).lower() == _str(p).lower(), False),
    "StringNotEqualsIgnoreCase": (lambda v, p: _str(v).lower() == _str(p).lower(), True),
    "StringLike": (lambda v, p: _glob(_str(p), case=True).fullmatch(_str(v)) is not None, False),
    "StringNotLike": (lambda v, p: _glob(_str(p), case=True).fullmatch(_str(v)) is not None, True),
    "NumericEquals": (lambda v, p: _cmp(_number, v, p, lambda a, b: a == b), False),
    "NumericNotEquals": (lambda v, p: _cmp(_number, v, p, lambda a, b: a == b), True),
    "NumericLessThan": (lambda v, p: _cmp(_number, v, p, lambda a, b: a < b), False),
    "NumericLessThanEquals": (lambda v, p: _cmp(_number, v, p, lambda a, b: a <= b), False),
    "NumericGreaterThan": (lambda v, p: _cmp(_number, v, p, lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (lambda v, p: _cmp(_number, v, p, lambda a, b: a >= b), False),
    "DateEquals": (lambda v, p: _cmp(_date, v, p, lambda a, b: a == b), False),
    "DateNotEquals": (lambda v, p: _cmp(_date, v, p, lambda a, b: a == b), True),
    "DateLessThan": (lambda v, p: _cmp(_date, v, p, lambda a, b: a < b), False),
    "DateLessThanEquals": (lambda v, p: _cmp(_date, v, p, lambda a, b: a <= b), False),
    "DateGreaterThan": (lambda v, p: _cmp(_date, v, p, lambda a, b: a > b), False),
    "DateGreaterThanEquals": (lambda v, p: _cmp(_date, v, p, lambda a, b: a >= b), False),
    "Bool": (lambda v, p: _str(v).lower() == _str(p).lower(), False),
    "IpAddress": (_ip, False),
    "NotIpAddress": (_ip, True),
    "ArnEquals": (lambda v, p: _arn_like(v, p), False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (lambda v, p: _arn_like(v, p), True),
    "ArnNotLike": (_arn_like, True),
    "BinaryEquals": (lambda v, p: _str(v) == _str(p), False),
    "Null": (lambda v, p: True, False),  # handled on its own
}


def _cmp(convert: Callable[[Any], float | None], value: Any, pattern: Any, op: Callable[[float, float], bool]) -> bool:
    a, b = convert(value), convert(pattern)
    return a is not None and b is not None and op(a, b)


def condition_holds(operator: str, key: str, patterns: Sequence[Any], context: Context) -> bool:
    """One key of one condition operator, as IAM evaluates it."""
    qualifier, base, if_exists = _operator_parts(operator)
    present = key.lower() in context and context[key.lower()] is not None
    if base == "Null":  # {"key": "true"}: the key is absent
        wanted = _str(patterns[0]).lower() == "true"
        return (not present) == wanted
    if not present:
        return if_exists or (_OPERATORS[base][1] and qualifier is None) or qualifier == "ForAllValues"
    raw = context[key.lower()]
    values = list(raw) if isinstance(raw, (list, tuple, set, frozenset)) else [raw]
    match, negated = _OPERATORS[base]

    def one(value: Any) -> bool:
        hit = any(match(value, pattern) for pattern in patterns)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values)
    if negated:  # a single-valued key (or every value) must match none of the patterns
        return all(one(v) for v in values)
    return any(one(v) for v in values)


# ---- matching --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, case: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts), 0 if case else re.IGNORECASE | re.DOTALL)


def _variables(pattern: str, context: Context) -> str:
    """Policy variables (``${aws:username}``…) in a resource: the context's values."""
    if "${" not in pattern:
        return pattern

    def value(match: re.Match[str]) -> str:
        found = context.get(match.group(1).lower())
        return str(found) if found is not None and not isinstance(found, (list, tuple)) else match.group(0)

    return re.sub(r"\$\{([^}]+)\}", value, pattern)


def action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_glob(p, case=False).fullmatch(action) is not None for p in patterns)


def resource_matches(patterns: Iterable[str], resource: str, context: Context) -> bool:
    return any(_glob(_variables(p, context), case=True).fullmatch(resource) is not None for p in patterns)


def principal_matches(principal: Mapping[str, tuple[str, ...]] | str, caller: Caller) -> bool:
    if principal == "*":
        return True
    assert not isinstance(principal, str)
    for name in principal.get("AWS", ()):
        if name == "*" or name == caller.arn or (caller.role_arn is not None and name == caller.role_arn):
            return True
        # the account itself: its root user, or (for a Deny) anyone in it
        if caller.kind == "root" and name in (caller.account, f"arn:aws:iam::{caller.account}:root"):
            return True
    if caller.service is not None and caller.service in principal.get("Service", ()):
        return True
    return False


def _account_principal(principal: Mapping[str, tuple[str, ...]] | str | None, caller: Caller) -> bool:
    if principal is None or isinstance(principal, str):
        return False
    return any(name in (caller.account, f"arn:aws:iam::{caller.account}:root") for name in principal.get("AWS", ()))


def applies(statement: Statement, action: str, resource: str, caller: Caller | None, context: Context) -> bool:
    if statement.not_actions is not None:
        if action_matches(statement.not_actions, action):
            return False
    elif not action_matches(statement.actions, action):
        return False
    if statement.not_resources is not None:
        if resource_matches(statement.not_resources, resource, context):
            return False
    elif not resource_matches(statement.resources, resource, context):
        return False
    if caller is not None:  # a resource policy: who it is for
        if statement.principal is not None:
            hit = principal_matches(statement.principal, caller)
            if not hit and statement.effect == "Deny" and _account_principal(statement.principal, caller):
                hit = True  # denying the account denies everyone in it
            if not hit:
                return False
        if statement.not_principal is not None and principal_matches(statement.not_principal, caller):
            return False
    return all(condition_holds(op, key, values, context) for op, key, values in statement.conditions)


# ---- the decision ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "identity", "resource", "explicit-deny-identity", "explicit-deny-resource", "implicit"

    @property
    def explicit_deny(self) -> bool:
        return self.reason.startswith("explicit-deny")


def evaluate(
    caller: Caller,
    action: str,
    resource: str,
    identity: Sequence[Policy] = (),
    resource_policy: Policy | None = None,
    context: Context | None = None,
) -> Decision:
    context = context or {}
    allowed_by = None
    for policy in identity:
        for statement in policy.statements:
            if applies(statement, action, resource, None, context):
                if statement.effect == "Deny":
                    return Decision(False, "explicit-deny-identity")
                allowed_by = allowed_by or "identity"
    if resource_policy is not None:
        for statement in resource_policy.statements:
            if applies(statement, action, resource, caller, context):
                if statement.effect == "Deny":
                    return Decision(False, "explicit-deny-resource")
                allowed_by = allowed_by or "resource"
    return Decision(allowed_by is not None, allowed_by or "implicit")
