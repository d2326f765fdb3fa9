"""The built-in Python runtime's link (squall/environments/runtime_link.py: FramesLink) over a real socketpair."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from squall.invoke.invocation import MAX_RESPONSE_PAYLOAD, InvocationRequest
from squall.environments.runtime_link import FramesLink, LinkBroken, ResponseTooLarge
from squall.runtimes.python.frames import FrameParser, encode_frame

REQUEST = InvocationRequest(request_id="r-1", payload=b'{"n": 1}', invoked_arn="arn:aws:lambda:us-east-1:123456789012:function:f")


async def linked() -> tuple[FramesLink, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    return await FramesLink.open(ours), theirs


async def ready_link() -> tuple[FramesLink, socket.socket]:
    link, runtime = await linked()
    runtime.sendall(encode_frame({"t": "ready"}))
    assert (await link.init()).ok
    return link, runtime


async def invoke_sent(link: FramesLink, runtime: socket.socket) -> "asyncio.Future":
    """Start an invoke and wait until the runtime has its frame; the future holds the reply."""
    answer = asyncio.ensure_future(link.invoke(REQUEST, 0, timeout=5))
    await receive_frame(runtime)
    return answer


async def receive_frame(sock: socket.socket) -> tuple[dict, bytes]:
    loop = asyncio.get_running_loop()
    parser = FrameParser(1 << 24)
    while True:
        frames = parser.feed(await loop.sock_recv(sock, 65536))
        if frames:
            return frames[0]


def test_init_ready_then_an_invoke_round_trip():
    async def main() -> None:
        link, runtime = await linked()
        runtime.sendall(encode_frame({"t": "ready", "max_rss_kb": 7}))
        ready = await link.init()
        assert ready.ok and ready.max_rss_kb == 7
        answer = asyncio.ensure_future(link.invoke(REQUEST, 123, timeout=5))
        meta, body = await receive_frame(runtime)
        assert meta["t"] == "invoke" and meta["id"] == "r-1" and meta["deadline_ms"] == 123 and body == b'{"n": 1}'
        # the reply arrives in pieces
        reply = encode_frame({"t": "result", "ok": True, "content_type": "application/unknown", "max_rss_kb": 9}, b"done")
        runtime.sendall(reply[:5])
        await asyncio.sleep(0.01)
        assert not answer.done()
        runtime.sendall(reply[5:])
        result = await answer
        assert (result.ok, result.body, result.content_type, result.max_rss_kb) == (True, b"done", "application/unknown", 9)
        link.close()
        runtime.close()

    asyncio.run(main())


def test_init_error_is_returned_not_raised():
    async def main() -> None:
        link, runtime = await linked()
        runtime.sendall(encode_frame({"t": "init_error"}, b'{"errorType":"Runtime.ImportModuleError"}'))
        reply = await link.init()
        assert not reply.ok and b"ImportModuleError" in reply.body
        runtime.close()

    asyncio.run(main())


def test_a_runtime_slower_than_the_timeout_raises_timeout_error():
    async def main() -> None:
        link, runtime = await ready_link()
        with pytest.raises(TimeoutError):
            await link.invoke(REQUEST, 0, timeout=0.05)
        runtime.close()

    asyncio.run(main())


def test_a_runtime_that_goes_away_breaks_the_link():
    async def main() -> None:
        link, runtime = await ready_link()
        answer = await invoke_sent(link, runtime)
        runtime.sendall(struct.pack("!II", 2, 10) + b"{}abc")  # then dies mid-frame
        runtime.close()
        with pytest.raises(LinkBroken, match="mid-frame"):
            await answer
        with pytest.raises(LinkBroken):  # and stays broken
            await link.invoke(REQUEST, 0, timeout=5)

    asyncio.run(main())


def test_a_runtime_that_dies_during_init_breaks_the_link():
    async def main() -> None:
        link, runtime = await linked()
        runtime.close()
        with pytest.raises(LinkBroken, match="between frames"):
            await link.init()

    asyncio.run(main())


def test_an_oversized_response_is_refused_from_its_header():
    async def main() -> None:
        link, runtime = await ready_link()
        answer = await invoke_sent(link, runtime)
        runtime.sendall(struct.pack("!II", 2, MAX_RESPONSE_PAYLOAD + 65537) + b"{}")
        with pytest.raises(ResponseTooLarge):
            await answer
        runtime.close()

    asyncio.run(main())


def test_a_response_just_over_the_limit_is_a_function_error():
    async def main() -> None:
        link, runtime = await ready_link()
        answer = await invoke_sent(link, runtime)
        await asyncio.get_running_loop().sock_sendall(
            runtime, encode_frame({"t": "result", "ok": True}, b"x" * (MAX_RESPONSE_PAYLOAD + 1))
        )
        reply = await answer
        assert not reply.ok and b"Function.ResponseSizeTooLarge" in reply.body
        runtime.close()

    asyncio.run(main())
