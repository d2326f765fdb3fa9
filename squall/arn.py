"""Function names, qualifiers and ARNs.

Everywhere Lambda takes a ``FunctionName`` it accepts ``my-fn``, ``my-fn:QUAL``,
``123456789012:function:my-fn[:QUAL]`` and ``arn:aws:lambda:REGION:ACCT:function:my-fn[:QUAL]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squall.errors import InvalidParameterValue, ResourceNotFound

LATEST = "$LATEST"

_FUNCTION_NAME = re.compile(
    r"^(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?"
    r"(?P<region>(?:eusc-)?[a-z]{2}(?:(?:-gov)|(?:-iso[a-z]?))?-[a-z]+-\d{1}:)?"
    r"(?P<account>\d{12}:)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9-_\.]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
_NAME_ONLY = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_QUALIFIER = re.compile(r"^(\$LATEST|[a-zA-Z0-9-_]{1,128})$")


@dataclass(frozen=True)
class FunctionRef:
    """A parsed FunctionName: the bare name and the qualifier it carried, if any."""

    name: str
    qualifier: str | None = None


@dataclass(frozen=True)
class Arns:
    """Builds ARNs for one account and region."""

    region: str
    account_id: str

    def function(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def role_default(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/squall-function"

    def parse(self, value: str, qualifier: str | None = None) -> FunctionRef:
        """Parse a FunctionName path/body value, merging a separate ``Qualifier``."""
        ref = parse_function_name(value)
        match = _FUNCTION_NAME.fullmatch(value)
        assert match is not None  # parse_function_name validated it
        region = (match.group("region") or "").rstrip(":")
        account = (match.group("account") or "").rstrip(":")
        if (region and region != self.region) or (account and account != self.account_id):
            raise ResourceNotFound(f"Function not found: {value}")
        if qualifier is not None:
            if not _QUALIFIER.fullmatch(qualifier):
                raise InvalidParameterValue(f"Invalid Qualifier: {qualifier}")
            if ref.qualifier is not None and ref.qualifier != qualifier:
                raise InvalidParameterValue(
                    "The derived qualifier from the function name does not match the specified qualifier."
                )
            return FunctionRef(ref.name, qualifier)
        return ref


def parse_function_name(value: str) -> FunctionRef:
    if not value or len(value) > 256:
        raise InvalidParameterValue(
            "1 validation error detected: Value at 'functionName' failed to satisfy constraint: "
            "Member must have length between 1 and 256"
        )
    match = _FUNCTION_NAME.fullmatch(value)
    if not match or not _NAME_ONLY.fullmatch(match.group("name")):
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: "
            r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
            r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
        )
    return FunctionRef(match.group("name"), match.group("qualifier"))
