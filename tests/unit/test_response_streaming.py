"""Response streaming's pieces: the event-stream framing (read back with botocore's own parser),
the http-integration-response prelude, and the stream's queue and back-pressure."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer

from squall.api import eventstream
from squall.invoke.streaming import HIGH_WATER, LOW_WATER, ResponseStream
from squall.triggers.url_stream import read_prelude


def parse(data: bytes) -> list:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_payload_chunks_and_invoke_complete_as_botocore_reads_them():
    data = eventstream.payload_chunks(b"hello \x00 bytes") + eventstream.invoke_complete("Error", "boom", "bG9n")
    first, last = parse(data)
    assert first.headers == {":event-type": "PayloadChunk", ":content-type": "application/octet-stream", ":message-type": "event"}
    assert first.payload == b"hello \x00 bytes"
    assert last.headers[":event-type"] == "InvokeComplete" and last.headers[":content-type"] == "application/json"
    assert last.payload == b'{"ErrorCode":"Error","ErrorDetails":"boom","LogResult":"bG9n"}'
    assert parse(eventstream.invoke_complete())[0].payload == b"{}"


def test_the_prelude_and_message_checksums():
    message = eventstream.payload_chunks(b"x")
    total, headers = int.from_bytes(message[:4], "big"), int.from_bytes(message[4:8], "big")
    assert total == len(message) and 12 + headers + 1 + 4 == total
    assert int.from_bytes(message[8:12], "big") == zlib.crc32(message[:8])
    assert int.from_bytes(message[-4:], "big") == zlib.crc32(message[:-4])


def test_bytes_over_the_payload_cap_go_in_several_events(monkeypatch):
    monkeypatch.setattr(eventstream, "MAX_PAYLOAD", 4)
    events = parse(eventstream.payload_chunks(b"0123456789"))
    assert [e.payload for e in events] == [b"0123", b"4567", b"89"]


def test_the_prelude_of_an_http_integration_response():
    status, headers = read_prelude(b'{"statusCode": 201, "headers": {"Content-Type": "text/html", "X-N": 5},'
                                   b' "cookies": ["a=1", "b=2; Secure"]}')
    assert status == 201
    assert headers == [(b"content-type", b"text/html"), (b"x-n", b"5"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2; Secure")]
    assert read_prelude(b"{}") == (200, [(b"content-type", b"application/octet-stream")])
    assert read_prelude(b'{"statusCode": "404", "headers": {"content-length": "9"}}')[0] == 404  # chunked: no length
    assert read_prelude(b'{"statusCode": "404", "headers": {"content-length": "9"}}')[1] == [
        (b"content-type", b"application/octet-stream")]
    for bad in (b"not json", b"[1]", b'{"statusCode": 99}', b'{"statusCode": true}', b'{"headers": []}',
                b'{"cookies": "a=1"}', b'{"headers": {"x": {"y": 1}}}'):
        with pytest.raises(ValueError):
            read_prelude(bad)


def test_the_stream_queues_what_arrives_and_ends():
    async def main():
        stream = ResponseStream()
        reader = asyncio.create_task(stream.ready())
        await asyncio.sleep(0)
        assert not reader.done()
        stream.open("text/plain")
        await reader
        stream.feed(b"a")
        stream.feed(b"b")
        assert await stream.read() == b"ab"  # what arrived since the last read, together
        stream.close()
        stream.feed(b"late")
        assert await stream.read() is None

    asyncio.run(main())


def test_back_pressure_pauses_the_runtimes_connection_until_the_queue_drains():
    calls: list[str] = []

    async def main():
        stream = ResponseStream()
        stream.open("application/octet-stream", lambda: calls.append("pause"), lambda: calls.append("resume"))
        piece = b"x" * (64 * 1024)
        for _ in range(HIGH_WATER // len(piece)):
            stream.feed(piece)
        assert calls == []
        stream.feed(piece)  # over the high-water mark
        assert calls == ["pause"]
        stream.feed(piece)  # still paused: no second pause
        assert calls == ["pause"]
        taken = await stream.read()
        assert len(taken) > HIGH_WATER - LOW_WATER and calls == ["pause", "resume"]

    asyncio.run(main())


def test_an_abandoned_stream_drops_what_comes_and_resumes_reading():
    calls: list[str] = []

    async def main():
        stream = ResponseStream()
        stream.open("text/plain", lambda: calls.append("pause"), lambda: calls.append("resume"))
        stream.feed(b"y" * (HIGH_WATER + 1))
        stream.abandon()
        assert calls == ["pause", "resume"]
        stream.feed(b"more")
        stream.close()
        assert await stream.read() is None

    asyncio.run(main())
