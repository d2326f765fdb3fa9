"""Asynchronous invocation through boto3: 202, retries, age, destinations, DLQ, durability.

Records are collected by a webhook (an HTTP server in this process) or read from a real
SQS/SNS-compatible server (moto's server mode on an ephemeral port), so nothing depends on
the function being able to see this machine's files or network.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from squall.cli.main import cli
from tests.conftest import create_function, signed_headers, start_server, unique_name
from tests.e2e.test_control_plane import error_of

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function"
ECHO = "def handler(event, context):\n    return {'rid': context.aws_request_id, 'event': event}\n"
FAIL = "def handler(event, context):\n    raise ValueError('boom')\n"


# ---------------------------------------------------------------- helpers and fixtures
class Webhook:
    """Collects JSON POSTed to /<key>; tests wait for a number of records per key."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {}
        self.lock = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with hook.lock:
                    hook.records.setdefault(self.path.strip("/"), []).append(json.loads(body))
                    hook.lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{key}"

    def wait(self, key: str, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.records.get(key, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{key}: {len(self.records.get(key, []))} of {count} records arrived")
                self.lock.wait(left)
            return list(self.records[key])


@pytest.fixture(scope="module")
def hook():
    webhook = Webhook()
    yield webhook
    webhook.server.shutdown()


@pytest.fixture(scope="module")
def async_server(tmp_path_factory, moto_endpoint):
    running = start_server(
        tmp_path_factory.mktemp("squall-async"),
        env={
            "SQUALL_ASYNC_RETRY_DELAY_SECONDS": "0.2",
            "SQUALL_AWS_ENDPOINT": moto_endpoint,
            "SQUALL_AWS_ACCESS_KEY_ID": "test",
            "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
        },
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(async_server):
    return async_server.client("lambda")


def aws(service: str, endpoint: str):
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


def event(lam, name: str, payload: bytes = b"{}") -> str:
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
    assert response["StatusCode"] == 202 and response["Payload"].read() == b""
    return response["ResponseMetadata"]["RequestId"]


def queue_report(server, name: str | None = None) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = f"?function={quote(name)}" if name else ""
    signed = AWSRequest(method="GET", url=f"{server.endpoint}/squall/queue{query}")
    SigV4Auth(Credentials(*server.credentials), "lambda", "us-east-1").add_auth(signed)
    with urlopen(Request(signed.url, headers=dict(signed.headers.items())), timeout=10) as response:
        return json.loads(response.read())


def receive(sqs, url: str, count: int = 1, timeout: float = 20.0) -> list[dict]:
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1)
        messages.extend(got.get("Messages", []))
    assert len(messages) >= count, f"{len(messages)} of {count} messages"
    return messages


def make_queue(sqs) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


# ---------------------------------------------------------------- the 202 flow
def test_event_is_accepted_with_202_and_runs_with_its_request_id(lam, hook):
    name = create_function(lam, ECHO)
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
    request_id = event(lam, name, b'{"n": 1}')
    (record,) = hook.wait(name, 1)
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{ACCOUNT_ARN}:{name}:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"rid": request_id, "event": {"n": 1}}  # context.aws_request_id


def test_event_invoke_errors_are_immediate(lam, hook):
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=unique_name("missing"), InvocationType="Event", Payload=b"{}")
    assert error_of(info)[:2] == ("ResourceNotFoundException", 404)
    name = create_function(lam, "def handler(e, c):\n    return len(e)\n")
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
    too_big = b'"' + b"x" * (1048576 - 1) + b'"'
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=too_big)
    assert error_of(info)[:2] == ("RequestEntityTooLargeException", 413)
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{not json")
    assert error_of(info)[0] == "InvalidRequestContentException"
    event(lam, name, b'"' + b"x" * (1048576 - 2) + b'"')  # exactly 1 MB is accepted
    # The deprecated InvokeAsync: 202 {"Status": 202}, 256 KB.
    assert lam.invoke_async(FunctionName=name, InvokeArgs=b'{"a": 1}')["Status"] == 202
    with pytest.raises(ClientError) as info:
        lam.invoke_async(FunctionName=name, InvokeArgs=b'"' + b"x" * 262144 + b'"')
    assert error_of(info)[:2] == ("RequestEntityTooLargeException", 413)
    records = hook.wait(name, 2)
    assert sorted(r["responsePayload"] for r in records) == [1, 1048574]


# ---------------------------------------------------------------- retries, age
def test_retries_exhausted_reach_on_failure_and_logs_carry_the_attempt(async_server, lam, hook):
    name = create_function(lam, FAIL)
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=2, DestinationConfig={"OnFailure": {"Destination": hook.url(name)}}
    )
    started = time.monotonic()
    request_id = event(lam, name, b'{"order": 7}')
    (record,) = hook.wait(name, 1)
    assert time.monotonic() - started >= 0.6  # backoff 0.2 s, then 0.4 s
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestPayload"] == {"order": 7}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError" and record["responsePayload"]["errorMessage"] == "boom"
    logs = async_server.client("logs")
    lines = [
        e["message"]
        for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="ASYNC_EVENT")["events"]
    ]
    assert [re.search(r"Attempt: (\d) of 3", line).group(1) for line in lines] == ["1", "2", "3"]
    assert all(line.startswith(f"ASYNC_EVENT RequestId: {request_id}\t") for line in lines)
    report = queue_report(async_server, name)["functions"][0]
    assert report["retries_exhausted"] == 1 and report["depth"] == 0


def test_event_age_exceeded(tmp_path, hook):
    # Lambda's default 60 s backoff and the minimum age of 60 s: the retry could only start
    # when the event is too old, so it is given up at once.
    server = start_server(tmp_path / "age")
    try:
        lam = server.client("lambda")
        name = create_function(lam, FAIL)
        lam.put_function_event_invoke_config(
            FunctionName=name,
            MaximumEventAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": hook.url(name)}},
        )
        event(lam, name)
        (record,) = hook.wait(name, 1, timeout=15)
        assert record["requestContext"]["condition"] == "EventAgeExceeded"
        assert record["requestContext"]["approximateInvokeCount"] == 1
        assert record["responseContext"]["functionError"] == "Unhandled"
        assert queue_report(server, name)["functions"][0]["age_exceeded"] == 1
    finally:
        server.stop()


def test_throttled_events_wait_and_none_is_dropped(lam, hook):
    code = "import time\ndef handler(e, c):\n    t = time.time()\n    time.sleep(0.2)\n    return [t, time.time()]\n"
    name = create_function(lam, code)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
    for _ in range(5):
        event(lam, name)
    records = hook.wait(name, 5)
    spans = sorted(r["responsePayload"] for r in records)
    assert all(a[1] <= b[0] + 0.01 for a, b in zip(spans, spans[1:]))  # one at a time
    assert all(r["requestContext"]["approximateInvokeCount"] == 1 for r in records)


# ---------------------------------------------------------------- destinations and DLQ
def test_dead_letter_queue_and_sqs_destination(async_server, lam, moto_endpoint):
    sqs = aws("sqs", moto_endpoint)
    dlq_url, dlq_arn = make_queue(sqs)
    failures_url, failures_arn = make_queue(sqs)
    name = create_function(lam, FAIL, DeadLetterConfig={"TargetArn": dlq_arn})
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": failures_arn}}
    )
    request_id = event(lam, name, b'{"order": 8}')
    (letter,) = receive(sqs, dlq_url)
    assert letter["Body"] == '{"order": 8}'  # the original event
    attributes = {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()}
    assert attributes == {"RequestID": request_id, "ErrorCode": "200", "ErrorMessage": "boom"}
    (message,) = receive(sqs, failures_url)
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    deadline = time.monotonic() + 10
    while queue_report(async_server, name)["functions"][0]["dead_lettered"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sns_destination(lam, moto_endpoint):
    sns, sqs = aws("sns", moto_endpoint), aws("sqs", moto_endpoint)
    topic = sns.create_topic(Name=unique_name("topic"))["TopicArn"]
    url, arn = make_queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    name = create_function(lam, ECHO)
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": topic}})
    request_id = event(lam, name, b'{"via": "sns"}')
    (message,) = receive(sqs, url)
    record = json.loads(json.loads(message["Body"])["Message"])
    assert record["requestContext"]["requestId"] == request_id and record["requestContext"]["condition"] == "Success"


def test_lambda_function_destination(lam, hook):
    second = create_function(lam, ECHO)
    lam.put_function_event_invoke_config(FunctionName=second, DestinationConfig={"OnSuccess": {"Destination": hook.url(second)}})
    first = create_function(lam, ECHO)
    lam.put_function_event_invoke_config(
        FunctionName=first, DestinationConfig={"OnSuccess": {"Destination": f"{ACCOUNT_ARN}:{second}"}}
    )
    request_id = event(lam, first, b'{"step": 1}')
    (record,) = hook.wait(second, 1)
    inner = record["requestPayload"]  # the first function's record is the second's event
    assert inner["requestContext"]["requestId"] == request_id and inner["responsePayload"]["event"] == {"step": 1}
    assert record["requestContext"]["requestId"] != request_id


# ---------------------------------------------------------------- the config API
def test_event_invoke_config_operations(lam):
    name = create_function(lam, ECHO, wait=False)
    with pytest.raises(ClientError) as info:
        lam.get_function_event_invoke_config(FunctionName=name)
    assert error_of(info)[:2] == ("ResourceNotFoundException", 404)
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=600)
    assert put["FunctionArn"] == f"{ACCOUNT_ARN}:{name}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 600
    assert abs(put["LastModified"].timestamp() - time.time()) < 60  # epoch seconds on the wire
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:failures"
    updated = lam.update_function_event_invoke_config(
        FunctionName=name, Qualifier="$LATEST", DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )
    assert updated["MaximumRetryAttempts"] == 1 and updated["DestinationConfig"]["OnFailure"] == {"Destination": queue_arn}
    replaced = lam.put_function_event_invoke_config(FunctionName=f"{ACCOUNT_ARN}:{name}", MaximumRetryAttempts=0)
    assert "MaximumEventAgeInSeconds" not in replaced and replaced["DestinationConfig"]["OnFailure"] == {}
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumRetryAttempts"] == 0
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ACCOUNT_ARN}:{name}:$LATEST"]
    for bad, code in (
        ({"MaximumRetryAttempts": 3}, "ValidationException"),  # the model's range
        ({"MaximumEventAgeInSeconds": 21601}, "ValidationException"),  # (botocore itself checks the minimum)
        ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:s3:::bucket"}}}, "InvalidParameterValueException"),
        ({}, "InvalidParameterValueException"),
    ):
        with pytest.raises(ClientError) as info:
            lam.put_function_event_invoke_config(FunctionName=name, **bad)
        assert error_of(info)[0] == code, bad
    with pytest.raises(ClientError) as info:
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier="7")
    assert error_of(info)[0] == "ResourceNotFoundException"
    assert lam.delete_function_event_invoke_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        lam.delete_function_event_invoke_config(FunctionName=name)
    assert error_of(info)[0] == "ResourceNotFoundException"
    assert lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []
    with pytest.raises(ClientError) as info:
        lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert error_of(info)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        lam.put_function_event_invoke_config(FunctionName=unique_name("missing"), MaximumRetryAttempts=1)
    assert error_of(info)[0] == "ResourceNotFoundException"


# ---------------------------------------------------------------- visibility
def test_queue_visibility_in_cli_and_health(async_server, lam):
    name = create_function(lam, ECHO)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)  # nothing may run
    for _ in range(3):
        event(lam, name)
    time.sleep(0.1)
    (row,) = queue_report(async_server, name)["functions"]
    assert row["depth"] == 3 and row["in_flight"] == 0 and row["oldest_age_seconds"] > 0
    with urlopen(f"{async_server.endpoint}/health", timeout=10) as response:
        assert json.loads(response.read())["async"]["depth"] >= 3
    result = CliRunner().invoke(cli, ["queue", name, "--endpoint", async_server.endpoint],
                                env={"SQUALL_DATA_DIR": str(async_server.data_dir)})
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()[:2]
    assert header.split()[:3] == ["FUNCTION", "DEPTH", "OLDEST"] and line.split()[:2] == [name, "3"]
    missing = CliRunner().invoke(cli, ["queue", unique_name("missing"), "--endpoint", async_server.endpoint],
                                 env={"SQUALL_DATA_DIR": str(async_server.data_dir)})
    assert missing.exit_code == 1 and "Function not found" in missing.output
    lam.delete_function_concurrency(FunctionName=name)
    deadline = time.monotonic() + 45  # throttled events wait out their backoff (1, 2, 4, 8, 16 s …)
    while (row := queue_report(async_server, name)["functions"][0])["succeeded"] != 3:
        assert time.monotonic() < deadline, row
        time.sleep(0.05)
    assert row["depth"] == 0


# ---------------------------------------------------------------- crash safety
def _accept_many(server, name: str, count: int, threads: int = 8) -> list[str]:
    """Queue ``count`` events over raw keep-alive connections; returns the 202s' request ids."""
    u = urlsplit(server.endpoint)
    path = f"/2015-03-31/functions/{quote(name, safe='')}/invocations"

    def worker(n: int) -> list[str]:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        ids = []
        for i in range(n):
            body = json.dumps({"i": i}).encode()
            conn.request("POST", path, body=body,
                         headers=signed_headers(server, "POST", path, body, {"X-Amz-Invocation-Type": "Event"}))
            response = conn.getresponse()
            response.read()
            assert response.status == 202
            ids.append(response.getheader("x-amzn-RequestId"))
        conn.close()
        return ids

    with ThreadPoolExecutor(threads) as pool:
        return [rid for ids in pool.map(worker, [count // threads] * threads) for rid in ids]


def test_accepted_events_survive_sigkill(tmp_path, hook):
    data = tmp_path / "data"
    server = start_server(data, env={"SQUALL_ASYNC_MAX_CONCURRENCY": "2"})
    try:
        lam = server.client("lambda")
        name = create_function(lam, "import time\ndef handler(e, c):\n    time.sleep(0.02)\n    return 1\n")
        lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
        accepted = _accept_many(server, name, 2000)
        report = queue_report(server, name)["functions"][0]
        assert report["depth"] > 1000 and report["in_flight"] > 0  # thousands outstanding, some leased
    finally:
        server.stop(signal.SIGKILL)
    done_before = {r["requestContext"]["requestId"] for r in hook.records.get(name, [])}
    server = start_server(data, env={"SQUALL_ASYNC_MAX_CONCURRENCY": "32"})
    try:
        deadline = time.monotonic() + 60
        while True:
            seen = {r["requestContext"]["requestId"] for r in hook.records.get(name, [])}
            if seen >= set(accepted) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        missing = set(accepted) - seen
        assert not missing, f"{len(missing)} accepted events were never processed"
        duplicates = len(hook.records[name]) - len(seen)
        print(f"\n2000 accepted; {len(done_before)} done before SIGKILL; all done after restart; {duplicates} duplicates")
        assert "re-delivering" in "".join(server.output) or len(done_before) == 0
    finally:
        server.stop()
