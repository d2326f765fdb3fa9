"""The front end ↔ node agent channel (squall/cluster/wire.py) and what crosses it."""

from __future__ import annotations

import asyncio

import pytest

from squall.cluster import wire
from squall.cluster.node_agent import ShippedLogs, _Connection
from squall.cluster.ray_executor import rebuild_error
from squall.errors import ResourceConflict, ServiceError, TooManyRequests


async def _pair(agent_key: bytes, front_end_key: bytes):
    """An agent-side server doing the handshake, and a front end answering it."""
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()

    async def serve(reader, writer):
        try:
            await wire.challenge(reader, writer, agent_key, {"node": "n1"})
            header, body = await wire.read_frame(reader)
            writer.write(wire.encode({"id": header["id"], "echo": header["op"]}, body[::-1]))
            outcome.set_result("served")
        except wire.ChannelClosed as exc:
            outcome.set_result(f"refused: {exc}")
        finally:
            await asyncio.sleep(0.05)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        hello = await wire.answer(reader, writer, front_end_key)
        writer.write(wire.encode({"op": "invoke", "id": 7}, b"abc"))
        header, body = await wire.read_frame(reader)
        return hello, header, body, await outcome
    except wire.ChannelClosed:
        return None, None, None, await outcome
    finally:
        writer.close()
        server.close()


def test_a_front_end_that_knows_the_key_is_served():
    hello, header, body, outcome = asyncio.run(_pair(b"k" * 32, b"k" * 32))
    assert hello == {"node": "n1"} and header == {"id": 7, "echo": "invoke"} and body == b"cba"
    assert outcome == "served"


def test_a_stranger_is_refused_before_any_request():
    hello, _, _, outcome = asyncio.run(_pair(b"k" * 32, b"x" * 32))
    assert hello is None
    assert outcome.startswith("refused: the front end did not prove")


def test_frames_too_large_or_not_objects_close_the_channel():
    async def feed(data: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.read_frame(reader)

    with pytest.raises(wire.ChannelClosed, match="too large"):
        asyncio.run(feed(b"\xff\xff\xff\xff\x00\x00\x00\x00"))
    with pytest.raises(wire.ChannelClosed, match="not an object"):
        asyncio.run(feed(wire.encode([1, 2])))  # type: ignore[arg-type]
    with pytest.raises(wire.ChannelClosed):
        asyncio.run(feed(wire.encode({"id": 1}, b"body")[:-2]))  # cut short


def test_errors_cross_as_the_same_lambda_error():
    throttled = rebuild_error({"type": "TooManyRequests", "message": "Rate Exceeded.",
                               "fields": {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}})
    assert isinstance(throttled, TooManyRequests) and throttled.reason.startswith("Reserved")
    assert throttled.fields["Reason"] == throttled.reason and throttled.message == "Rate Exceeded."
    conflict = rebuild_error({"type": "ResourceConflict", "message": "Pending", "fields": {}})
    assert isinstance(conflict, ResourceConflict) and conflict.code == "ResourceConflictException"
    for odd in ("ChannelClosed", "object", "Nope"):  # not a LambdaError: a ServiceException
        assert type(rebuild_error({"type": odd, "message": "m"})) is ServiceError


class _Writer:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.frames.append(data)


def test_log_lines_go_to_the_front_end_that_invoked_the_environment():
    logs = ShippedLogs()
    logs.append("/aws/lambda/f", "s1", [(1, "INIT_START")])  # its init: no front end yet
    logs.flush()
    first, second = _Connection(_Writer()), _Connection(_Writer())  # type: ignore[arg-type]
    logs.owner["s1"] = first
    logs.append("/aws/lambda/f", "s1", [(2, "START")])
    logs.flush("s1")
    assert len(first.writer.frames) == 1 and b"INIT_START" in first.writer.frames[0] and b"START" in first.writer.frames[0]
    logs.owner["s1"] = second  # invoked through another front end next
    logs.append("/aws/lambda/f", "s1", [(3, "END")])
    logs.flush()
    assert len(first.writer.frames) == 1 and b"END" in second.writer.frames[0]
    logs.forget("s1")
    logs.append("/aws/lambda/f", "s1", [(4, "late")])
    logs.flush()
    assert len(second.writer.frames) == 1  # a stopped environment's stream has no owner


def test_an_environment_that_never_served_gives_its_lines_to_the_front_end_that_asked():
    logs = ShippedLogs()
    logs.append("/aws/lambda/f", "2026/12/06/[$LATEST]abc123", [(1, "INIT_REPORT … Status: error")])
    asker = _Connection(_Writer())  # type: ignore[arg-type]
    logs.adopt_unowned(asker)
    assert len(asker.writer.frames) == 1 and b"INIT_REPORT" in asker.writer.frames[0]
    logs.append("/aws/lambda/f", "2026/12/06/[$LATEST]def456", [(2, "stray")])
    logs.forget_environment("def456")  # stopped: nothing kept for it
    logs.adopt_unowned(asker)
    assert len(asker.writer.frames) == 1
