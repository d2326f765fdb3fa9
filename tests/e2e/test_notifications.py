"""SNS topics and object-store webhooks as triggers, end to end: boto3 → moto (server mode) →
Squall → the function, which appends each event it gets to a file the test reads (the server
runs the ``process`` sandbox so that it can)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import unquote_plus
from urllib.request import Request, urlopen

import pytest

from tests.conftest import create_function, start_server, unique_name
from tests.e2e.test_event_sources import aws

RECORDER = r'''
import json, os

def handler(event, context):
    with open(os.environ["SINK"], "a") as sink:
        sink.write(json.dumps(event) + "\n")
'''


@pytest.fixture(scope="module")
def moto(moto_endpoint):
    """moto's server for this module (tests/conftest.py's moto_endpoint)."""
    return moto_endpoint


@pytest.fixture(scope="module")
def squall(tmp_path_factory, moto):
    running = start_server(tmp_path_factory.mktemp("squall-notify"), "--isolation", "process",
                           env={"SQUALL_AWS_ENDPOINT": moto, "SQUALL_AWS_ACCESS_KEY_ID": "test",
                                "SQUALL_AWS_SECRET_ACCESS_KEY": "test"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(squall):
    return squall.client("lambda")


def events(sink: Path) -> list[dict]:
    return [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]


def wait_events(sink: Path, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = events(sink)
        if len(got) >= count:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{len(events(sink))} of {count} events arrived")


def recorder(lam, tmp_path: Path) -> tuple[str, Path]:
    sink = tmp_path / f"sink-{unique_name()}.jsonl"
    sink.touch()
    sink.chmod(0o666)
    return create_function(lam, RECORDER, Environment={"Variables": {"SINK": str(sink)}}), sink


def signed_post(server, path: str, document: dict) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = AWSRequest(method="POST", url=f"{server.endpoint}{path}", data=json.dumps(document).encode(),
                        headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(*server.credentials), "lambda", "us-east-1").add_auth(signed)
    with urlopen(Request(signed.url, data=signed.body, headers=dict(signed.headers.items()), method="POST"),
                 timeout=20) as response:
        return json.loads(response.read())


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        with urlopen(Request(url, data=body, headers=headers, method="POST"), timeout=10) as response:
            return response.status
    except HTTPError as exc:
        return exc.code


def health(server) -> dict:
    with urlopen(f"{server.endpoint}/health", timeout=10) as response:
        return json.loads(response.read())


def allow_sns(lam, name: str, topic: str) -> None:
    lam.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                       Principal="sns.amazonaws.com", SourceArn=topic)


SNS_TEXT = {"Content-Type": "text/plain; charset=UTF-8"}


# ---------------------------------------------------------------- SNS
def test_publish_reaches_the_function_as_an_sns_event(squall, lam, moto, tmp_path):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, sink = recorder(lam, tmp_path)
    allow_sns(lam, name, topic)
    made = signed_post(squall, "/squall/triggers/sns", {"FunctionName": name, "TopicArn": topic})
    assert made["Endpoint"] == f"{squall.endpoint}/squall/triggers/sns/{made['TriggerId']}"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("http", made["Endpoint"])]

    message_id = sns.publish(TopicArn=topic, Message="hello", Subject="greeting")["MessageId"]
    (event,) = wait_events(sink, 1)
    (record,) = event["Records"]
    assert record["EventSource"] == "aws:sns" and record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == made["SubscriptionArn"]
    body = record["Sns"]
    assert body["Type"] == "Notification" and body["MessageId"] == message_id and body["TopicArn"] == topic
    assert body["Message"] == "hello" and body["Subject"] == "greeting"
    assert body["SigningCertUrl"].startswith("https://") and body["UnsubscribeUrl"].startswith("https://")
    assert "SigningCertURL" not in body and body["MessageAttributes"] == {} and body["Signature"]


def test_a_bucket_notification_to_a_topic_arrives_with_the_s3_event(squall, lam, moto, tmp_path):
    sns, s3 = aws("sns", moto), aws("s3", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, sink = recorder(lam, tmp_path)
    allow_sns(lam, name, topic)
    signed_post(squall, "/squall/triggers/sns", {"FunctionName": name, "TopicArn": topic})
    bucket = unique_name("b").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="dir/my file.txt", Body=b"12345")
    got = wait_events(sink, 2)  # S3's s3:TestEvent (sent on configuration), then the object's event
    messages = [json.loads(e["Records"][0]["Sns"]["Message"]) for e in got]
    # Two asynchronous invocations: they may run in either order.
    assert [m.get("Event") for m in messages].count("s3:TestEvent") == 1
    (message,) = [m for m in messages if "Records" in m]
    (record,) = message["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == bucket and unquote_plus(record["s3"]["object"]["key"]) == "dir/my file.txt"
    assert "+" in record["s3"]["object"]["key"] and record["s3"]["object"]["size"] == 5  # (moto also escapes "/")


def test_the_confirmation_handshake(squall, lam, moto, tmp_path):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, _ = recorder(lam, tmp_path)
    made = signed_post(squall, "/squall/triggers/sns", {"FunctionName": name, "TopicArn": topic})
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": "m-1", "Token": "tok", "TopicArn": topic,
                    "Message": "You have chosen to subscribe…", "SubscribeURL": "http://203.0.113.9/evil",
                    "Timestamp": "2024-01-01T00:00:00.000Z", "SignatureVersion": "1", "Signature": "x",
                    "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"}
    before = health(squall)["notifications"]
    other = {**confirmation, "TopicArn": topic + "-other"}
    assert post(made["Endpoint"], json.dumps(other).encode(), SNS_TEXT) == 403
    assert health(squall)["notifications"]["confirmed"] == before["confirmed"]
    assert post(made["Endpoint"], json.dumps(confirmation).encode(), SNS_TEXT) == 200
    assert health(squall)["notifications"]["confirmed"] == before["confirmed"] + 1


def test_wrong_trigger_id_and_bodies_that_are_not_sns(squall, lam, moto, tmp_path):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, _ = recorder(lam, tmp_path)
    made = signed_post(squall, "/squall/triggers/sns", {"FunctionName": name, "TopicArn": topic})
    note = {"Type": "Notification", "MessageId": "m", "TopicArn": topic, "Message": "x"}
    wrong = made["Endpoint"][:-4] + ("aaaa" if not made["Endpoint"].endswith("aaaa") else "bbbb")
    assert post(wrong, json.dumps(note).encode(), SNS_TEXT) == 404
    assert post(made["Endpoint"], b"not json", SNS_TEXT) == 400
    assert post(made["Endpoint"], json.dumps({"Type": "Other"}).encode(), SNS_TEXT) == 400
    # a different Content-Type stays refused by the browser guard
    assert post(made["Endpoint"], json.dumps(note).encode(), {"Content-Type": "multipart/form-data"}) == 415


def test_without_the_permission_statement_nothing_is_invoked(squall, lam, moto, tmp_path):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, sink = recorder(lam, tmp_path)
    signed_post(squall, "/squall/triggers/sns", {"FunctionName": name, "TopicArn": topic})
    denied = health(squall)["notifications"]["denied"]
    sns.publish(TopicArn=topic, Message="no")
    assert health(squall)["notifications"]["denied"] == denied + 1  # moto posts before publish returns
    allow_sns(lam, name, topic)
    sns.publish(TopicArn=topic, Message="yes")
    got = wait_events(sink, 1)
    assert [e["Records"][0]["Sns"]["Message"] for e in got] == ["yes"]


# ---------------------------------------------------------------- object-store webhooks
MINIO_BODY = {
    "EventName": "s3:ObjectCreated:Put", "Key": "images/my photo.jpg",
    "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2024-05-01T10:00:00.123Z",
        "eventName": "s3:ObjectCreated:Put", "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "127.0.0.1"},
        "responseElements": {"content-length": "0", "x-amz-request-id": "17B0C1F4E0A0C8D2",
                             "x-minio-deployment-id": "d1", "x-minio-origin-endpoint": "http://127.0.0.1:9000"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
               "bucket": {"name": "images", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::images"},
               "object": {"key": "my+photo.jpg", "size": 2048, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "contentType": "image/jpeg", "userMetadata": {"content-type": "image/jpeg"},
                          "sequencer": "17B0C1F4E1D5E3A8"}},
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}}],
}


def test_minio_webhook_reaches_the_function_as_an_s3_event(squall, lam, tmp_path):
    name, sink = recorder(lam, tmp_path)
    made = signed_post(squall, "/squall/triggers/s3", {"FunctionName": name})
    body = json.dumps(MINIO_BODY).encode()
    json_type = {"Content-Type": "application/json"}
    assert post(made["Endpoint"], body, {**json_type, "Authorization": "Bearer wrong"}) == 403
    assert post(made["Endpoint"], body, json_type) == 403
    assert post(made["Endpoint"], b'{"hello": 1}', {**json_type, "Authorization": f"Bearer {made['Token']}"}) == 400
    assert post(made["Endpoint"] + "x", body, {**json_type, "Authorization": f"Bearer {made['Token']}"}) == 404
    assert post(made["Endpoint"], body, {**json_type, "Authorization": f"Bearer {made['Token']}"}) == 200
    assert post(f"{made['Endpoint']}/{made['Token']}", body, json_type) == 200  # token in the path
    got = wait_events(sink, 2)
    (record,) = got[0]["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == "us-east-1"
    assert record["s3"]["bucket"] == {"name": "images", "ownerIdentity": {"principalId": "minioadmin"},
                                      "arn": "arn:aws:s3:::images"}
    assert record["s3"]["object"] == {"key": "my+photo.jpg", "size": 2048, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                                      "sequencer": "17B0C1F4E1D5E3A8"}
    assert record["responseElements"]["x-amz-request-id"] == "17B0C1F4E0A0C8D2"
    from tests.e2e.test_pubsub_triggers import call

    status, report = call(squall, "GET", f"/squall/triggers?function={name}")
    (row,) = report["triggers"]
    assert status == 200 and (row["kind"], row["delivered"], row["failed"]) == ("s3", 2, 0)
    assert row["last_delivery"] and row["last_error"] is None


def test_moto_sourced_s3_event_through_the_webhook(squall, lam, moto, tmp_path):
    """moto's S3 puts its event on a queue; that body, posted to the webhook, reaches the function."""
    sqs, s3 = aws("sqs", moto), aws("s3", moto)
    url = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = unique_name("b").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="a b.txt", Body=b"xyz")
    bodies = []
    for _ in range(20):
        for message in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []):
            if "Records" in json.loads(message["Body"]):
                bodies.append(message["Body"])
        if bodies:
            break
    assert bodies
    name, sink = recorder(lam, tmp_path)
    made = signed_post(squall, "/squall/triggers/s3", {"FunctionName": name})
    assert post(made["Endpoint"], bodies[0].encode(), {"Content-Type": "application/json",
                                                       "Authorization": f"Bearer {made['Token']}"}) == 200
    (record,) = wait_events(sink, 1)[0]["Records"]
    assert record["eventName"] == "ObjectCreated:Put" and record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["key"] == "a+b.txt" and record["s3"]["object"]["size"] == 3  # as moto encoded it


# ---------------------------------------------------------------- the CLI
def run_cli(server, *args: str):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"SQUALL_ENDPOINT": server.endpoint, "SQUALL_DATA_DIR": str(server.data_dir),
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_squall_subscribe_adds_the_permission_and_the_subscription(squall, lam, moto, tmp_path):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    name, sink = recorder(lam, tmp_path)
    done = run_cli(squall, "subscribe", name, "--topic", topic)
    assert done.returncode == 0, done.stderr
    assert "sns.amazonaws.com may invoke it" in done.stderr
    assert done.stdout.strip() == sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"][0]["SubscriptionArn"]
    sns.publish(TopicArn=topic, Message="via the cli")
    assert wait_events(sink, 1)[0]["Records"][0]["Sns"]["Message"] == "via the cli"
    again = run_cli(squall, "subscribe", name, "--topic", topic)  # idempotent: no second statement
    assert again.returncode == 0 and "already lets" in again.stderr
    webhook = run_cli(squall, "subscribe", name, "--bucket-webhook")
    assert webhook.returncode == 0, webhook.stderr
    lines = dict(line.split("=", 1) for line in webhook.stdout.splitlines())
    assert post(lines["endpoint"], json.dumps(MINIO_BODY).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {lines['auth_token']}"}) == 200
    assert wait_events(sink, 2)[1]["Records"][0]["eventSource"] == "aws:s3"
