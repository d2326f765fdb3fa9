"""Invocation requests and results, and Lambda's platform error payloads.

A function's failure is a value (``InvocationResult.function_error``), never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import orjson

from squall.invoke.streaming import ResponseStream

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # 6291456: request limit for RequestResponse
MAX_RESPONSE_PAYLOAD = 6291556  # the figure Lambda's ResponseSizeTooLarge message names
LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class InvocationRequest:
    request_id: str
    payload: bytes
    invoked_arn: str
    client_context: str | None = None  # decoded JSON text of X-Amz-Client-Context
    identity: str | None = None
    trace_id: str | None = None
    # Where a response-streaming runtime's chunks go as they arrive (None: the answer is buffered).
    # Not a field: set by ``streaming_to`` for streamed invokes only, so that the buffered warm
    # path does not pay for one more attribute in the frozen dataclass's ``__init__`` (~0.2 µs).
    stream: ClassVar[ResponseStream | None] = None
    wants_tail: ClassVar[bool] = False  # the caller will read the result's log tail (same reason)

    def streaming_to(self, stream: ResponseStream) -> "InvocationRequest":
        """This request, its response to be streamed into ``stream`` (call before handing it on)."""
        object.__setattr__(self, "stream", stream)
        return self

    def wanting_tail(self) -> "InvocationRequest":
        object.__setattr__(self, "wants_tail", True)
        return self


@dataclass(frozen=True)
class InvocationResult:
    request_id: str
    payload: bytes
    executed_version: str
    function_error: str | None = None  # "Unhandled" when the function failed
    error_type: str | None = None
    content_type: str = "application/json"
    duration_ms: float = 0.0
    init_duration_ms: float | None = None
    # Builds the end of this invocation's log (START … REPORT) only when someone asks for it
    # (X-Amz-Log-Type: Tail): most invokes never do, and the warm path should not pay for it.
    tail_source: Callable[[], bytes] = field(default=lambda: b"", repr=False, compare=False)

    @property
    def cold(self) -> bool:
        return self.init_duration_ms is not None

    @property
    def log_tail(self) -> bytes:
        return self.tail_source()


def error_payload(error_type: str, message: str, request_id: str | None = None) -> bytes:
    body: dict[str, object] = {"errorMessage": message, "errorType": error_type}
    if request_id is not None:
        body["requestId"] = request_id
    return orjson.dumps(body)


def timeout_error(request_id: str, timeout_s: float) -> bytes:
    return error_payload("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds")


def exit_error(request_id: str, how: str) -> bytes:
    return error_payload("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {how}")


def response_too_large() -> bytes:
    return error_payload(
        "Function.ResponseSizeTooLarge",
        f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_PAYLOAD} bytes).",
    )


def billed_ms(duration_ms: float, init_ms: float | None) -> int:
    """Billed Duration: whole milliseconds, init included on cold starts (since Aug 2025)."""
    return max(1, math.ceil(duration_ms + (init_ms or 0.0)))


def report_line(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None,
    status: str | None = None,
    error_type: str | None = None,
    restore_ms: float | None = None,
) -> str:
    """Lambda's REPORT line (``restore_ms``: a SnapStart environment's first invocation, which
    has Restore Duration and Billed Restore Duration instead of Init Duration)."""
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms, init_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if restore_ms is not None:
        parts.append(f"Restore Duration: {restore_ms:.2f} ms")
        parts.append(f"Billed Restore Duration: {max(1, math.ceil(restore_ms))} ms")
    if status:
        parts.append(f"Status: {status}")
    if error_type:
        parts.append(f"Error Type: {error_type}")
    return "\t".join(parts) + "\t"
