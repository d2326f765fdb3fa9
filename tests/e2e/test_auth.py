"""Authentication and authorization end to end (issue 11), with the real clients.

boto3 with wrong keys, a wrong secret and a skewed clock; unsigned requests; the AWS CLI with
what ``squall credentials`` prints; IAM users and policies through boto3's ``iam`` client; a
limited user; a function whose execution role may invoke one other function and nothing
else, checked from inside it with boto3; AddPermission letting a second user invoke; code
links that expire.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import sys
import urllib.error
import urllib.request
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, create_function, make_zip, start_server, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ACCT = "123456789012"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("auth"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def user(iam, server, name: str, *statements: dict):
    """A user with one inline policy and an access key; its Lambda client."""
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return server.client("lambda", credentials=(key["AccessKeyId"], key["SecretAccessKey"]))


def test_requests_without_a_valid_signature_are_refused(server, admin):
    name = create_function(admin, "def handler(e, c):\n    return 'ran'\n")
    key_id, secret = server.credentials
    unknown = server.client("lambda", credentials=("AKIAUNKNOWN000000000", secret))
    assert error_of(unknown.invoke, FunctionName=name) == (
        403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    wrong = server.client("lambda", credentials=(key_id, "not-the-secret"))
    status, code, message = error_of(wrong.delete_function, FunctionName=name)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)
    with mock.patch("botocore.auth.get_current_datetime", return_value=past):
        status, code, message = error_of(admin.get_function, FunctionName=name)
    assert (status, code) == (403, "InvalidSignatureException") and message.startswith("Signature expired: ")
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{server.endpoint}/2015-03-31/functions/{name}")
    assert unsigned.value.code == 403
    assert unsigned.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(unsigned.value.read()) == {"message": "Missing Authentication Token"}
    assert admin.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name  # nothing changed
    presigned = admin.generate_presigned_url("get_function_configuration", Params={"FunctionName": name}, ExpiresIn=60)
    with urllib.request.urlopen(presigned) as response:  # a presigned query string is a signature too
        assert json.loads(response.read())["FunctionName"] == name
    with pytest.raises(urllib.error.HTTPError) as tampered:
        urllib.request.urlopen(presigned.replace("X-Amz-Expires=60", "X-Amz-Expires=600"))
    assert tampered.value.code == 403
    malformed = urllib.request.Request(f"{server.endpoint}/2015-03-31/functions/{name}", headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/lambda/aws4_request",
        "X-Amz-Date": "20260101T000000Z"})
    with pytest.raises(urllib.error.HTTPError) as incomplete:
        urllib.request.urlopen(malformed)
    assert incomplete.value.code == 403 and incomplete.value.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert "requires 'SignedHeaders'" in json.loads(incomplete.value.read())["message"]
    truncated = presigned.split("&X-Amz-Signature=")[0]
    with pytest.raises(urllib.error.HTTPError) as cut:
        urllib.request.urlopen(truncated)
    assert cut.value.code == 403 and cut.value.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    with urllib.request.urlopen(f"{server.endpoint}/health") as health:  # the one open door
        assert json.loads(health.read())["status"] == "ok"


def test_the_aws_cli_with_what_squall_credentials_prints(server, admin, tmp_path):
    printed = subprocess.run([sys.executable, "-m", "squall.cli.main", "credentials", "--data-dir", str(server.data_dir),
                              "--endpoint", server.endpoint], capture_output=True, text=True, timeout=60, check=True).stdout
    env = {k: v for k, v in server.aws_env().items() if not k.startswith("AWS_")}
    for line in printed.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value
    assert env["AWS_ACCESS_KEY_ID"] == server.credentials[0]
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    name = create_function(admin, "def handler(e, c):\n    return 'cli'\n")
    done = subprocess.run([sys.executable, "-m", "awscli", "lambda", "get-function", "--function-name", name,
                           "--endpoint-url", env["AWS_ENDPOINT_URL"]], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Configuration"]["FunctionName"] == name
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    done = subprocess.run([sys.executable, "-m", "awscli", "lambda", "list-functions", "--endpoint-url",
                           env["AWS_ENDPOINT_URL"]], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and "InvalidSignatureException" in done.stderr
    # the same as a profile, with the endpoint in it: nothing else on the command line
    profile = subprocess.run([sys.executable, "-m", "squall.cli.main", "credentials", "--format", "profile",
                              "--data-dir", str(server.data_dir), "--endpoint", server.endpoint],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    credentials_part, _, config_part = profile.partition("# add to ~/.aws/config")
    (tmp_path / "credentials").write_text(credentials_part)
    (tmp_path / "config").write_text(config_part)
    clean = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    clean.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_CONFIG_FILE=str(tmp_path / "config"))
    done = subprocess.run([sys.executable, "-m", "awscli", "--profile", "squall", "lambda", "get-function",
                           "--function-name", name], capture_output=True, text=True, env=clean, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_limited_user(server, admin, iam):
    name = create_function(admin, "def handler(e, c):\n    return 'ran'\n")
    other = create_function(admin, "def handler(e, c):\n    return 'other'\n")
    arn = f"arn:aws:lambda:us-east-1:{ACCT}:function:{name}"
    bob = user(iam, server, unique_name("bob"),
               {"Effect": "Allow", "Action": ["lambda:InvokeFunction", "lambda:Get*"], "Resource": f"{arn}*"},
               {"Effect": "Deny", "Action": "lambda:DeleteFunction", "Resource": "*"})
    bob_arn = iam.get_user(UserName=iam.list_users()["Users"][-1]["UserName"])["User"]["Arn"]
    assert json.loads(bob.invoke(FunctionName=name)["Payload"].read()) == "ran"
    assert bob.get_function_configuration(FunctionName=name)["FunctionName"] == name
    status, code, message = error_of(bob.delete_function, FunctionName=name)
    assert (status, code) == (403, "AccessDeniedException")
    assert message.startswith("User: arn:aws:iam::123456789012:user/bob")
    assert message.endswith(f"is not authorized to perform: lambda:DeleteFunction on resource: {arn} "
                            "with an explicit deny in an identity-based policy")
    status, code, message = error_of(bob.invoke, FunctionName=other)
    assert (status, code) == (403, "AccessDeniedException")
    assert message.endswith("because no identity-based policy allows the lambda:InvokeFunction action")
    assert error_of(bob.list_functions)[1] == "AccessDeniedException"  # resource "*": not allowed
    bob_logs = server.client("logs", credentials=bob._request_signer._credentials.get_frozen_credentials()[:2])
    status, code, _ = error_of(bob_logs.filter_log_events, logGroupName=f"/aws/lambda/{name}")
    assert (status, code) == (400, "AccessDeniedException")  # the Logs protocol's status for it
    assert bob_arn.startswith("arn:aws:iam::123456789012:user/")
    iam_of_bob = server.client("iam", credentials=bob._request_signer._credentials.get_frozen_credentials()[:2])
    assert error_of(iam_of_bob.create_user, UserName="mallory")[1] == "AccessDenied"  # IAM's own word for it
    assert admin.get_function(FunctionName=name)  # still there


def test_iam_users_keys_and_policies(server, iam):
    name = unique_name("carol")
    created = iam.create_user(UserName=name)["User"]
    assert created["Arn"] == f"arn:aws:iam::{ACCT}:user/{name}" and created["UserId"].startswith("AIDA")
    assert error_of(iam.create_user, UserName=name)[:2] == (409, "EntityAlreadyExists")
    keys = [iam.create_access_key(UserName=name)["AccessKey"] for _ in range(2)]
    assert all(k["AccessKeyId"].startswith("AKIA") and len(k["SecretAccessKey"]) == 40 for k in keys)
    assert error_of(iam.create_access_key, UserName=name) == (409, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2")
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:List*", "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="lister", PolicyDocument=json.dumps(document))
    assert iam.get_user_policy(UserName=name, PolicyName="lister")["PolicyDocument"] == document
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["lister"]
    assert error_of(iam.put_user_policy, UserName=name, PolicyName="bad", PolicyDocument="{nope")[:2] == (
        400, "MalformedPolicyDocument")
    big = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:List*", "Resource": "*",
                                                   "Sid": "a" * 2100}]}
    assert error_of(iam.put_user_policy, UserName=name, PolicyName="big", PolicyDocument=json.dumps(big))[:2] == (
        409, "LimitExceeded")
    carol = server.client("lambda", credentials=(keys[0]["AccessKeyId"], keys[0]["SecretAccessKey"]))
    carol.list_functions()  # allowed by the policy
    sts = server.client("sts", credentials=(keys[0]["AccessKeyId"], keys[0]["SecretAccessKey"]))
    assert sts.get_caller_identity()["Arn"] == created["Arn"]
    assert error_of(iam.delete_user, UserName=name)[:2] == (409, "DeleteConflict")
    for key in keys:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    assert error_of(carol.list_functions)[1] == "UnrecognizedClientException"  # the key is gone
    iam.delete_user_policy(UserName=name, PolicyName="lister")
    iam.delete_user(UserName=name)
    assert error_of(iam.get_user, UserName=name) == (404, "NoSuchEntity", f"The user with name {name} cannot be found.")
    status, code, message = error_of(iam.create_user, UserName="bad name!")
    assert (status, code) == (400, "ValidationError") and "userName" in message


def test_a_function_role_may_invoke_one_function_and_nothing_else(server, admin, iam):
    target = create_function(admin, "def handler(e, c):\n    return {'target got': e}\n")
    bystander = create_function(admin, "def handler(e, c):\n    return 'bystander'\n")
    role = unique_name("invoker")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    created = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    assert created["AssumeRolePolicyDocument"] == trust  # sent URL-encoded, decoded by boto3
    iam.put_role_policy(RoleName=role, PolicyName="invoke-one", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                "Resource": f"arn:aws:lambda:us-east-1:{ACCT}:function:{target}"}]}))
    caller = create_function(admin, """
import json, os, boto3
from botocore.exceptions import ClientError

def handler(event, context):
    lam = boto3.client("lambda")  # the role's credentials, and AWS_ENDPOINT_URL_LAMBDA: Squall
    out = {"key": os.environ["AWS_ACCESS_KEY_ID"][:4], "token": bool(os.environ.get("AWS_SESSION_TOKEN"))}
    out["target"] = json.loads(lam.invoke(FunctionName=event["target"], Payload=b'{"from": "caller"}')["Payload"].read())
    for what, call in (("bystander", lambda: lam.invoke(FunctionName=event["bystander"])),
                       ("list", lambda: lam.list_functions())):
        try:
            call()
            out[what] = "allowed"
        except ClientError as e:
            out[what] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
    out["who"] = boto3.client("sts").get_caller_identity()["Arn"]
    return out
""", Role=created["Arn"], Timeout=60, MemorySize=1769)  # a whole vCPU: botocore is heavy to load
    response = admin.invoke(FunctionName=caller, Payload=json.dumps({"target": target, "bystander": bystander}))
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    assert body["key"] == "ASIA" and body["token"]
    assert body["target"] == {"target got": {"from": "caller"}}
    session = f"arn:aws:sts::{ACCT}:assumed-role/{role}/{caller}"
    assert body["who"] == session
    assert body["bystander"] == (f"AccessDeniedException: User: {session} is not authorized to perform: "
                                 f"lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:{ACCT}:function:{bystander} "
                                 "because no identity-based policy allows the lambda:InvokeFunction action")
    assert body["list"].startswith("AccessDeniedException")


def test_a_role_must_exist_and_trust_lambda(server, admin, iam):
    status, code, message = error_of(create_function, admin, "def handler(e, c):\n    return 1\n",
                                     Role=f"arn:aws:iam::{ACCT}:role/nobody-made-me")
    assert (status, code, message) == (400, "InvalidParameterValueException",
                                       "The role defined for the function cannot be assumed by Lambda.")
    ec2_only = unique_name("ec2")
    iam.create_role(RoleName=ec2_only, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    assert error_of(create_function, admin, "def handler(e, c):\n    return 1\n",
                    Role=f"arn:aws:iam::{ACCT}:role/{ec2_only}")[1] == "InvalidParameterValueException"
    assert create_function(admin, "def handler(e, c):\n    return 1\n", Role=ROLE)  # the default role trusts Lambda


def test_add_permission_lets_another_user_invoke(server, admin, iam):
    name = create_function(admin, "def handler(e, c):\n    return 'shared'\n")
    admin.publish_version(FunctionName=name)
    admin.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    dave_name = unique_name("dave")
    dave = user(iam, server, dave_name)  # no identity policy at all
    assert error_of(dave.invoke, FunctionName=name, Qualifier="live")[1] == "AccessDeniedException"
    dave_arn = f"arn:aws:iam::{ACCT}:user/{dave_name}"
    statement = json.loads(admin.add_permission(FunctionName=name, Qualifier="live", StatementId="dave",
                                                Action="lambda:InvokeFunction", Principal=dave_arn)["Statement"])
    alias_arn = f"arn:aws:lambda:us-east-1:{ACCT}:function:{name}:live"
    assert statement == {"Sid": "dave", "Effect": "Allow", "Principal": {"AWS": dave_arn},
                         "Action": "lambda:InvokeFunction", "Resource": alias_arn}
    assert json.loads(dave.invoke(FunctionName=name, Qualifier="live")["Payload"].read()) == "shared"
    assert error_of(dave.invoke, FunctionName=name)[1] == "AccessDeniedException"  # only the alias
    policy = admin.get_policy(FunctionName=name, Qualifier="live")
    assert json.loads(policy["Policy"]) == {"Version": "2012-10-17", "Id": "default", "Statement": [statement]}
    assert error_of(admin.add_permission, FunctionName=name, Qualifier="live", StatementId="dave",
                    Action="lambda:InvokeFunction", Principal="*")[:2] == (409, "ResourceConflictException")
    assert error_of(admin.add_permission, FunctionName=name, StatementId="x", Action="lambda:InvokeFunction",
                    Principal="invalid.nonaws.com")[2] == ("The provided principal was invalid. Please check the principal "
                                                        "and try again.")
    s3 = json.loads(admin.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                                         Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                                         SourceAccount=ACCT)["Statement"])
    assert s3["Principal"] == {"Service": "s3.amazonaws.com"} and s3["Condition"] == {
        "StringEquals": {"AWS:SourceAccount": ACCT}, "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}
    assert error_of(admin.get_policy, FunctionName=name, Qualifier="1") == (
        404, "ResourceNotFoundException", "The resource you requested does not exist.")
    assert error_of(admin.remove_permission, FunctionName=name, StatementId="nope", Qualifier="live")[2] == (
        "Statement nope is not found in resource policy.")
    admin.remove_permission(FunctionName=name, StatementId="dave", Qualifier="live",
                            RevisionId=policy["RevisionId"])
    assert error_of(dave.invoke, FunctionName=name, Qualifier="live")[1] == "AccessDeniedException"
    assert error_of(admin.add_permission, FunctionName=name, Qualifier="$LATEST", StatementId="x",
                    Action="lambda:InvokeFunction", Principal=ACCT)[2] == "We currently do not support adding policies for $LATEST."


def test_whole_resource_policies(server, admin, iam):
    name = create_function(admin, "def handler(e, c):\n    return 'whole'\n")
    arn = f"arn:aws:lambda:us-east-1:{ACCT}:function:{name}"
    erin_name = unique_name("erin")
    erin = user(iam, server, erin_name)
    document = {"Version": "2012-10-17", "Statement": [
        {"Sid": "erin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:user/{erin_name}"},
         "Action": "lambda:InvokeFunction", "Resource": arn}]}
    put = admin.put_resource_policy(ResourceArn=arn, Policy=json.dumps(document))
    assert json.loads(put["Policy"])["Statement"] == document["Statement"]
    assert json.loads(admin.get_resource_policy(ResourceArn=arn)["Policy"]) == json.loads(put["Policy"])
    assert json.loads(admin.get_policy(FunctionName=name)["Policy"])["Statement"] == document["Statement"]  # one policy
    assert json.loads(erin.invoke(FunctionName=name)["Payload"].read()) == "whole"
    public = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                      "Action": "lambda:InvokeFunction", "Resource": arn}]}
    assert error_of(admin.put_resource_policy, ResourceArn=arn, Policy=json.dumps(public))[:2] == (400, "PublicPolicyException")
    big = {"Version": "2012-10-17", "Statement": [
        {"Sid": f"s{i}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:user/{erin_name}"},
         "Action": "lambda:GetFunction", "Resource": arn} for i in range(200)]}
    status, code, message = error_of(admin.put_resource_policy, ResourceArn=arn, Policy=json.dumps(big))
    # Over the model's 20480 characters: refused by validation before the policy is read, as on Lambda.
    assert (status, code) == (400, "ValidationException") and "less than or equal to 20480" in message
    assert error_of(admin.put_resource_policy, ResourceArn=arn, Policy="{not json") == (
        400, "InvalidParameterValueException", "The policy is not valid: This policy contains invalid Json")
    admin.delete_resource_policy(ResourceArn=arn, RevisionId=put["RevisionId"])
    assert error_of(admin.get_resource_policy, ResourceArn=arn)[:2] == (404, "ResourceNotFoundException")
    assert error_of(erin.invoke, FunctionName=name)[1] == "AccessDeniedException"


def test_code_links_expire(server, admin):
    name = create_function(admin, "def handler(e, c):\n    return 1\n")
    link = admin.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(link) as response:  # no signature needed: the link carries its own
        assert response.read()[:2] == b"PK"
    expired = link.replace("expires=", "expires=1&was=")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(expired)
    assert refused.value.code == 403


def test_auth_off_is_only_for_loopback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "squall.cli.main", "server", "--auth", "off", "--host", "0.0.0.0",
                           "--port", "0", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "auth off is for throwaway local use" in done.stderr
    running = start_server(tmp_path / "off", "--auth", "off")
    try:
        deadline = time.monotonic() + 10  # the banner may come after the "listening on" line
        while not any("auth:      OFF" in line for line in running.output):
            assert time.monotonic() < deadline, "".join(running.output)
            time.sleep(0.05)
        anyone = running.client("lambda", credentials=("anything", "at-all"))
        name = unique_name("open")
        anyone.create_function(FunctionName=name, Runtime="python3.11", Role=f"arn:aws:iam::{ACCT}:role/whatever",
                               Handler="app.handler", Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
    finally:
        running.stop()


def test_a_role_mapped_to_upstream_credentials(tmp_path):
    """With an upstream AWS-compatible endpoint, a role can stand for that service's key: its
    environments get the key (other services go upstream), and Squall accepts it as the role."""
    upstream = {"squall-function": {"access_key_id": "AKIAUPSTREAMEXAMPLE0", "secret_access_key": "upstream-secret"}}
    running = start_server(tmp_path / "upstream", env={"SQUALL_UPSTREAM_ROLES": json.dumps(upstream),
                                                       "SQUALL_AWS_ENDPOINT": "http://127.0.0.1:4566"})
    try:
        admin = running.client("lambda")
        name = create_function(admin, """
import os, boto3
def handler(event, context):
    return {"key": os.environ["AWS_ACCESS_KEY_ID"], "token": os.environ.get("AWS_SESSION_TOKEN"),
            "elsewhere": os.environ.get("AWS_ENDPOINT_URL"),
            "who": boto3.client("sts").get_caller_identity()["Arn"]}
""", Timeout=60, MemorySize=1769)
        body = json.loads(admin.invoke(FunctionName=name)["Payload"].read())
        assert body == {"key": "AKIAUPSTREAMEXAMPLE0", "token": None, "elsewhere": "http://127.0.0.1:4566",
                        "who": f"arn:aws:sts::{ACCT}:assumed-role/squall-function/AKIAUPSTREAMEXAMPLE0"}
        outside = running.client("lambda", credentials=("AKIAUPSTREAMEXAMPLE0", "upstream-secret"))
        assert error_of(outside.list_functions)[1] == "AccessDeniedException"  # the role grants nothing
        wrong = running.client("lambda", credentials=("AKIAUPSTREAMEXAMPLE0", "not-it"))
        assert error_of(wrong.list_functions)[1] == "InvalidSignatureException"
    finally:
        running.stop()
