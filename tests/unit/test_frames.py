"""The server-side control-channel codec (squall/runtimes/python/frames.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squall.runtimes.python import frames
from squall.runtimes.python.frames import (
    FrameDecodeError,
    FrameEOF,
    FrameError,
    FrameTooLarge,
    FrameTruncated,
    encode_frame,
    read_frame,
    write_frame,
)

BOOTSTRAP = Path(frames.__file__).resolve().parent / "bootstrap.py"


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def run(coro):
    return asyncio.run(coro)


def test_encode_frame_layout():
    frame = encode_frame({"t": "ready", "max_rss_kb": 12}, b"")
    meta_len, body_len = struct.unpack("!II", frame[:8])
    assert body_len == 0
    assert json.loads(frame[8 : 8 + meta_len]) == {"t": "ready", "max_rss_kb": 12}
    assert len(frame) == 8 + meta_len

    frame = encode_frame({"t": "invoke", "id": "é"}, b"\x00\x01body")
    meta_len, body_len = struct.unpack("!II", frame[:8])
    assert json.loads(frame[8 : 8 + meta_len].decode("utf-8")) == {"t": "invoke", "id": "é"}
    assert frame[8 + meta_len :] == b"\x00\x01body"
    assert body_len == 6


def test_round_trip_several_frames():
    data = (
        encode_frame({"t": "invoke", "id": "1", "client_context": None}, b'{"a":1}')
        + encode_frame({"t": "invoke", "id": "2"}, b"")
        + encode_frame({"t": "x", "n": [1, 2, 3]}, bytes(range(256)) * 100)
    )

    async def go():
        reader = reader_with(data)
        out = [await read_frame(reader, max_body=1 << 20) for _ in range(3)]
        with pytest.raises(FrameEOF):
            await read_frame(reader, max_body=1 << 20)
        return out

    out = run(go())
    assert out[0] == ({"t": "invoke", "id": "1", "client_context": None}, b'{"a":1}')
    assert out[1] == ({"t": "invoke", "id": "2"}, b"")
    assert out[2] == ({"t": "x", "n": [1, 2, 3]}, bytes(range(256)) * 100)


def test_frame_split_across_reads():
    frame = encode_frame({"t": "result", "id": "r", "ok": True}, b"payload" * 1000)

    async def go():
        reader = asyncio.StreamReader()

        async def feed():
            for i in range(0, len(frame), 7):
                reader.feed_data(frame[i : i + 7])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.ensure_future(feed())
        result = await read_frame(reader, max_body=1 << 20)
        await feeder
        return result

    assert run(go()) == ({"t": "result", "id": "r", "ok": True}, b"payload" * 1000)


def test_clean_eof():
    async def go():
        await read_frame(reader_with(b""), max_body=10)

    with pytest.raises(FrameEOF) as info:
        run(go())
    assert isinstance(info.value, FrameError)
    # callers written against StreamReader.readexactly still see their exception
    assert isinstance(info.value, asyncio.IncompleteReadError)
    assert info.value.partial == b""


@pytest.mark.parametrize(
    "cut, part",
    [(3, "header"), (8 + 2, "meta"), (None, "body")],
)
def test_eof_mid_frame(cut, part):
    frame = encode_frame({"t": "invoke", "id": "abc"}, b"0123456789")
    data = frame[:-4] if cut is None else frame[:cut]

    async def go():
        await read_frame(reader_with(data), max_body=100)

    with pytest.raises(FrameTruncated) as info:
        run(go())
    assert info.value.part == part
    assert "mid-frame" in str(info.value)
    assert info.value.got < info.value.expected
    assert isinstance(info.value, asyncio.IncompleteReadError)
    assert len(info.value.partial) == info.value.got


def test_oversize_body_rejected_before_reading_it():
    header = struct.pack("!II", 2, 10_000_000)

    async def go():
        # only the header is available: the reader must not wait for the body
        reader = reader_with(header + b"{}", eof=False)
        await asyncio.wait_for(read_frame(reader, max_body=6_300_000), timeout=2)

    with pytest.raises(FrameTooLarge) as info:
        run(go())
    assert info.value.part == "body"
    assert info.value.size == 10_000_000
    assert info.value.limit == 6_300_000
    assert "exceeds" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_body_at_limit_accepted():
    async def go():
        return await read_frame(reader_with(encode_frame({"t": "x"}, b"a" * 100)), max_body=100)

    assert run(go()) == ({"t": "x"}, b"a" * 100)


def test_oversize_meta_rejected():
    async def go():
        reader = reader_with(struct.pack("!II", 5_000_000, 0), eof=False)
        await asyncio.wait_for(read_frame(reader, max_body=10), timeout=2)

    with pytest.raises(FrameTooLarge) as info:
        run(go())
    assert info.value.part == "meta"


@pytest.mark.parametrize("meta", [b"not json", b"[1,2]", b'"str"'])
def test_bad_meta(meta):
    async def go():
        await read_frame(reader_with(struct.pack("!II", len(meta), 0) + meta), max_body=10)

    with pytest.raises(FrameDecodeError):
        run(go())


def test_write_frame_over_socketpair():
    async def go():
        a, b = socket.socketpair()
        reader_a, writer_a = await asyncio.open_unix_connection(sock=a)
        reader_b, writer_b = await asyncio.open_unix_connection(sock=b)
        big = os.urandom(1 << 20)

        async def send():
            await write_frame(writer_a, {"t": "invoke", "id": "big"}, big)
            await write_frame(writer_a, {"t": "invoke", "id": "empty"})
            writer_a.close()

        async def receive():
            return (
                await read_frame(reader_b, max_body=2 << 20),
                await read_frame(reader_b, max_body=2 << 20),
            )

        # concurrently: the reader's buffer is bounded, so drain() needs a consumer
        _, (first, second) = await asyncio.wait_for(asyncio.gather(send(), receive()), 10)
        with pytest.raises(FrameEOF):
            await read_frame(reader_b, max_body=10)
        writer_b.close()
        return first, second, big

    first, second, big = run(go())
    assert first == ({"t": "invoke", "id": "big"}, big)
    assert second == ({"t": "invoke", "id": "empty"}, b"")


def test_interop_with_bootstrap(tmp_path):
    """The asyncio codec and the worker's stdlib codec speak the same framing."""
    (tmp_path / "app.py").write_text(
        "def handler(event, context):\n    return {'echo': event, 'id': context.aws_request_id}\n"
    )

    async def go():
        parent, child = socket.socketpair()
        child_fd = child.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-s", str(BOOTSTRAP)],
            cwd=str(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": str(tmp_path)},
            close_fds=False,
            preexec_fn=lambda: os.dup2(child_fd, 3),
        )
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        try:
            ready = await asyncio.wait_for(read_frame(reader, max_body=1024), 10)
            meta = {
                "t": "invoke",
                "id": "req-9",
                "deadline_ms": int(time.time() * 1000) + 3000,
                "arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                "client_context": None,
                "identity": None,
                "trace_id": None,
            }
            await write_frame(writer, meta, "{\"k\": \"ü\"}".encode())
            result = await asyncio.wait_for(read_frame(reader, max_body=6_400_000), 10)
        finally:
            writer.close()
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 5)
        return ready, result, code

    ready, result, code = run(go())
    assert ready[0]["t"] == "ready"
    assert result[0]["t"] == "result" and result[0]["id"] == "req-9" and result[0]["ok"] is True
    assert json.loads(result[1]) == {"echo": {"k": "ü"}, "id": "req-9"}
    assert code == 0


# ---- the incremental parser the environment's link uses ------------------------------------
def test_parser_returns_whole_frames_however_the_bytes_are_split():
    from squall.runtimes.python.frames import FrameParser

    data = (
        encode_frame({"t": "result", "id": "1", "ok": True}, b'{"a":1}')
        + encode_frame({"t": "result", "id": "2"}, b"")
        + encode_frame({"t": "x"}, bytes(range(256)) * 40)
    )
    for step in (1, 3, 7, 64, len(data)):
        parser = FrameParser(max_body=1 << 20)
        frames = []
        for i in range(0, len(data), step):
            frames.extend(parser.feed(data[i : i + step]))
        assert [m.get("id") for m, _ in frames] == ["1", "2", None]
        assert frames[0][1] == b'{"a":1}' and frames[1][1] == b"" and frames[2][1] == bytes(range(256)) * 40
        assert parser.pending == 0


def test_parser_refuses_an_oversized_frame_as_soon_as_its_header_is_in():
    from squall.runtimes.python.frames import FrameParser

    parser = FrameParser(max_body=10)
    header_only = struct.pack("!II", 2, 11)
    with pytest.raises(FrameTooLarge) as info:
        parser.feed(header_only)
    assert info.value.part == "body" and info.value.size == 11
    with pytest.raises(FrameTooLarge):
        FrameParser(max_body=10, max_meta=4).feed(struct.pack("!II", 5, 0))


def test_parser_rejects_meta_that_is_not_a_json_object():
    from squall.runtimes.python.frames import FrameParser

    with pytest.raises(FrameDecodeError):
        FrameParser(1 << 20).feed(struct.pack("!II", 3, 0) + b"[1]")
    with pytest.raises(FrameDecodeError):
        FrameParser(1 << 20).feed(struct.pack("!II", 3, 0) + b"{x}")
