"""The data channel between a front end and a node agent: frames over one TCP connection.

A frame is a header (JSON) and a body (bytes, e.g. an invocation's payload)::

    >II  header length, body length   then the header, then the body

Requests carry an ``id``; the agent answers each with frames carrying the same ``id``, in any
order, so one connection carries many invocations at once. The agent also sends frames of its
own (``logs``: function log lines for the front end's log store).

The connection is authenticated before anything else: the agent sends a nonce, the front end
answers with its HMAC under the cluster's server key (the database's ``server_key``, which
every front end and agent reads), and only then does the agent read requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import struct
from typing import Any

import orjson

_HEAD = struct.Struct(">II")
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20  # a 6 MB payload, a streamed chunk, a batch of log lines: well within this


class ChannelClosed(ConnectionError):
    """The other end went away (or sent something that is not a frame)."""


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return _HEAD.pack(len(head), len(body)) + head + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    try:
        size_head, size_body = _HEAD.unpack(await reader.readexactly(_HEAD.size))
        if size_head > MAX_HEADER or size_body > MAX_BODY:
            raise ChannelClosed(f"frame too large ({size_head} + {size_body} bytes)")
        header = orjson.loads(await reader.readexactly(size_head))
        body = await reader.readexactly(size_body) if size_body else b""
    except (asyncio.IncompleteReadError, ConnectionError, orjson.JSONDecodeError) as exc:
        raise ChannelClosed(str(exc) or type(exc).__name__) from None
    if not isinstance(header, dict):
        raise ChannelClosed("a frame's header is not an object")
    return header, body


def proof(key: bytes, nonce: str) -> str:
    return hmac.new(key, b"squall-node-agent:" + nonce.encode(), hashlib.sha256).hexdigest()


async def challenge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes,
                    hello: dict[str, Any], timeout: float = 10.0) -> None:
    """The agent's side of the handshake: raises :class:`ChannelClosed` unless the peer knows ``key``."""
    nonce = secrets.token_hex(16)
    writer.write(encode({"nonce": nonce}))
    header, _ = await asyncio.wait_for(read_frame(reader), timeout)
    if not hmac.compare_digest(str(header.get("proof", "")), proof(key, nonce)):
        raise ChannelClosed("the front end did not prove it knows the cluster's key")
    writer.write(encode(hello))


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes,
                 timeout: float = 10.0) -> dict[str, Any]:
    """The front end's side: the agent's hello (its node, its capacity)."""
    header, _ = await asyncio.wait_for(read_frame(reader), timeout)
    writer.write(encode({"proof": proof(key, str(header.get("nonce", "")))}))
    hello, _ = await asyncio.wait_for(read_frame(reader), timeout)
    return hello
