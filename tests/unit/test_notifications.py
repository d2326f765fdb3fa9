"""SNS events, signatures and S3 event conversion (squall/triggers/notifications.py)."""

from __future__ import annotations

import base64
import datetime

import orjson
import pytest

from squall.triggers import notifications as n


def _cert_and_key():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key


def _signed(key, message: dict, version: str) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    message = {**message, "SignatureVersion": version}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(n.string_to_sign(message), padding.PKCS1v15(), algorithm)).decode()
    return message


NOTE = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": "hi", "Timestamp": "2024-01-01T00:00:00.000Z",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}


def test_string_to_sign_skips_an_absent_subject():
    assert n.string_to_sign(NOTE) == (b"Message\nhi\nMessageId\nm-1\nTimestamp\n2024-01-01T00:00:00.000Z\n"
                                      b"TopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\nNotification\n")
    assert b"Subject\ns\n" in n.string_to_sign({**NOTE, "Subject": "s"})


@pytest.mark.parametrize("version", ["1", "2"])
def test_signatures_verify_and_tampering_is_caught(version):
    pem, key = _cert_and_key()
    message = _signed(key, NOTE, version)
    assert n.verify_signature(message, pem)
    assert not n.verify_signature({**message, "Message": "changed"}, pem)
    assert not n.verify_signature({**message, "SignatureVersion": "3"}, pem)
    assert not n.verify_signature({**message, "Signature": "!!"}, pem)


def test_only_sns_certificate_urls_are_fetched():
    assert n.cert_url_allowed("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    for url in ("http://sns.us-east-1.amazonaws.com/a.pem", "https://evil.example/a.pem",
                "https://sns.us-east-1.amazonaws.com.evil.example/a.pem", "https://s3.amazonaws.com/a.pem",
                "https://sns.us-east-1.amazonaws.com:8443/a.pem", "https://sns.us-east-1.amazonaws.com/a.txt", None):
        assert not n.cert_url_allowed(url), url


def test_signatures_are_checked_only_against_aws():
    assert n.verifies_signatures(None)
    assert n.verifies_signatures("https://sns.us-east-1.amazonaws.com")
    assert not n.verifies_signatures("http://127.0.0.1:5000")


def test_sns_event_uses_lambdas_spelling_and_attributes():
    message = {**NOTE, "Subject": "s", "SignatureVersion": "1", "Signature": "sig",
               "MessageAttributes": {"k": {"Type": "String", "Value": "v"}}}
    (record,) = n.sns_event(message, "arn:aws:sns:us-east-1:123456789012:t:sub")["Records"]
    assert record["EventSource"] == "aws:sns" and record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == "arn:aws:sns:us-east-1:123456789012:t:sub"
    sns = record["Sns"]
    assert sns["SigningCertUrl"] == NOTE["SigningCertURL"] and sns["UnsubscribeUrl"] == NOTE["UnsubscribeURL"]
    assert sns["MessageAttributes"] == {"k": {"Type": "String", "Value": "v"}}
    assert n.sns_event(NOTE, "x")["Records"][0]["Sns"]["Subject"] is None


def test_parse_sns_refuses_what_is_not_an_sns_message():
    assert n.parse_sns(orjson.dumps(NOTE)) == NOTE
    for body in (b"nope", b"[]", b'{"Type": "Notification"}', orjson.dumps({**NOTE, "Type": "Other"})):
        assert n.parse_sns(body) is None


def test_s3_records_from_minio_and_plain_bodies():
    minio = {"EventName": "s3:ObjectRemoved:Delete", "Key": "bkt/a b",
             "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventName":
                          "s3:ObjectRemoved:Delete", "s3": {"bucket": {"name": "bkt"}, "object": {"key": "a+b",
                                                                                                  "sequencer": "1"}}}]}
    (record,) = n.s3_records(orjson.dumps(minio), "eu-west-1")
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectRemoved:Delete"
    assert record["awsRegion"] == "eu-west-1" and record["s3"]["bucket"]["arn"] == "arn:aws:s3:::bkt"
    assert record["s3"]["object"] == {"key": "a+b", "sequencer": "1"}  # a delete has no size or eTag
    plain = {"Records": [{**minio["Records"][0], "eventName": "ObjectCreated:Copy", "awsRegion": "us-west-2"}]}
    assert n.s3_records(orjson.dumps(plain), "x")[0]["eventName"] == "ObjectCreated:Copy"
    assert n.s3_records(orjson.dumps(plain), "x")[0]["awsRegion"] == "us-west-2"
    assert n.s3_records(b'{"Service": "Amazon S3", "Event": "s3:TestEvent"}', "x") == []
    for body in (b"nope", b"{}", b'{"Records": []}', b'{"Records": [{"eventName": "x"}]}', b'{"Records": [1]}'):
        assert n.s3_records(body, "x") is None
