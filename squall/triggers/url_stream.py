"""Function URLs in ``RESPONSE_STREAM`` mode: the function's bytes reach the client as it writes
them (``Transfer-Encoding: chunked``), as on Lambda.

* A function that streams with ``awslambda.HttpResponseStream.from(stream, {statusCode, headers,
  cookies})`` sends the content type ``application/vnd.awslambda.http-integration-response``: its
  bytes start with that JSON, then 8 NUL bytes, then the body. The JSON gives the status, the
  headers and the cookies (``Set-Cookie``); a missing status is 200 and a missing content type
  ``application/octet-stream``.
* Any other stream is sent as it is: status 200 and the content type the runtime sent.
* A function that answers in one piece (the Python runtime; a Node.js handler without
  ``streamifyResponse``) has its answer sent as it is, in one chunk, with status 200 and the
  answer's content type: in this mode Lambda does not read ``statusCode``/``body`` from it.
* Failures before the first byte are answered as in ``BUFFERED`` mode (429, 502, 504). A function
  that fails after its response began can only stop it: the body ends there (the error is in the
  function's log; InvokeWithResponseStream callers get it in ``InvokeComplete``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, AsyncIterator

import orjson

from squall.engine.engine import InvokeOptions
from squall.errors import LambdaError, ResourceNotFound, TooManyRequests
from squall.invoke.invocation import InvocationResult
from squall.invoke.streaming import HTTP_INTEGRATION_RESPONSE, StreamedInvocation

if TYPE_CHECKING:
    from squall.engine.engine import Engine
    from squall.triggers.function_urls import FunctionUrl

log = logging.getLogger("squall.urls")

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, "bytes | AsyncIterator[bytes]"]

DELIMITER = b"\x00" * 8
MAX_PRELUDE = 1 << 20  # the JSON before the delimiter (status, headers, cookies)
_NOT_FORWARDED = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def _message(status: int, text: str) -> Answer:
    return status, [(b"content-type", b"application/json")], orjson.dumps({"Message": text})


def _failed(result: InvocationResult) -> Answer:
    if result.error_type == "Sandbox.Timedout":
        return _message(504, "Gateway Timeout")
    return _message(502, "Internal Server Error")


async def invoke_streaming(engine: Engine, url: FunctionUrl, payload: bytes, request_id: str) -> Answer:
    """The answer of a RESPONSE_STREAM URL: status and headers, and the body as it comes."""
    streamed = engine.invoke_stream(url.ref, payload, InvokeOptions(request_id))
    try:
        streaming = await streamed.begin()
    except TooManyRequests:
        return _message(429, "Rate Exceeded.")
    except ResourceNotFound:
        return _message(404, "Not Found")
    except LambdaError as error:
        log.info("function URL %s: %s: %s", url.record.url_id, error.code, error.message)
        return _message(502, "Internal Server Error")
    if not streaming:
        result = await streamed.result()
        assert result is not None
        if result.function_error:
            return _failed(result)
        return 200, [(b"content-type", result.content_type.encode("latin-1"))], _once(result.payload)
    content_type = streamed.stream.content_type or "application/octet-stream"
    if content_type.split(";", 1)[0].strip().lower() != HTTP_INTEGRATION_RESPONSE:
        return 200, [(b"content-type", content_type.encode("latin-1"))], _body(streamed, b"", url)
    prelude = bytearray()
    try:
        while (end := prelude.find(DELIMITER)) < 0 and len(prelude) <= MAX_PRELUDE:
            data = await streamed.stream.read()
            if data is None:
                break
            prelude += data
    except BaseException:  # the client went away meanwhile
        streamed.abandon()
        raise
    if end < 0:  # ended (or went on too long) before the delimiter
        streamed.abandon()
        if streamed.stream.closed:
            result = await streamed.result()
            if result is not None and result.function_error:
                return _failed(result)
        log.info("function URL %s: the streamed response has no complete prelude (JSON, then 8 NUL bytes)", url.record.url_id)
        return _message(502, "Internal Server Error")
    try:
        status, headers = read_prelude(bytes(prelude[:end]))
    except ValueError as error:
        streamed.abandon()
        log.info("function URL %s: the streamed response's prelude cannot be used: %s", url.record.url_id, error)
        return _message(502, "Internal Server Error")
    return status, headers, _body(streamed, bytes(prelude[end + len(DELIMITER):]), url)


def read_prelude(data: bytes) -> tuple[int, Headers]:
    """Status and headers from an http-integration-response prelude ``{statusCode, headers, cookies}``."""
    try:
        document = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    status = document.get("statusCode", 200)
    if isinstance(status, str) and status.isascii() and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"statusCode must be an integer from 100 to 599, not {status!r}")
    headers: Headers = []
    given = document.get("headers")
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise ValueError("headers must be an object")
    for name, value in given.items():
        values = value if isinstance(value, list) else [value]
        for one in values:
            if isinstance(one, (dict, list)) or one is None:
                raise ValueError(f"header {name!r} must be a string")
            text = one if isinstance(one, str) else orjson.dumps(one).decode()
            key = str(name).lower().encode("latin-1", "replace")
            if key not in _NOT_FORWARDED:
                headers.append((key, text.encode("latin-1", "replace")))
    cookies = document.get("cookies")
    cookies = [] if cookies is None else cookies
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise ValueError("cookies must be an array of strings")
    if not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/octet-stream"))
    headers.extend((b"set-cookie", c.encode("latin-1", "replace")) for c in cookies)
    return status, headers


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _body(streamed: StreamedInvocation, first: bytes, url: FunctionUrl) -> AsyncIterator[bytes]:
    finished = False
    try:
        if first:
            yield first
        async for chunk in streamed.chunks():
            yield chunk
        finished = True
        try:
            result = await streamed.result()
        except Exception as error:  # noqa: BLE001 - logged; the body is complete as far as it went
            log.warning("function URL %s: the streamed invocation failed: %r", url.record.url_id, error)
            return
        if result is not None and result.function_error:
            log.info("function URL %s: the function failed after its response began (%s): the body ends there",
                     url.record.url_id, result.error_type)
    finally:
        if not finished:  # the client went away: the function runs on, its bytes are dropped
            streamed.abandon()

