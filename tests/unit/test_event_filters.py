"""Event source mapping FilterCriteria (squall/sources/filters.py): Lambda's event filtering rules."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from squall.sources.filters import MAX_FILTERS, MAX_PATTERN_LENGTH, FilterError, Filters, kinesis_view, sqs_view


def criteria(*patterns: Any) -> dict[str, Any]:
    """FilterCriteria from patterns given as dicts (serialized) or as raw strings (as is)."""
    return {"Filters": [{"Pattern": p if isinstance(p, str) else orjson.dumps(p).decode()} for p in patterns]}


def filters(*patterns: Any) -> Filters:
    return Filters.parse(criteria(*patterns))


# (pattern, record, matches)
MATCHING: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {
    # exact values
    "string equals": ({"a": ["x"]}, {"a": "x"}, True),
    "string differs": ({"a": ["x"]}, {"a": "y"}, False),
    "strings are case-sensitive": ({"a": ["x"]}, {"a": "X"}, False),
    "number equals": ({"a": [5]}, {"a": 5}, True),
    "number by representation: 300 is not 300.0": ({"a": [300]}, {"a": 300.0}, False),
    "float equals float": ({"a": [1.5]}, {"a": 1.5}, True),
    "boolean equals": ({"a": [True]}, {"a": True}, True),
    "boolean is not a number": ({"a": [1]}, {"a": True}, False),
    "string is not a number": ({"a": ["5"]}, {"a": 5}, False),
    "null matches null": ({"a": [None]}, {"a": None}, True),
    "null does not match a missing key": ({"a": [None]}, {}, False),
    "null does not match empty string": ({"a": [None]}, {"a": ""}, False),
    "empty string matches empty string": ({"a": [""]}, {"a": ""}, True),
    "empty string does not match null": ({"a": [""]}, {"a": None}, False),
    # OR within a leaf, AND across keys
    "leaf array is OR": ({"a": ["x", "y"]}, {"a": "y"}, True),
    "leaf array is OR, none": ({"a": ["x", "y"]}, {"a": "z"}, False),
    "keys are AND, all match": ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "y", "c": "ignored"}, True),
    "keys are AND, one fails": ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"}, False),
    "keys are AND, one missing": ({"a": ["x"], "b": ["y"]}, {"a": "x"}, False),
    # nesting
    "nested object": ({"a": {"b": ["x"]}}, {"a": {"b": "x"}}, True),
    "nested object differs": ({"a": {"b": ["x"]}}, {"a": {"b": "y"}}, False),
    "deep DynamoDB keys": ({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}},
                           {"eventName": "INSERT", "dynamodb": {"Keys": {"Id": {"N": "101"}}}}, True),
    "deep DynamoDB keys differ": ({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}},
                                  {"dynamodb": {"Keys": {"Id": {"N": "102"}}}}, False),
    "object pattern against a plain value": ({"a": {"b": ["x"]}}, {"a": "x"}, False),
    "leaf pattern against an object": ({"a": ["x"]}, {"a": {"b": "x"}}, False),
    # arrays in the record
    "array: any element matches": ({"a": ["x"]}, {"a": ["y", "x"]}, True),
    "array: no element matches": ({"a": ["x"]}, {"a": ["y", "z"]}, False),
    "array of objects: one element matches": ({"a": {"b": ["x"]}}, {"a": [{"b": "y"}, {"b": "x"}]}, True),
    "array of objects: fields must match in the same element": (
        {"a": {"b": ["x"], "c": ["y"]}}, {"a": [{"b": "x", "c": "n"}, {"b": "n", "c": "y"}]}, False),
    "array: numeric on any element": ({"a": [{"numeric": [">", 10]}]}, {"a": [1, 20]}, True),
    # prefix, suffix, equals-ignore-case
    "prefix matches": ({"r": [{"prefix": "us-"}]}, {"r": "us-east-1"}, True),
    "prefix does not match": ({"r": [{"prefix": "us-"}]}, {"r": "eu-west-1"}, False),
    "prefix is case-sensitive": ({"r": [{"prefix": "us-"}]}, {"r": "US-east-1"}, False),
    "prefix applies to strings only": ({"r": [{"prefix": "1"}]}, {"r": 12}, False),
    "prefix ignoring case": ({"s": [{"prefix": {"equals-ignore-case": "EVENTB"}}]}, {"s": "EventBridge"}, True),
    "prefix ignoring case, no match": ({"s": [{"prefix": {"equals-ignore-case": "EVENTB"}}]}, {"s": "Bridge"}, False),
    "suffix matches": ({"f": [{"suffix": ".png"}]}, {"f": "cat.png"}, True),
    "suffix is case-sensitive": ({"f": [{"suffix": ".png"}]}, {"f": "cat.PNG"}, False),
    "suffix ignoring case": ({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"f": "cat.PNG"}, True),
    "suffix ignoring case, no match": ({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"f": "cat.jpg"}, False),
    "equals-ignore-case matches": ({"n": [{"equals-ignore-case": "alice"}]}, {"n": "ALICE"}, True),
    "equals-ignore-case is whole-value": ({"n": [{"equals-ignore-case": "alice"}]}, {"n": "Alicia"}, False),
    # anything-but
    "anything-but list: other value": ({"w": [{"anything-but": ["Raining"]}]}, {"w": "Sunny"}, True),
    "anything-but list: excluded value": ({"w": [{"anything-but": ["Raining", "Snow"]}]}, {"w": "Snow"}, False),
    "anything-but scalar: other value": ({"s": [{"anything-but": "initializing"}]}, {"s": "running"}, True),
    "anything-but scalar: excluded value": ({"s": [{"anything-but": "initializing"}]}, {"s": "initializing"}, False),
    "anything-but needs the field": ({"s": [{"anything-but": "initializing"}]}, {}, False),
    "anything-but numbers: other": ({"x": [{"anything-but": [100, 200]}]}, {"x": 150}, True),
    "anything-but numbers: excluded": ({"x": [{"anything-but": [100, 200]}]}, {"x": 200}, False),
    "anything-but prefix: other": ({"s": [{"anything-but": {"prefix": "init"}}]}, {"s": "running"}, True),
    "anything-but prefix: excluded": ({"s": [{"anything-but": {"prefix": "init"}}]}, {"s": "initializing"}, False),
    "anything-but suffix: other": ({"f": [{"anything-but": {"suffix": ".png"}}]}, {"f": "a.jpg"}, True),
    "anything-but suffix: excluded": ({"f": [{"anything-but": {"suffix": ".png"}}]}, {"f": "a.png"}, False),
    "anything-but ignoring case: excluded": (
        {"s": [{"anything-but": {"equals-ignore-case": ["stopped", "init"]}}]}, {"s": "STOPPED"}, False),
    "anything-but ignoring case: other": (
        {"s": [{"anything-but": {"equals-ignore-case": "stopped"}}]}, {"s": "running"}, True),
    "anything-but on an array: one element is not excluded": ({"a": [{"anything-but": ["x"]}]}, {"a": ["x", "y"]}, True),
    "anything-but on an array: all excluded": ({"a": [{"anything-but": ["x"]}]}, {"a": ["x", "x"]}, False),
    # numeric
    "range: lower bound is exclusive": ({"p": [{"numeric": [">", 0, "<=", 5]}]}, {"p": 0}, False),
    "range: just above the lower bound": ({"p": [{"numeric": [">", 0, "<=", 5]}]}, {"p": 0.000001}, True),
    "range: upper bound is inclusive": ({"p": [{"numeric": [">", 0, "<=", 5]}]}, {"p": 5}, True),
    "range: upper bound as a float": ({"p": [{"numeric": [">", 0, "<=", 5]}]}, {"p": 5.0}, True),
    "range: just above the upper bound": ({"p": [{"numeric": [">", 0, "<=", 5]}]}, {"p": 5.000001}, False),
    "range: bounds given upper first": ({"p": [{"numeric": ["<", 10, ">=", 1]}]}, {"p": 1}, True),
    "range: >= / < edges": ({"p": [{"numeric": [">=", 1, "<", 10]}]}, {"p": 10}, False),
    "numeric equals compares numerically": ({"p": [{"numeric": ["=", 100]}]}, {"p": 100.0}, True),
    "numeric equals, other number": ({"p": [{"numeric": ["=", 100]}]}, {"p": 101}, False),
    "numeric single comparison": ({"p": [{"numeric": ["<", 0]}]}, {"p": -3}, True),
    "numeric does not read strings": ({"p": [{"numeric": [">", 0]}]}, {"p": "3"}, False),
    "numeric does not read booleans": ({"p": [{"numeric": ["=", 1]}]}, {"p": True}, False),
    "numeric on a missing key": ({"p": [{"numeric": [">", 0]}]}, {}, False),
    # exists
    "exists true: present": ({"a": [{"exists": True}]}, {"a": "x"}, True),
    "exists true: null is present": ({"a": [{"exists": True}]}, {"a": None}, True),
    "exists true: missing": ({"a": [{"exists": True}]}, {"b": 1}, False),
    "exists false: missing": ({"a": [{"exists": False}]}, {"b": 1}, True),
    "exists false: present": ({"a": [{"exists": False}]}, {"a": "x"}, False),
    "exists false: missing parent": ({"a": {"b": [{"exists": False}]}}, {}, True),
    "exists true: an object is not a leaf": ({"a": [{"exists": True}]}, {"a": {"c": 1}}, False),
    "exists false: an object is not a leaf": ({"a": [{"exists": False}]}, {"a": {"c": 1}}, True),
    "exists OR a value": ({"a": ["x", {"exists": False}]}, {}, True),
    # $or
    "$or: second branch": ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"b": "y"}, True),
    "$or: no branch": ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"a": "n", "b": "n"}, False),
    "$or with a sibling: sibling fails": ({"c": ["z"], "$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"a": "x", "c": "n"}, False),
    "$or with a sibling: both hold": ({"c": ["z"], "$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"a": "x", "c": "z"}, True),
    "$or nested in an object": ({"d": {"$or": [{"a": [1]}, {"b": [{"prefix": "q"}]}]}}, {"d": {"b": "quit"}}, True),
    "$or nested in an object, no branch": ({"d": {"$or": [{"a": [1]}, {"b": [{"prefix": "q"}]}]}}, {"d": {"b": "x"}}, False),
}


@pytest.mark.parametrize(("pattern", "record", "expected"), list(MATCHING.values()), ids=list(MATCHING))
def test_matching(pattern: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    assert filters(pattern).matches(record) is expected


def test_filters_are_ored() -> None:
    fs = filters({"a": ["x"]}, {"b": ["y"]})
    assert fs.matches({"b": "y"})
    assert fs.matches({"a": "x"})
    assert not fs.matches({"a": "y", "b": "x"})


@pytest.mark.parametrize("value", [None, {}, {"Filters": []}, {"Filters": None}])
def test_no_filters_lets_everything_through(value: dict[str, Any] | None) -> None:
    fs = Filters.parse(value)
    assert fs.empty
    assert fs.matches({"anything": 1})


def test_filters_are_not_empty_when_given() -> None:
    assert not filters({"a": ["x"]}).empty


def test_duplicate_keys_keep_the_last_value() -> None:  # as Lambda documents
    fs = filters('{"a": ["x"], "a": ["y"]}')
    assert fs.matches({"a": "y"})
    assert not fs.matches({"a": "x"})


def test_the_quota_and_the_length_limit_are_inclusive() -> None:
    assert len(filters(*[{"a": [i]} for i in range(MAX_FILTERS)]).patterns) == MAX_FILTERS
    padded = '{"a": ["x"]' + " " * (MAX_PATTERN_LENGTH - 12) + "}"
    assert len(padded) == MAX_PATTERN_LENGTH
    assert filters(padded).matches({"a": "x"})


def test_a_raised_quota() -> None:
    many = criteria(*[{"a": [i]} for i in range(10)])
    assert Filters.parse(many, max_filters=10).matches({"a": 9})
    with pytest.raises(FilterError, match="maximum of 5"):
        Filters.parse(many)


INVALID: dict[str, tuple[Any, str]] = {
    # (criteria or a single pattern, part of the message)
    "not JSON": ('{"a": ["x"]', "not valid JSON"),
    "empty pattern string": ("", "not valid JSON"),
    "pattern is an array": ('["a"]', "JSON object"),
    "pattern is a string": ('"a"', "JSON object"),
    "pattern is null": ("null", "JSON object"),
    "leaf is a string": ({"a": "x"}, "array of matchers"),
    "leaf is a number": ({"a": 5}, "array of matchers"),
    "leaf is null": ({"a": None}, "array of matchers"),
    "leaf array is empty": ({"a": []}, "must not be empty"),
    "nested object is empty": ({"a": {}}, "must not be empty"),
    "nested arrays": ({"a": [["x"]]}, "cannot be nested"),
    "unknown operator": ({"a": [{"contains": "x"}]}, "unknown operator 'contains'"),
    "two operators in one matcher": ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one operator"),
    "empty matcher object": ({"a": [{}]}, "exactly one operator"),
    "wildcard is refused": ({"a": [{"wildcard": "*.png"}]}, "not supported"),
    "cidr is refused": ({"a": [{"cidr": "10.0.0.0/24"}]}, "not supported"),
    "prefix takes a string": ({"a": [{"prefix": 5}]}, "'prefix' takes a string"),
    "prefix with an unknown option": ({"a": [{"prefix": {"ignore-case": "x"}}]}, "equals-ignore-case"),
    "suffix takes a string": ({"a": [{"suffix": ["x"]}]}, "'suffix' takes a string"),
    "equals-ignore-case takes a string": ({"a": [{"equals-ignore-case": 1}]}, "takes a string"),
    "exists takes a boolean": ({"a": [{"exists": "yes"}]}, "true or false"),
    "anything-but empty list": ({"a": [{"anything-but": []}]}, "strings only or numbers only"),
    "anything-but mixed list": ({"a": [{"anything-but": ["x", 1]}]}, "strings only or numbers only"),
    "anything-but boolean": ({"a": [{"anything-but": True}]}, "strings only or numbers only"),
    "anything-but null": ({"a": [{"anything-but": None}]}, "strings only or numbers only"),
    "anything-but with another operator": ({"a": [{"anything-but": {"numeric": [">", 1]}}]}, "anything-but"),
    "numeric not a list": ({"a": [{"numeric": 5}]}, "'numeric' takes"),
    "numeric empty": ({"a": [{"numeric": []}]}, "'numeric' takes"),
    "numeric operator without operand": ({"a": [{"numeric": [">"]}]}, "'numeric' takes"),
    "numeric string operand": ({"a": [{"numeric": [">", "5"]}]}, "'numeric' takes"),
    "numeric boolean operand": ({"a": [{"numeric": ["=", True]}]}, "'numeric' takes"),
    "numeric unknown operator": ({"a": [{"numeric": ["!=", 5]}]}, "'numeric' takes"),
    "numeric operator not a string": ({"a": [{"numeric": [[">"], 5]}]}, "'numeric' takes"),
    "numeric three elements": ({"a": [{"numeric": [">", 5, "<"]}]}, "'numeric' takes"),
    "numeric = in a range": ({"a": [{"numeric": ["=", 5, "<", 10]}]}, "'numeric' takes"),
    "numeric two lower bounds": ({"a": [{"numeric": [">", 5, ">=", 10]}]}, "'numeric' takes"),
    "numeric inverted range": ({"a": [{"numeric": [">", 10, "<", 5]}]}, "'numeric' takes"),
    "numeric empty range": ({"a": [{"numeric": [">=", 5, "<=", 5]}]}, "'numeric' takes"),
    "$or not a list": ({"$or": {"a": ["x"]}}, "non-empty array of objects"),
    "$or empty": ({"$or": []}, "non-empty array of objects"),
    "$or of non-objects": ({"$or": [["x"]]}, "non-empty array of objects"),
    "$or with an empty branch": ({"$or": [{"a": ["x"]}, {}]}, "must not be empty"),
    "$or with an invalid branch": ({"$or": [{"a": ["x"]}, {"b": "y"}]}, "array of matchers"),
    "invalid deep inside": ({"a": {"b": {"c": [{"numeric": [">"]}]}}}, "a.b.c"),
    "too many filters": (criteria(*[{"a": [i]} for i in range(MAX_FILTERS + 1)]), "maximum of 5"),
    "pattern too long": (criteria('{"a": ["x"]' + " " * MAX_PATTERN_LENGTH + "}"), "longer than 4096"),
    "criteria not an object": (["x"], "FilterCriteria must be an object"),
    "Filters not a list": ({"Filters": {"Pattern": "{}"}}, "must be a list"),
    "filter without Pattern": ({"Filters": [{}]}, "Pattern is required"),
    "Pattern not a string": ({"Filters": [{"Pattern": {"a": ["x"]}}]}, "must be a string"),
    "filter not an object": ({"Filters": ["{}"]}, "Pattern is required"),
}


@pytest.mark.parametrize(("given", "message"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_criteria(given: Any, message: str) -> None:
    is_criteria = isinstance(given, list) or (isinstance(given, dict) and "Filters" in given)
    with pytest.raises(FilterError) as raised:
        Filters.parse(given if is_criteria else criteria(given))
    assert message in str(raised.value)


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


def test_errors_name_the_filter() -> None:
    with pytest.raises(FilterError, match="^Filter 2: "):
        Filters.parse(criteria({"a": ["x"]}, {"a": "x"}))


# SQS: Lambda parses a JSON body so that patterns can look inside it.

SQS_RECORD = {"messageId": "m-1", "body": "", "attributes": {"ApproximateReceiveCount": "1"},
              "messageAttributes": {}, "eventSource": "aws:sqs"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"RequestCode": "BBBB", "n": 2}', {"RequestCode": "BBBB", "n": 2}),
        ("[1, 2]", [1, 2]),
        ("hello", "hello"),
        ("123", "123"),  # JSON, but not an object or array: a plain body
        ('"quoted"', '"quoted"'),
        ("{not json", "{not json"),
        ("", ""),
    ],
)
def test_sqs_view_parses_json_bodies(body: str, expected: Any) -> None:
    record = {**SQS_RECORD, "body": body}
    before = copy.deepcopy(record)
    view = sqs_view(record)
    assert view["body"] == expected
    assert view["messageId"] == "m-1" and view["attributes"] == record["attributes"]
    assert record == before  # a copy: the record itself is untouched


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ({"body": {"RequestCode": ["BBBB"]}}, '{"RequestCode": "BBBB"}', True),
        ({"body": {"RequestCode": ["BBBB"]}}, '{"RequestCode": "AAAA"}', False),
        ({"body": ["hello"]}, "hello", True),
        ({"body": [{"prefix": "hel"}]}, "hello", True),
        ({"body": {"RequestCode": ["BBBB"]}}, "RequestCode BBBB", False),  # plain body, JSON pattern: dropped
        ({"body": ['{"a": 1}']}, '{"a": 1}', False),  # JSON body, plain pattern: dropped
        ({"attributes": {"ApproximateReceiveCount": ["1"]}}, "x", True),  # metadata only
    ],
)
def test_sqs_patterns_through_the_view(pattern: dict[str, Any], body: str, expected: bool) -> None:
    assert filters(pattern).matches(sqs_view({**SQS_RECORD, "body": body})) is expected


# Kinesis: Lambda's patterns see the record's kinesis fields at the top, with data decoded.

def kinesis_record(data: bytes) -> dict[str, Any]:
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "1", "sequenceNumber": "4959",
                    "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": 1545084650.987},
        "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record", "awsRegion": "us-east-2",
    }


def test_kinesis_view_decodes_json_data_and_lifts_the_kinesis_fields() -> None:
    record = kinesis_record(b'{"order": {"type": "buy", "quantity": 1000}}')
    before = copy.deepcopy(record)
    view = kinesis_view(record)
    assert view["data"] == {"order": {"type": "buy", "quantity": 1000}}
    assert view["partitionKey"] == "1" and view["eventSource"] == "aws:kinesis"
    assert "kinesis" not in view
    assert record == before  # a copy: the record itself is untouched


@pytest.mark.parametrize(
    "data",
    [b"plain text", b"42", '{"a": "caf\u00e9"}'.encode("latin-1"), b""],  # not JSON containers, not UTF-8, empty
    ids=["plain", "json-scalar", "not-utf8", "empty"],
)
def test_kinesis_view_leaves_other_data_as_base64(data: bytes) -> None:
    record = kinesis_record(data)
    assert kinesis_view(record)["data"] == record["kinesis"]["data"]


def test_kinesis_view_leaves_invalid_base64_as_is() -> None:
    record = kinesis_record(b"")
    record["kinesis"]["data"] = "not base64!"
    assert kinesis_view(record)["data"] == "not base64!"


@pytest.mark.parametrize(
    ("pattern", "data", "expected"),
    [
        ({"data": {"order": {"type": ["buy"]}}}, b'{"order": {"type": "buy"}}', True),
        ({"data": {"order": {"type": ["buy"]}}}, b'{"order": {"type": "sell"}}', False),
        ({"data": {"order": {"quantity": [{"numeric": [">=", 1000]}]}}}, b'{"order": {"quantity": 1000}}', True),
        ({"partitionKey": ["1"], "data": {"order": {"type": ["buy"]}}}, b'{"order": {"type": "buy"}}', True),
        ({"partitionKey": ["2"]}, b'{"order": {"type": "buy"}}', False),
        ({"data": {"order": {"type": ["buy"]}}}, b"order type buy", False),  # non-JSON data: dropped
    ],
)
def test_kinesis_patterns_through_the_view(pattern: dict[str, Any], data: bytes, expected: bool) -> None:
    assert filters(pattern).matches(kinesis_view(kinesis_record(data))) is expected


def test_dynamodb_records_are_filtered_as_they_are() -> None:
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": {"id": {"BOOL": True}, "n": {"N": "7"}}}}
    fs = filters({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"id": {"BOOL": [True]}}}})
    assert fs.matches(record)
    assert not fs.matches({**record, "eventName": "MODIFY"})
