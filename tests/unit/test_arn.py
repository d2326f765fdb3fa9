"""FunctionName forms, qualifiers and ARNs (squall/arn.py)."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest

from squall.arn import LATEST, Arns, FunctionRef, parse_function_name
from squall.errors import InvalidParameterValue, ResourceNotFound

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARNS = Arns(REGION, ACCOUNT)
FULL = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:my-fn"


# ------------------------------------------------------------------ accepted forms


@pytest.mark.parametrize(
    ("value", "name", "qualifier"),
    [
        ("my-fn", "my-fn", None),
        ("My_Fn-2", "My_Fn-2", None),
        ("a", "a", None),
        ("x" * 64, "x" * 64, None),
        ("my-fn:prod", "my-fn", "prod"),
        ("my-fn:7", "my-fn", "7"),
        ("my-fn:$LATEST", "my-fn", LATEST),
        (f"{ACCOUNT}:function:my-fn", "my-fn", None),
        (f"{ACCOUNT}:function:my-fn:prod", "my-fn", "prod"),
        (f"{ACCOUNT}:function:my-fn:$LATEST", "my-fn", LATEST),
        (FULL, "my-fn", None),
        (f"{FULL}:prod", "my-fn", "prod"),
        (f"{FULL}:12", "my-fn", "12"),
        (f"{FULL}:$LATEST", "my-fn", LATEST),
        (f"arn:aws-us-gov:lambda:us-gov-west-1:{ACCOUNT}:function:g", "g", None),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{'n' * 64}:{'q' * 128}", "n" * 64, "q" * 128),
    ],
)
def test_parse_function_name_forms(value: str, name: str, qualifier: str | None) -> None:
    assert parse_function_name(value) == FunctionRef(name, qualifier)


@pytest.mark.parametrize(
    "value",
    ["my-fn", "my-fn:prod", f"{ACCOUNT}:function:my-fn", f"{ACCOUNT}:function:my-fn:prod", FULL, f"{FULL}:$LATEST"],
)
def test_arns_parse_same_account_and_region(value: str) -> None:
    ref = ARNS.parse(value)
    assert ref.name == "my-fn"
    assert ref == parse_function_name(value)


def test_url_encoded_arn_from_a_path_decodes_to_the_same_function() -> None:
    # botocore percent-encodes ':' and '$' in path labels; the router unquotes them.
    encoded = quote(f"{FULL}:$LATEST", safe="")
    assert "%3A" in encoded and "%24LATEST" in encoded
    assert ARNS.parse(unquote(encoded)) == FunctionRef("my-fn", LATEST)
    # The still-encoded form is no valid function name at all.
    with pytest.raises(InvalidParameterValue):
        parse_function_name(encoded)


# ------------------------------------------------------------------ rejected forms


@pytest.mark.parametrize(
    "value",
    [
        "my fn",
        "my/fn",
        "my.fn",  # the model's outer pattern allows '.', the name itself does not
        "fn!",
        "fn:",
        "fn:prod:extra",
        "fn:bad.qualifier",
        "x" * 65,
        f"{ACCOUNT}:function:{'x' * 65}",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:",
        f"arn:aws:lambda:{REGION}:12345:function:fn",
        "my-fn\n",
        "my-fn:prod\n",
        "\nmy-fn",
    ],
)
def test_invalid_names_are_rejected(value: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_function_name(value)
    assert info.value.message.startswith("1 validation error detected: Value ")
    assert "at 'functionName' failed to satisfy constraint" in info.value.message


def test_arns_parse_validates_like_parse_function_name() -> None:
    with pytest.raises(InvalidParameterValue):
        ARNS.parse("my fn")
    with pytest.raises(InvalidParameterValue):
        ARNS.parse("my-fn\n")


def test_empty_name_is_a_length_error() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_function_name("")
    assert "Member must have length between 1 and 256" in info.value.message


def test_total_length_limit_is_256() -> None:
    # A syntactically valid ARN longer than 256 characters (64-char name, 128-char qualifier,
    # a long partition) is rejected on length before any pattern check.
    long_arn = f"arn:aws-{'x' * 60}:lambda:{REGION}:{ACCOUNT}:function:{'n' * 64}:{'q' * 128}"
    assert len(long_arn) > 256
    with pytest.raises(InvalidParameterValue) as info:
        parse_function_name(long_arn)
    assert "length between 1 and 256" in info.value.message
    # The same shape at <= 256 characters is fine.
    ok = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{'n' * 64}:{'q' * 128}"
    assert len(ok) <= 256
    assert parse_function_name(ok).name == "n" * 64


# ------------------------------------------------------------------ qualifier merging


@pytest.mark.parametrize("value", ["my-fn", f"{ACCOUNT}:function:my-fn", FULL])
def test_separate_qualifier_is_applied_to_unqualified_name(value: str) -> None:
    assert ARNS.parse(value, "prod") == FunctionRef("my-fn", "prod")
    assert ARNS.parse(value, LATEST) == FunctionRef("my-fn", LATEST)
    assert ARNS.parse(value, "3") == FunctionRef("my-fn", "3")


@pytest.mark.parametrize("value", ["my-fn:prod", f"{ACCOUNT}:function:my-fn:prod", f"{FULL}:prod"])
def test_matching_qualifiers_are_accepted(value: str) -> None:
    assert ARNS.parse(value, "prod") == FunctionRef("my-fn", "prod")


@pytest.mark.parametrize(
    ("value", "qualifier"),
    [("my-fn:prod", "dev"), (f"{FULL}:1", "2"), (f"{FULL}:$LATEST", "1"), ("my-fn:1", LATEST)],
)
def test_conflicting_qualifiers_are_rejected(value: str, qualifier: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        ARNS.parse(value, qualifier)
    assert info.value.message == (
        "The derived qualifier from the function name does not match the specified qualifier."
    )


@pytest.mark.parametrize("qualifier", ["", "bad.qual", "q" * 129, "$latest", "prod\n", "a b"])
def test_invalid_separate_qualifier_is_rejected(qualifier: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        ARNS.parse("my-fn", qualifier)
    assert "Invalid Qualifier" in info.value.message


def test_no_qualifier_keeps_the_one_in_the_name() -> None:
    assert ARNS.parse("my-fn:prod", None) == FunctionRef("my-fn", "prod")
    assert ARNS.parse("my-fn", None) == FunctionRef("my-fn", None)


# ------------------------------------------------------------------ foreign region / account


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:lambda:eu-west-1:123456789012:function:my-fn",
        "arn:aws:lambda:us-east-1:999999999999:function:my-fn",
        "arn:aws:lambda:us-east-1:999999999999:function:my-fn:prod",
        "999999999999:function:my-fn",
        "999999999999:function:my-fn:1",
    ],
)
def test_foreign_region_or_account_is_not_found(value: str) -> None:
    with pytest.raises(ResourceNotFound) as info:
        ARNS.parse(value)
    assert info.value.message == f"Function not found: {value}"
    # The conflict check never gets a chance to mask the not-found answer.
    with pytest.raises(ResourceNotFound):
        ARNS.parse(value, "other")


def test_other_arns_instance_accepts_its_own_region() -> None:
    eu = Arns("eu-west-1", "111122223333")
    assert eu.parse("arn:aws:lambda:eu-west-1:111122223333:function:f") == FunctionRef("f")
    with pytest.raises(ResourceNotFound):
        eu.parse(FULL)


# ------------------------------------------------------------------ building ARNs


def test_function_arn_building() -> None:
    assert ARNS.function("my-fn") == FULL
    assert ARNS.function("my-fn", "prod") == f"{FULL}:prod"
    assert ARNS.function("my-fn", LATEST) == f"{FULL}:$LATEST"
    assert ARNS.function("my-fn", None) == FULL
    assert Arns("eu-central-1", "000000000001").function("f", "2") == (
        "arn:aws:lambda:eu-central-1:000000000001:function:f:2"
    )


@pytest.mark.parametrize("qualifier", [None, "prod", "5", LATEST])
def test_built_arn_parses_back(qualifier: str | None) -> None:
    assert ARNS.parse(ARNS.function("round-trip", qualifier)) == FunctionRef("round-trip", qualifier)


def test_role_default() -> None:
    assert ARNS.role_default() == "arn:aws:iam::123456789012:role/squall-function"
