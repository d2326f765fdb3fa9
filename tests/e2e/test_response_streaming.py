"""Response streaming end to end: a Node.js handler wrapped in ``awslambda.streamifyResponse`` read
chunk by chunk through a ``RESPONSE_STREAM`` function URL (``curl -N``) and through boto3's
``invoke_with_response_stream`` (botocore's event-stream parser), plus the Python runtime (which does
not stream: one chunk) both ways.

"The first byte arrives before the handler ends" is checked by order, not by time: the handler
writes its first chunk, then waits for a marker file that only the test creates, and only after
the test has read that chunk; only then does it write the rest. A server that buffered the
response would deliver nothing until the handler gave up waiting (a bounded loop), and the second
chunk would then say so. The server runs on the ``process`` backend so that the function can see
the test's marker directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, require, start_server

pytestmark = pytest.mark.timeout(300)

NODE_STREAMING = r"""
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// Waits (a bounded loop) until the test says it has read what was written so far.
async function markerSeen(name) {
  const path = join(process.env.MARKER_DIR, name);
  for (let i = 0; i < 400; i++) {
    if (existsSync(path)) return true;
    await sleep(25);
  }
  return false;
}

function request(event) {
  if (event.requestContext) {  // through a function URL
    const q = event.queryStringParameters || {};
    return { mode: event.rawPath.slice(1), marker: q.marker };
  }
  return event;
}

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const { mode, marker } = request(event);
  if (mode === 'http') {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { 'content-type': 'text/event-stream', 'x-streamed': 'yes' },
      cookies: ['flavour=ginger; Path=/', 'size=large'],
    });
  } else {
    responseStream.setContentType('text/plain');
  }
  responseStream.write(mode === 'http' ? 'data: one\n\n' : 'chunk-1\n');
  const seen = await markerSeen(marker);
  if (mode === 'fail') {
    throw new Error(seen ? 'broke after the marker' : 'broke WITHOUT the marker');
  }
  const second = seen ? 'after the marker' : 'WITHOUT the marker';
  responseStream.write(mode === 'http' ? `data: two ${second}\n\n` : `chunk-2 ${second}\n`);
  responseStream.end();
});
"""

PYTHON_APP = """
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("python says no")
    return {"statusCode": 201, "headers": {"x-kind": "buffered"}, "body": "hello from python"}
"""


@pytest.fixture(scope="module")
def streaming_server(tmp_path_factory: pytest.TempPathFactory):
    running = start_server(tmp_path_factory.mktemp("squall-streaming"), "--isolation", "process")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lam(streaming_server):
    return streaming_server.client("lambda")


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream-markers")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def node_fn(lam, markers):
    require(shutil.which("node") is not None, "Node.js is not installed (apt install nodejs)")
    return create_function(lam, {"index.mjs": NODE_STREAMING}, handler="index.handler", Runtime="nodejs20.x",
                           Timeout=60, Environment={"Variables": {"MARKER_DIR": str(markers)}})


def stream_url(lam, name: str) -> str:
    """A RESPONSE_STREAM URL open to anyone, as its /lambda-url/<id>/ path on 127.0.0.1."""
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    assert lam.get_function_url_config(FunctionName=name)["InvokeMode"] == "RESPONSE_STREAM"
    parts = urlsplit(url)
    return f"http://127.0.0.1:{parts.port}/lambda-url/{parts.hostname.split('.')[0]}"


@pytest.fixture(scope="module")
def node_url(lam, node_fn) -> str:
    return stream_url(lam, node_fn)


def curl_streaming(url: str, until: bytes, marker: Path) -> tuple[bytes, bytes, int]:
    """``curl -N -i``: read its output as it comes until ``until`` shows, create ``marker``, then read
    the rest. (what had arrived before the marker, everything, curl's exit status)"""
    require(shutil.which("curl") is not None, "curl is not installed")
    process = subprocess.Popen(["curl", "-N", "-s", "-i", "--max-time", "120", url], stdout=subprocess.PIPE)
    assert process.stdout is not None
    fd = process.stdout.fileno()
    output = b""
    try:
        for _ in range(10_000):  # a read returns as soon as anything arrived
            if until in output:
                break
            data = os.read(fd, 65536)
            if not data:
                break
            output += data
        before = output
        marker.touch()
        for _ in range(10_000):
            data = os.read(fd, 65536)
            if not data:
                break
            output += data
        return before, output, process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def split_response(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def new_marker(markers: Path) -> str:
    """A marker name not used yet in ``markers``."""
    return f"m-{uuid.uuid4().hex}"


# ---- function URLs -----------------------------------------------------------------------------
def test_a_url_streams_the_first_chunk_before_the_handler_ends(node_url, markers):
    name = new_marker(markers)
    before, raw, code = curl_streaming(f"{node_url}/plain?marker={name}", b"chunk-1\n", markers / name)
    assert code == 0, raw
    assert b"chunk-1\n" in before and b"chunk-2" not in before  # the handler was still waiting then
    status, headers, body = split_response(raw)
    assert status == 200 and headers["transfer-encoding"] == ["chunked"] and "content-length" not in headers
    assert headers["content-type"] == ["text/plain"] and headers["x-amzn-requestid"]
    assert body == b"chunk-1\nchunk-2 after the marker\n"


def test_http_response_stream_from_sets_status_headers_and_cookies(node_url, markers):
    name = new_marker(markers)
    before, raw, code = curl_streaming(f"{node_url}/http?marker={name}", b"data: one\n\n", markers / name)
    assert code == 0, raw
    status, headers, _ = split_response(before)
    assert status == 201  # known from the prelude, before the handler went on
    assert headers["content-type"] == ["text/event-stream"] and headers["x-streamed"] == ["yes"]
    assert headers["set-cookie"] == ["flavour=ginger; Path=/", "size=large"]
    assert headers["transfer-encoding"] == ["chunked"]
    _, _, body = split_response(raw)
    assert body == b"data: one\n\ndata: two after the marker\n\n"  # the prelude and its 8 NUL bytes are not sent


def test_an_error_after_the_first_chunk_ends_the_urls_stream(node_url, markers):
    name = new_marker(markers)
    before, raw, code = curl_streaming(f"{node_url}/fail?marker={name}", b"chunk-1\n", markers / name)
    assert code == 0, raw
    assert split_response(before)[2] == b"chunk-1\n"  # sent while the handler waited, before it threw
    status, _, body = split_response(raw)
    assert status == 200 and body == b"chunk-1\n"


# ---- InvokeWithResponseStream ------------------------------------------------------------------
def read_events(lam, name: str, payload: dict, marker: Path | None = None, **kwargs) -> tuple[dict, list[tuple[str, object]]]:
    """The response and its events; ``marker`` is created once the first PayloadChunk is in."""
    response = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs)
    events: list[tuple[str, object]] = []
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            events.append(("PayloadChunk", event["PayloadChunk"]["Payload"]))
            if marker is not None and not marker.exists():
                marker.touch()
        else:
            (kind, body), = event.items()
            events.append((kind, body))
    return response, events


def test_boto3_reads_payload_chunks_as_they_are_written_then_invoke_complete(lam, node_fn, markers):
    name = new_marker(markers)
    response, events = read_events(lam, node_fn, {"mode": "plain", "marker": name}, markers / name, LogType="Tail")
    assert response["StatusCode"] == 200 and response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "InvokeComplete" and set(kinds[:-1]) == {"PayloadChunk"} and len(kinds) >= 3
    # the first chunk came on its own (the handler then waited for the marker the test made after it)
    assert events[0] == ("PayloadChunk", b"chunk-1\n")
    assert b"".join(body for kind, body in events[:-1]) == b"chunk-1\nchunk-2 after the marker\n"
    complete = events[-1][1]
    assert "ErrorCode" not in complete and "ErrorDetails" not in complete
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "END RequestId:" in log and "REPORT RequestId:" in log


def test_an_error_after_the_first_chunk_is_in_invoke_complete(lam, node_fn, markers):
    name = new_marker(markers)
    response, events = read_events(lam, node_fn, {"mode": "fail", "marker": name}, markers / name)
    assert response["StatusCode"] == 200  # the status was sent with the first chunk
    assert events[0] == ("PayloadChunk", b"chunk-1\n")
    kind, complete = events[-1]
    assert kind == "InvokeComplete" and [k for k, _ in events[1:-1]] == []
    assert complete["ErrorCode"] == "Error" and complete["ErrorDetails"] == "broke after the marker"


def test_dry_run_and_unknown_functions(lam, node_fn):
    response = lam.invoke_with_response_stream(FunctionName=node_fn, InvocationType="DryRun")
    assert response["StatusCode"] == 204
    with pytest.raises(ClientError) as missing:
        lam.invoke_with_response_stream(FunctionName="no-such-function-here", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---- the Python runtime: no streaming, one chunk -------------------------------------------------
@pytest.fixture(scope="module")
def python_fn(lam):
    return create_function(lam, PYTHON_APP)


def test_a_python_function_through_invoke_with_response_stream_is_one_chunk(lam, python_fn):
    response, events = read_events(lam, python_fn, {})
    assert response["StatusCode"] == 200 and response["ExecutedVersion"] == "$LATEST"
    assert [kind for kind, _ in events] == ["PayloadChunk", "InvokeComplete"]
    assert json.loads(events[0][1]) == {"statusCode": 201, "headers": {"x-kind": "buffered"}, "body": "hello from python"}
    assert events[1][1] == {}
    _, failed = read_events(lam, python_fn, {"fail": True})
    assert [kind for kind, _ in failed] == ["InvokeComplete"]
    assert failed[0][1]["ErrorCode"] == "ValueError" and failed[0][1]["ErrorDetails"] == "python says no"


def test_a_python_function_behind_a_response_stream_url_is_sent_as_it_answered(lam, python_fn):
    require(shutil.which("curl") is not None, "curl is not installed")
    url = stream_url(lam, python_fn)
    out = subprocess.run(["curl", "-N", "-s", "-i", "--max-time", "60", url + "/"], capture_output=True, timeout=120,
                         check=False)
    status, headers, body = split_response(out.stdout)
    # Lambda does not read statusCode/body in this mode: the answer is the body, as it is
    assert status == 200 and headers["transfer-encoding"] == ["chunked"]
    assert headers["content-type"] == ["application/json"]
    assert json.loads(body) == {"statusCode": 201, "headers": {"x-kind": "buffered"}, "body": "hello from python"}
