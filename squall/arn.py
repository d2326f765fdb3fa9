"""Function names, qualifiers and ARNs: one parser with Lambda's rules.

Everywhere Lambda takes a ``FunctionName`` it accepts ``my-fn``, ``my-fn:QUAL``,
``123456789012:function:my-fn[:QUAL]`` and ``arn:aws:lambda:REGION:ACCT:function:my-fn[:QUAL]``.
The shape checks (patterns, lengths) are the model's and run before this (``api/protocol``);
what is left here is Lambda's own semantics, in the order AWS applies them:

1. a qualifier in the name and a ``Qualifier`` parameter that disagree → 400 (before anything
   is looked up);
2. an ARN of another region → 404 ``Functions from 'R' are not reachable in this region``;
   of another account → 403 ``AccessDeniedException``;
3. a name longer than 64 characters → on a create, the length constraint (400); on any other
   operation the function simply does not exist (404), as on AWS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from squall.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

LATEST = "$LATEST"
NAME_MAX = 64

_FUNCTION_NAME = re.compile(
    r"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>(?:eusc-)?[a-z]{2}(?:(?:-gov)|(?:-iso[a-z]?))?-[a-z]+-\d{1}):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9-_\.]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_$]+))?$"
)
_VERSION = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class FunctionRef:
    """A parsed FunctionName: the bare name and the qualifier it carried, if any."""

    name: str
    qualifier: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.qualifier is None or self.qualifier == LATEST

    @property
    def is_version(self) -> bool:
        return self.qualifier is not None and bool(_VERSION.match(self.qualifier))


def is_version(qualifier: str) -> bool:
    return bool(_VERSION.match(qualifier))


@dataclass(frozen=True)
class Arns:
    """Builds and parses ARNs for one account and region."""

    region: str
    account_id: str

    def function(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def role_default(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/squall-function"

    def runtime_version(self, runtime: str) -> str:
        """RuntimeVersionConfig's ARN (Squall has one version of each runtime per server)."""
        return f"arn:aws:lambda:{self.region}::runtime:{hashlib.sha256(runtime.encode()).hexdigest()}"

    def parse(self, value: str, qualifier: str | None = None) -> FunctionRef:
        """A FunctionName from a path or body (shape-checked already), with a separate
        ``Qualifier`` merged in."""
        match = _FUNCTION_NAME.match(value)
        if match is None:  # the model's pattern let through what ours does not: not a function
            raise ResourceNotFound(f"Function not found: {value}")
        named = match.group("qualifier")
        if qualifier is not None and named is not None and named != qualifier:
            raise InvalidParameterValue("The derived qualifier from the function name does not match the specified qualifier.")
        region, account = match.group("region"), match.group("account")
        if region and region != self.region:
            raise ResourceNotFound(f"Functions from '{region}' are not reachable in this region ('{self.region}')")
        if account and account != self.account_id:
            raise AccessDenied(
                f"User is not authorized to access function {value}: it belongs to account {account}, "
                f"not to this server's account {self.account_id}."
            )
        return FunctionRef(match.group("name"), qualifier if qualifier is not None else named)

    def parse_new(self, value: str) -> FunctionRef:
        """CreateFunction's FunctionName: a name it can create (a qualifier is refused)."""
        ref = self.parse(value)
        if len(ref.name) > NAME_MAX:
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{ref.name}' at 'functionName' failed to satisfy constraint: "
                f"Member must have length less than or equal to {NAME_MAX}"
            )
        if "." in ref.name or ref.qualifier is not None:
            raise InvalidParameterValue(f"Function names cannot carry a qualifier or a dot: {value}")
        return ref
