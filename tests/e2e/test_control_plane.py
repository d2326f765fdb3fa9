"""The function control API through boto3 against a real server."""

from __future__ import annotations

import base64
import hashlib
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, create_function, make_zip, unique_name

CODE = "def handler(event, context):\n    return event\n"


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def test_create_get_and_waiters(lam):
    zip_bytes = make_zip({"app.py": CODE})
    name = unique_name()
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_bytes},
        Description="hello",
        Environment={"Variables": {"GREETING": "hi"}},
        Tags={"team": "core"},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["State"] in ("Pending", "Active")
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    assert created["CodeSize"] == len(zip_bytes)
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert created["Version"] == "$LATEST"
    assert created["MemorySize"] == 128 and created["Timeout"] == 3
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["Architectures"] == ["x86_64"] and created["PackageType"] == "Zip"
    assert created["ResponseMetadata"]["RequestId"]
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})

    fn = lam.get_function(FunctionName=name)
    assert fn["Configuration"]["State"] == "Active"
    assert fn["Configuration"]["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert fn["Tags"] == {"team": "core"}
    assert fn["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(fn["Code"]["Location"]) as response:
        assert response.read() == zip_bytes
    # LastModified in Lambda's format: 2020-04-10T19:06:32.563+0000
    assert fn["Configuration"]["LastModified"][-5:] == "+0000" and fn["Configuration"]["LastModified"][19] == "."

    # Names, partial ARNs and full ARNs all resolve.
    for ref in (name, f"123456789012:function:{name}", f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
                f"{name}:$LATEST"):
        assert lam.get_function_configuration(FunctionName=ref)["FunctionName"] == name


def test_code_link_is_signed(lam):
    name = create_function(lam, CODE)
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    tampered = location.replace("signature=", "signature=0")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(tampered)
    assert excinfo.value.code == 403


def test_update_code_and_configuration(lam):
    name = create_function(lam, CODE)
    before = lam.get_function_configuration(FunctionName=name)
    new_zip = make_zip({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    updated = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert updated["LastUpdateStatus"] in ("InProgress", "Successful")
    assert updated["RevisionId"] != before["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    assert lam.invoke(FunctionName=name)["Payload"].read() == b'"v2"'

    conf = lam.update_function_configuration(
        FunctionName=name, MemorySize=256, Timeout=10, Environment={"Variables": {"AB": "1"}}, Description="d"
    )
    assert conf["MemorySize"] == 256 and conf["Timeout"] == 10
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    final = lam.get_function_configuration(FunctionName=name)
    assert final["LastUpdateStatus"] == "Successful"
    assert final["Environment"]["Variables"] == {"AB": "1"} and final["Description"] == "d"


def test_revision_id_precondition(lam):
    name = create_function(lam, CODE)
    with pytest.raises(ClientError) as excinfo:
        lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId="00000000-0000-0000-0000-000000000000")
    code, status, _ = error_of(excinfo)
    assert (code, status) == ("PreconditionFailedException", 412)
    rev = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    assert lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId=rev)["Timeout"] == 5


def test_list_functions_paginates(lam):
    names = sorted(create_function(lam, CODE, wait=False, FunctionName=unique_name("page")) for _ in range(7))
    seen = []
    for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3}):
        assert len(page["Functions"]) <= 3
        seen.extend(f["FunctionName"] for f in page["Functions"])
    assert [n for n in seen if n in names] == names
    assert len(seen) == len(set(seen))
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]


def test_delete_function(lam):
    name = create_function(lam, CODE)
    response = lam.delete_function(FunctionName=name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}"
    with pytest.raises(ClientError) as excinfo:
        lam.delete_function(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_account_settings(lam):
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["CodeSizeZipped"] == 52428800
    assert settings["AccountLimit"]["CodeSizeUnzipped"] == 262144000
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] >= 0


IPV, VALIDATION = "InvalidParameterValueException", "ValidationException"


@pytest.mark.parametrize(
    "overrides, code, fragment",
    [
        ({"FunctionName": "bad name!"}, VALIDATION, "functionName"),
        ({"FunctionName": "x" * 65}, IPV, "functionName"),
        ({"Runtime": "python2.7"}, IPV, "python2.7"),
        ({"Runtime": "cobol"}, IPV, "runtime"),
        ({"Handler": "has space.handler"}, VALIDATION, "handler"),
        ({"MemorySize": 10241}, VALIDATION, "memorySize"),
        ({"Timeout": 901}, VALIDATION, "timeout"),
        ({"Role": "not-a-role"}, VALIDATION, "role"),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, IPV, "reserved"),
        ({"Environment": {"Variables": {"1BAD": "x"}}}, VALIDATION, "environment.variables"),
        ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, IPV, "4KB"),
        ({"EphemeralStorage": {"Size": 20000}}, VALIDATION, "ephemeralStorage"),
        ({"Code": {"ZipFile": b"this is not a zip"}}, IPV, "Could not unzip"),
        ({"Code": {"ZipFile": make_zip({"../evil.py": "x"})}}, IPV, "evil"),
        ({"Code": {"ZipFile": make_zip({"/etc/evil.py": "x"})}}, IPV, "evil"),
    ],
)
def test_create_validation(lam, overrides, code, fragment):
    params = {
        "FunctionName": unique_name(),
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": CODE})},
        **overrides,
    }
    with pytest.raises(ClientError) as excinfo:
        lam.create_function(**params)
    got, status, message = error_of(excinfo)
    assert (got, status) == (code, 400), message
    assert fragment.lower() in message.lower()
    assert excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == code


def test_create_existing_conflicts(lam):
    name = create_function(lam, CODE)
    with pytest.raises(ClientError) as excinfo:
        create_function(lam, CODE, FunctionName=name)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ResourceConflictException", 409)
    assert message == f"Function already exist: {name}"


def test_unknown_function_everywhere(lam):
    missing = unique_name("missing")
    for call in (
        lambda: lam.get_function(FunctionName=missing),
        lambda: lam.get_function_configuration(FunctionName=missing),
        lambda: lam.invoke(FunctionName=missing),
        lambda: lam.update_function_configuration(FunctionName=missing, Timeout=5),
        lambda: lam.update_function_code(FunctionName=missing, ZipFile=make_zip({"app.py": CODE})),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
