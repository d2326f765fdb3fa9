"""AWS event-stream messages (``application/vnd.amazon.eventstream``), the framing of
InvokeWithResponseStream's body, as botocore's ``botocore/eventstream.py`` reads it.

A message::

    total length (uint32) · headers length (uint32) · CRC32 of those 8 bytes (uint32)
    headers: name length (uint8) · name · value type (uint8; 7 = string) · value length (uint16) · value
    payload
    CRC32 of everything before it (uint32)

All integers big-endian; CRC32 is zlib's. Events carry the headers ``:event-type`` (the member of
the model's event-stream union), ``:content-type`` and ``:message-type`` (``event``). An event
whose member has an ``eventpayload`` blob (``PayloadChunk.Payload``) carries those bytes as its
payload; any other event (``InvokeComplete``) its members as a JSON object.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

_STRING = 7
MAX_PAYLOAD = 16 * 1024 * 1024  # botocore refuses payloads over 24 MB; longer bytes go in several events


def header_block(headers: dict[str, str]) -> bytes:
    """The encoded headers of a message (string values)."""
    parts = []
    for name, value in headers.items():
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        parts.append(struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", _STRING, len(raw_value)) + raw_value)
    return b"".join(parts)


def message(headers: bytes, payload: bytes) -> bytes:
    """One message from its encoded headers and its payload."""
    prelude = struct.pack("!II", 12 + len(headers) + len(payload) + 4, len(headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(headers, zlib.crc32(prelude)))
    return b"".join((prelude, headers, payload, struct.pack("!I", crc)))


def event_headers(event_type: str, content_type: str) -> bytes:
    return header_block({":event-type": event_type, ":content-type": content_type, ":message-type": "event"})


_PAYLOAD_CHUNK = event_headers("PayloadChunk", "application/octet-stream")
_INVOKE_COMPLETE = event_headers("InvokeComplete", "application/json")


def payload_chunks(data: bytes) -> bytes:
    """``PayloadChunk`` events carrying ``data`` (one, unless it is over ``MAX_PAYLOAD``)."""
    if len(data) <= MAX_PAYLOAD:
        return message(_PAYLOAD_CHUNK, data)
    view = memoryview(data)
    return b"".join(message(_PAYLOAD_CHUNK, bytes(view[i:i + MAX_PAYLOAD])) for i in range(0, len(data), MAX_PAYLOAD))


def invoke_complete(error_code: str | None = None, error_details: str | None = None, log_result: str | None = None) -> bytes:
    """The ``InvokeComplete`` event that ends the stream (members left out when absent)."""
    document: dict[str, Any] = {}
    if error_code is not None:
        document["ErrorCode"] = error_code
    if error_details is not None:
        document["ErrorDetails"] = error_details
    if log_result is not None:
        document["LogResult"] = log_result
    return message(_INVOKE_COMPLETE, orjson.dumps(document))
