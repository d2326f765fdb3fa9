"""SigV4 verification against what botocore signs: headers, presigned URLs, session tokens,
tampering, clock skew, malformed headers; and the keys (derived secrets, sealed tokens)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from squall.auth import sigv4
from squall.auth.keys import Keys
from squall.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken

URL = "http://127.0.0.1:9000/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def signed(body=b'{"n": 1}', url=URL + "?Qualifier=live", token=None, presign=False, headers=None):
    request = AWSRequest("POST" if not presign else "GET", url, data=body if not presign else b"",
                         headers={"Content-Type": "application/json", **(headers or {})})
    credentials = Credentials("AKIAEXAMPLE", SECRET, token)
    (SigV4QueryAuth(credentials, "lambda", "us-east-1", expires=60) if presign else
     SigV4Auth(credentials, "lambda", "us-east-1")).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    heads = {k.lower(): v for k, v in prepared.headers.items()}
    heads["host"] = parts.netloc
    return prepared.method, f"http://{parts.netloc}{parts.path}", heads, parse_qs(parts.query, keep_blank_values=True), \
        (prepared.body or b"")


def check(method, url, headers, query, body, secret=SECRET):
    claims = sigv4.read(method, headers, query)
    sigv4.check_time(claims)
    return sigv4.verify(claims, secret, method, url, headers, query, body)


def test_a_header_signature_is_checked():
    method, url, headers, query, body = signed()
    claims = sigv4.read(method, headers, query)
    assert (claims.access_key, claims.region, claims.service) == ("AKIAEXAMPLE", "us-east-1", "lambda")
    assert check(method, url, headers, query, body)
    assert not check(method, url, headers, query, body, secret="wrong")
    assert not check(method, url, headers, query, body + b" ")  # another body
    assert not check(method, url.replace("invocations", "invocationz"), headers, query, body)  # another path
    assert not check(method, url, headers, {"Qualifier": ["prod"]}, body)  # another query
    assert not check(method, url, {**headers, "content-type": "text/plain"}, query, body)  # a signed header changed
    assert check(method, url, {**headers, "user-agent": "changed"}, query, body)  # an unsigned one may


def test_a_session_token_is_part_of_the_signature():
    method, url, headers, query, body = signed(token="TOKEN123")
    assert sigv4.read(method, headers, query).token == "TOKEN123"
    assert check(method, url, headers, query, body)
    assert not check(method, url, {**headers, "x-amz-security-token": "OTHER"}, query, body)


def test_a_presigned_url_is_checked_and_expires():
    method, url, headers, query, body = signed(url=URL, presign=True)
    claims = sigv4.read(method, headers, query)
    assert claims.presigned and claims.expires == 60
    assert check(method, url, headers, query, body)
    with pytest.raises(InvalidSignature, match="Signature expired"):
        sigv4.check_time(claims, time.time() + 61)
    truncated = {k: v for k, v in query.items() if k != "X-Amz-Date"}
    with pytest.raises(IncompleteSignature, match="X-Amz-Date"):
        sigv4.read(method, headers, truncated)


def test_the_clock_may_be_five_minutes_off():
    method, url, headers, query, body = signed()
    claims = sigv4.read(method, headers, query)
    sigv4.check_time(claims, claims.epoch + 299)
    sigv4.check_time(claims, claims.epoch - 299)
    with pytest.raises(InvalidSignature, match=r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
                                               r"\(\d{8}T\d{6}Z - 5 min\.\)"):
        sigv4.check_time(claims, claims.epoch + 301)
    with pytest.raises(InvalidSignature, match=r"Signature not yet current: .* \+ 5 min\.\)"):
        sigv4.check_time(claims, claims.epoch - 301)


@pytest.mark.parametrize("authorization, error, message", [
    (None, MissingAuthenticationToken, "Missing Authentication Token"),
    ("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc", IncompleteSignature, "requires 'Credential'"),
    ("AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/lambda/aws4_request, Signature=abc", IncompleteSignature,
     "requires 'SignedHeaders'"),
    ("AWS4-HMAC-SHA256 Credential=AKIA/x, SignedHeaders=host, Signature=abc", IncompleteSignature, "Credential"),
    ("Basic dXNlcjpwYXNz", IncompleteSignature, "Unsupported algorithm: Basic"),
    ("AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/lambda/aws4_request, SignedHeaders=x-amz-date, Signature=a",
     InvalidSignature, "'Host'"),
])
def test_malformed_authorization_headers(authorization, error, message):
    headers = {"host": "127.0.0.1:9000", "x-amz-date": "20260101T000000Z"}
    if authorization is not None:
        headers["authorization"] = authorization
    with pytest.raises(error, match=message):
        sigv4.read("GET", headers, {})


def test_secrets_are_derived_and_tokens_sealed():
    keys, other = Keys(b"k" * 32), Keys(b"o" * 32)
    assert keys.secret("AKIA1", "salt") == keys.secret("AKIA1", "salt") != keys.secret("AKIA1", "pepper")
    assert keys.secret("AKIA1", "salt") != other.secret("AKIA1", "salt") and len(keys.secret("AKIA1", "s")) == 40
    session = keys.session("worker", "fn", 60, now=1000.0)
    assert session.access_key_id.startswith("ASIA") and session.expires == 1060.0
    opened = keys.open_session(session.access_key_id, session.session_token)
    assert opened == ("worker", "fn", 1060.0, session.secret_access_key)
    assert keys.open_session("ASIAOTHER", session.session_token) is None  # bound to its key id
    assert other.open_session(session.access_key_id, session.session_token) is None  # another server's key
    payload, seal = session.session_token.split(".")
    assert keys.open_session(session.access_key_id, payload[:-2] + "AA." + seal) is None  # altered
