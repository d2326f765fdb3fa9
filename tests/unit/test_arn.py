"""FunctionName forms, qualifiers and ARNs (squall/arn.py): Lambda's semantic rules.

The shape checks (the model's patterns and lengths, answered as ValidationException) are
the protocol layer's and are tested in test_protocol.py and the compatibility suite.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest

from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARNS = Arns(REGION, ACCOUNT)
FULL = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:my-fn"


@pytest.mark.parametrize(
    ("value", "name", "qualifier"),
    [
        ("my-fn", "my-fn", None),
        ("My_Fn-2", "My_Fn-2", None),
        ("x" * 64, "x" * 64, None),
        ("x" * 65, "x" * 65, None),  # reads: simply not found later
        ("my-fn:prod", "my-fn", "prod"),
        ("my-fn:7", "my-fn", "7"),
        ("my-fn:$LATEST", "my-fn", LATEST),
        ("my-fn:$latest", "my-fn", "$latest"),  # not $LATEST: not found later, as on AWS
        (f"{ACCOUNT}:function:my-fn", "my-fn", None),
        (f"{ACCOUNT}:function:my-fn:prod", "my-fn", "prod"),
        (FULL, "my-fn", None),
        (f"{FULL}:12", "my-fn", "12"),
        (f"{FULL}:$LATEST", "my-fn", LATEST),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{'n' * 64}:{'q' * 128}", "n" * 64, "q" * 128),
    ],
)
def test_function_name_forms(value: str, name: str, qualifier: str | None) -> None:
    assert ARNS.parse(value) == FunctionRef(name, qualifier)


def test_url_encoded_arn_from_a_path_decodes_to_the_same_function() -> None:
    encoded = quote(f"{FULL}:$LATEST", safe="")  # botocore percent-encodes path labels
    assert ARNS.parse(unquote(encoded)) == FunctionRef("my-fn", LATEST)


@pytest.mark.parametrize("value", ["my-fn", f"{ACCOUNT}:function:my-fn", FULL])
def test_separate_qualifier_is_applied_to_unqualified_name(value: str) -> None:
    assert ARNS.parse(value, "prod") == FunctionRef("my-fn", "prod")
    assert ARNS.parse(value, LATEST) == FunctionRef("my-fn", LATEST)


@pytest.mark.parametrize("value", ["my-fn:prod", f"{ACCOUNT}:function:my-fn:prod", f"{FULL}:prod"])
def test_matching_qualifiers_are_accepted(value: str) -> None:
    assert ARNS.parse(value, "prod") == FunctionRef("my-fn", "prod")


@pytest.mark.parametrize(
    ("value", "qualifier"),
    [("my-fn:prod", "dev"), (f"{FULL}:1", "2"), (f"{FULL}:$LATEST", "1"), ("my-fn:1", LATEST)],
)
def test_conflicting_qualifiers_are_rejected_before_anything_else(value: str, qualifier: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        ARNS.parse(value, qualifier)
    assert info.value.message == "The derived qualifier from the function name does not match the specified qualifier."


def test_another_region_is_not_reachable() -> None:
    with pytest.raises(ResourceNotFound) as info:
        ARNS.parse("arn:aws:lambda:eu-west-1:123456789012:function:my-fn")
    assert info.value.message == "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"


@pytest.mark.parametrize("value", ["arn:aws:lambda:us-east-1:999999999999:function:my-fn", "999999999999:function:my-fn:1"])
def test_another_account_is_access_denied(value: str) -> None:
    with pytest.raises(AccessDenied):
        ARNS.parse(value)


def test_create_refuses_long_names_with_the_length_constraint() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        ARNS.parse_new("a" * 65)
    assert info.value.message == (
        f"1 validation error detected: Value '{'a' * 65}' at 'functionName' failed to satisfy constraint: "
        "Member must have length less than or equal to 64"
    )
    assert ARNS.parse_new(FULL) == FunctionRef("my-fn")
    with pytest.raises(InvalidParameterValue):
        ARNS.parse_new("my-fn:1")


def test_function_arn_building_and_round_trip() -> None:
    assert ARNS.function("my-fn") == FULL
    assert ARNS.function("my-fn", "prod") == f"{FULL}:prod"
    assert ARNS.function("my-fn", LATEST) == f"{FULL}:$LATEST"
    for qualifier in (None, "prod", "5", LATEST):
        assert ARNS.parse(ARNS.function("round-trip", qualifier)) == FunctionRef("round-trip", qualifier)
    assert ARNS.runtime_version("python3.11").startswith("arn:aws:lambda:us-east-1::runtime:")


def test_versions_are_digits() -> None:
    assert is_version("1") and is_version("120")
    assert not is_version(LATEST) and not is_version("live") and not is_version("1a")
    assert FunctionRef("f", "3").is_version and FunctionRef("f").is_latest and FunctionRef("f", LATEST).is_latest
