"""HTTP APIs (API Gateway v2) end to end: boto3's ``apigatewayv2`` client and the AWS CLI against
``squall server``, then raw HTTP (http.client, with the API's ``Host`` or the ``/execute-api/``
path) through the APIs: route selection and path parameters, payload formats 2.0 and 1.0,
``$default``, quick create, the permission API Gateway needs, and API Gateway's answers
(404, 500, 503) and errors (BadRequestException, NotFoundException, ConflictException)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, signed_headers, unique_name
from tests.e2e.test_function_urls import request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ACCT = "123456789012"
REGION = "us-east-1"

HANDLER = r'''
import json, time

def handler(event, context):
    path = event.get("rawPath") or event.get("path") or ""
    if path.endswith("/fail"):
        raise RuntimeError("boom")
    if path.endswith("/slow"):
        time.sleep(3)
    if event.get("version") == "1.0":
        return {"statusCode": 201, "headers": {"content-type": "application/json", "x-format": "1.0"},
                "multiValueHeaders": {"x-multi": ["a", "b"]}, "body": json.dumps({"event": event})}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "cookies": ["c=1; Path=/"],
            "body": json.dumps({"event": event, "request_id": context.aws_request_id})}
'''


@pytest.fixture(scope="module")
def apigw(server):
    return server.client("apigatewayv2")


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCT}:function:{name}"


def allow(lam, name: str, api_id: str, tail: str = "*/*", principal: str = "apigateway.amazonaws.com") -> None:
    """What the AWS docs tell to run after creating an API: let API Gateway invoke the function."""
    lam.add_permission(FunctionName=name, StatementId=unique_name("apigw"), Action="lambda:InvokeFunction",
                       Principal=principal, SourceArn=f"arn:aws:execute-api:{REGION}:{ACCT}:{api_id}/{tail}")


def call(server, api_id: str, method: str = "GET", path: str = "/", body: bytes | None = None,
         headers: dict[str, str] | None = None, by_path: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
    """A request to 127.0.0.1 with the API's Host (or, ``by_path``, to /execute-api/<api-id>/…)."""
    port = urlsplit(server.endpoint).port
    target = f"/execute-api/{api_id}{path}" if by_path else path
    host = f"127.0.0.1:{port}" if by_path else f"{api_id}.execute-api.{REGION}.localhost:{port}"
    return request(server.endpoint, method, target, body, headers, host=host, timeout=60)


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def error_of(fn, **kwargs) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        fn(**kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


@pytest.fixture(scope="module")
def shop(apigw, lam):
    """An API with GET /items/{id} → A (payload 2.0) and POST /orders → B (1.0), a $default stage."""
    fn_a, fn_b = create_function(lam, HANDLER, Timeout=10), create_function(lam, HANDLER, Timeout=10)
    api = apigw.create_api(Name=unique_name("shop"), ProtocolType="HTTP", Description="two routes")
    api_id = api["ApiId"]
    a = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=function_arn(fn_a),
                                 PayloadFormatVersion="2.0")
    b = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=function_arn(fn_b),
                                 PayloadFormatVersion="1.0", TimeoutInMillis=20000)
    items = apigw.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{a['IntegrationId']}")
    orders = apigw.create_route(ApiId=api_id, RouteKey="POST /orders", Target=f"integrations/{b['IntegrationId']}")
    stage = apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, StageVariables={"color": "blue"})
    allow(lam, fn_a, api_id, "*/GET/items/*")
    allow(lam, fn_b, api_id)
    return {"api": api, "a": a, "b": b, "items": items, "orders": orders, "stage": stage, "fn_a": fn_a, "fn_b": fn_b}


def test_the_management_operations_answer_in_api_gateways_shapes(apigw, shop, server):
    api, api_id = shop["api"], shop["api"]["ApiId"]
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201
    port = urlsplit(server.endpoint).port
    assert api["ApiEndpoint"] == f"http://{api_id}.execute-api.{REGION}.localhost:{port}"
    assert len(api_id) == 10 and api_id.isalnum() and api_id.islower()
    assert api["ProtocolType"] == "HTTP" and api["RouteSelectionExpression"] == "$request.method $request.path"
    assert api["Description"] == "two routes" and api["CreatedDate"].tzinfo is not None  # an ISO 8601 timestamp, parsed
    got = apigw.get_api(ApiId=api_id)
    assert got["Name"] == api["Name"] and got["CreatedDate"] == api["CreatedDate"]
    assert api_id in [a["ApiId"] for a in apigw.get_apis()["Items"]]
    assert shop["a"]["IntegrationType"] == "AWS_PROXY" and shop["a"]["PayloadFormatVersion"] == "2.0"
    assert shop["a"]["TimeoutInMillis"] == 30000 and shop["a"]["IntegrationMethod"] == "POST"
    assert shop["b"]["TimeoutInMillis"] == 20000
    assert apigw.get_integration(ApiId=api_id, IntegrationId=shop["b"]["IntegrationId"])["IntegrationUri"] == \
        function_arn(shop["fn_b"])
    assert len(apigw.get_integrations(ApiId=api_id)["Items"]) == 2
    route = apigw.get_route(ApiId=api_id, RouteId=shop["items"]["RouteId"])
    assert (route["RouteKey"], route["Target"], route["AuthorizationType"]) == (
        "GET /items/{id}", f"integrations/{shop['a']['IntegrationId']}", "NONE")
    assert sorted(r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]) == ["GET /items/{id}", "POST /orders"]
    stage = apigw.get_stage(ApiId=api_id, StageName="$default")
    assert stage["AutoDeploy"] is True and stage["StageVariables"] == {"color": "blue"}
    assert [s["StageName"] for s in apigw.get_stages(ApiId=api_id)["Items"]] == ["$default"]
    renamed = apigw.update_api(ApiId=api_id, Name="renamed")
    assert renamed["Name"] == "renamed" and apigw.get_api(ApiId=api_id)["Name"] == "renamed"


def test_a_route_with_a_path_parameter_gets_the_2_0_event(server, shop):
    api_id = shop["api"]["ApiId"]
    status, headers, body = call(server, api_id, "GET", "/items/42?x=1&x=2&y=a%20b", headers={"Cookie": "k=v; l=w"})
    assert status == 200, body
    assert values(headers, "set-cookie") == ["c=1; Path=/"] and values(headers, "apigw-requestid")
    event = json.loads(body)["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42" and event["rawQueryString"] == "x=1&x=2&y=a%20b"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"x": "1,2", "y": "a b"}
    assert event["cookies"] == ["k=v", "l=w"]
    assert event["stageVariables"] == {"color": "blue"}
    context = event["requestContext"]
    assert context["routeKey"] == "GET /items/{id}" and context["stage"] == "$default"
    assert context["apiId"] == api_id and context["accountId"] == ACCT
    assert context["domainName"] == f"{api_id}.execute-api.{REGION}.localhost" and context["domainPrefix"] == api_id
    assert context["http"]["method"] == "GET" and context["http"]["path"] == "/items/42"
    assert context["requestId"] == values(headers, "apigw-requestid")[0] == json.loads(body)["request_id"]
    assert event["headers"]["x-forwarded-proto"] == "http" and "x-forwarded-for" in event["headers"]
    # the same API without its Host: /execute-api/<api-id>/…
    status, _, body = call(server, api_id, "GET", "/items/a%2Fb", by_path=True)
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["pathParameters"] == {"id": "a/b"} and event["rawPath"] == "/items/a%2Fb"
    assert event["requestContext"]["domainPrefix"] == api_id


def test_a_route_with_payload_1_0_gets_the_rest_proxy_event(server, shop):
    api_id = shop["api"]["ApiId"]
    status, headers, body = call(server, api_id, "POST", "/orders?q=1&q=2", body=b'{"qty": 3}',
                                 headers={"Content-Type": "application/json", "X-Trace": "t1"})
    assert status == 201, body
    assert values(headers, "x-format") == ["1.0"] and values(headers, "x-multi") == ["a", "b"]
    event = json.loads(body)["event"]
    assert event["version"] == "1.0" and event["resource"] == "/orders" and event["path"] == "/orders"
    assert event["httpMethod"] == "POST" and event["body"] == '{"qty": 3}' and event["isBase64Encoded"] is False
    assert event["headers"]["x-trace"] == "t1" and event["multiValueHeaders"]["x-trace"] == ["t1"]
    assert event["queryStringParameters"] == {"q": "2"} and event["multiValueQueryStringParameters"] == {"q": ["1", "2"]}
    assert event["pathParameters"] is None and event["stageVariables"] == {"color": "blue"}
    context = event["requestContext"]
    assert context["resourcePath"] == "/orders" and context["stage"] == "$default" and context["apiId"] == api_id


def test_unmatched_routes_and_unknown_apis_answer_404(server, shop):
    api_id = shop["api"]["ApiId"]
    for method, path in (("GET", "/nothing"), ("POST", "/items/1"), ("GET", "/items"), ("GET", "/orders"),
                         ("GET", "/items/1/more")):
        status, headers, body = call(server, api_id, method, path)
        assert (status, json.loads(body)) == (404, {"message": "Not Found"}), (method, path)
        assert values(headers, "content-type") == ["application/json"]
    assert call(server, "nosuchapi0", "GET", "/items/1")[0] == 404
    status, _, body = call(server, "nosuchapi0", "GET", "/items/1", by_path=True)
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_the_default_route_catches_the_rest_and_a_function_error_is_500(apigw, lam, server):
    name = create_function(lam, HANDLER)
    api_id = apigw.create_api(Name=unique_name("catch"), ProtocolType="HTTP")["ApiId"]
    integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="2.0",
                                           IntegrationUri=function_arn(name))
    apigw.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{integration['IntegrationId']}")
    assert call(server, api_id, "GET", "/any/thing")[0] == 404  # no stage yet
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    allow(lam, name, api_id, "*/$default")
    status, _, body = call(server, api_id, "PATCH", "/any/thing", body=b"x")
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["routeKey"] == "$default" and event["rawPath"] == "/any/thing"
    assert "pathParameters" not in event and "stageVariables" not in event
    assert event["body"] == "eA==" and event["isBase64Encoded"] is True  # no content type: base64
    status, _, body = call(server, api_id, "GET", "/fail")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    # a route added later is live at once (the stage deploys automatically)
    apigw.create_route(ApiId=api_id, RouteKey="ANY /v1/{proxy+}", Target=f"integrations/{integration['IntegrationId']}")
    allow(lam, name, api_id, "*/*/v1/*")
    status, _, body = call(server, api_id, "DELETE", "/v1/a/b")
    assert status == 200, body
    assert json.loads(body)["event"]["pathParameters"] == {"proxy": "a/b"}
    # a deleted function keeps its integration (as on AWS); requests fail
    lam.delete_function(FunctionName=name)
    assert call(server, api_id, "GET", "/any")[0] == 500
    assert apigw.get_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"])["IntegrationUri"] == \
        function_arn(name)
    apigw.delete_api(ApiId=api_id)
    assert call(server, api_id, "GET", "/any")[0] == 404


def test_quick_create_needs_the_permission_as_on_aws(apigw, lam, server):
    name = create_function(lam, HANDLER)
    api = apigw.create_api(Name=unique_name("quick"), ProtocolType="HTTP", Target=function_arn(name))
    api_id = api["ApiId"]
    (route,) = apigw.get_routes(ApiId=api_id)["Items"]
    (integration,) = apigw.get_integrations(ApiId=api_id)["Items"]
    (stage,) = apigw.get_stages(ApiId=api_id)["Items"]
    assert route["RouteKey"] == "$default" and route["Target"] == f"integrations/{integration['IntegrationId']}"
    assert route["ApiGatewayManaged"] is True and integration["ApiGatewayManaged"] is True
    assert integration["IntegrationUri"] == function_arn(name) and integration["PayloadFormatVersion"] == "2.0"
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    # quick create adds no permission to the function: API Gateway may not invoke it yet
    status, _, body = call(server, api_id, "GET", "/hello")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    allow(lam, name, api_id, "*/$default")
    status, _, body = call(server, api_id, "GET", "/hello")
    assert status == 200, body
    assert json.loads(body)["event"]["routeKey"] == "$default"
    assert error_of(apigw.delete_route, ApiId=api_id, RouteId=route["RouteId"])[:2] == (409, "ConflictException")
    # quick create with a route key
    keyed = apigw.create_api(Name=unique_name("quick"), ProtocolType="HTTP", Target=function_arn(name),
                             RouteKey="GET /hello")["ApiId"]
    allow(lam, name, keyed)
    assert call(server, keyed, "GET", "/hello")[0] == 200
    assert call(server, keyed, "GET", "/other")[0] == 404
    apigw.update_api(ApiId=keyed, DisableExecuteApiEndpoint=True)
    status, _, body = call(server, keyed, "GET", "/hello")
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})


def test_the_function_must_allow_api_gateway_for_this_api(apigw, lam, server):
    name = create_function(lam, HANDLER)
    api_id = apigw.create_api(Name=unique_name("perm"), ProtocolType="HTTP")["ApiId"]
    integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="2.0",
                                           IntegrationUri=function_arn(name))
    apigw.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{integration['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    assert call(server, api_id, "GET", "/items/1")[0] == 500  # no policy at all
    allow(lam, name, "otherapi00")  # another API
    allow(lam, name, api_id, principal="s3.amazonaws.com")  # another service
    allow(lam, name, api_id, "*/POST/items/*")  # another method
    status, _, body = call(server, api_id, "GET", "/items/1")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    lam.add_permission(FunctionName=name, StatementId="api", Action="lambda:InvokeFunction",
                       Principal="apigateway.amazonaws.com",
                       SourceArn=f"arn:aws:execute-api:{REGION}:{ACCT}:{api_id}/*/GET/items/*")
    assert call(server, api_id, "GET", "/items/1")[0] == 200
    lam.remove_permission(FunctionName=name, StatementId="api")
    assert call(server, api_id, "GET", "/items/1")[0] == 500


def test_updates_take_effect_at_once(apigw, lam, server):
    name = create_function(lam, HANDLER)
    api_id = apigw.create_api(Name=unique_name("upd"), ProtocolType="HTTP")["ApiId"]
    integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="2.0",
                                           IntegrationUri=function_arn(name))
    route = apigw.create_route(ApiId=api_id, RouteKey="GET /old", Target=f"integrations/{integration['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default")
    allow(lam, name, api_id)
    assert call(server, api_id, "GET", "/old")[0] == 200
    moved = apigw.update_route(ApiId=api_id, RouteId=route["RouteId"], RouteKey="PUT /new/{id}")
    assert moved["RouteKey"] == "PUT /new/{id}" and moved["Target"] == route["Target"]
    assert call(server, api_id, "GET", "/old")[0] == 404
    changed = apigw.update_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"], PayloadFormatVersion="1.0")
    assert changed["PayloadFormatVersion"] == "1.0" and changed["IntegrationUri"] == function_arn(name)
    status, _, body = call(server, api_id, "PUT", "/new/7")
    assert status == 201, body
    event = json.loads(body)["event"]
    assert event["version"] == "1.0" and event["resource"] == "/new/{id}" and event["pathParameters"] == {"id": "7"}
    staged = apigw.update_stage(ApiId=api_id, StageName="$default", StageVariables={"v": "1"})
    assert staged["StageVariables"] == {"v": "1"}
    assert json.loads(call(server, api_id, "PUT", "/new/7")[2])["event"]["stageVariables"] == {"v": "1"}
    apigw.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    assert call(server, api_id, "PUT", "/new/7")[0] == 404
    apigw.delete_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"])
    assert apigw.get_integrations(ApiId=api_id)["Items"] == []
    apigw.delete_stage(ApiId=api_id, StageName="$default")
    assert apigw.get_stages(ApiId=api_id)["Items"] == []


def test_an_integration_that_times_out_answers_503(apigw, lam, server):
    name = create_function(lam, HANDLER, Timeout=10)
    api_id = apigw.create_api(Name=unique_name("slow"), ProtocolType="HTTP")["ApiId"]
    integration = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="2.0",
                                           IntegrationUri=function_arn(name), TimeoutInMillis=50)
    apigw.create_route(ApiId=api_id, RouteKey="ANY /{proxy+}", Target=f"integrations/{integration['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default")
    allow(lam, name, api_id)
    status, _, body = call(server, api_id, "GET", "/slow")  # the function sleeps 3 s; the integration waits 50 ms
    assert (status, json.loads(body)) == (503, {"message": "Service Unavailable"})


def test_a_named_stage_is_the_first_part_of_the_path(apigw, lam, server, shop):
    api_id = shop["api"]["ApiId"]
    apigw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"color": "red"})
    try:
        status, _, body = call(server, api_id, "GET", "/prod/items/5")
        assert status == 200, body
        event = json.loads(body)["event"]
        assert event["requestContext"]["stage"] == "prod" and event["stageVariables"] == {"color": "red"}
        assert event["rawPath"] == "/prod/items/5" and event["pathParameters"] == {"id": "5"}
    finally:
        apigw.delete_stage(ApiId=api_id, StageName="prod")
    assert call(server, api_id, "GET", "/prod/items/5")[0] == 404  # back to $default: no such route


def test_api_gateways_errors(apigw, shop, server):
    api_id = shop["api"]["ApiId"]
    target = f"integrations/{shop['a']['IntegrationId']}"
    status, code, message = error_of(apigw.create_route, ApiId=api_id, RouteKey="GET /e{id}", Target=target)
    assert (status, code) == (400, "BadRequestException")
    assert message == ("One or more path parts appear to be invalid. Parts are validated against this regular "
                       r"expression: ^(\{[\w.:-]+\+?\}|[a-zA-Z0-9.:_-]+)$")
    assert error_of(apigw.create_route, ApiId=api_id, RouteKey="GET items")[:2] == (400, "BadRequestException")
    assert error_of(apigw.create_route, ApiId=api_id, RouteKey="GET /{proxy+}/x")[:2] == (400, "BadRequestException")
    assert error_of(apigw.create_route, ApiId=api_id, RouteKey="GET /items/{id}") == (
        409, "ConflictException", "Route with key GET /items/{id} already exists for this API")
    assert error_of(apigw.create_route, ApiId=api_id, RouteKey="DELETE /items/{itemId}")[:2] == (409, "ConflictException")
    assert error_of(apigw.get_api, ApiId="nosuchapi0") == (
        404, "NotFoundException", f"Invalid API identifier specified {ACCT}:nosuchapi0")
    assert error_of(apigw.get_route, ApiId=api_id, RouteId="nope123")[:2] == (404, "NotFoundException")
    assert error_of(apigw.get_integration, ApiId=api_id, IntegrationId="nope123")[:2] == (404, "NotFoundException")
    assert error_of(apigw.get_stage, ApiId=api_id, StageName="nope")[:2] == (404, "NotFoundException")
    assert error_of(apigw.delete_route, ApiId="nosuchapi0", RouteId="x")[:2] == (404, "NotFoundException")
    assert error_of(apigw.create_route, ApiId=api_id, RouteKey="GET /x", Target="integrations/nope123")[:2] == (
        404, "NotFoundException")
    assert error_of(apigw.create_stage, ApiId=api_id, StageName="$default")[:2] == (409, "ConflictException")
    assert error_of(apigw.create_api, Name="ws", ProtocolType="WEBSOCKET",
                    RouteSelectionExpression="$request.body.action")[:2] == (400, "BadRequestException")
    assert error_of(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                    IntegrationUri="not-a-function", PayloadFormatVersion="2.0")[:2] == (400, "BadRequestException")
    assert error_of(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                    IntegrationUri=function_arn("x"), PayloadFormatVersion="3.0")[:2] == (400, "BadRequestException")
    # the wire: x-amzn-ErrorType and a body with a lower-case "message" (and NotFoundException's resourceType)
    path = "/v2/apis/nosuchapi0"
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(server.endpoint).port, timeout=30)
    conn.request("GET", path, headers=signed_headers(server, "GET", path, service="apigateway"))
    response = conn.getresponse()
    document = json.loads(response.read())
    conn.close()
    assert response.status == 404 and response.getheader("x-amzn-ErrorType") == "NotFoundException"
    assert document == {"message": f"Invalid API identifier specified {ACCT}:nosuchapi0", "resourceType": "Api"}
    # the management API is signed for "apigateway", not "lambda"
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(server.endpoint).port, timeout=30)
    conn.request("GET", "/v2/apis", headers=signed_headers(server, "GET", "/v2/apis", service="lambda"))
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 403 and response.getheader("x-amzn-ErrorType") == "InvalidSignatureException"


def test_iam_authorizes_the_management_api_as_apigateway_actions(server, apigw, shop):
    iam = server.client("iam")
    name = unique_name("apiuser")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "apigateway:GET", "Resource": f"arn:aws:apigateway:{REGION}::/apis*"}],
    }))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    reader = server.client("apigatewayv2", credentials=(key["AccessKeyId"], key["SecretAccessKey"]))
    assert reader.get_api(ApiId=shop["api"]["ApiId"])["ApiId"] == shop["api"]["ApiId"]
    status, code, message = error_of(reader.create_api, Name="no", ProtocolType="HTTP")
    assert (status, code) == (403, "AccessDeniedException")
    assert f"apigateway:POST on resource: arn:aws:apigateway:{REGION}::/apis" in message


def test_the_aws_cli_lists_the_apis(server, shop):
    done = subprocess.run([sys.executable, "-m", "awscli", "apigatewayv2", "get-apis", "--endpoint-url", server.endpoint,
                           "--output", "json"], capture_output=True, text=True, env=server.aws_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {item["ApiId"]: item for item in json.loads(done.stdout)["Items"]}
    assert listed[shop["api"]["ApiId"]]["ProtocolType"] == "HTTP"
