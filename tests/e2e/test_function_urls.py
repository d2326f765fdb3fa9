"""Function URLs end to end: the five operations through boto3, then real HTTP clients (curl,
http.client) against the URLs: Lambda's payload 2.0 event and response mapping, AuthType NONE
with its resource policy, AWS_IAM with SigV4, CORS, and the statuses a function URL gives."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import create_function, require, unique_name

ECHO = r'''
import base64, json, time

def handler(event, context):
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    else:
        body = body.encode()
    path = event["rawPath"]
    if path == "/status":
        return {"statusCode": 418, "headers": {"x-kind": "teapot", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2"], "body": "short and stout"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if path == "/plain":
        return {"just": "a dict"}
    if path == "/garbage":
        return {"statusCode": "not a number", "body": "x"}
    if path == "/bad-headers":
        return {"statusCode": 200, "headers": {"x": 5}, "body": "x"}
    if path == "/fail":
        raise RuntimeError("boom")
    if path == "/slow":
        time.sleep(5)
    if path == "/big":
        return {"statusCode": 200, "body": "x" * (7 * 1024 * 1024)}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "body_sha": __import__("hashlib").sha256(body).hexdigest(),
                                "request_id": context.aws_request_id})}
'''


@pytest.fixture(scope="module")
def echo(lam):
    name = create_function(lam, ECHO, Timeout=2, MemorySize=256)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    return name, url


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict[str, str] | list[tuple[str, str]] | None = None, host: str | None = None,
            timeout: float = 30) -> tuple[int, list[tuple[str, str]], bytes]:
    """A request through http.client to 127.0.0.1 with the URL's Host (no name resolution needed)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=timeout)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or parts.netloc)
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for k, v in items:
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheaders(), data


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def test_the_five_operations_with_lambdas_shapes_and_errors(lam):
    name = create_function(lam, ECHO)
    created = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM",
                                             Cors={"AllowOrigins": ["https://app.example.com"], "MaxAge": 60})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = created["FunctionUrl"]
    host = urlsplit(url).hostname
    assert url.startswith("http://") and host.endswith(".lambda-url.us-east-1.localhost") and url.endswith("/")
    assert len(host.split(".")[0]) == 32 and host.split(".")[0].isalnum() and host.split(".")[0].islower()
    assert created["FunctionArn"].endswith(f":function:{name}") and created["InvokeMode"] == "BUFFERED"
    assert created["Cors"] == {"AllowOrigins": ["https://app.example.com"], "MaxAge": 60}
    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == url and got["AuthType"] == "AWS_IAM" and "LastModifiedTime" in got
    updated = lam.update_function_url_config(FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]})
    assert updated["AuthType"] == "NONE" and updated["Cors"] == {"AllowOrigins": ["*"]} and updated["FunctionUrl"] == url
    with pytest.raises(ClientError) as conflict:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert conflict.value.response["Error"]["Code"] == "ResourceConflictException"
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    live = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert live["FunctionArn"].endswith(f":function:{name}:live") and live["FunctionUrl"] != url
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert sorted(c["FunctionUrl"] for c in listed) == sorted([url, live["FunctionUrl"]])
    with pytest.raises(ClientError) as bad_origin:
        lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE",
                                       Cors={"AllowOrigins": ["not a url"]})
    assert bad_origin.value.response["Error"]["Code"] in ("InvalidParameterValueException", "ResourceConflictException")
    other = create_function(lam, ECHO)
    with pytest.raises(ClientError) as bad_origin:
        lam.create_function_url_config(FunctionName=other, AuthType="NONE", Cors={"AllowOrigins": ["ftp://x"]})
    assert bad_origin.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as version:
        lam.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE")
    assert version.value.response["Error"]["Code"] in ("InvalidParameterValueException", "ValidationException")
    with pytest.raises(ClientError) as missing:
        lam.get_function_url_config(FunctionName=other)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.delete_alias(FunctionName=name, Name="live")  # its URL goes with it
    assert [c["FunctionUrl"] for c in lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]] == [url]
    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError) as gone:
        lam.get_function_url_config(FunctionName=name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    status, _, body = request(url)
    assert status == 404 and json.loads(body) == {"Message": "Not Found"}


def test_curl_reaches_a_url_by_its_name_and_gets_lambdas_event(echo):
    require(shutil.which("curl") is not None, "curl is not installed")
    _, url = echo
    out = subprocess.run(["curl", "-s", "-i", "-H", "Cookie: k=v; z=w", "-H", "X-Multi: 1", "-H", "X-Multi: 2",
                          "-X", "POST", "-H", "Content-Type: application/json", "--data", '{"hello": "world"}',
                          url + "some/path?a=1&a=2&b=x%20y"], capture_output=True, text=True, timeout=30)
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), out.stdout + out.stderr
    document = json.loads(body)
    event = document["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["k=v", "z=w"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2" and event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"hello": "world"}' and event["isBase64Encoded"] is False
    http = event["requestContext"]["http"]
    assert http == {"method": "POST", "path": "/some/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                    "userAgent": http["userAgent"]} and http["userAgent"].startswith("curl/")
    context = event["requestContext"]
    assert context["domainName"] == urlsplit(url).hostname and context["domainPrefix"] == context["apiId"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60 and "authorizer" not in context
    assert context["requestId"] == document["request_id"]
    assert f"x-amzn-requestid: {context['requestId']}" in head.lower()


def test_binary_bodies_responses_and_the_path_fallback(echo):
    _, url = echo
    url_id = urlsplit(url).hostname.split(".")[0]
    blob = bytes(range(256)) * 10
    status, _, body = request(url, "PUT", "/upload", blob, {"Content-Type": "application/octet-stream"})
    event = json.loads(body)["event"]
    assert status == 200 and event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == blob
    # The same URL without its Host: /lambda-url/<url-id>/<path> on the server's own address.
    status, _, body = request(url, "GET", f"/lambda-url/{url_id}/via/path?q=1", host=f"127.0.0.1:{urlsplit(url).port}")
    assert status == 200 and json.loads(body)["event"]["rawPath"] == "/via/path"
    status, headers, body = request(url, "GET", "/status")
    assert status == 418 and body == b"short and stout" and header(headers, "x-kind") == ["teapot"]
    assert header(headers, "set-cookie") == ["a=1; Path=/", "b=2"]
    status, headers, body = request(url, "GET", "/binary")
    assert status == 200 and body == bytes(range(256))
    status, headers, body = request(url, "GET", "/plain")
    assert status == 200 and json.loads(body) == {"just": "a dict"} and header(headers, "content-type") == ["application/json"]


@pytest.mark.parametrize("path, status, message", [
    ("/garbage", 502, "Internal Server Error"),
    ("/bad-headers", 502, "Internal Server Error"),
    ("/fail", 502, "Internal Server Error"),
    ("/slow", 504, "Gateway Timeout"),
    ("/big", 502, "Internal Server Error"),
])
def test_what_a_function_url_answers_when_the_function_does_not(echo, path, status, message):
    _, url = echo
    got, _, body = request(url, "GET", path)
    assert (got, json.loads(body)) == (status, {"Message": message})


def test_an_oversized_body_is_413_and_unknown_urls_are_404(echo):
    _, url = echo
    status, _, body = request(url, "POST", "/", b"x" * (6 * 1024 * 1024 + 10))
    assert status == 413
    host = "0" * 32 + ".lambda-url.us-east-1.localhost:" + str(urlsplit(url).port)
    status, _, body = request(url, "GET", "/", host=host)
    assert status == 404 and json.loads(body) == {"Message": "Not Found"}


def test_auth_type_none_needs_the_resource_policy(lam):
    name = create_function(lam, ECHO)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    status, _, body = request(url)
    assert (status, json.loads(body)) == (403, {"Message": "Forbidden"})
    lam.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    assert request(url)[0] == 200
    lam.remove_permission(FunctionName=name, StatementId="public")
    assert request(url)[0] == 403


def signed(server, url: str, path: str, credentials: tuple[str, str], body: bytes = b"") -> dict[str, str]:
    aws_request = AWSRequest(method="POST", url=url.rstrip("/") + path, data=body, headers={"Host": urlsplit(url).netloc})
    SigV4Auth(Credentials(*credentials), "lambda", "us-east-1").add_auth(aws_request)
    return dict(aws_request.headers.items())


def test_aws_iam_urls_verify_sigv4_and_the_invoke_function_url_permission(server, lam):
    name = create_function(lam, ECHO)
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    status, _, body = request(url, "POST", "/signed", b"{}")
    assert (status, json.loads(body)) == (403, {"Message": "Forbidden"})  # unsigned
    headers = signed(server, url, "/signed", server.credentials, b"{}")
    status, _, body = request(url, "POST", "/signed", b"{}", headers)
    assert status == 200, body
    iam = json.loads(body)["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == server.credentials[0] and iam["accountId"] == "123456789012"
    assert iam["userArn"].startswith("arn:aws:iam::123456789012:")
    tampered = dict(headers)
    status, _, _ = request(url, "POST", "/signed", b'{"changed": 1}', tampered)
    assert status == 403  # the body is not the one signed
    # A user without lambda:InvokeFunctionUrl is refused; with it (identity policy), let in.
    iam_client = server.client("iam")
    user = unique_name("url-user")
    iam_client.create_user(UserName=user)
    key = iam_client.create_access_key(UserName=user)["AccessKey"]
    credentials = (key["AccessKeyId"], key["SecretAccessKey"])
    status, _, _ = request(url, "POST", "/signed", b"{}", signed(server, url, "/signed", credentials, b"{}"))
    assert status == 403
    iam_client.put_user_policy(UserName=user, PolicyName="url", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl",
                                                 "Resource": f"arn:aws:lambda:us-east-1:123456789012:function:{name}"}]}))
    deadline = time.monotonic() + 10
    while request(url, "POST", "/signed", b"{}", signed(server, url, "/signed", credentials, b"{}"))[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_cors_preflight_and_response_headers(lam):
    name = create_function(lam, ECHO)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors={
        "AllowOrigins": ["https://app.example.com"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["X-Custom"],
        "ExposeHeaders": ["X-Kind"], "MaxAge": 300, "AllowCredentials": True})["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    status, headers, body = request(url, "OPTIONS", "/", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-custom"})
    assert status == 200 and body == b""
    assert header(headers, "access-control-allow-origin") == ["https://app.example.com"]
    assert header(headers, "access-control-allow-methods") == ["GET,POST"]
    assert header(headers, "access-control-allow-headers") == ["x-custom"]
    assert header(headers, "access-control-max-age") == ["300"]
    assert header(headers, "access-control-allow-credentials") == ["true"]
    status, headers, _ = request(url, "GET", "/status", headers={"Origin": "https://app.example.com"})
    assert status == 418 and header(headers, "access-control-allow-origin") == ["https://app.example.com"]
    assert header(headers, "access-control-expose-headers") == ["x-kind"]
    status, headers, _ = request(url, "OPTIONS", "/", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 200 and not header(headers, "access-control-allow-origin")
