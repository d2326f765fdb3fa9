"""The Runtime API state machine, driven over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import orjson

from squall.runtimes.runtime_api import RuntimeApi, RuntimeEvent


class Client:
    """A minimal keep-alive HTTP/1.1 client, as a runtime would use."""

    def __init__(self, address: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} /2018-06-01/runtime{path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        reply_headers = {}
        while True:
            line = (await self.reader.readline()).decode().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        data = await self.reader.readexactly(int(reply_headers.get("content-length", 0)))
        return status, reply_headers, data


def event(rid: str = "req-1", payload: bytes = b'{"n": 1}') -> RuntimeEvent:
    return RuntimeEvent(rid, payload, int(time.time() * 1000) + 3000, "arn:aws:lambda:us-east-1:123456789012:function:f",
                        client_context='{"custom": {"k": "v"}}')


def run(scenario):
    async def main():
        api = RuntimeApi(max_response=1024)
        address = await api.start()
        try:
            await asyncio.wait_for(scenario(api, Client(address)), 10)
        finally:
            await api.close()

    asyncio.run(main())


def test_next_then_response():
    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        assert await api.wait_init() is None  # the first /next means init is done
        outcome = asyncio.create_task(api.invoke(event()))
        status, headers, body = await nxt
        assert status == 200 and body == b'{"n": 1}'
        assert headers["lambda-runtime-aws-request-id"] == "req-1"
        assert int(headers["lambda-runtime-deadline-ms"]) > time.time() * 1000
        assert headers["lambda-runtime-invoked-function-arn"].endswith(":function:f")
        assert headers["lambda-runtime-trace-id"].startswith("Root=")
        assert json.loads(headers["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
        status, _, reply = await runtime.request("POST", "/invocation/req-1/response", b'"done"',
                                                 {"Content-Type": "application/json"})
        assert status == 202 and json.loads(reply) == {"status": "OK"}
        result = await outcome
        assert result.ok and result.body == b'"done"'
        # a second response for the same id is an invalid state transition
        status, _, reply = await runtime.request("POST", "/invocation/req-1/response", b'"again"')
        assert status == 403 and json.loads(reply)["errorType"] == "InvalidStateTransition"

    run(scenario)


def test_unknown_request_id():
    async def scenario(api, runtime):
        status, _, reply = await runtime.request("POST", "/invocation/nope/response", b"{}")
        assert status == 400 and json.loads(reply)["errorType"] == "InvalidRequestID"

    run(scenario)


def test_error_type_from_header_or_body():
    async def scenario(api, runtime):
        for rid, headers, body, expected in (
            ("a", {"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"}, b"not json", "Runtime.Custom"),
            ("b", {}, orjson.dumps({"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}), "ValueError"),
            ("c", {}, b"", "Runtime.Unknown"),
        ):
            outcome = asyncio.create_task(api.invoke(event(rid)))
            status, _, _ = await runtime.request("GET", "/invocation/next")
            assert status == 200
            status, _, _ = await runtime.request("POST", f"/invocation/{rid}/error", body, headers)
            assert status == 202
            result = await outcome
            assert not result.ok and result.error_type == expected
            assert json.loads(result.body)["errorType"] == expected

    run(scenario)


def test_init_error():
    async def scenario(api, runtime):
        body = orjson.dumps({"errorMessage": "cannot start", "errorType": "Runtime.InitBoom"})
        status, _, _ = await runtime.request("POST", "/init/error", body)
        assert status == 202
        result = await api.wait_init()
        assert result is not None and result.error_type == "Runtime.InitBoom"
        status, _, _ = await Client(runtime.host + ":" + str(runtime.port)).request("POST", "/init/error", body)
        assert status == 403

    run(scenario)


def test_oversized_response():
    async def scenario(api, runtime):
        outcome = asyncio.create_task(api.invoke(event("big")))
        await runtime.request("GET", "/invocation/next")
        status, _, _ = await runtime.request("POST", "/invocation/big/response", b"x" * 4096)
        assert status == 413
        result = await outcome
        assert not result.ok and result.error_type == "Function.ResponseSizeTooLarge"

    run(scenario)


def test_next_blocks_until_an_event():
    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await asyncio.sleep(0.1)
        assert not nxt.done()
        outcome = asyncio.create_task(api.invoke(event("late")))
        status, headers, _ = await nxt
        assert status == 200 and headers["lambda-runtime-aws-request-id"] == "late"
        await runtime.request("POST", "/invocation/late/response", b"1")
        assert (await outcome).body == b"1"

    run(scenario)


def test_unknown_paths_and_methods():
    async def scenario(api, runtime):
        assert (await runtime.request("GET", "/nothing"))[0] == 404
        assert (await runtime.request("POST", "/invocation/next"))[0] == 405

    run(scenario)


async def _raw_request(address: str, raw: bytes) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return int(head.split()[1]), body


def _chunked(request_id: str, chunks: list[bytes], trailers: dict[str, str] | None = None) -> bytes:
    head = (f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\nHost: x\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\n")
    if trailers:
        head += "Trailer: " + ", ".join(trailers) + "\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n"
    body += b"".join(f"{k}: {v}\r\n".encode() for k, v in (trailers or {}).items()) + b"\r\n"
    return (head + "\r\n").encode() + body


def test_streaming_response_is_buffered():
    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await api.wait_init()
        outcome = asyncio.create_task(api.invoke(event("s-1")))
        await nxt
        status, reply = await _raw_request(f"{runtime.host}:{runtime.port}", _chunked("s-1", [b'{"part":', b' 1', b"}"]))
        assert status == 202 and json.loads(reply) == {"status": "OK"}
        result = await outcome
        assert result.ok and result.body == b'{"part": 1}'

    run(scenario)


def test_streaming_error_in_trailers():
    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await api.wait_init()
        outcome = asyncio.create_task(api.invoke(event("s-2")))
        await nxt
        error = base64.b64encode(b'{"errorType": "Stream.Broke", "errorMessage": "half way"}').decode()
        raw = _chunked("s-2", [b"partial"], {"Lambda-Runtime-Function-Error-Type": "Stream.Broke",
                                             "Lambda-Runtime-Function-Error-Body": error})
        status, _ = await _raw_request(f"{runtime.host}:{runtime.port}", raw)
        assert status == 202
        result = await outcome
        assert not result.ok and result.error_type == "Stream.Broke"
        assert json.loads(result.body) == {"errorType": "Stream.Broke", "errorMessage": "half way"}

    run(scenario)


def test_a_streamed_response_reaches_the_invocations_stream_chunk_by_chunk():
    """With a stream, each chunk is there as soon as it is parsed: chunk 1 is read before chunk 2 is sent."""
    from squall.invoke.streaming import ResponseStream

    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await api.wait_init()
        stream = ResponseStream()
        outcome = asyncio.create_task(api.invoke(event("s-3"), stream))
        await nxt
        reader, writer = await asyncio.open_connection(runtime.host, runtime.port)
        head = _chunked("s-3", []).split(b"\r\n\r\n", 1)[0].replace(b"application/json", b"text/plain") + b"\r\n\r\n"
        writer.write(head + b"7\r\nchunk-1\r\n")
        await stream.ready()
        assert stream.opened and stream.content_type == "text/plain"
        assert await stream.read() == b"chunk-1"
        writer.write(b"7\r\nchunk-2\r\n0\r\n\r\n")
        assert await stream.read() == b"chunk-2"
        result = await outcome
        assert result.ok and result.streamed and result.body == b"" and result.content_type == "text/plain"
        assert b" 202 " in await reader.readuntil(b"\r\n\r\n")
        writer.close()

    run(scenario)


def test_a_streamed_response_over_its_limit_is_response_size_too_large():
    from squall.invoke.streaming import ResponseStream

    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await api.wait_init()
        stream = ResponseStream(limit=10)  # the buffered limit of this API is 1024: streams have their own
        outcome = asyncio.create_task(api.invoke(event("s-4"), stream))
        await nxt
        status, _ = await _raw_request(f"{runtime.host}:{runtime.port}", _chunked("s-4", [b"12345678", b"9abcdef"]))
        assert status == 413
        result = await outcome
        assert not result.ok and result.error_type == "Function.ResponseSizeTooLarge"
        assert "(10 bytes)" in json.loads(result.body)["errorMessage"]
        assert stream.truncated and await stream.read() == b"12345678"

    run(scenario)


def test_a_stream_given_to_a_runtime_that_answers_in_one_piece_stays_closed():
    from squall.invoke.streaming import ResponseStream

    async def scenario(api, runtime):
        nxt = asyncio.create_task(runtime.request("GET", "/invocation/next"))
        await api.wait_init()
        stream = ResponseStream()
        outcome = asyncio.create_task(api.invoke(event("s-5"), stream))
        await nxt
        status, _, _ = await runtime.request("POST", "/invocation/s-5/response", b'"whole"')
        assert status == 202
        result = await outcome
        assert result.ok and result.body == b'"whole"' and not result.streamed and not stream.opened

    run(scenario)
