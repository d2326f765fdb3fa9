"""The rest-json server protocol driven by botocore's real Lambda model (squall/api/protocol.py)."""

from __future__ import annotations

import base64
import inspect
import re
from urllib.parse import quote

import orjson
import pytest

from squall import errors
from squall.api.protocol import HttpResponse, RestJsonProtocol, load_service_model, parse_query
from squall.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    LambdaError,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
    TooManyRequests,
    UnknownOperation,
    Validation,
)

MODEL = load_service_model()
PROTOCOL = RestJsonProtocol(MODEL)
ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-fn:$LATEST"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"

# A value for every URI label of the model; ARNs contain ':' '$' and even '/' that must be encoded.
LABEL_VALUES = {
    "FunctionName": ARN,
    "Resource": "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
    "CodeSigningConfigArn": "arn:aws:lambda:us-east-1:123456789012:code-signing-config:csc-0123456789abcdefg",
    "DurableExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/run/1 2",
    "LayerName": "arn:aws:lambda:us-east-1:123456789012:layer:my-layer",
    "VersionNumber": "3",
    "Name": "prod",
    "StatementId": "sid-1",
    "UUID": "a1b2c3d4-0000-1111-2222-333344445555",
    "CapacityProviderName": "cp-1",
    "CallbackId": "cb+1==",
}
LABEL = re.compile(r"\{([^}+]+)\+?\}")


def op(name: str):
    return MODEL.operation_model(name)


def request_for(name: str) -> tuple[str, str, dict[str, list[str]], dict[str, str]]:
    """(method, raw path, query, expected path params) for one operation, labels percent-encoded."""
    http = op(name).http
    path, _, literal = http["requestUri"].partition("?")
    labels = LABEL.findall(path)
    raw = LABEL.sub(lambda m: quote(sample(m.group(1)), safe=""), path)
    return http["method"], raw, parse_query(literal), {label: sample(label) for label in labels}


def sample(label: str) -> str:
    """A value for a URI label; labels of operations newer botocore models add get an ARN-like one."""
    return LABEL_VALUES.get(label, f"arn:aws:lambda:us-east-1:123456789012:{label.lower()}:a/b c$d")


def body_of(response: HttpResponse):
    return orjson.loads(response.body)


def header(response: HttpResponse, name: str) -> str | None:
    values = [v for k, v in response.headers if k.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


def parse(name: str, *, path=None, query=None, headers=None, body: bytes = b""):
    return PROTOCOL.parse(op(name), path or {}, query or {}, headers or {}, body)


def validation_message(excinfo) -> str:
    assert isinstance(excinfo.value, Validation)
    return excinfo.value.message


# ================================================================== routing


@pytest.mark.parametrize("name", MODEL.operation_names)
def test_every_operation_routes_with_encoded_labels(name: str) -> None:
    method, raw, query, expected = request_for(name)
    matched, params = PROTOCOL.match(method, raw, query)
    assert matched.name == name
    assert params == expected


@pytest.mark.parametrize("name", MODEL.operation_names)
def test_every_operation_routes_with_trailing_slash(name: str) -> None:
    method, raw, query, expected = request_for(name)
    matched, params = PROTOCOL.match(method, raw + "/", query)
    assert matched.name == name
    assert params == expected


def test_route_table_is_unambiguous() -> None:
    # No two operations share a method, a path template and a literal query.
    seen = {}
    for name in MODEL.operation_names:
        http = op(name).http
        key = (http["method"], LABEL.sub("{}", http["requestUri"].rstrip("/")))
        assert key not in seen, f"{name} and {seen[key]} collide"
        seen[key] = name


def test_unencoded_arn_with_colons_still_routes() -> None:
    matched, params = PROTOCOL.match("GET", f"/2015-03-31/functions/{ARN}/configuration", {})
    assert matched.name == "GetFunctionConfiguration"
    assert params == {"FunctionName": ARN}


def test_literal_query_routes_win_over_bare_paths() -> None:
    assert PROTOCOL.match("GET", "/2018-10-31/layers", {})[0].name == "ListLayers"
    assert PROTOCOL.match("GET", "/2018-10-31/layers", {"find": ["LayerVersion"], "Arn": ["x"]})[0].name == (
        "GetLayerVersionByArn"
    )
    assert PROTOCOL.match("GET", "/2018-10-31/layers", {"find": ["Other"]})[0].name == "ListLayers"
    base = f"/2019-09-30/functions/{quote(ARN, safe='')}/provisioned-concurrency"
    assert PROTOCOL.match("GET", base, {"Qualifier": ["1"]})[0].name == "GetProvisionedConcurrencyConfig"
    assert PROTOCOL.match("GET", base, {"List": ["ALL"]})[0].name == "ListProvisionedConcurrencyConfigs"
    assert PROTOCOL.match("GET", base + "/", {"List": ["ALL"], "MaxItems": ["2"]})[0].name == (
        "ListProvisionedConcurrencyConfigs"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/2015-03-31/functions/my-fn/unknown"),
        ("GET", "/2015-03-31/functions/my-fn/configuration/extra"),
        ("PATCH", "/2015-03-31/functions/my-fn"),
        ("POST", "/2015-03-31/functions/my-fn"),
        ("GET", "/2015-03-31/function/my-fn"),
        ("GET", "/2014-11-13/functions/my-fn/invocations"),
        ("GET", "/2015-03-31/functions//configuration"),
    ],
)
def test_unknown_path_or_method_is_unknown_operation(method: str, path: str) -> None:
    with pytest.raises(UnknownOperation):
        PROTOCOL.match(method, path, {})


def test_restricted_operation_set() -> None:
    proto = RestJsonProtocol(MODEL, operations={"Invoke"})
    assert proto.match("POST", "/2015-03-31/functions/f/invocations", {})[0].name == "Invoke"
    with pytest.raises(UnknownOperation):
        proto.match("GET", "/2015-03-31/functions/f", {})


def test_parse_query_keeps_blank_values() -> None:
    assert parse_query(b"a=1&b=&a=2") == {"a": ["1", "2"], "b": [""]}
    assert parse_query("") == {}
    assert parse_query(b"Qualifier=%24LATEST") == {"Qualifier": ["$LATEST"]}


# ================================================================== parse


def test_parse_invoke_headers_query_uri_and_blob_payload() -> None:
    payload = b'{"key": "value", "bin": "\xff"}'
    params = parse(
        "Invoke",
        path={"FunctionName": "my-fn"},
        query={"Qualifier": ["prod"]},
        headers={
            "x-amz-invocation-type": "Event",
            "x-amz-log-type": "Tail",
            "x-amz-client-context": "eyJhIjoxfQ==",
            "x-unrelated": "ignored",
        },
        body=payload,
    )
    assert params == {
        "FunctionName": "my-fn",
        "Qualifier": "prod",
        "InvocationType": "Event",
        "LogType": "Tail",
        "ClientContext": "eyJhIjoxfQ==",
        "Payload": payload,  # raw bytes, not JSON-decoded, not base64
    }


def test_parse_invoke_empty_body() -> None:
    assert parse("Invoke", path={"FunctionName": "f"}) == {"FunctionName": "f", "Payload": b""}


def test_parse_invoke_enum_header() -> None:
    with pytest.raises(Validation) as info:
        parse("Invoke", path={"FunctionName": "f"}, headers={"x-amz-invocation-type": "Bogus"})
    assert validation_message(info) == (
        "1 validation error detected: Value 'Bogus' at 'invocationType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
    )


def test_parse_querystring_integers_and_routing_end_to_end() -> None:
    matched, path = PROTOCOL.match("GET", "/2015-03-31/functions/", {"MaxItems": ["50"], "Marker": ["m"]})
    params = PROTOCOL.parse(matched, path, {"MaxItems": ["50"], "Marker": ["m"]}, {}, b"")
    assert params == {"MaxItems": 50, "Marker": "m"}


def test_parse_querystring_not_an_integer() -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse("ListFunctions", query={"MaxItems": ["lots"]})
    assert "MaxItems" in info.value.message and "lots" in info.value.message


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        ("0", "Member must have value greater than or equal to 1"),
        ("10001", "Member must have value less than or equal to 10000"),
    ],
)
def test_parse_querystring_integer_range(value: str, constraint: str) -> None:
    with pytest.raises(Validation) as info:
        parse("ListFunctions", query={"MaxItems": [value]})
    assert validation_message(info) == (
        f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy constraint: {constraint}"
    )


def test_parse_querystring_boundaries_are_inclusive() -> None:
    assert parse("ListFunctions", query={"MaxItems": ["1"]}) == {"MaxItems": 1}
    assert parse("ListFunctions", query={"MaxItems": ["10000"]}) == {"MaxItems": 10000}


def create_body(**overrides) -> dict:
    body = {
        "FunctionName": "my-fn",
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(b"PK\x03\x04zip-bytes\x00\xff").decode()},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def parse_create(**overrides):
    return parse("CreateFunction", body=orjson.dumps(create_body(**overrides)))


def test_parse_json_body_decodes_base64_blobs() -> None:
    params = parse_create(MemorySize=256, Environment={"Variables": {"AB": "1"}}, Architectures=["arm64"])
    assert params["Code"] == {"ZipFile": b"PK\x03\x04zip-bytes\x00\xff"}
    assert params["MemorySize"] == 256
    assert params["Environment"] == {"Variables": {"AB": "1"}}
    assert params["Architectures"] == ["arm64"]
    assert params["FunctionName"] == "my-fn"


def test_parse_json_body_ignores_nulls_and_unknown_members() -> None:
    params = parse_create(Description=None, NotAMember=1)
    assert "Description" not in params
    assert "NotAMember" not in params


@pytest.mark.parametrize("bad", ["not base64!", "QUJ", "QQ", "Q*=="])
def test_parse_bad_base64_is_invalid_parameter(bad: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_create(Code={"ZipFile": bad})
    assert info.value.message == "Could not decode base64-encoded blob value"


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"nul", b"\xff\xfe", b'{"FunctionName": "x",}'])
def test_parse_malformed_json_is_invalid_request_content(body: bytes) -> None:
    with pytest.raises(InvalidRequestContent) as info:
        parse("CreateFunction", body=body)
    assert info.value.message.startswith("Could not parse request body into json")
    assert info.value.code == "InvalidRequestContentException"


@pytest.mark.parametrize("body", [b"[]", b"1", b'"s"'])
def test_parse_non_object_json_is_invalid_request_content(body: bytes) -> None:
    with pytest.raises(InvalidRequestContent):
        parse("CreateFunction", body=body)


@pytest.mark.parametrize("missing", ["Role", "Code", "FunctionName"])
def test_parse_required_member_missing(missing: str) -> None:
    with pytest.raises(Validation) as info:
        parse_create(**{missing: ...})
    path = missing[0].lower() + missing[1:]
    assert validation_message(info) == (
        f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"
    )


def test_parse_empty_body_with_required_members() -> None:
    with pytest.raises(Validation) as info:
        parse("CreateFunction", body=b"")
    assert "Member must not be null" in info.value.message


def test_parse_required_uri_member_missing() -> None:
    with pytest.raises(Validation) as info:
        parse("GetFunction")
    assert "Value null at 'functionName'" in info.value.message


@pytest.mark.parametrize(
    ("member", "value", "path", "kind"),
    [
        ("MemorySize", "256", "memorySize", "integer"),
        ("MemorySize", True, "memorySize", "integer"),
        ("MemorySize", 1.5, "memorySize", "integer"),
        ("Publish", "yes", "publish", "boolean"),
        ("Description", 5, "description", "string"),
        ("Environment", [], "environment", "structure"),
        ("Architectures", "x86_64", "architectures", "list"),
        ("Tags", ["a"], "tags", "map"),
    ],
)
def test_parse_wrong_type(member: str, value, path: str, kind: str) -> None:
    with pytest.raises(Validation) as info:
        parse_create(**{member: value})
    shown = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value
    if isinstance(value, list):
        shown = "[" + ", ".join(map(str, value)) + "]"
    assert validation_message(info).startswith(f"1 validation error detected: Value '{shown}' at '{path}'")
    assert info.value.message.endswith(f"Member must be of type {kind}")


def test_parse_int_min() -> None:
    with pytest.raises(Validation) as info:
        parse_create(MemorySize=127)
    assert validation_message(info) == (
        "1 validation error detected: Value '127' at 'memorySize' failed to satisfy constraint: "
        "Member must have value greater than or equal to 128"
    )
    with pytest.raises(Validation) as info:
        parse_create(Timeout=0)
    assert "Value '0' at 'timeout'" in info.value.message


def test_parse_int_max() -> None:
    limit = op("CreateFunction").input_shape.members["MemorySize"].metadata["max"]
    assert parse_create(MemorySize=limit)["MemorySize"] == limit
    with pytest.raises(Validation) as info:
        parse_create(MemorySize=limit + 1)
    assert validation_message(info) == (
        f"1 validation error detected: Value '{limit + 1}' at 'memorySize' failed to satisfy constraint: "
        f"Member must have value less than or equal to {limit}"
    )


def test_parse_string_length() -> None:
    assert parse_create(Description="d" * 256)["Description"] == "d" * 256
    with pytest.raises(Validation) as info:
        parse_create(Description="d" * 257)
    assert validation_message(info) == (
        f"1 validation error detected: Value '{'d' * 257}' at 'description' failed to satisfy constraint: "
        "Member must have length less than or equal to 256"
    )


def test_parse_string_min_length_in_uri() -> None:
    with pytest.raises(Validation) as info:
        parse("GetFunction", path={"FunctionName": ""})
    assert "Member must have length greater than or equal to 1" in info.value.message


def test_parse_enum() -> None:
    with pytest.raises(Validation) as info:
        parse_create(Runtime="cobol85")
    message = validation_message(info)
    enum = op("CreateFunction").input_shape.members["Runtime"].enum
    assert message == (
        "1 validation error detected: Value 'cobol85' at 'runtime' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{', '.join(enum)}]"
    )
    assert "python3.11" in enum


def test_parse_pattern() -> None:
    with pytest.raises(Validation) as info:
        parse_create(Role="not-a-role")
    assert validation_message(info) == (
        "1 validation error detected: Value 'not-a-role' at 'role' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
    )


def test_parse_pattern_is_a_full_match() -> None:
    with pytest.raises(Validation):
        parse_create(Role=ROLE + " trailing")
    with pytest.raises(Validation):
        parse_create(Handler="app.handler\n")
    with pytest.raises(Validation):
        parse("GetFunction", path={"FunctionName": "my fn"})


def test_parse_nested_validation_paths() -> None:
    with pytest.raises(Validation) as info:
        parse_create(Environment={"Variables": {"1BAD": "x"}})
    assert "Value '{1BAD=x}' at 'environment.variables' failed to satisfy constraint: Map keys must satisfy" in info.value.message
    with pytest.raises(Validation) as info:
        parse_create(TracingConfig={"Mode": "Sometimes"})
    assert "Value 'Sometimes' at 'tracingConfig.mode'" in info.value.message
    with pytest.raises(Validation) as info:
        parse_create(Architectures=["sparc"])
    assert "Value '[sparc]' at 'architectures' failed to satisfy constraint: Member must satisfy constraint: [" in info.value.message


def test_parse_empty_base64_blob_is_empty_bytes() -> None:
    assert op("CreateFunction").input_shape.members["Code"].members["ZipFile"].type_name == "blob"
    assert parse_create(Code={"ZipFile": ""})["Code"] == {"ZipFile": b""}


def test_parse_operation_without_input() -> None:
    assert parse("GetAccountSettings", body=b"garbage") == {}


# ================================================================== serialize


def test_serialize_status_from_response_code_and_json_body() -> None:
    response = PROTOCOL.serialize(
        op("CreateFunction"),
        {"FunctionName": "my-fn", "MemorySize": 128, "Description": None, "NotModelled": 1},
    )
    assert response.status == 201
    assert header(response, "Content-Type") == "application/json"
    assert body_of(response) == {"FunctionName": "my-fn", "MemorySize": 128}


def test_serialize_nested_none_omitted() -> None:
    response = PROTOCOL.serialize(
        op("GetFunctionConfiguration"),
        {"FunctionName": "f", "Environment": {"Variables": {"A1": "x"}, "Error": None}, "Layers": None},
    )
    assert response.status == 200
    assert body_of(response) == {"FunctionName": "f", "Environment": {"Variables": {"A1": "x"}}}


def test_serialize_empty_output() -> None:
    response = PROTOCOL.serialize(op("GetFunctionConcurrency"), {})
    assert response.status == 200
    assert body_of(response) == {}
    response = PROTOCOL.serialize(op("GetFunctionConcurrency"), None)
    assert body_of(response) == {}


def test_serialize_operation_without_output_shape() -> None:
    response = PROTOCOL.serialize(op("DeleteAlias"), None)
    assert (response.status, response.body, response.headers) == (204, b"", [])


def test_serialize_invoke_status_member_headers_and_raw_payload() -> None:
    payload = b'{"errorMessage": "boom"}\xff'
    response = PROTOCOL.serialize(
        op("Invoke"),
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "LogResult": "U1RBUlQ=",
            "ExecutedVersion": "$LATEST",
            "Payload": payload,
        },
    )
    assert response.status == 200
    assert response.body == payload
    assert header(response, "X-Amz-Function-Error") == "Unhandled"
    assert header(response, "X-Amz-Log-Result") == "U1RBUlQ="
    assert header(response, "X-Amz-Executed-Version") == "$LATEST"
    assert header(response, "Content-Type") is None  # the payload is not a JSON document we produce


def test_serialize_status_code_member_overrides_response_code() -> None:
    response = PROTOCOL.serialize(op("Invoke"), {"StatusCode": 202, "Payload": b""})
    assert response.status == 202
    assert response.body == b""
    response = PROTOCOL.serialize(op("Invoke"), {"StatusCode": 204, "FunctionError": None, "ExecutedVersion": None})
    assert response.status == 204
    assert header(response, "X-Amz-Function-Error") is None
    assert header(response, "X-Amz-Executed-Version") is None


def test_serialize_invoke_payload_bytearray() -> None:
    response = PROTOCOL.serialize(op("Invoke"), {"StatusCode": 200, "Payload": bytearray(b"[1]")})
    assert response.body == b"[1]" and isinstance(response.body, bytes)


# ================================================================== serialize_error


@pytest.mark.parametrize(
    ("error", "status", "key"),
    [
        (InvalidParameterValue("bad"), 400, "message"),
        (ResourceConflict("busy"), 409, "message"),
        (ResourceNotFound("Function not found: x"), 404, "Message"),
        (ServiceError("oops"), 500, "Message"),
        (InvalidRequestContent("json"), 400, "message"),
    ],
)
def test_serialize_error_status_and_message_spelling(error: LambdaError, status: int, key: str) -> None:
    response = PROTOCOL.serialize_error(error)
    assert response.status == status
    body = body_of(response)
    assert body == {"Type": "User" if status < 500 else "Service", key: error.message}
    other = "Message" if key == "message" else "message"
    assert other not in body
    assert header(response, "x-amzn-ErrorType") == error.code
    assert header(response, "Content-Type") == "application/json"


def test_serialize_error_resource_not_found_matches_aws_body() -> None:
    response = PROTOCOL.serialize_error(
        ResourceNotFound("Function not found: arn:aws:lambda:us-east-1:123456789012:function:foo")
    )
    assert response.body == (
        b'{"Type":"User","Message":"Function not found: arn:aws:lambda:us-east-1:123456789012:function:foo"}'
    )


def test_serialize_error_too_many_requests() -> None:
    error = TooManyRequests("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded", 3)
    response = PROTOCOL.serialize_error(error)
    assert response.status == 429
    assert body_of(response) == {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }
    assert header(response, "Retry-After") == "3"
    assert header(response, "x-amzn-ErrorType") == "TooManyRequestsException"


def test_serialize_error_too_many_requests_without_retry_after() -> None:
    response = PROTOCOL.serialize_error(TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded"))
    assert header(response, "Retry-After") is None
    assert body_of(response)["Reason"] == "ConcurrentInvocationLimitExceeded"


def test_serialize_error_unmodelled_unknown_operation() -> None:
    response = PROTOCOL.serialize_error(UnknownOperation("Unknown operation GET /nope"))
    assert response.status == 404
    assert header(response, "x-amzn-ErrorType") == "UnknownOperationException"
    assert body_of(response) == {"Type": "User", "message": "Unknown operation GET /nope"}


def test_serialize_error_unknown_code_is_a_service_error() -> None:
    class Weird(LambdaError):
        code = "SomethingNobodyModelledException"

    response = PROTOCOL.serialize_error(Weird("?"))
    assert response.status == 500
    assert body_of(response)["Type"] == "Service"


def test_serialize_error_round_trips_through_botocore_parser() -> None:
    """What boto3 itself would make of our error responses."""
    from botocore.parsers import RestJSONParser

    parser = RestJSONParser()
    for error in (
        ResourceNotFound("nf"),
        InvalidParameterValue("ipv"),
        TooManyRequests("slow", "CallerRateLimitExceeded", 7),
    ):
        response = PROTOCOL.serialize_error(error)
        headers = {k.lower(): v for k, v in response.headers}  # what an HTTP client hands botocore
        parsed = parser.parse(
            {"status_code": response.status, "headers": headers, "body": response.body},
            op("Invoke").output_shape,
        )
        assert parsed["Error"]["Code"] == error.code
        assert parsed["Error"]["Message"] == error.message
        assert parsed["ResponseMetadata"]["HTTPStatusCode"] == response.status


# ================================================================== consistency with squall.errors


def _error_classes() -> list[type[LambdaError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, LambdaError) and cls is not LambdaError
    ]


def _documented_statuses() -> dict[str, int]:
    """The status column of the table in squall.errors' docstring."""
    table = {}
    for match in re.finditer(r"(\d{3})\s+([A-Za-z]+Exception)", errors.__doc__ or ""):
        table[match.group(2)] = int(match.group(1))
    return table


def _instance(cls: type[LambdaError]) -> LambdaError:
    if cls is TooManyRequests:
        return TooManyRequests("m", "ConcurrentInvocationLimitExceeded")
    return cls("m")


def test_every_modelled_error_class_gets_the_model_status() -> None:
    checked = 0
    for cls in _error_classes():
        if cls.code not in MODEL.shape_names:
            continue
        shape = MODEL.shape_for(cls.code)
        assert shape.metadata.get("exception"), cls
        expected = shape.metadata["error"]["httpStatusCode"]
        response = PROTOCOL.serialize_error(_instance(cls))
        assert response.status == expected, cls
        key = "message" if "message" in shape.members else "Message"
        assert body_of(response)[key] == "m", cls
        checked += 1
    assert checked >= 10


def test_documented_error_statuses_agree_with_the_model() -> None:
    documented = _documented_statuses()
    assert len(documented) >= 10
    codes = {cls.code for cls in _error_classes()}
    for code, status in documented.items():
        assert code in codes, f"{code} documented but no class has it"
        assert PROTOCOL.serialize_error(type("E", (LambdaError,), {"code": code})("m")).status == status, code


def test_only_aws_common_errors_are_unmodelled() -> None:
    unmodelled = {cls.code for cls in _error_classes() if cls.code not in MODEL.shape_names}
    signature = {  # answered by AWS's front end before any service (every protocol has them)
        "MissingAuthenticationTokenException", "IncompleteSignatureException", "InvalidSignatureException",
        "UnrecognizedClientException", "ExpiredTokenException",
    }
    iam = {"NoSuchEntity", "EntityAlreadyExists", "DeleteConflict", "LimitExceeded", "ValidationError", "InvalidInput",
           "MalformedPolicyDocument"}  # IAM's own, rendered by the query protocol
    assert unmodelled == {
        "UnknownOperationException", "ServiceUnavailableException", "ValidationException", "AccessDeniedException",
        "RequestEntityTooLargeException", "NotImplementedException", *signature, *iam,
    }
    assert PROTOCOL.serialize_error(type("E", (LambdaError,), {"code": "ServiceUnavailableException"})("m")).status == 503
