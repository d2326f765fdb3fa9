"""Server-side asyncio codec for the runtime control channel.

A frame, in both directions, is::

    struct.pack("!II", len(meta), len(body)) + meta + body

where ``meta`` is a UTF-8 JSON object and ``body`` raw bytes.  The worker side
of the same framing lives in ``bootstrap.py`` (stdlib only, so it cannot import
this module).
"""

from __future__ import annotations

import asyncio
import struct

import orjson

HEADER = struct.Struct("!II")
HEADER_SIZE = HEADER.size

# meta objects are small (ids, ARNs, a client context of at most a few KB).
DEFAULT_MAX_META = 1024 * 1024


class FrameError(Exception):
    """The control channel carried something that is not a valid frame."""


# The EOF errors are also ``asyncio.IncompleteReadError`` (hence ``EOFError``)
# and the size / decode errors also ``ValueError``, so callers written against
# plain ``StreamReader.readexactly`` semantics keep working.


class FrameEOF(FrameError, asyncio.IncompleteReadError):
    """The peer closed the channel cleanly, between two frames."""

    def __init__(self, message: str = "control channel closed"):
        Exception.__init__(self, message)
        self.partial = b""
        self.expected = HEADER_SIZE


class FrameTruncated(FrameError, asyncio.IncompleteReadError):
    """The peer closed the channel in the middle of a frame."""

    def __init__(self, part: str, expected: int, partial: bytes):
        Exception.__init__(
            self,
            f"control channel closed mid-frame: got {len(partial)} of {expected} bytes of the {part}",
        )
        self.part = part
        self.partial = partial
        self.expected = expected
        self.got = len(partial)


class FrameTooLarge(FrameError, ValueError):
    """A frame announced a meta or body larger than allowed.

    The stream is left positioned after the header: it cannot be used for
    further frames and the peer should be discarded.
    """

    def __init__(self, part: str, size: int, limit: int):
        Exception.__init__(self, f"frame {part} of {size} bytes exceeds the limit of {limit} bytes")
        self.part = part
        self.size = size
        self.limit = limit


class FrameDecodeError(FrameError, ValueError):
    """The meta part is not a JSON object."""


def encode_header(meta: dict, body_len: int) -> bytes:
    """The header and meta of a frame whose body (``body_len`` bytes) follows."""
    meta_bytes = orjson.dumps(meta)
    return HEADER.pack(len(meta_bytes), body_len) + meta_bytes


def encode_frame(meta: dict, body: bytes = b"") -> bytes:
    return encode_header(meta, len(body)) + body


async def _read_exactly(reader: asyncio.StreamReader, n: int, part: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise FrameTruncated(part, n, e.partial) from None


async def read_frame(
    reader: asyncio.StreamReader, max_body: int, max_meta: int = DEFAULT_MAX_META
) -> tuple[dict, bytes]:
    """Read one frame.

    Raises :class:`FrameEOF` when the stream ends before a new frame starts,
    :class:`FrameTruncated` when it ends inside one, :class:`FrameTooLarge`
    when the announced meta or body exceeds its limit and
    :class:`FrameDecodeError` when the meta is not a JSON object.
    """
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise FrameEOF("control channel closed") from None
        raise FrameTruncated("header", HEADER_SIZE, e.partial) from None
    meta_len, body_len = HEADER.unpack(header)
    if meta_len > max_meta:
        raise FrameTooLarge("meta", meta_len, max_meta)
    if body_len > max_body:
        raise FrameTooLarge("body", body_len, max_body)
    meta_bytes = await _read_exactly(reader, meta_len, "meta") if meta_len else b""
    body = await _read_exactly(reader, body_len, "body") if body_len else b""
    meta = _decode_meta(meta_bytes)
    return meta, body


class FrameParser:
    """Incremental decoder: feed bytes as they arrive, take whole frames out.

    The limits are checked as soon as a header is in, so an oversized frame is refused
    before its body is buffered.  After an error the parser must not be fed again.
    """

    def __init__(self, max_body: int, max_meta: int = DEFAULT_MAX_META) -> None:
        self.max_body = max_body
        self.max_meta = max_meta
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[dict, bytes]]:
        buf = self._buf
        buf += data
        frames = []
        while len(buf) >= HEADER_SIZE:
            meta_len, body_len = HEADER.unpack_from(buf)
            if meta_len > self.max_meta:
                raise FrameTooLarge("meta", meta_len, self.max_meta)
            if body_len > self.max_body:
                raise FrameTooLarge("body", body_len, self.max_body)
            end = HEADER_SIZE + meta_len + body_len
            if len(buf) < end:
                break
            frames.append((_decode_meta(bytes(buf[HEADER_SIZE:HEADER_SIZE + meta_len])), bytes(buf[HEADER_SIZE + meta_len:end])))
            del buf[:end]
        return frames


def _decode_meta(meta_bytes: bytes) -> dict:
    if not meta_bytes:
        return {}
    try:
        meta = orjson.loads(meta_bytes)
    except orjson.JSONDecodeError as e:
        raise FrameDecodeError(f"frame meta is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise FrameDecodeError(f"frame meta is a JSON {type(meta).__name__}, not an object")
    return meta


async def write_frame(writer: asyncio.StreamWriter, meta: dict, body: bytes = b"") -> None:
    """Write one frame and wait for the transport to drain."""
    writer.write(encode_header(meta, len(body)))
    if body:
        writer.write(body)
    await writer.drain()
