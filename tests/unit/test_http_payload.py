"""HTTP request ⇄ Lambda event and answer ⇄ HTTP response (squall/triggers/http_payload.py).

Sources: AWS's "Lambda function URLs request and response payloads" and API Gateway's
"payload format version" pages; where they disagree with what AWS does, the expectations
follow AWS's behaviour as recorded in LocalStack's AWS-validated function-URL snapshots
(a returned string is sent without quotes; inferred JSON is compacted; "418" is accepted;
an object body is serialised).
"""

from __future__ import annotations

import base64
import json

import pytest

from squall.triggers.http_payload import (
    BadFunctionResponse,
    HttpRequest,
    HttpResponse,
    RequestContext,
    compact_json,
    event_v1,
    event_v2,
    request_time,
    response_v1,
    response_v2,
)

DOMAIN = "abc123.lambda-url.us-east-1.localhost"
EPOCH_MS = 1583348638390  # 2020-03-04T19:03:58.390Z
CTX = RequestContext(account_id="123456789012", api_id="abc123", domain_name=DOMAIN, request_id="rid-1")
IAM = {
    "accessKey": "AKIAEXAMPLE",
    "accountId": "111122223333",
    "callerId": "AIDAEXAMPLE",
    "cognitoIdentity": None,
    "principalOrgId": None,
    "userArn": "arn:aws:iam::111122223333:user/u",
    "userId": "AIDAEXAMPLE",
}
JSON_CT = ("content-type", "application/json")


def req(
    headers: list[tuple[str, str]] | None = None,
    *,
    body: bytes = b"",
    path: str = "/",
    query: str = "",
    method: str = "GET",
) -> HttpRequest:
    return HttpRequest(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=headers or [],
        body=body,
        source_ip="10.0.0.7",
        time_epoch_ms=EPOCH_MS,
    )


# ---------------------------------------------------------------- event 2.0


def test_v2_full_event_for_a_plain_get() -> None:
    event = event_v2(req([("Host", DOMAIN), ("User-Agent", "curl/8")], path="/a/b"), CTX)
    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/a/b",
        "rawQueryString": "",
        "headers": {"host": DOMAIN, "user-agent": "curl/8"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": DOMAIN,
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": "/a/b",
                "protocol": "HTTP/1.1",
                "sourceIp": "10.0.0.7",
                "userAgent": "curl/8",
            },
            "requestId": "rid-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": EPOCH_MS,
        },
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("Content-Type", "text/plain")], {"content-type": "text/plain"}),
        ([("X-Thing", "1"), ("x-thing", "2"), ("X-THING", "3")], {"x-thing": "1,2,3"}),
        ([("A", "1"), ("B", "2"), ("a", "3")], {"a": "1,3", "b": "2"}),
        ([("Cookie", "a=1"), ("X", "y")], {"x": "y"}),  # cookies leave the headers
    ],
    ids=["lower-cased", "repeats-joined", "interleaved-repeats", "cookie-removed"],
)
def test_v2_headers(headers: list[tuple[str, str]], expected: dict[str, str]) -> None:
    assert event_v2(req(headers), CTX)["headers"] == expected


@pytest.mark.parametrize(
    ("headers", "cookies"),
    [
        ([("Cookie", "c1=v1; c2=v2")], ["c1=v1", "c2=v2"]),
        ([("Cookie", "c1=v1"), ("cookie", "c2=v2; c3=v3")], ["c1=v1", "c2=v2", "c3=v3"]),
        ([("Cookie", "c1=v1;c2=v2; ")], ["c1=v1", "c2=v2"]),
    ],
    ids=["one-header", "several-headers", "no-space-and-trailing"],
)
def test_v2_cookies_split_into_a_list(headers: list[tuple[str, str]], cookies: list[str]) -> None:
    assert event_v2(req(headers), CTX)["cookies"] == cookies


def test_v2_cookies_absent_without_a_cookie_header() -> None:
    assert "cookies" not in event_v2(req([("Host", DOMAIN)]), CTX)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&a=2&b=x", {"a": "1,2", "b": "x"}),
        ("q=hello%20world&k%2F=%2Fbar&p=a+b", {"q": "hello world", "k/": "/bar", "p": "a b"}),
        ("multiQuery=foo&multiQuery=%2Fbar", {"multiQuery": "foo,/bar"}),  # as AWS recorded it
        ("flag&empty=", {"flag": "", "empty": ""}),
    ],
    ids=["repeats", "decoding", "aws-recorded", "blank-values"],
)
def test_v2_query_parameters(query: str, expected: dict[str, str]) -> None:
    event = event_v2(req(query=query), CTX)
    assert event["rawQueryString"] == query
    assert event["queryStringParameters"] == expected


def test_v2_query_parameters_absent_for_an_empty_query() -> None:
    event = event_v2(req(query=""), CTX)
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [("/a%20b/c", "/a b/c"), ("/caf%C3%A9", "/café"), ("/pa2%Fth/1", "/pa2%Fth/1")],
    ids=["space", "utf8", "invalid-escape-kept"],
)
def test_v2_raw_path_kept_and_http_path_decoded(raw: str, decoded: str) -> None:
    event = event_v2(req(path=raw), CTX)
    assert event["rawPath"] == raw
    assert event["requestContext"]["http"]["path"] == decoded


@pytest.mark.parametrize(
    ("content_type", "body", "expected_body", "encoded"),
    [
        ("application/json", b'{"k": 1}', '{"k": 1}', False),
        ("application/json; charset=utf-8", b"[1]", "[1]", False),
        ("text/plain", "héllo".encode(), "héllo", False),
        ("Text/HTML", b"<p>", "<p>", False),
        ("image/png", b"\x89PNG\r\n", base64.b64encode(b"\x89PNG\r\n").decode(), True),
        ("text/plain", b"\xff\xfe", base64.b64encode(b"\xff\xfe").decode(), True),
        ("application/x-www-form-urlencoded", b"a=1", base64.b64encode(b"a=1").decode(), True),
        ("multipart/form-data; boundary=x", b"--x--", base64.b64encode(b"--x--").decode(), True),
        (None, b"plain", base64.b64encode(b"plain").decode(), True),
    ],
    ids=["json", "json-charset", "text-utf8", "text-case", "binary", "text-not-utf8", "form", "multipart", "no-ct"],
)
def test_v2_body_text_or_base64(
    content_type: str | None, body: bytes, expected_body: str, encoded: bool
) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    event = event_v2(req(headers, body=body, method="POST"), CTX)
    assert event["body"] == expected_body
    assert event["isBase64Encoded"] is encoded


def test_v2_body_absent_when_empty() -> None:
    event = event_v2(req([("Content-Type", "application/json")], method="POST"), CTX)
    assert "body" not in event
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("domain", "prefix"),
    [(DOMAIN, "abc123"), ("api1.execute-api.us-east-1.amazonaws.com", "api1"), ("localhost", "localhost")],
)
def test_v2_domain_prefix(domain: str, prefix: str) -> None:
    ctx = RequestContext("123456789012", "abc123", domain, "rid-1")
    context = event_v2(req(), ctx)["requestContext"]
    assert (context["domainName"], context["domainPrefix"]) == (domain, prefix)


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "01/Jan/1970:00:00:00 +0000"),
        (EPOCH_MS, "04/Mar/2020:19:03:58 +0000"),
        (1631055022677, "07/Sep/2021:22:50:22 +0000"),  # the pair in AWS's function URL table
        (1703980799999, "30/Dec/2023:23:59:59 +0000"),
    ],
)
def test_request_time_format(epoch_ms: int, text: str) -> None:
    assert request_time(epoch_ms) == text


def test_v2_authorizer_only_when_given() -> None:
    assert "authorizer" not in event_v2(req(), CTX)["requestContext"]
    ctx = RequestContext("123456789012", "abc123", DOMAIN, "rid-1", authorizer_iam=IAM)
    assert event_v2(req(), ctx)["requestContext"]["authorizer"] == {"iam": IAM}


def test_v2_function_url_ignores_route_stage_and_parameters() -> None:
    ctx = RequestContext(
        "123456789012", "abc123", DOMAIN, "rid-1", route_key="GET /x", stage="prod",
        path_parameters={"id": "1"}, stage_variables={"v": "1"},
    )
    event = event_v2(req(), ctx)
    assert (event["routeKey"], event["requestContext"]["routeKey"]) == ("$default", "$default")
    assert event["requestContext"]["stage"] == "$default"
    assert "pathParameters" not in event and "stageVariables" not in event


def test_v2_http_api_route_stage_and_parameters() -> None:
    ctx = RequestContext(
        "123456789012", "api1", "api1.execute-api.us-east-1.amazonaws.com", "rid-1",
        route_key="GET /items/{id}", stage="prod", path_parameters={"id": "7"}, stage_variables={"v": "1"},
    )
    event = event_v2(req(path="/prod/items/7"), ctx, for_function_url=False)
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /items/{id}"
    assert event["requestContext"]["stage"] == "prod"
    assert event["pathParameters"] == {"id": "7"}
    assert event["stageVariables"] == {"v": "1"}
    bare = event_v2(req(), CTX, for_function_url=False)
    assert "pathParameters" not in bare and "stageVariables" not in bare


def test_v2_user_agent_empty_when_absent() -> None:
    assert event_v2(req(), CTX)["requestContext"]["http"]["userAgent"] == ""


# ---------------------------------------------------------------- event 1.0


def test_v1_full_event() -> None:
    request = req(
        [("Host", DOMAIN), ("X-A", "1"), ("x-a", "2"), ("Content-Type", "text/plain"), ("User-Agent", "ua")],
        body=b"hi", path="/items/a%20b", query="p=1&p=2&q=x", method="PUT",
    )
    ctx = RequestContext("123456789012", "api1", DOMAIN, "rid-1", path_parameters={"id": "a b"})
    assert event_v1(request, ctx, "/items/{id}") == {
        "version": "1.0",
        "resource": "/items/{id}",
        "path": "/items/a b",
        "httpMethod": "PUT",
        "headers": {"host": DOMAIN, "x-a": "2", "content-type": "text/plain", "user-agent": "ua"},
        "multiValueHeaders": {
            "host": [DOMAIN], "x-a": ["1", "2"], "content-type": ["text/plain"], "user-agent": ["ua"],
        },
        "queryStringParameters": {"p": "2", "q": "x"},
        "multiValueQueryStringParameters": {"p": ["1", "2"], "q": ["x"]},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api1",
            "domainName": DOMAIN,
            "domainPrefix": "abc123",
            "extendedRequestId": "rid-1",
            "httpMethod": "PUT",
            "identity": {
                "accessKey": None, "accountId": None, "caller": None,
                "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                "sourceIp": "10.0.0.7", "user": None, "userAgent": "ua", "userArn": None,
            },
            "path": "/items/a b",
            "protocol": "HTTP/1.1",
            "requestId": "rid-1",
            "requestTime": "04/Mar/2020:19:03:58 +0000",
            "requestTimeEpoch": EPOCH_MS,
            "resourceId": None,
            "resourcePath": "/items/{id}",
            "stage": "$default",
        },
        "pathParameters": {"id": "a b"},
        "stageVariables": None,
        "body": "hi",
        "isBase64Encoded": False,
    }


def test_v1_nulls_when_nothing_sent() -> None:
    event = event_v1(req(), CTX, "$default")
    for key in ("headers", "multiValueHeaders", "queryStringParameters",
                "multiValueQueryStringParameters", "pathParameters", "stageVariables", "body"):
        assert event[key] is None, key
    assert event["isBase64Encoded"] is False


def test_v1_cookie_header_stays_a_header_and_binary_body_is_base64() -> None:
    event = event_v1(req([("Cookie", "a=1; b=2")], body=b"\x00\x01", method="POST"), CTX, "/")
    assert event["headers"] == {"cookie": "a=1; b=2"}
    assert "cookies" not in event
    assert (event["body"], event["isBase64Encoded"]) == ("AAE=", True)


def test_v1_identity_from_iam_authorizer() -> None:
    ctx = RequestContext("123456789012", "api1", DOMAIN, "rid-1", authorizer_iam=IAM)
    identity = event_v1(req(), ctx, "/")["requestContext"]["identity"]
    assert (identity["accessKey"], identity["accountId"], identity["caller"]) == (
        "AKIAEXAMPLE", "111122223333", "AIDAEXAMPLE",
    )
    assert (identity["user"], identity["userArn"]) == ("AIDAEXAMPLE", "arn:aws:iam::111122223333:user/u")


# ---------------------------------------------------------------- response 2.0


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # Inferred: what AWS sends for answers without statusCode (AWS-recorded cases first).
        (b'"hello"', HttpResponse(200, [JSON_CT], b"hello")),
        (b'{"hello": "world"}', HttpResponse(200, [JSON_CT], b'{"hello":"world"}')),
        (b'["hello", 3, true]', HttpResponse(200, [JSON_CT], b'["hello",3,true]')),
        (b"3", HttpResponse(200, [JSON_CT], b"3")),
        (b"3.1", HttpResponse(200, [JSON_CT], b"3.1")),
        (b"true", HttpResponse(200, [JSON_CT], b"true")),
        # A returned null (Python's None) reaches the client as the JSON text "null".
        (b"null", HttpResponse(200, [JSON_CT], b"null")),
        (b'"say \\"hi\\""', HttpResponse(200, [JSON_CT], b'say "hi"')),
        (b'{"a" : "x  y",\n "b": 1e5}', HttpResponse(200, [JSON_CT], b'{"a":"x  y","b":1e5}')),
        (b'{"body": "x", "headers": {}}', HttpResponse(200, [JSON_CT], b'{"body":"x","headers":{}}')),
        # Structured.
        (
            b'{"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-My": "v"}, "body": "ok"}',
            HttpResponse(201, [("Content-Type", "text/plain"), ("X-My", "v")], b"ok"),
        ),
        (b'{"statusCode": 200, "body": "body123"}', HttpResponse(200, [JSON_CT], b"body123")),
        (b'{"statusCode": 204}', HttpResponse(204, [JSON_CT], b"")),
        (b'{"statusCode": 200, "body": null, "headers": null}', HttpResponse(200, [JSON_CT], b"")),
        (b'{"statusCode": "418", "body": "teapot"}', HttpResponse(418, [JSON_CT], b"teapot")),
        (
            b'{"statusCode": 200, "headers": {"content-type": "text/html"}, "body": "<p>",'
            b' "cookies": ["a=1; Max-Age=60", "b=2"]}',
            HttpResponse(200, [("content-type", "text/html"), ("Set-Cookie", "a=1; Max-Age=60"),
                               ("Set-Cookie", "b=2")], b"<p>"),
        ),
        (
            b'{"statusCode": 200, "isBase64Encoded": true, "body": "AAEC/w=="}',
            HttpResponse(200, [JSON_CT], b"\x00\x01\x02\xff"),
        ),
        (b'{"statusCode": 200, "isBase64Encoded": false, "body": "AAEC"}', HttpResponse(200, [JSON_CT], b"AAEC")),
        (b'{"statusCode": 200, "body": {"k": [1, 2]}}', HttpResponse(200, [JSON_CT], b'{"k":[1,2]}')),
        (b'{"statusCode": 200, "body": "caf\\u00e9"}', HttpResponse(200, [JSON_CT], "café".encode())),
        (b'{"statusCode": 100}', HttpResponse(100, [JSON_CT], b"")),
        (b'{"statusCode": 599}', HttpResponse(599, [JSON_CT], b"")),
    ],
    ids=[
        "string-unquoted", "object-compacted", "list", "int", "float", "bool", "null", "escaped-string",
        "whitespace-only-outside-strings", "body-without-status-is-inferred",
        "structured", "default-content-type", "no-body", "nulls", "string-status", "cookies",
        "base64", "base64-false", "object-body", "unicode-body", "status-100", "status-599",
    ],
)
def test_response_v2(payload: bytes, expected: HttpResponse) -> None:
    assert response_v2(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"statusCode": 200',
        b"\xff\xfe",
        b"NaN",
        b'{"statusCode": 200, "body": Infinity}',
        b'"\\ud800"',
        b'{"statusCode": 99}',
        b'{"statusCode": 600}',
        b'{"statusCode": 200.5}',
        b'{"statusCode": true}',
        b'{"statusCode": null}',
        b'{"statusCode": "abc"}',
        b'{"statusCode": "-200"}',
        b'{"statusCode": 200, "headers": ["a"]}',
        b'{"statusCode": 200, "headers": {"X-N": 1}}',
        b'{"statusCode": 200, "headers": {"X-L": ["a", "b"]}}',
        b'{"statusCode": 200, "headers": {"X-Null": null}}',
        b'{"statusCode": 200, "body": 5}',
        b'{"statusCode": 200, "body": ["a"]}',
        b'{"statusCode": 200, "body": true}',
        b'{"statusCode": 200, "cookies": "a=1"}',
        b'{"statusCode": 200, "cookies": ["a=1", 2]}',
        b'{"statusCode": 200, "isBase64Encoded": true, "body": "not base64!"}',
        b'{"statusCode": 200, "isBase64Encoded": true, "body": "AAE"}',
        b'{"statusCode": 200, "isBase64Encoded": true, "body": {"k": 1}}',
        b'{"statusCode": 200, "isBase64Encoded": "yes", "body": "aGk="}',
        b'{"statusCode": 200, "body": "\\ud800"}',
    ],
    ids=[
        "empty", "not-json", "truncated", "not-utf8", "nan", "infinity", "lone-surrogate-string",
        "status-99", "status-600", "status-float", "status-bool", "status-null", "status-word",
        "status-negative-string", "headers-list", "header-int", "header-list-value", "header-null",
        "body-number", "body-list", "body-bool", "cookies-string", "cookie-int", "bad-base64",
        "base64-padding", "base64-object", "base64-flag-string", "body-lone-surrogate",
    ],
)
def test_response_v2_bad(payload: bytes) -> None:
    with pytest.raises(BadFunctionResponse):
        response_v2(payload)


@pytest.mark.parametrize(
    ("text", "compact"),
    [
        ('{ "a" : [ 1 , 2 ] }', '{"a":[1,2]}'),
        ('"a b"', '"a b"'),
        ('{"k": "x\\" y", "z": " "}', '{"k":"x\\" y","z":" "}'),
        ('[\t1,\r\n2]', "[1,2]"),
    ],
)
def test_compact_json(text: str, compact: str) -> None:
    assert compact_json(text) == compact


# ---------------------------------------------------------------- response 1.0


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"statusCode": 200, "body": "ok"}', HttpResponse(200, [JSON_CT], b"ok")),
        (
            b'{"statusCode": 302, "headers": {"Location": "/x", "Content-Type": "text/plain"}}',
            HttpResponse(302, [("Location", "/x"), ("Content-Type", "text/plain")], b""),
        ),
        (
            b'{"statusCode": 200, "headers": {"A": "1", "B": "2"},'
            b' "multiValueHeaders": {"a": ["1", "3"], "Set-Cookie": ["x=1", "y=2"]}}',
            HttpResponse(200, [JSON_CT, ("a", "1"), ("a", "3"), ("Set-Cookie", "x=1"),
                               ("Set-Cookie", "y=2"), ("B", "2")], b""),
        ),
        (
            b'{"statusCode": 200, "isBase64Encoded": true, "body": "aGk="}',
            HttpResponse(200, [JSON_CT], b"hi"),
        ),
        (b'{"statusCode": "201", "body": null}', HttpResponse(201, [JSON_CT], b"")),
        (b'{"statusCode": 200, "cookies": ["a=1"]}', HttpResponse(200, [JSON_CT], b"")),  # not a 1.0 field
    ],
    ids=["basic", "headers", "merged-headers", "base64", "string-status-null-body", "cookies-ignored"],
)
def test_response_v1(payload: bytes, expected: HttpResponse) -> None:
    assert response_v1(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b'"hello"',
        b"null",
        b"[1]",
        b'{"body": "no status"}',
        b"{bad",
        b'{"statusCode": 700}',
        b'{"statusCode": 200, "body": {"k": 1}}',
        b'{"statusCode": 200, "headers": {"X": 1}}',
        b'{"statusCode": 200, "multiValueHeaders": {"X": "a"}}',
        b'{"statusCode": 200, "multiValueHeaders": {"X": [1]}}',
        b'{"statusCode": 200, "isBase64Encoded": true, "body": "%%%"}',
    ],
    ids=[
        "string", "null", "list", "no-status", "invalid-json", "status-700", "object-body",
        "header-int", "multi-not-list", "multi-int", "bad-base64",
    ],
)
def test_response_v1_bad(payload: bytes) -> None:
    with pytest.raises(BadFunctionResponse):
        response_v1(payload)


@pytest.mark.parametrize("answer", [
    {"statusCode": 200, "headers": {"x-name": "\u2603"}},  # not Latin-1
    {"statusCode": 200, "headers": {"x-a": "1\r\nx-injected: yes"}},  # a line break
    {"statusCode": 200, "headers": {"bad name": "x"}},  # not a token
    {"statusCode": 200, "cookies": ["n=\u2603"]},
    {"statusCode": 200, "cookies": ["a=1\r\nx: y"]},
])
def test_headers_that_cannot_go_on_the_wire_are_a_bad_response(answer):
    with pytest.raises(BadFunctionResponse):
        response_v2(json.dumps(answer).encode())
    if "headers" in answer:
        with pytest.raises(BadFunctionResponse):
            response_v1(json.dumps({"statusCode": 200, "multiValueHeaders": {k: [v] for k, v in answer["headers"].items()}}).encode())
