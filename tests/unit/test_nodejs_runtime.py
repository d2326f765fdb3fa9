"""The built-in Node.js runtime (squall/runtimes/nodejs/bootstrap.mjs) against the Runtime API.

Each test writes a small function into a temporary code directory, starts
``node bootstrap.mjs`` there with Lambda's environment (tests/runtime_harness.py), and checks
what the runtime posts and logs, compared with AWS's Node.js runtime.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import textwrap
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest

import squall.runtimes.nodejs as runtime_pkg
from tests.conftest import require
from tests.runtime_harness import RuntimeSession

BOOTSTRAP = Path(runtime_pkg.__file__).resolve().parent / "bootstrap.mjs"
NODE = shutil.which("node") or "/usr/bin/node"
TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]*)\t([A-Z]+)\t(.*)$")


@pytest.fixture
def node() -> str:
    require(Path(NODE).exists() and shutil.which(NODE) is not None, "node is not installed")
    return NODE


def write(code_dir: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = code_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return code_dir


Body = Callable[[RuntimeSession], Awaitable[None]]


def run(node: str, code_dir: Path, handler: str, body: Body, env: dict[str, str] | None = None) -> None:
    async def main() -> None:
        async with RuntimeSession.start([node, str(BOOTSTRAP)], code_dir, handler, env=env) as rt:
            await body(rt)

    asyncio.run(main())


async def started(rt: RuntimeSession) -> None:
    outcome = await rt.init()
    assert outcome is None, f"init failed: {outcome}\n{rt.output}"


async def wait_output(rt: RuntimeSession, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in rt.output:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the output:\n{rt.output}")
        await asyncio.sleep(0.01)
    return rt.output


def log_lines(output: str) -> list[tuple[str, str, str]]:
    """(requestId, LEVEL, message) of each runtime log line."""
    found = []
    for line in output.split("\n"):
        match = TEXT_LINE.match(line)
        if match:
            found.append((match.group(2), match.group(3), match.group(4)))
    return found


def ok_json(outcome) -> object:
    assert outcome.ok, outcome
    return json.loads(outcome.body)


def error_doc(outcome) -> dict:
    assert not outcome.ok, outcome
    document = json.loads(outcome.body)
    assert document["errorType"] == outcome.error_type
    return document


# --------------------------------------------------------------------------------------
# module formats and handler names

def test_commonjs_js_async_handler(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        const os = require('os');
        exports.handler = async (event, context) => ({ got: event, kind: typeof module, host: typeof os.hostname() });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        outcome = await rt.invoke({"a": [1, 2, {"b": None}]})
        assert outcome.content_type == "application/json"
        assert ok_json(outcome) == {"got": {"a": [1, 2, {"b": None}]}, "kind": "object", "host": "string"}

    run(node, tmp_path, "index.handler", body)


def test_esm_mjs_handler(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"app.mjs": """
        import { basename } from 'node:path';
        export const handler = async (event) => ({ esm: typeof module === 'undefined', file: basename(import.meta.url), n: event.n + 1 });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke({"n": 41})) == {"esm": True, "file": "app.mjs", "n": 42}

    run(node, tmp_path, "app.handler", body)


def test_cjs_extension(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"lib.cjs": "module.exports.go = async () => ({ cjs: typeof require === 'function' });"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == {"cjs": True}

    run(node, tmp_path, "lib.go", body)


def test_package_json_type_module_makes_js_esm(node: str, tmp_path: Path) -> None:
    write(tmp_path, {
        "package.json": '{"name": "fn", "type": "module"}',
        "index.js": "export const handler = async () => ({ esm: typeof require === 'undefined' });",
    })

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == {"esm": True}

    run(node, tmp_path, "index.handler", body)


def test_nested_directory_and_nested_export_name(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"src/handlers/api.js": """
        const helper = require('../util');
        module.exports = { routes: { get: async (event) => ({ path: 'src/handlers/api', x: helper(event.x) }) } };
    """, "src/util.js": "module.exports = (x) => x * 2;"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke({"x": 21})) == {"path": "src/handlers/api", "x": 42}

    run(node, tmp_path, "src/handlers/api.routes.get", body)


def test_warm_state_is_kept_between_invokes(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        let count = 0;
        const started = Date.now();
        export const handler = async () => ({ count: ++count, started });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        results = [ok_json(await rt.invoke()) for _ in range(5)]
        assert [r["count"] for r in results] == [1, 2, 3, 4, 5]
        assert len({r["started"] for r in results}) == 1

    run(node, tmp_path, "index.handler", body)


def test_one_megabyte_payload_round_trip(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async (event) => ({ size: event.data.length, data: event.data });"})
    data = "é" + "x" * (1024 * 1024) + "✓"

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        for _ in range(2):
            assert ok_json(await rt.invoke({"data": data})) == {"size": len(data), "data": data}

    run(node, tmp_path, "index.handler", body)


# --------------------------------------------------------------------------------------
# handler styles

def test_undefined_result_is_null(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async () => {};"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        outcome = await rt.invoke()
        assert outcome.ok and outcome.body == b"null"

    run(node, tmp_path, "index.handler", body)


def test_callback_waits_for_the_empty_event_loop(node: str, tmp_path: Path) -> None:
    # The result is serialised when it is sent: a change made by a later timer shows only if
    # the runtime waited for the event loop to empty.
    write(tmp_path, {"index.js": """
        exports.handler = (event, context, callback) => {
          const result = { waits: context.callbackWaitsForEmptyEventLoop };
          callback(null, result);
          setTimeout(() => { result.late = true; }, 50);
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == {"waits": True, "late": True}
        assert ok_json(await rt.invoke()) == {"waits": True, "late": True}

    run(node, tmp_path, "index.handler", body)


def test_callback_without_waiting(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        let timers = 0;
        exports.handler = (event, context, callback) => {
          context.callbackWaitsForEmptyEventLoop = false;
          const result = { timersSoFar: timers };
          setTimeout(() => { result.late = true; timers++; }, 200);
          callback(null, result);
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == {"timersSoFar": 0}  # sent before the timer ran
        # the earlier invokes' timers still run, while the runtime waits for /next
        for _ in range(100):
            if ok_json(await rt.invoke())["timersSoFar"] > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the timers of earlier invokes never ran")

    run(node, tmp_path, "index.handler", body)


def test_callback_error_and_first_call_wins(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = (event, context, callback) => {
          if (event.fail) { callback(new TypeError('bad input')); callback(null, 'ignored'); return; }
          callback(null, 'first');
          callback(null, 'second');
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == "first"
        document = error_doc(await rt.invoke({"fail": True}))
        assert document["errorType"] == "TypeError" and document["errorMessage"] == "bad input"
        assert ok_json(await rt.invoke()) == "first"

    run(node, tmp_path, "index.handler", body)


def test_legacy_context_succeed_fail_done(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = (event, context) => {
          if (event.mode === 'succeed') context.succeed({ via: 'succeed' });
          else if (event.mode === 'fail') context.fail(new Error('via fail'));
          else if (event.mode === 'done') context.done(null, { via: 'done' });
          else if (event.mode === 'fail-nothing') context.fail();
          setTimeout(() => {}, 5000);  // succeed/fail/done do not wait for the event loop
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke({"mode": "succeed"}, wait=3)) == {"via": "succeed"}
        assert error_doc(await rt.invoke({"mode": "fail"}, wait=3))["errorMessage"] == "via fail"
        assert ok_json(await rt.invoke({"mode": "done"}, wait=3)) == {"via": "done"}
        document = error_doc(await rt.invoke({"mode": "fail-nothing"}, wait=3))
        assert document == {"errorType": "string", "errorMessage": "handled", "trace": []}

    run(node, tmp_path, "index.handler", body)


def test_sync_handler_without_callback_answers_null(node: str, tmp_path: Path) -> None:
    # AWS (nodejs18.x-22.x): a non-promise return value is ignored; the invoke ends with null
    # once the event loop is empty.
    write(tmp_path, {"index.js": "exports.handler = (event, context) => ({ ignored: true });"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        outcome = await rt.invoke()
        assert outcome.ok and outcome.body == b"null"

    run(node, tmp_path, "index.handler", body)


# --------------------------------------------------------------------------------------
# context

def test_context_fields(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        export const handler = async (event, context) => ({
          awsRequestId: context.awsRequestId,
          invokedFunctionArn: context.invokedFunctionArn,
          functionName: context.functionName,
          functionVersion: context.functionVersion,
          memoryLimitInMB: context.memoryLimitInMB,
          logGroupName: context.logGroupName,
          logStreamName: context.logStreamName,
          identity: context.identity ?? 'absent',
          clientContext: context.clientContext ?? 'absent',
          remaining: context.getRemainingTimeInMillis(),
          waits: context.callbackWaitsForEmptyEventLoop,
          trace: process.env._X_AMZN_TRACE_ID,
        });
    """})
    arn = "arn:aws:lambda:us-east-1:123456789012:function:fn:live"
    client_context = {"client": {"installation_id": "i-1", "app_title": "t"}, "custom": {"k": "v"}, "env": {"locale": "en"}}
    identity = {"cognitoIdentityId": "us-east-1:abc", "cognitoIdentityPoolId": "us-east-1:pool"}

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        result = ok_json(await rt.invoke(request_id="req-1", arn=arn, timeout_ms=30_000,
                                         client_context=json.dumps(client_context), cognito_identity=json.dumps(identity)))
        remaining = result.pop("remaining")
        assert 0 < remaining <= 30_000
        assert result.pop("trace").startswith("Root=1-")
        assert result == {
            "awsRequestId": "req-1",
            "invokedFunctionArn": arn,
            "functionName": "fn",
            "functionVersion": "$LATEST",
            "memoryLimitInMB": "128",
            "logGroupName": "/aws/lambda/fn",
            "logStreamName": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "identity": identity,
            "clientContext": client_context,
            "waits": True,
        }
        plain = ok_json(await rt.invoke(request_id="req-2"))
        assert plain["awsRequestId"] == "req-2"
        assert plain["identity"] == "absent" and plain["clientContext"] == "absent"

    run(node, tmp_path, "index.handler", body)


# --------------------------------------------------------------------------------------
# logs

def test_console_log_lines(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        console.log('loading');
        exports.handler = async (event) => {
          console.log('hello %s', 'world', { n: 1 });
          console.info('info');
          console.warn('warn');
          console.error('two\\nlines');
          console.debug('debug');
          console.trace('trace');
          process.stdout.write('raw stdout\\n');
          return 'ok';
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke(request_id="rid-1")) == "ok"
        output = await wait_output(rt, "raw stdout\n")
        assert "\nraw stdout\n" in output  # process.stdout passes through unchanged
        assert log_lines(output) == [
            ("undefined", "INFO", "loading"),
            ("rid-1", "INFO", "hello world { n: 1 }"),
            ("rid-1", "INFO", "info"),
            ("rid-1", "WARN", "warn"),
            ("rid-1", "ERROR", "two\rlines"),
            ("rid-1", "DEBUG", "debug"),
            ("rid-1", "TRACE", "trace"),
        ]

    run(node, tmp_path, "index.handler", body)


def test_json_log_format_and_level(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async () => {
          console.debug('dropped');
          console.info('kept %d', 1);
          console.warn({ structured: true });
          throw new Error('boom');
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert error_doc(await rt.invoke(request_id="rid-j"))["errorMessage"] == "boom"
        output = await wait_output(rt, "Invoke Error")
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert "dropped" not in output
        assert [(r["level"], r["requestId"]) for r in records] == [("INFO", "rid-j"), ("WARN", "rid-j"), ("ERROR", "rid-j")]
        assert records[0]["message"] == "kept 1" and re.match(r"\d{4}-\d\d-\d\dT.*Z$", records[0]["timestamp"])
        assert records[1]["message"] == {"structured": True}
        assert records[2]["errorType"] == "Error" and records[2]["errorMessage"] == "boom"
        assert records[2]["stackTrace"][0] == "Error: boom"

    run(node, tmp_path, "index.handler", body, env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})


# --------------------------------------------------------------------------------------
# function errors

def test_thrown_error(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async () => { throw new Error('boom'); };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        document = error_doc(await rt.invoke(request_id="rid-e"))
        assert document["errorType"] == "Error" and document["errorMessage"] == "boom"
        assert document["trace"][0] == "Error: boom"
        assert any("index.js:2" in line for line in document["trace"][1:])
        output = await wait_output(rt, "Invoke Error")
        (rid, level, message), = [line for line in log_lines(output) if "Invoke Error" in line[2]]
        assert (rid, level) == ("rid-e", "ERROR")
        assert message.startswith("Invoke Error \t{")
        logged = json.loads(message.split("\t", 1)[1])
        assert logged["errorType"] == "Error" and logged["errorMessage"] == "boom" and logged["stack"][0] == "Error: boom"
        assert error_doc(await rt.invoke())["errorMessage"] == "boom"  # the runtime keeps serving

    run(node, tmp_path, "index.handler", body)


def test_custom_error_classes(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        class ValidationError extends Error {
          constructor(message) { super(message); this.name = 'ValidationError'; this.field = 'email'; }
        }
        class Unnamed extends Error {}
        export const handler = async (event) => {
          if (event.named) throw new ValidationError('invalid email');
          throw new Unnamed('no name');
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        document = error_doc(await rt.invoke({"named": True}))
        assert document["errorType"] == "ValidationError" and document["errorMessage"] == "invalid email"
        assert document["trace"][0] == "ValidationError: invalid email"
        # AWS reports error.name, which a subclass inherits unless it sets its own
        assert error_doc(await rt.invoke({"named": False}))["errorType"] == "Error"

    run(node, tmp_path, "index.handler", body)


def test_rejection_with_non_error_values(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async (event) => { throw event.value; };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert error_doc(await rt.invoke({"value": "nope"})) == {"errorType": "string", "errorMessage": "nope", "trace": []}
        assert error_doc(await rt.invoke({"value": 42})) == {"errorType": "number", "errorMessage": "42", "trace": []}
        assert error_doc(await rt.invoke({"value": {"a": 1}}))["errorType"] == "object"

    run(node, tmp_path, "index.handler", body)


def test_event_that_is_not_json(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async (event) => event;"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert error_doc(await rt.invoke(raw=b"not json"))["errorType"] == "SyntaxError"
        assert ok_json(await rt.invoke({"still": "serving"})) == {"still": "serving"}

    run(node, tmp_path, "index.handler", body)


def test_unhandled_rejection_during_invoke_exits(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async () => {
          Promise.reject(new Error('floating'));
          await new Promise((resolve) => setTimeout(resolve, 1000));
          return 'too late';
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        document = error_doc(await rt.invoke())
        assert document["errorType"] == "Runtime.UnhandledPromiseRejection"
        assert document["errorMessage"] == "Error: floating"
        assert await asyncio.wait_for(rt.proc.wait(), 5) == 128
        assert "Unhandled Promise Rejection" in rt.output

    run(node, tmp_path, "index.handler", body)


def test_uncaught_exception_during_invoke_exits(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = (event, context, callback) => {
          setTimeout(() => { throw new RangeError('in a timer'); }, 10);
        };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        document = error_doc(await rt.invoke())
        assert document["errorType"] == "RangeError" and document["errorMessage"] == "in a timer"
        assert await asyncio.wait_for(rt.proc.wait(), 5) == 129
        assert "\tERROR\tUncaught Exception \t{" in rt.output

    run(node, tmp_path, "index.handler", body)


def test_unserialisable_result(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async () => { const a = {}; a.self = a; return a; };
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        document = error_doc(await rt.invoke())
        assert document["errorType"] == "Runtime.UnhandledPromiseRejection"
        assert document["errorMessage"] == "Error: Unable to stringify response body"

    run(node, tmp_path, "index.handler", body)


# --------------------------------------------------------------------------------------
# response streaming (awslambda.streamifyResponse)

def record_requests(rt: RuntimeSession) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) of each request the runtime makes from now on."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    original = rt.api.route

    async def route(method: str, path: str, headers: dict[str, str], body: bytes, oversize: bool, *stream):
        seen.append((method, path, dict(headers), body))
        return await original(method, path, headers, body, oversize, *stream)

    rt.api.route = route  # type: ignore[method-assign]
    return seen


def posted(seen: list, request_id: str) -> tuple[str, dict[str, str]]:
    """("response" | "error", headers) of what the runtime posted for ``request_id``."""
    found = [(path.rsplit("/", 1)[1], headers) for method, path, headers, _ in seen
             if method == "POST" and f"/invocation/{request_id}/" in path]
    assert len(found) == 1, seen
    return found[0]


STREAMING_HEADERS = {
    "lambda-runtime-function-response-mode": "streaming",
    "transfer-encoding": "chunked",
    "trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
}


def test_streamed_response_is_sent_chunk_by_chunk(node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The body reaches the Runtime API as the handler writes it, not when the handler ends.
    from squall.runtimes import runtime_api

    arrivals: list[tuple[float, bytes]] = []
    on_body = runtime_api._Connection.on_body

    def timed_on_body(self, body: bytes) -> None:
        arrivals.append((time.monotonic(), bytes(body)))
        on_body(self, body)

    monkeypatch.setattr(runtime_api._Connection, "on_body", timed_on_body)
    write(tmp_path, {"index.mjs": """
        const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
          if (event.type) responseStream.setContentType(event.type);
          for (const part of event.parts) {
            responseStream.write(part);
            await pause(event.pause);
          }
          responseStream.write(Buffer.from([0, 1]));
          responseStream.write({ id: context.awsRequestId });
          responseStream.write('');
          responseStream.end('!');
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        seen = record_requests(rt)
        outcome = await rt.invoke({"parts": ["a", "bc", "déf"], "pause": 300, "type": "text/plain"}, request_id="rid-1")
        assert outcome.ok, outcome
        assert outcome.body == 'abcdéf'.encode() + b'\x00\x01{"id":"rid-1"}!'
        assert outcome.content_type == "text/plain"
        kind, headers = posted(seen, "rid-1")
        assert kind == "response" and headers.items() >= STREAMING_HEADERS.items()
        assert "content-length" not in headers
        # "a" arrived about 600 ms before the end of the body
        first = next(t for t, data in arrivals if b"a" in data)
        assert arrivals[-1][0] - first > 0.4, arrivals

        outcome = await rt.invoke({"parts": ["x"] * 50, "pause": 0}, request_id="rid-2")
        assert outcome.ok and outcome.body == b"x" * 50 + b'\x00\x01{"id":"rid-2"}!'
        assert outcome.content_type == "application/octet-stream"
        assert posted(seen, "rid-2")[0] == "response"

    run(node, tmp_path, "index.handler", body)


def test_streamed_pipeline_with_backpressure(node: str, tmp_path: Path) -> None:
    # 3 MB piped through a small highWaterMark: write() returns false, 'drain' follows.
    write(tmp_path, {"index.js": """
        const { pipeline } = require('node:stream/promises');
        const { Readable } = require('node:stream');
        exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
          let full = 0;
          function* blocks() {
            for (let i = 0; i < 48; i++) yield Buffer.alloc(65536, 97 + (i % 26));
          }
          responseStream.on('drain', () => full++);
          await pipeline(Readable.from(blocks()), responseStream);
          console.log('drains', full, responseStream.writableHighWaterMark);
        }, { highWaterMark: 4096 });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        outcome = await rt.invoke()
        assert outcome.ok, outcome
        assert outcome.body == b"".join(bytes([97 + (i % 26)]) * 65536 for i in range(48))
        (_, _, message), = [line for line in log_lines(await wait_output(rt, "drains")) if line[2].startswith("drains")]
        drains, high_water_mark = message.split()[1:]
        assert int(drains) > 0 and high_water_mark == "4096"

    run(node, tmp_path, "index.handler", body)


def test_http_response_stream_prelude(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        const { HttpResponseStream } = awslambda;  // the global exists while the module loads
        export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
          const prelude = { statusCode: event.status, headers: { 'x-custom': 'yes' }, cookies: ['a=1; Secure'] };
          responseStream = HttpResponseStream.from(responseStream, prelude);
          for (const part of event.parts) responseStream.write(part);
          responseStream.end();
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        prelude = b'{"statusCode":201,"headers":{"x-custom":"yes"},"cookies":["a=1; Secure"]}'
        outcome = await rt.invoke({"status": 201, "parts": ["hello", " world"]})
        assert outcome.ok, outcome
        assert outcome.content_type == "application/vnd.awslambda.http-integration-response"
        assert outcome.body == prelude + b"\x00" * 8 + b"hello world"
        # no body at all (a redirect, say): the prelude still goes out
        outcome = await rt.invoke({"status": 302, "parts": []})
        assert outcome.ok and outcome.body == prelude.replace(b"201", b"302") + b"\x00" * 8

    run(node, tmp_path, "index.handler", body)


def test_streamed_error_after_the_first_chunk_is_a_trailer(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        class QuotaError extends Error { constructor(m) { super(m); this.name = 'QuotaError'; } }
        export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
          responseStream.write('partial ');
          await new Promise((resolve) => setTimeout(resolve, 20));
          responseStream.write('more');
          if (event.fail) throw new QuotaError('over quota');
          responseStream.end();
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        seen = record_requests(rt)
        outcome = await rt.invoke({"fail": True}, request_id="rid-t")
        document = error_doc(outcome)
        assert outcome.error_type == "QuotaError" and document["errorMessage"] == "over quota"
        assert document["trace"][0] == "QuotaError: over quota"
        kind, headers = posted(seen, "rid-t")
        assert kind == "response" and headers["lambda-runtime-function-error-type"] == "QuotaError"
        assert json.loads(base64.b64decode(headers["lambda-runtime-function-error-body"]))["errorMessage"] == "over quota"
        output = await wait_output(rt, "Invoke Error")
        assert [(rid, level) for rid, level, message in log_lines(output) if "Invoke Error" in message] == [("rid-t", "ERROR")]
        # the runtime keeps serving on the same connection
        outcome = await rt.invoke({})
        assert outcome.ok and outcome.body == b"partial more"

    run(node, tmp_path, "index.handler", body)


def test_streamed_error_before_any_write_posts_to_error(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": """
        export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
          awslambda.HttpResponseStream.from(responseStream, { statusCode: 500 });
          if (event.mode === 'reject') throw new RangeError('no bytes yet');
          if (event.mode === 'unfinished') return 'ignored';     // resolves without end()
          if (event.mode === 'unfinished-after-write') { responseStream.write('x'); return; }
          responseStream.end('fine');
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        seen = record_requests(rt)
        outcome = await rt.invoke({"mode": "reject"}, request_id="rid-r")
        document = error_doc(outcome)
        assert document["errorType"] == "RangeError" and document["errorMessage"] == "no bytes yet"
        assert posted(seen, "rid-r") == ("error", {**posted(seen, "rid-r")[1], "lambda-runtime-function-error-type": "RangeError"})
        outcome = await rt.invoke({"mode": "unfinished"}, request_id="rid-u", wait=5)
        assert error_doc(outcome)["errorMessage"] == "Response stream is not finished."
        assert posted(seen, "rid-u")[0] == "error"
        output = await wait_output(rt, "Streaming handlers ignore return values.")
        assert any(level == "WARN" and rid == "rid-u" for rid, level, _ in log_lines(output))
        outcome = await rt.invoke({"mode": "unfinished-after-write"}, request_id="rid-w", wait=5)
        assert error_doc(outcome)["errorMessage"] == "Response stream is not finished."
        assert posted(seen, "rid-w")[0] == "response"
        outcome = await rt.invoke({"mode": "ok"})
        assert outcome.ok and outcome.body == b'{"statusCode":500}' + b"\x00" * 8 + b"fine"

    run(node, tmp_path, "index.handler", body)


def test_streaming_misuse(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = awslambda.streamifyResponse((event, responseStream) => {
          if (event.mode === 'sync') { responseStream.end('sync'); return; }
          if (event.mode === 'end-then-throw') {
            responseStream.end('ended');
            responseStream.write(' stray', (err) => console.log('stray write:', err.code));
            return Promise.reject(new Error('too late'));
          }
          return (async () => {
            responseStream.write('a');
            try { responseStream.setContentType('text/plain'); } catch (e) { responseStream.write(` ${e.name}: ${e.message}`); }
            responseStream.end();
          })();
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        outcome = await rt.invoke({})
        assert outcome.ok and outcome.content_type == "application/octet-stream"
        assert outcome.body == b"a Runtime.InvalidStreamingOperation: Cannot set content-type, too late."
        # not async: an error (what the handler ended first, if anything, stays)
        outcome = await rt.invoke({"mode": "sync"})
        assert outcome.ok and outcome.body == b"sync"
        await wait_output(rt, "Streaming does not support non-async handlers.")
        # once end() is called the response stands: a later write or error changes nothing
        outcome = await rt.invoke({"mode": "end-then-throw"})
        assert outcome.ok and outcome.body == b"ended"
        await wait_output(rt, "too late")
        await wait_output(rt, "stray write: ERR_STREAM_WRITE_AFTER_END")

    run(node, tmp_path, "index.handler", body)


def test_streaming_next_event_waits_for_the_empty_event_loop(node: str, tmp_path: Path) -> None:
    # As on AWS: after the response, the next event is fetched once the event loop is empty,
    # unless context.callbackWaitsForEmptyEventLoop = false.
    write(tmp_path, {"index.mjs": """
        export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
          context.callbackWaitsForEmptyEventLoop = event.wait;
          setTimeout(() => {}, 800);
          responseStream.end(String(context.callbackWaitsForEmptyEventLoop));
        });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert (await rt.invoke({"wait": True})).body == b"true"
        begin = time.monotonic()
        assert (await rt.invoke({"wait": False})).body == b"false"
        assert time.monotonic() - begin > 0.5  # the first invoke's timer ran out first
        begin = time.monotonic()
        assert (await rt.invoke({"wait": False})).body == b"false"
        assert time.monotonic() - begin < 0.5

    run(node, tmp_path, "index.handler", body)


def test_unknown_streaming_mode_is_an_init_error(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": """
        exports.handler = async () => 1;
        exports.handler[Symbol.for('aws.lambda.runtime.handler.streaming')] = 'request';
    """})
    document, code, _ = init_error(node, tmp_path, "index.handler")
    assert document["errorType"] == "Runtime.MalformedStreamingHandler"
    assert document["errorMessage"] == "Only response streaming is supported."
    assert code == 129


def test_ordinary_handler_alongside_the_awslambda_global(node: str, tmp_path: Path) -> None:
    # The global is there for every handler; an ordinary one still answers JSON, invoke after invoke.
    write(tmp_path, {"index.mjs": """
        const seen = typeof awslambda.streamifyResponse + ' ' + typeof awslambda.HttpResponseStream.from;
        export const handler = async (event) => ({ seen, n: event.n });
    """})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        for n in range(3):
            outcome = await rt.invoke({"n": n})
            assert outcome.content_type == "application/json"
            assert ok_json(outcome) == {"seen": "function function", "n": n}

    run(node, tmp_path, "index.handler", body)


def test_no_global_awslambda_when_disabled(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async () => typeof awslambda;"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        assert ok_json(await rt.invoke()) == "undefined"

    run(node, tmp_path, "index.handler", body, env={"AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA": "true"})


# --------------------------------------------------------------------------------------
# init errors

def init_error(node: str, code_dir: Path, handler: str) -> tuple[dict, int | None, str]:
    found: list = []

    async def body(rt: RuntimeSession) -> None:
        outcome = await rt.init()
        assert outcome is not None, "init succeeded"
        code = await asyncio.wait_for(rt.proc.wait(), 5)
        await asyncio.sleep(0.05)
        found.extend([error_doc(outcome), code, rt.output])

    run(node, code_dir, handler, body)
    return found[0], found[1], found[2]


def test_missing_module_is_import_module_error(node: str, tmp_path: Path) -> None:
    document, code, output = init_error(node, tmp_path, "index.handler")
    assert document["errorType"] == "Runtime.ImportModuleError"
    assert document["errorMessage"].startswith("Error: Cannot find module 'index'\nRequire stack:\n- ")
    assert document["errorMessage"].endswith("/index.mjs")
    assert document["trace"][0] == "Runtime.ImportModuleError: Error: Cannot find module 'index'"
    assert code == 129
    assert "\tundefined\tERROR\tUncaught Exception \t{\"errorType\":\"Runtime.ImportModuleError\"" in output


def test_missing_dependency_is_import_module_error(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"app.js": "const pad = require('left-pad-not-installed'); exports.handler = async () => pad;"})
    document, _, _ = init_error(node, tmp_path, "app.handler")
    assert document["errorType"] == "Runtime.ImportModuleError"
    assert document["errorMessage"].startswith(
        f"Error: Cannot find module 'left-pad-not-installed'\nRequire stack:\n- {tmp_path / 'app.js'}\n- ")


def test_missing_package_imported_by_esm(node: str, tmp_path: Path) -> None:
    # AWS reports node's ERR_MODULE_NOT_FOUND as a plain "Error" (only require()'s
    # MODULE_NOT_FOUND becomes Runtime.ImportModuleError)
    write(tmp_path, {"index.mjs": "import pad from 'left-pad-not-installed';\nexport const handler = async () => pad;"})
    document, code, _ = init_error(node, tmp_path, "index.handler")
    assert document["errorType"] == "Error"
    assert document["errorMessage"] == f"Cannot find package 'left-pad-not-installed' imported from {tmp_path / 'index.mjs'}"
    assert code == 129


def test_handler_not_found(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async () => 1; exports.value = 3;"})
    document, code, _ = init_error(node, tmp_path, "index.nope")
    assert document["errorType"] == "Runtime.HandlerNotFound"
    assert document["errorMessage"] == "index.nope is undefined or not exported"
    assert code == 129
    document, _, _ = init_error(node, tmp_path, "index.value")
    assert document == {**document, "errorType": "Runtime.HandlerNotFound", "errorMessage": "index.value is not a function"}


@pytest.mark.parametrize("handler", ["index", "../index.handler"])
def test_malformed_handler_name(node: str, tmp_path: Path, handler: str) -> None:
    write(tmp_path, {"index.js": "exports.handler = async () => 1;"})
    document, _, _ = init_error(node, tmp_path, handler)
    assert document["errorType"] == "Runtime.MalformedHandlerName"
    expected = "Bad handler" if handler == "index" else "'../' not allowed in handler name. Use absolute paths instead."
    assert document["errorMessage"] == expected


@pytest.mark.parametrize("filename", ["index.js", "index.mjs"])
def test_syntax_error(node: str, tmp_path: Path, filename: str) -> None:
    write(tmp_path, {filename: "exports.handler = async () => { return 1;;; }}"})
    document, _, _ = init_error(node, tmp_path, "index.handler")
    assert document["errorType"] == "Runtime.UserCodeSyntaxError"
    assert document["errorMessage"].startswith("SyntaxError: ")
    assert document["trace"][0].startswith("Runtime.UserCodeSyntaxError: SyntaxError: ")


def test_error_thrown_at_module_load(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.mjs": "throw new TypeError('config missing');\nexport const handler = async () => 1;"})
    document, code, _ = init_error(node, tmp_path, "index.handler")
    assert document["errorType"] == "TypeError" and document["errorMessage"] == "config missing"
    assert code == 129


def test_runtime_exits_when_the_api_goes_away(node: str, tmp_path: Path) -> None:
    write(tmp_path, {"index.js": "exports.handler = async () => 1;"})

    async def body(rt: RuntimeSession) -> None:
        await started(rt)
        await rt.api.close()  # drops the parked GET /next
        assert await asyncio.wait_for(rt.proc.wait(), 5) != 0

    run(node, tmp_path, "index.handler", body)
