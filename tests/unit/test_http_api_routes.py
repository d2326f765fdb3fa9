"""HTTP APIs without a server: route keys as API Gateway checks them, route selection in its
order (the developer guide's example table), stages, integration URIs, the management API's
renaming of the model's members, and the service's operations over a real store."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from squall.api.apigateway_api import from_wire, service_model, to_wire
from squall.arn import Arns
from squall.store import db
from squall.store.http_apis import HttpApiRepository
from squall.triggers.http_apis import (BadRequest, Conflict, HttpApi, HttpApis, NotFound, RouteKeyError, conflicting_variable,
                                       lambda_target, parse_route_key, select_route)

FN = "arn:aws:lambda:us-east-1:123456789012:function:items"


def routes(*keys: str):
    return [replace(parse_route_key(key), route_id=f"r{i}") for i, key in enumerate(keys)]


def picked(table, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    found = select_route(table, method, path)
    return (found[0].key, found[1]) if found is not None else None


# ---- route keys ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key, method, parts", [
    ("$default", None, ()),
    ("GET /", "GET", ()),
    ("GET /items/{id}", "GET", ("items", "{id}")),
    ("ANY /{proxy+}", "ANY", ("{proxy+}",)),
    ("POST /v1.2/a:b/{order-id}/x_y", "POST", ("v1.2", "a:b", "{order-id}", "x_y")),
    ("DELETE /files/{path+}", "DELETE", ("files", "{path+}")),
])
def test_valid_route_keys(key, method, parts):
    spec = parse_route_key(key)
    assert (spec.key, spec.method, spec.parts) == (key, method, parts)


@pytest.mark.parametrize("key", ["GET items", "get /items", "FETCH /items", "GET", "", "$connect", "GET  /items",
                                 "/items"])
def test_route_keys_without_a_method_and_a_path_are_refused(key):
    with pytest.raises(RouteKeyError, match="Invalid route key specified"):
        parse_route_key(key)


@pytest.mark.parametrize("key", ["GET /items/", "GET /a//b", "GET /e{id}", "GET /{id}.json", "GET /items/{}",
                                 "GET /caf\u00e9", "GET /{caf\u00e9}", "GET /a b", "GET /items /x"])
def test_path_parts_are_checked_with_api_gateways_expression(key):
    with pytest.raises(RouteKeyError) as refused:
        parse_route_key(key)
    assert str(refused.value).startswith("One or more path parts appear to be invalid. Parts are validated against "
                                         r"this regular expression: ^(\{[\w.:-]+\+?\}|[a-zA-Z0-9.:_-]+)$")


def test_a_greedy_variable_only_last_and_variables_only_once():
    with pytest.raises(RouteKeyError, match="greedy"):
        parse_route_key("GET /{proxy+}/more")
    with pytest.raises(RouteKeyError, match="only once"):
        parse_route_key("GET /a/{id}/b/{id}")


def test_variables_named_differently_at_one_level_conflict():
    pets_id, = routes("GET /pets/{id}")
    assert conflicting_variable(parse_route_key("GET /pets/{petId}"), pets_id)
    assert conflicting_variable(parse_route_key("DELETE /pets/{petId}/toys"), pets_id)  # the path is shared
    assert not conflicting_variable(parse_route_key("GET /pets/{id}/toys"), pets_id)
    assert not conflicting_variable(parse_route_key("GET /users/{uid}"), pets_id)
    assert not conflicting_variable(parse_route_key("GET /pets/{proxy+}"), pets_id)
    assert not conflicting_variable(parse_route_key("$default"), pets_id)


# ---- route selection ----------------------------------------------------------------------------
GUIDE = ("GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}", "$default")


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/pets/dog/1", ("GET /pets/dog/1", {})),
    ("GET", "/pets/dog/2", ("GET /pets/dog/{id}", {"id": "2"})),
    ("GET", "/pets/cat/1", ("GET /pets/{proxy+}", {"proxy": "cat/1"})),
    ("POST", "/test/5", ("ANY /{proxy+}", {"proxy": "test/5"})),
    ("POST", "/pets/dog/1", ("ANY /{proxy+}", {"proxy": "pets/dog/1"})),
    ("GET", "/", ("$default", {})),  # a greedy variable needs at least one part
])
def test_the_developer_guides_example_in_any_order(method, path, expected):
    table = routes(*GUIDE)
    shuffler = random.Random(7)
    for _ in range(5):
        shuffler.shuffle(table)
        assert picked(table, method, path) == expected


def test_a_method_beats_any_on_the_same_path_and_literals_beat_variables():
    table = routes("ANY /items", "GET /items", "GET /items/{id}", "GET /items/new", "ANY /items/{id}/parts")
    assert picked(table, "GET", "/items") == ("GET /items", {})
    assert picked(table, "DELETE", "/items") == ("ANY /items", {})
    assert picked(table, "GET", "/items/new") == ("GET /items/new", {})
    assert picked(table, "GET", "/items/7") == ("GET /items/{id}", {"id": "7"})
    assert picked(table, "PUT", "/items/7") is None  # no $default
    assert picked(table, "PATCH", "/items/7/parts") == ("ANY /items/{id}/parts", {"id": "7"})


def test_a_full_match_beats_a_greedy_one_and_the_longer_greedy_prefix_wins():
    table = routes("GET /{proxy+}", "GET /files/{path+}", "GET /files/{name}/meta")
    assert picked(table, "GET", "/files/a/meta") == ("GET /files/{name}/meta", {"name": "a"})
    assert picked(table, "GET", "/files/a/b/c") == ("GET /files/{path+}", {"path": "a/b/c"})
    assert picked(table, "GET", "/other/x") == ("GET /{proxy+}", {"proxy": "other/x"})
    assert picked(table, "GET", "/files") == ("GET /{proxy+}", {"proxy": "files"})


def test_path_parameters_are_decoded_after_the_path_is_split():
    table = routes("GET /items/{id}", "GET /root/{rest+}")
    assert picked(table, "GET", "/items/a%20b") == ("GET /items/{id}", {"id": "a b"})
    assert picked(table, "GET", "/items/a%2Fb") == ("GET /items/{id}", {"id": "a/b"})
    assert picked(table, "GET", "/root/x/y%3Fz") == ("GET /root/{rest+}", {"rest": "x/y?z"})
    assert picked(table, "GET", "/items/1/") is None  # an empty last part is no value
    assert picked(table, "GET", "/items//") is None


def test_no_route_and_no_default_is_none_and_the_default_catches_the_rest():
    assert picked(routes("GET /a"), "GET", "/b") is None
    assert picked(routes("GET /a", "$default"), "HEAD", "/a") == ("$default", {})  # HEAD is not GET


# ---- stages and integration URIs -----------------------------------------------------------------
def test_a_stage_named_by_the_first_part_else_default():
    api = HttpApi({"ApiId": "abc"}, stages={"$default": {}, "prod": {"StageName": "prod"}})
    assert api.stage_for("/prod/items/1")[0::2] == ("prod", "/items/1")
    assert api.stage_for("/prod")[0::2] == ("prod", "/")
    assert api.stage_for("/production/x")[0::2] == ("$default", "/production/x")
    assert HttpApi({"ApiId": "abc"}, stages={"prod": {}}).stage_for("/other") is None


def test_integration_uris_name_a_function_version_or_alias():
    assert lambda_target(FN) == lambda_target(FN + ":$LATEST")
    assert lambda_target(FN).qualifier is None and lambda_target(FN).name == "items"
    assert lambda_target(FN + ":live").qualifier == "live"
    wrapped = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{FN}:3/invocations"
    assert (lambda_target(wrapped).name, lambda_target(wrapped).qualifier) == ("items", "3")
    for bad in ("items", "https://example.com", "arn:aws:lambda:us-east-1:1234:function:x", FN + ":a:b"):
        assert lambda_target(bad) is None


# ---- the management API's protocol adaptation ---------------------------------------------------------
def test_members_are_renamed_from_and_to_the_models_json():
    model = service_model()
    create = model.operation_model("CreateApi")
    parsed = from_wire(create.input_shape, {"name": "a", "protocolType": "HTTP", "corsConfiguration": {"allowOrigins": ["*"]},
                                            "tags": {"k": "v"}, "unknown": 1})
    assert parsed == {"Name": "a", "ProtocolType": "HTTP", "CorsConfiguration": {"AllowOrigins": ["*"]}, "Tags": {"k": "v"}}
    listed = to_wire(model.operation_model("GetApis").output_shape,
                     {"Items": [{"ApiId": "x", "CreatedDate": 0, "Name": "n", "Description": None}], "NextToken": "t"})
    assert listed == {"items": [{"apiId": "x", "createdDate": "1970-01-01T00:00:00Z", "name": "n"}], "nextToken": "t"}


# ---- the service over a real store ---------------------------------------------------------------------
def test_operations_checks_and_persistence(tmp_path):
    async def scenario() -> None:
        repo = HttpApiRepository(db.create_engine(f"sqlite:///{tmp_path / 'apis.db'}"))
        apis = HttpApis(repo, Arns("us-east-1", "123456789012"), lambda: 9000)
        quick = await apis.call("CreateApi", {"Name": "q", "ProtocolType": "HTTP", "Target": FN})
        assert quick["ApiEndpoint"] == f"http://{quick['ApiId']}.execute-api.us-east-1.localhost:9000"
        api = await apis.call("CreateApi", {"Name": "a", "ProtocolType": "HTTP"})
        api_id = api["ApiId"]
        integration = await apis.call("CreateIntegration", {"ApiId": api_id, "IntegrationType": "AWS_PROXY",
                                                            "IntegrationUri": FN, "PayloadFormatVersion": "1.0"})
        target = f"integrations/{integration['IntegrationId']}"
        route = await apis.call("CreateRoute", {"ApiId": api_id, "RouteKey": "GET /pets/{id}", "Target": target})
        with pytest.raises(Conflict, match="already exists for this API"):
            await apis.call("CreateRoute", {"ApiId": api_id, "RouteKey": "GET /pets/{id}"})
        with pytest.raises(Conflict, match="conflicting variable on the same hierarchical level"):
            await apis.call("CreateRoute", {"ApiId": api_id, "RouteKey": "PUT /pets/{petId}"})
        with pytest.raises(BadRequest, match="One or more path parts"):
            await apis.call("CreateRoute", {"ApiId": api_id, "RouteKey": "GET /pets/{id}.json"})
        with pytest.raises(NotFound, match="Invalid Integration identifier specified nope"):
            await apis.call("CreateRoute", {"ApiId": api_id, "RouteKey": "GET /x", "Target": "integrations/nope"})
        with pytest.raises(BadRequest, match="PayloadFormatVersion is required"):
            await apis.call("CreateIntegration", {"ApiId": api_id, "IntegrationType": "AWS_PROXY", "IntegrationUri": FN})
        with pytest.raises(BadRequest, match="only be associated with proxy integrations"):
            await apis.call("CreateIntegration", {"ApiId": api_id, "IntegrationType": "AWS", "IntegrationUri": FN})
        with pytest.raises(Conflict, match="is the target of route"):
            await apis.call("DeleteIntegration", {"ApiId": api_id, "IntegrationId": integration["IntegrationId"]})
        await apis.call("CreateStage", {"ApiId": api_id, "StageName": "$default", "StageVariables": {"color": "blue"}})
        with pytest.raises(Conflict):
            await apis.call("CreateStage", {"ApiId": api_id, "StageName": "$default"})
        with pytest.raises(NotFound) as missing:
            await apis.call("GetApi", {"ApiId": "nope"})
        assert missing.value.message == "Invalid API identifier specified 123456789012:nope"
        assert missing.value.fields == {"resourceType": "Api"}
        managed = (await apis.call("GetRoutes", {"ApiId": quick["ApiId"]}))["Items"][0]
        with pytest.raises(Conflict, match="managed by API Gateway"):
            await apis.call("DeleteRoute", {"ApiId": quick["ApiId"], "RouteId": managed["RouteId"]})
        page = await apis.call("GetApis", {"MaxResults": "1"})
        rest = await apis.call("GetApis", {"NextToken": page["NextToken"]})
        assert sorted(a["ApiId"] for a in page["Items"] + rest["Items"]) == sorted([api_id, quick["ApiId"]])
        assert "NextToken" not in rest

        reloaded = HttpApis(repo, Arns("us-east-1", "123456789012"), lambda: None)  # a restarted server
        await reloaded.load()
        again = reloaded.lookup(api_id)
        assert again is not None and again.stages["$default"]["StageVariables"] == {"color": "blue"}
        assert again.route_for("GET", "/pets/9")[0].route_id == route["RouteId"]
        assert reloaded.lookup(quick["ApiId"]).route_for("PATCH", "/anything")[0].key == "$default"
        await reloaded.call("DeleteApi", {"ApiId": api_id})
        assert list(repo.all()) == [quick["ApiId"]]
        with repo.engine.connect() as conn:  # its integrations, routes and stages went with it
            assert conn.execute(db.http_api_resources.select().where(db.http_api_resources.c.api_id == api_id)).first() is None

    asyncio.run(scenario())
