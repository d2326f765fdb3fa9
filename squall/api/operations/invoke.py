"""Invoke (RequestResponse, Event, DryRun), InvokeWithResponseStream and the deprecated InvokeAsync."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, AsyncIterator

import orjson

from squall.api import eventstream
from squall.api.middleware import Request
from squall.api.operations.base import Operations, Params
from squall.async_invoke.pipeline import MAX_EVENT_PAYLOAD, MAX_INVOKE_ASYNC_PAYLOAD
from squall.engine.engine import InvokeOptions
from squall.errors import InvalidParameterValue, InvalidRequestContent, LambdaError, RequestEntityTooLarge
from squall.invoke.invocation import MAX_SYNC_PAYLOAD, InvocationResult
from squall.invoke.streaming import StreamedInvocation

log = logging.getLogger("squall.api")

CLIENT_CONTEXT_MAX = 3583


class InvokeOperations(Operations):
    async def Invoke(self, p: Params, request: Request) -> dict[str, Any]:
        ref = self.ref(p)
        invocation_type = p.get("InvocationType", "RequestResponse")
        payload: bytes = p.get("Payload") or b"{}"  # no payload: the function gets {} (every runtime parses it)
        trace = request.headers.get("x-amzn-trace-id") or None  # an SDK inside a function sends its own
        if invocation_type == "Event":
            if len(payload) > MAX_EVENT_PAYLOAD:
                raise RequestEntityTooLarge(
                    f"{len(payload)} byte payload is too large for the Event invocation type (limit {MAX_EVENT_PAYLOAD} bytes)"
                )
            check_json(payload)
            # 202 only once the event is committed; the request id is the event's.
            await self.engine.accept_event(ref, payload, request.request_id, trace)
            return {"StatusCode": 202}
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise RequestEntityTooLarge(f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation")
        check_json(payload)
        options = InvokeOptions(
            request_id=request.request_id,
            client_context=client_context(p.get("ClientContext")),
            dry_run=invocation_type == "DryRun",
            trace=trace,
            log_tail=p.get("LogType") == "Tail",
        )
        result = await self.engine.invoke(ref, payload, options)
        if result is None:
            return {"StatusCode": 204}
        output: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": result.payload,
            "ExecutedVersion": result.executed_version,
            "FunctionError": result.function_error,
        }
        if p.get("LogType") == "Tail":
            output["LogResult"] = base64.b64encode(result.log_tail).decode()
        return output

    async def InvokeWithResponseStream(self, p: Params, request: Request) -> dict[str, Any]:
        """A synchronous invoke whose answer is an event stream: ``PayloadChunk`` events as the
        function writes (one for a function that does not stream), then ``InvokeComplete`` with
        the error, if any, and the log tail. The status is 200 even when the function fails."""
        ref = self.ref(p)
        payload: bytes = p.get("Payload") or b""
        if len(payload) > MAX_SYNC_PAYLOAD:
            raise RequestEntityTooLarge(
                f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeWithResponseStream operation"
            )
        check_json(payload)
        options = InvokeOptions(
            request_id=request.request_id,
            client_context=client_context(p.get("ClientContext")),
            dry_run=p.get("InvocationType") == "DryRun",
            log_tail=p.get("LogType") == "Tail",
        )
        streamed = self.engine.invoke_stream(ref, payload, options)
        if await streamed.begin():
            version = streamed.stream.executed_version
        else:
            result = await streamed.result()
            if result is None:
                return {"StatusCode": 204}
            version = result.executed_version
        return {
            "StatusCode": 200,
            "ExecutedVersion": version,
            "ResponseStreamContentType": "application/vnd.amazon.eventstream",
            "EventStream": _events(streamed, p.get("LogType") == "Tail", request.request_id),
        }

    async def InvokeAsync(self, p: Params, request: Request) -> dict[str, Any]:
        """The deprecated asynchronous invoke (256 KB events); answers 202 ``{"Status": 202}``."""
        ref = self.arns.parse(p["FunctionName"])
        payload: bytes = p.get("InvokeArgs") or b""
        if len(payload) > MAX_INVOKE_ASYNC_PAYLOAD:
            raise RequestEntityTooLarge(f"Request must be smaller than {MAX_INVOKE_ASYNC_PAYLOAD} bytes for the InvokeAsync operation")
        check_json(payload)
        await self.engine.accept_event(ref, payload, request.request_id)
        return {"Status": 202}


async def _events(streamed: StreamedInvocation, tail: bool, request_id: str) -> AsyncIterator[bytes]:
    """The encoded events of a streamed invocation, as its bytes arrive."""
    finished = False
    try:
        async for chunk in streamed.chunks():
            yield eventstream.payload_chunks(chunk)
        try:
            result = await streamed.result()
        except LambdaError as error:  # cannot happen once it ran; said rather than dropped
            finished = True
            yield eventstream.invoke_complete(error.code, error.message)
            return
        except Exception:
            log.exception("request %s: the streamed invocation failed", request_id)
            finished = True
            yield eventstream.invoke_complete("ServiceException", f"Squall hit an internal error; see the server log for request {request_id}.")
            return
        finished = True
        assert result is not None
        if result.payload and not result.function_error and not streamed.stream.opened:
            yield eventstream.payload_chunks(result.payload)  # a function that does not stream: one chunk
        code, details = _error_of(result)
        logs = base64.b64encode(result.log_tail).decode() if tail else None
        yield eventstream.invoke_complete(code, details, logs)
    finally:
        if not finished:  # the client went away: the function runs on, its bytes are dropped
            streamed.abandon()


def _error_of(result: InvocationResult) -> tuple[str | None, str | None]:
    """InvokeComplete's ErrorCode (the error's type) and ErrorDetails (its message)."""
    if not result.function_error:
        return None, None
    code = result.error_type or "Unknown"
    try:
        document = orjson.loads(result.payload)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return code, document["errorMessage"]
    return code, result.payload.decode("utf-8", "replace")


def check_json(payload: bytes) -> None:
    if payload:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestContent(
                f"Could not parse request body into json: Could not parse payload into json: {exc}"
            ) from exc


def client_context(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > CLIENT_CONTEXT_MAX * 4 // 3 + 4:
        raise InvalidParameterValue(f"Client context must be at most {CLIENT_CONTEXT_MAX} bytes.")
    try:
        decoded = base64.b64decode(value, validate=True)
        if len(decoded) > CLIENT_CONTEXT_MAX:
            raise InvalidParameterValue(f"Client context must be at most {CLIENT_CONTEXT_MAX} bytes.")
        document = orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidParameterValue("Client context must be a valid Base64-encoded JSON object.") from exc
    if not isinstance(document, dict):
        raise InvalidParameterValue("Client context must be a valid Base64-encoded JSON object.")
    return decoded.decode()
