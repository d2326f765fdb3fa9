"""Invocations as OpenTelemetry spans, exported over OTLP/HTTP to a collector this test runs: the
phases of a span, Active tracing's sampling, and one trace across an asynchronous chain (a
function invoking another with boto3, which passes its _X_AMZN_TRACE_ID on)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import create_function, start_server

CALLER = """
import json, os
import boto3

client = boto3.client("lambda")

def handler(event, context):
    client.invoke(FunctionName=event["next"], InvocationType="Event", Payload=json.dumps({"from": context.function_name}))
    return os.environ["_X_AMZN_TRACE_ID"]
"""
CALLEE = """
import os
def handler(event, context):
    return os.environ["_X_AMZN_TRACE_ID"]
"""


class Collector:
    """An OTLP/HTTP receiver: every span it is sent, by name."""

    def __init__(self) -> None:
        self.spans: list = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait(self, predicate, timeout: float = 30.0) -> list:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.1)
        return []


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, collector):
    running = start_server(tmp_path_factory.mktemp("squall-tracing"), env={"SQUALL_OTLP_ENDPOINT": collector.endpoint})
    yield running
    running.stop()


def test_one_trace_across_an_async_chain_with_the_phases_of_each_invocation(server, collector):
    lam, iam = server.client("lambda"), server.client("iam")
    role = iam.create_role(RoleName="tracing-invoker", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="tracing-invoker", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    callee = create_function(lam, CALLEE)  # PassThrough: follows its caller's sampling
    caller = create_function(lam, CALLER, Role=role["Role"]["Arn"], MemorySize=512, Timeout=30,
                             TracingConfig={"Mode": "Active"})
    header = json.loads(lam.invoke(FunctionName=caller, Payload=json.dumps({"next": callee}).encode())["Payload"].read())
    assert "Sampled=1" in header
    root = header.split("Root=1-")[1].split(";")[0].replace("-", "")
    (caller_span,) = collector.wait(lambda s: s.name == caller)
    (callee_span,) = collector.wait(lambda s: s.name == callee)
    assert caller_span.trace_id.hex() == root and callee_span.trace_id.hex() == root  # one trace
    attributes = {a.key: a.value for a in caller_span.attributes}
    assert attributes["faas.coldstart"].bool_value is True and attributes["faas.name"].string_value == caller
    children = {s.name: s for s in collector.wait(lambda s: s.parent_span_id == caller_span.span_id)}
    assert {"Initialization", "Invocation"} <= set(children)
    assert children["Invocation"].end_time_unix_nano == caller_span.end_time_unix_nano
    callee_children = {s.name for s in collector.wait(lambda s: s.parent_span_id == callee_span.span_id)}
    assert "Queued" in callee_children  # an asynchronous event's time in the queue


def test_pass_through_without_a_sampled_caller_exports_nothing(server, collector):
    lam = server.client("lambda")
    quiet = create_function(lam, CALLEE)
    header = json.loads(lam.invoke(FunctionName=quiet)["Payload"].read())
    assert header.startswith("Root=1-") and "Sampled=0" in header  # a trace is started all the same
    time.sleep(1.5)  # the batch processor's delay is 0.5 s
    assert collector.wait(lambda s: s.name == quiet, timeout=0.5) == []
