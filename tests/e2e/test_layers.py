"""Layers and code from S3 end to end through boto3 and the AWS CLI against a real ``squall server``
on the linux sandbox: publishing and reading layer versions, a Python package and a Node module
from a layer, a custom runtime's /opt/bootstrap, order and overrides, /opt/bin on PATH, the size
and count limits, a deleted layer version that keeps working for its functions, layer permissions;
function code and layer content read from moto's S3 (server mode)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, create_function, make_zip, require, start_server, unique_name
from tests.contract import linux_unavailable
from tests.e2e.test_async import aws as moto_client
from tests.e2e.test_aws_cli import aws
from tests.e2e.test_control_plane import error_of
from tests.e2e.test_custom_runtime import SHELL_BOOTSTRAP

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server(tmp_path_factory, moto_endpoint):
    reason = linux_unavailable()
    require(reason is None, f"layers are mounted at /opt by the linux sandbox: {reason}")
    running = start_server(tmp_path_factory.mktemp("squall-layers"), "--isolation", "linux", env={
        "SQUALL_AWS_ENDPOINT": moto_endpoint, "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def publish(lam, files: dict[str, str | bytes], modes: dict[str, int] | None = None, **extra) -> dict:
    name = extra.pop("LayerName", None) or unique_name("layer")
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip(files, modes)}, **extra)


def invoke(lam, name: str, payload: dict | None = None) -> dict:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode())
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    return body


def test_publish_get_list_and_delete_layer_versions(lam, server):
    name = unique_name("shapes")
    first = publish(lam, {"python/a.py": "A = 1\n"}, LayerName=name, Description="first", CompatibleRuntimes=["python3.11"],
                    CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")
    assert first["Version"] == 1 and first["LayerArn"] == f"arn:aws:lambda:us-east-1:123456789012:layer:{name}"
    assert first["LayerVersionArn"] == first["LayerArn"] + ":1"
    assert first["Content"]["CodeSize"] > 0 and first["Content"]["Location"].startswith(server.endpoint)
    assert (first["Description"], first["CompatibleRuntimes"], first["LicenseInfo"]) == ("first", ["python3.11"], "MIT")
    second = publish(lam, {"python/a.py": "A = 2\n"}, LayerName=name, CompatibleRuntimes=["nodejs20.x"])
    assert second["Version"] == 2
    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["Content"]["CodeSha256"] == first["Content"]["CodeSha256"] and got["Description"] == "first"
    assert lam.get_layer_version_by_arn(Arn=second["LayerVersionArn"])["Version"] == 2
    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]  # newest first
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.11")["LayerVersions"]] == [1]
    layers = {layer["LayerName"]: layer for layer in lam.list_layers()["Layers"]}
    assert layers[name]["LatestMatchingVersion"]["Version"] == 2
    filtered = {layer["LayerName"]: layer for layer in lam.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert filtered[name]["LatestMatchingVersion"]["Version"] == 1
    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    lam.delete_layer_version(LayerName=name, VersionNumber=2)  # idempotent, as on Lambda
    with pytest.raises(ClientError) as caught:
        lam.get_layer_version(LayerName=name, VersionNumber=2)
    assert error_of(caught)[:2] == ("ResourceNotFoundException", 404)
    assert publish(lam, {"python/a.py": "A = 3\n"}, LayerName=name)["Version"] == 3  # numbers are never reused
    # the code link downloads the layer's zip
    from urllib.request import urlopen

    with urlopen(got["Content"]["Location"], timeout=10) as response:
        assert zipfile.ZipFile(io.BytesIO(response.read())).read("python/a.py") == b"A = 1\n"


def test_python_packages_from_layers_with_order_overrides_and_opt_bin(lam):
    base = publish(lam, {"python/shared.py": "WHO = 'base'\n", "python/only_base.py": "X = 'base only'\n",
                         "python/lib/python3.11/site-packages/sitepkg/__init__.py": "NAME = 'site-packages'\n",
                         "bin/layer-tool": "#!/bin/sh\necho tool from a layer\n",
                         "lib/libnote.txt": "a library dir\n"}, modes={"bin/layer-tool": 0o755})
    override = publish(lam, {"python/shared.py": "WHO = 'override'\n"})
    name = create_function(lam, """
        import os, subprocess
        import shared, only_base, sitepkg
        def handler(event, context):
            return {"who": shared.WHO, "only": only_base.X, "site": sitepkg.NAME,
                    "tool": subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip(),
                    "ld": os.environ["LD_LIBRARY_PATH"], "listing": sorted(os.listdir("/opt")),
                    "writable": os.access("/opt/python/shared.py", os.W_OK)}
    """, Layers=[base["LayerVersionArn"], override["LayerVersionArn"]])
    body = invoke(lam, name)
    assert (body["who"], body["only"], body["site"]) == ("override", "base only", "site-packages")
    assert body["tool"] == "tool from a layer" and "/opt/lib" in body["ld"].split(":")
    assert body["listing"] == ["bin", "lib", "python"] and body["writable"] is False
    config = lam.get_function_configuration(FunctionName=name)
    assert [layer["Arn"] for layer in config["Layers"]] == [base["LayerVersionArn"], override["LayerVersionArn"]]
    assert config["Layers"][0]["CodeSize"] == base["Content"]["CodeSize"]
    # the other order: the base layer's file wins
    lam.update_function_configuration(FunctionName=name, Layers=[override["LayerVersionArn"], base["LayerVersionArn"]])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    assert invoke(lam, name)["who"] == "base"
    lam.update_function_configuration(FunctionName=name, Layers=[])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    answer = lam.invoke(FunctionName=name, Payload=b"{}")
    assert answer.get("FunctionError") == "Unhandled"  # shared is gone with the layers
    assert "Layers" not in lam.get_function_configuration(FunctionName=name)


def test_a_node_module_from_a_layer(lam):
    layer = publish(lam, {"nodejs/node_modules/greeter/index.js": "exports.greet = (n) => `hello ${n} from a layer`;\n"})
    name = create_function(lam, {"index.js": "const g = require('greeter');\nexports.handler = async (e) => ({msg: g.greet(e.who)});\n"},
                           handler="index.handler", Runtime="nodejs20.x", Layers=[layer["LayerVersionArn"]])
    assert invoke(lam, name, {"who": "node"}) == {"msg": "hello node from a layer"}


def test_a_custom_runtime_bootstrap_from_a_layer(lam):
    layer = publish(lam, {"bootstrap": SHELL_BOOTSTRAP}, modes={"bootstrap": 0o755})
    function = r"""
handler () {
  printf '{"event": %s, "from": "%s"}' "$1" "$0"
}
"""
    name = create_function(lam, {"function.sh": function}, handler="function.handler", Runtime="provided.al2023",
                           Layers=[layer["LayerVersionArn"]])
    body = invoke(lam, name, {"n": 1})
    assert body["event"] == {"n": 1} and body["from"] == "/opt/bootstrap"
    # without the layer (and without its own bootstrap), Lambda's entrypoint error
    bare = create_function(lam, {"function.sh": function}, handler="function.handler", Runtime="provided.al2023")
    answer = lam.invoke(FunctionName=bare, Payload=b"{}")
    assert json.loads(answer["Payload"].read())["errorType"] == "Runtime.InvalidEntrypoint"


def test_a_deleted_layer_version_keeps_serving_its_functions(lam, server):
    layer = publish(lam, {"python/kept.py": "VALUE = 'still here'\n"})
    code = "import kept\ndef handler(event, context):\n    return kept.VALUE\n"
    name = create_function(lam, code, Layers=[layer["LayerVersionArn"]])
    assert invoke(lam, name) == "still here"
    lam.publish_version(FunctionName=name)
    lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])  # by ARN
    assert invoke(lam, name) == "still here"
    assert invoke(lam, f"{name}:1") == "still here"
    with pytest.raises(ClientError) as caught:  # a new function cannot start using it
        create_function(lam, code, Layers=[layer["LayerVersionArn"]])
    assert error_of(caught)[0] == "InvalidParameterValueException" and "does not exist" in error_of(caught)[2]
    # a new environment of the function (after a configuration change) still gets it
    lam.update_function_configuration(FunctionName=name, Description="new environments")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    assert invoke(lam, name) == "still here"
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize(("layers", "message"), [
    (["arn:aws:lambda:us-east-1:123456789012:layer:nosuch:1"], "does not exist"),
    (["arn:aws:lambda:us-east-1:123456789012:layer:nosuch"], "must end with the version number"),
])
def test_unknown_and_malformed_layer_arns_are_refused(lam, layers, message):
    with pytest.raises(ClientError) as caught:
        create_function(lam, "def handler(e, c):\n    return 1\n", Layers=layers)
    code, status, text = error_of(caught)[:3]
    assert status == 400 and code in ("InvalidParameterValueException", "ValidationException"), (code, text)


def test_more_than_five_layers_two_versions_of_one_and_the_size_limit(lam):
    small = [publish(lam, {f"python/m{i}.py": "X = 1\n"})["LayerVersionArn"] for i in range(6)]
    with pytest.raises(ClientError) as caught:
        create_function(lam, "def handler(e, c):\n    return 1\n", Layers=small)
    assert error_of(caught)[0] == "InvalidParameterValueException" and "more than 5 layers" in error_of(caught)[2]
    name = unique_name("twice")
    one = publish(lam, {"python/a.py": "A = 1\n"}, LayerName=name)["LayerVersionArn"]
    two = publish(lam, {"python/a.py": "A = 2\n"}, LayerName=name)["LayerVersionArn"]
    with pytest.raises(ClientError) as caught:
        create_function(lam, "def handler(e, c):\n    return 1\n", Layers=[one, two])
    assert error_of(caught)[0] == "InvalidParameterValueException"
    # 2 x 130 MB of zeros (a few hundred KB zipped each): more than 250 MB with the code
    big = [publish(lam, {f"data/zeros{i}.bin": b"\0" * (130 * 1024 * 1024)})["LayerVersionArn"] for i in range(2)]
    with pytest.raises(ClientError) as caught:
        create_function(lam, "def handler(e, c):\n    return 1\n", Layers=big)
    code, _, text = error_of(caught)[:3]
    assert code == "InvalidParameterValueException" and "262144000 bytes" in text
    for arn in big:
        layer, number = arn.rsplit(":", 1)
        lam.delete_layer_version(LayerName=layer, VersionNumber=int(number))


def test_layer_version_permissions(lam):
    layer = publish(lam, {"python/p.py": "P = 1\n"})
    name, number = layer["LayerArn"], layer["Version"]
    with pytest.raises(ClientError) as caught:
        lam.get_layer_version_policy(LayerName=name, VersionNumber=number)
    assert error_of(caught)[:2] == ("ResourceNotFoundException", 404)
    added = lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone",
                                             Action="lambda:GetLayerVersion", Principal="*")
    statement = json.loads(added["Statement"])
    assert statement["Principal"] == "*" and statement["Resource"] == layer["LayerVersionArn"]
    with pytest.raises(ClientError) as caught:
        lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone",
                                         Action="lambda:GetLayerVersion", Principal="*")
    assert error_of(caught)[0] == "ResourceConflictException"
    lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="acct",
                                     Action="lambda:GetLayerVersion", Principal="210987654321")
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=number)
    document = json.loads(policy["Policy"])
    assert [s["Sid"] for s in document["Statement"]] == ["everyone", "acct"]
    assert document["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    with pytest.raises(ClientError) as caught:
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="acct", RevisionId="stale")
    assert error_of(caught)[0] == "PreconditionFailedException"
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="acct",
                                        RevisionId=policy["RevisionId"])
    assert [s["Sid"] for s in json.loads(lam.get_layer_version_policy(LayerName=name, VersionNumber=number)["Policy"])
            ["Statement"]] == ["everyone"]
    with pytest.raises(ClientError) as caught:
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="acct")
    assert error_of(caught)[:2] == ("ResourceNotFoundException", 404)


def test_an_identity_without_get_layer_version_cannot_use_the_layer(server, lam):
    layer = publish(lam, {"python/secret.py": "S = 1\n"})
    iam = server.client("iam")
    user = unique_name("nolayer")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="functions-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["lambda:CreateFunction", "lambda:GetFunction", "iam:PassRole"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    other = server.client("lambda", credentials=(key["AccessKeyId"], key["SecretAccessKey"]))
    with pytest.raises(ClientError) as caught:
        create_function(other, "import secret\ndef handler(e, c):\n    return 1\n", Layers=[layer["LayerVersionArn"]])
    code, status, text = error_of(caught)[:3]
    assert (code, status) == ("AccessDeniedException", 403) and "lambda:GetLayerVersion" in text


def test_the_aws_cli_publishes_and_lists_layers(server, lam, tmp_path):
    archive = tmp_path / "layer.zip"
    archive.write_bytes(make_zip({"python/cli_layer.py": "FROM = 'the cli'\n"}))
    name = unique_name("cli-layer")
    published = json.loads(aws(server, tmp_path, "lambda", "publish-layer-version", "--layer-name", name,
                               "--zip-file", f"fileb://{archive}", "--compatible-runtimes", "python3.11").stdout)
    assert published["Version"] == 1 and published["CompatibleRuntimes"] == ["python3.11"]
    listed = json.loads(aws(server, tmp_path, "lambda", "list-layer-versions", "--layer-name", name).stdout)
    assert [v["LayerVersionArn"] for v in listed["LayerVersions"]] == [published["LayerVersionArn"]]
    fn = create_function(lam, "import cli_layer\ndef handler(e, c):\n    return cli_layer.FROM\n",
                         Layers=[published["LayerVersionArn"]])
    assert invoke(lam, fn) == "the cli"


def test_layers_survive_a_restart_and_unused_merged_trees_are_swept(tmp_path_factory):
    data = tmp_path_factory.mktemp("squall-layers-restart")
    first = start_server(data, "--isolation", "linux")
    try:
        lam = first.client("lambda")
        layer = publish(lam, {"python/persist.py": "V = 'after a restart'\n"})
        name = create_function(lam, "import persist\ndef handler(e, c):\n    return persist.V\n",
                               Layers=[layer["LayerVersionArn"]])
        assert invoke(lam, name) == "after a restart"
        stale = data / "opt" / "0123456789abcdef0123456789abcdef"
        stale.mkdir()  # a merged tree nothing uses
    finally:
        first.stop()
    second = start_server(data, "--isolation", "linux")
    try:
        assert invoke(second.client("lambda"), name) == "after a restart"
        assert not stale.exists() and len(list((data / "opt").iterdir())) == 1
    finally:
        second.stop()


# ---------------------------------------------------------------- code from S3
@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    s3 = moto_client("s3", moto_endpoint)
    name = unique_name("code").lower()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3, name


def test_function_code_and_layer_content_from_s3(lam, bucket):
    s3, name = bucket
    first = s3.put_object(Bucket=name, Key="fn.zip", Body=make_zip({"app.py": "def handler(e, c):\n    return 'v1 from s3'\n"}))
    s3.put_object(Bucket=name, Key="fn.zip", Body=make_zip({"app.py": "def handler(e, c):\n    return 'v2 from s3'\n"}))
    fn = unique_name("s3")
    created = lam.create_function(FunctionName=fn, Runtime="python3.11", Role=ROLE,
                                  Handler="app.handler", Code={"S3Bucket": name, "S3Key": "fn.zip",
                                                               "S3ObjectVersion": first["VersionId"]})
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    assert created["CodeSize"] > 0 and invoke(lam, fn) == "v1 from s3"  # the version asked for
    lam.update_function_code(FunctionName=fn, S3Bucket=name, S3Key="fn.zip")  # the latest version
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    assert invoke(lam, fn) == "v2 from s3"
    s3.put_object(Bucket=name, Key="layer.zip", Body=make_zip({"python/from_s3.py": "WHERE = 'layer from s3'\n"}))
    layer = lam.publish_layer_version(LayerName=unique_name("s3layer"), Content={"S3Bucket": name, "S3Key": "layer.zip"})
    user = create_function(lam, "import from_s3\ndef handler(e, c):\n    return from_s3.WHERE\n",
                           Layers=[layer["LayerVersionArn"]])
    assert invoke(lam, user) == "layer from s3"


def test_a_package_over_50_mb_zipped_goes_through_s3(lam, bucket):
    s3, name = bucket
    noise = __import__("os").urandom(55 * 1024 * 1024)  # incompressible: the zip is over 50 MB
    body = make_zip({"app.py": "def handler(e, c):\n    return 'big'\n", "blob.bin": noise})
    assert len(body) > 52_428_800
    s3.put_object(Bucket=name, Key="big.zip", Body=body)
    fn = unique_name("big")
    lam.create_function(FunctionName=fn, Runtime="python3.11", Role=ROLE,
                        Handler="app.handler", Code={"S3Bucket": name, "S3Key": "big.zip"})
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})
    assert invoke(lam, fn) == "big"
    assert lam.get_function_configuration(FunctionName=fn)["CodeSize"] == len(body)
    lam.delete_function(FunctionName=fn)


@pytest.mark.parametrize(("code", "expected"), [
    ({"S3Bucket": "no-such-bucket-here", "S3Key": "fn.zip"}, "S3 Error Code: NoSuchBucket"),
    ({"S3Key": "fn.zip", "S3Bucket": "{bucket}", "S3ObjectVersion": "nope"}, "Error occurred while GetObject"),
    ({"S3Bucket": "{bucket}", "S3Key": "missing.zip"}, "S3 Error Code: NoSuchKey"),
    ({"S3Bucket": "{bucket}", "S3Key": "notazip.txt"}, "Could not unzip uploaded file"),
])
def test_s3_errors_are_lambda_errors(lam, bucket, code, expected):
    s3, name = bucket
    s3.put_object(Bucket=name, Key="notazip.txt", Body=b"plain text")
    code = {k: v.replace("{bucket}", name) for k, v in code.items()}
    with pytest.raises(ClientError) as caught:
        lam.create_function(FunctionName=unique_name("bad"), Runtime="python3.11",
                            Role=ROLE, Handler="app.handler", Code=code)
    error, status, message = error_of(caught)[:3]
    assert (error, status) == ("InvalidParameterValueException", 400) and expected in message, message
