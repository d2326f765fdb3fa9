"""The policy evaluator, table by table: IAM's semantics on Lambda's actions and ARNs."""

from __future__ import annotations

import json

import pytest

from squall.auth.policy import Caller, Policy, condition_holds, evaluate
from squall.errors import MalformedPolicyDocument

ACCT = "123456789012"
F = f"arn:aws:lambda:us-east-1:{ACCT}:function"
ALICE = Caller(f"arn:aws:iam::{ACCT}:user/alice", ACCT, "user")
SESSION = Caller(f"arn:aws:sts::{ACCT}:assumed-role/worker/fn", ACCT, "assumed-role", role_arn=f"arn:aws:iam::{ACCT}:role/worker")
S3 = Caller("s3.amazonaws.com", ACCT, "service", service="s3.amazonaws.com")


def policy(*statements: dict, resource_policy: bool = False) -> Policy:
    return Policy.parse(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), resource_policy=resource_policy)


def allow(action, resource="*", **more) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action, resource="*", **more) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


@pytest.mark.parametrize("statements, action, resource, allowed, reason", [
    ([allow("*")], "lambda:DeleteFunction", f"{F}:f", True, "identity"),
    ([], "lambda:GetFunction", f"{F}:f", False, "implicit"),
    ([allow("lambda:*"), deny("lambda:DeleteFunction")], "lambda:DeleteFunction", f"{F}:f", False, "explicit-deny-identity"),
    ([allow("lambda:*"), deny("lambda:DeleteFunction")], "lambda:InvokeFunction", f"{F}:f", True, "identity"),
    ([allow("lambda:Get*")], "lambda:GetFunctionConfiguration", f"{F}:f", True, "identity"),
    ([allow("lambda:Get*")], "lambda:UpdateFunctionCode", f"{F}:f", False, "implicit"),
    ([allow("LAMBDA:invokefunction")], "lambda:InvokeFunction", f"{F}:f", True, "identity"),  # actions: any case
    ([allow("lambda:InvokeFunction", f"{F}:f")], "lambda:InvokeFunction", f"{F}:f", True, "identity"),
    ([allow("lambda:InvokeFunction", f"{F}:f")], "lambda:InvokeFunction", f"{F}:f:live", False, "implicit"),  # unqualified only
    ([allow("lambda:InvokeFunction", f"{F}:f:*")], "lambda:InvokeFunction", f"{F}:f:live", True, "identity"),
    ([allow("lambda:InvokeFunction", f"{F}:f:*")], "lambda:InvokeFunction", f"{F}:f", False, "implicit"),
    ([allow("lambda:InvokeFunction", f"{F}:f*")], "lambda:InvokeFunction", f"{F}:f:1", True, "identity"),  # both
    ([allow("lambda:InvokeFunction", f"{F}:F")], "lambda:InvokeFunction", f"{F}:f", False, "implicit"),  # ARNs: case matters
    ([allow("lambda:InvokeFunction", f"{F}:f?")], "lambda:InvokeFunction", f"{F}:f1", True, "identity"),
    ([{"Effect": "Allow", "NotAction": "lambda:DeleteFunction", "Resource": "*"}], "lambda:DeleteFunction", f"{F}:f", False, "implicit"),
    ([{"Effect": "Allow", "NotAction": "lambda:DeleteFunction", "Resource": "*"}], "lambda:GetFunction", f"{F}:f", True, "identity"),
    ([{"Effect": "Allow", "Action": "*", "NotResource": f"{F}:secret*"}], "lambda:GetFunction", f"{F}:secret-1", False, "implicit"),
    ([{"Effect": "Allow", "Action": "*", "NotResource": f"{F}:secret*"}], "lambda:GetFunction", f"{F}:public", True, "identity"),
    ([allow("lambda:*", f"{F}:${{aws:username}}-*")], "lambda:GetFunction", f"{F}:alice-app", True, "identity"),
    ([allow("lambda:*", f"{F}:${{aws:username}}-*")], "lambda:GetFunction", f"{F}:bob-app", False, "implicit"),
])
def test_identity_policies(statements, action, resource, allowed, reason):
    identity = [policy(*statements)] if statements else []
    decision = evaluate(ALICE, action, resource, identity, None, {"aws:username": "alice"})
    assert (decision.allowed, decision.reason) == (allowed, reason)


@pytest.mark.parametrize("statement, caller, context, allowed", [
    ({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": f"{F}:f"},
     S3, {}, True),
    ({"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": f"{F}:f"},
     S3, {}, False),
    ({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:user/alice"}, "Action": "lambda:InvokeFunction",
      "Resource": f"{F}:f"}, ALICE, {}, True),
    ({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:role/worker"}, "Action": "lambda:InvokeFunction",
      "Resource": f"{F}:f"}, SESSION, {}, True),  # a role names its sessions
    ({"Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction", "Resource": f"{F}:f"}, ALICE, {}, True),
    # the account as principal delegates to identity policies: it grants no user anything by itself
    ({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "lambda:InvokeFunction",
      "Resource": f"{F}:f"}, ALICE, {}, False),
    ({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": f"{F}:f",
      "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket-*"}}}, S3, {"aws:sourcearn": "arn:aws:s3:::bucket-1"}, True),
    ({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": f"{F}:f",
      "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket-*"}}}, S3, {"aws:sourcearn": "arn:aws:s3:::other"}, False),
    ({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": f"{F}:f",
      "Condition": {"StringEquals": {"AWS:SourceAccount": ACCT}}}, S3, {}, False),  # the key is missing
])
def test_resource_policies(statement, caller, context, allowed):
    resource = policy(statement, resource_policy=True)
    assert evaluate(caller, "lambda:InvokeFunction", f"{F}:f", (), resource, context).allowed is allowed


def test_a_deny_anywhere_wins():
    identity = [policy(allow("*"))]
    resource = policy({"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "lambda:*",
                       "Resource": f"{F}:f"}, resource_policy=True)
    decision = evaluate(ALICE, "lambda:InvokeFunction", f"{F}:f", identity, resource, {})
    assert not decision.allowed and decision.reason == "explicit-deny-resource"
    # and a resource policy's allow needs no identity policy (one account)
    granting = policy({"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": "lambda:InvokeFunction",
                       "Resource": f"{F}:f"}, resource_policy=True)
    assert evaluate(ALICE, "lambda:InvokeFunction", f"{F}:f", (), granting, {}).reason == "resource"


@pytest.mark.parametrize("operator, key, patterns, context, holds", [
    ("StringEquals", "aws:username", ["alice"], {"aws:username": "alice"}, True),
    ("StringEquals", "aws:UserName", ["alice"], {"aws:username": "alice"}, True),  # keys: any case
    ("StringEquals", "aws:username", ["Alice"], {"aws:username": "alice"}, False),  # values: case matters
    ("StringEqualsIgnoreCase", "aws:username", ["ALICE"], {"aws:username": "alice"}, True),
    ("StringNotEquals", "aws:username", ["bob"], {"aws:username": "alice"}, True),
    ("StringNotEquals", "aws:username", ["bob"], {}, True),  # a negated operator holds on a missing key
    ("StringLike", "aws:username", ["al*"], {"aws:username": "alice"}, True),
    ("StringNotLike", "aws:username", ["al*", "bo*"], {"aws:username": "alice"}, False),
    ("StringEqualsIfExists", "aws:username", ["bob"], {}, True),
    ("StringEquals", "aws:username", ["bob"], {}, False),
    ("NumericLessThan", "s3:max-keys", ["10"], {"s3:max-keys": "5"}, True),
    ("NumericLessThan", "s3:max-keys", ["10"], {"s3:max-keys": "15"}, False),
    ("NumericGreaterThanEquals", "s3:max-keys", [10], {"s3:max-keys": "10"}, True),
    ("NumericEquals", "s3:max-keys", ["ten"], {"s3:max-keys": "10"}, False),
    ("DateLessThan", "aws:CurrentTime", ["2030-01-01T00:00:00Z"], {"aws:currenttime": "2026-12-06T00:00:00Z"}, True),
    ("DateGreaterThan", "aws:CurrentTime", ["2030-01-01T00:00:00Z"], {"aws:currenttime": "2026-12-06T00:00:00Z"}, False),
    ("Bool", "aws:SecureTransport", ["true"], {"aws:securetransport": "false"}, False),
    ("Bool", "aws:SecureTransport", [False], {"aws:securetransport": "false"}, True),
    ("IpAddress", "aws:SourceIp", ["10.0.0.0/8"], {"aws:sourceip": "10.1.2.3"}, True),
    ("NotIpAddress", "aws:SourceIp", ["10.0.0.0/8"], {"aws:sourceip": "10.1.2.3"}, False),
    ("ArnLike", "aws:SourceArn", ["arn:aws:s3:::my-*"], {"aws:sourcearn": "arn:aws:s3:::my-bucket"}, True),
    ("ArnLike", "aws:SourceArn", ["arn:aws:sns:*:*:topic"], {"aws:sourcearn": "arn:aws:sns:us-east-1:1:topic"}, True),
    ("ArnLike", "aws:SourceArn", ["arn:aws:sns:*:topic"], {"aws:sourcearn": "arn:aws:sns:us-east-1:1:topic"}, False),
    ("ArnNotLike", "aws:SourceArn", ["arn:aws:s3:::my-*"], {"aws:sourcearn": "arn:aws:s3:::other"}, True),
    ("Null", "aws:TokenIssueTime", ["true"], {}, True),
    ("Null", "aws:TokenIssueTime", ["false"], {}, False),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {"aws:tagkeys": ["a"]}, True),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {"aws:tagkeys": ["a", "c"]}, False),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a"], {}, True),  # vacuously
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:tagkeys": ["c", "a"]}, True),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {}, False),
])
def test_condition_operators(operator, key, patterns, context, holds):
    assert condition_holds(operator, key, patterns, context) is holds


@pytest.mark.parametrize("document, message", [
    ("{not json", "This policy contains invalid Json"),
    ('{"Version": "2012-10-17"}', "must contain Statement"),
    ('{"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}', "valid Effect"),
    ('{"Statement": [{"Effect": "Allow", "Resource": "*"}]}', "Action or NotAction"),
    ('{"Statement": [{"Effect": "Allow", "Action": "*"}]}', "must contain resources"),
    ('{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}]}', "should not specify a principal"),
    ('{"Statement": [{"Effect": "Allow", "Action": "lambda", "Resource": "*"}]}', "prefaced by a vendor"),
    ('{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringWhatever": {"a": "b"}}}]}',
     "Invalid Condition type"),
    ('{"Version": "2011-01-01", "Statement": []}', "not supported"),
    ('{"Statement": [{"Sid": "a", "Effect": "Allow", "Action": "*", "Resource": "*"}, '
     '{"Sid": "a", "Effect": "Deny", "Action": "*", "Resource": "*"}]}', "unique"),
])
def test_malformed_documents_are_refused(document, message):
    with pytest.raises(MalformedPolicyDocument, match=message):
        Policy.parse(document)


def test_a_statement_comes_back_in_lambdas_order():
    raw = {"Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction",
           "Resource": f"{F}:f", "Condition": {"StringEquals": {"AWS:SourceAccount": ACCT},
                                               "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b"}}}
    parsed = policy(raw, resource_policy=True)
    assert json.dumps(parsed.statements[0].to_json()) == json.dumps(raw)
