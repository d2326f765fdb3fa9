"""How a poller invokes: it waits for a concurrency slot (admission, like every other invoker),
then runs one synchronous invocation with the batch, and reads the answer as Lambda does."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from squall.arn import FunctionRef
from squall.errors import LambdaError, ResourceNotFound, TooManyRequests
from squall.invoke.admission import Admission
from squall.invoke.invocation import InvocationResult
from squall.sources.batches import BatchResponse, read_response

Invoke = Callable[[FunctionRef, bytes, str], Awaitable["InvocationResult | None"]]
Exists = Callable[[FunctionRef], Awaitable[bool]]

SLOT_POLL = 0.02  # seconds between looks at admission while every slot is taken


@dataclass(frozen=True)
class Outcome:
    response: BatchResponse | None  # None: not invoked (throttled or the function is missing)
    request_id: str
    result: InvocationResult | None = None
    throttled: bool = False
    problem: str = ""  # why it was not invoked


class BatchInvoker:
    def __init__(self, invoke: Invoke, admission: Admission, exists: Exists) -> None:
        self._invoke = invoke
        self.admission = admission
        self.exists = exists

    async def wait_for_function(self, ref: FunctionRef, stopping: asyncio.Event, every: float = 2.0) -> None:
        """While the target function (version, alias) is missing, wait: a mapping outlives its
        function, and a poller must not take records it cannot deliver."""
        while not stopping.is_set() and not await self.exists(ref):
            try:
                await asyncio.wait_for(stopping.wait(), every)
            except asyncio.TimeoutError:
                pass

    async def wait_for_slot(self, function: str, stopping: asyncio.Event, limit: float = 1.0) -> bool:
        """Wait (at most ``limit`` s) until ``function`` could take one more invocation."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not stopping.is_set():
            if self.admission.available(function) > 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(SLOT_POLL)
        return False

    async def invoke(self, ref: FunctionRef, payload: bytes, report_item_failures: bool,
                     identifiers: list[str]) -> Outcome:
        request_id = str(uuid.uuid4())
        try:
            result = await self._invoke(ref, payload, request_id)
        except TooManyRequests:
            return Outcome(None, request_id, throttled=True, problem="Function call throttled")
        except ResourceNotFound as error:
            return Outcome(None, request_id, problem=f"Function not found: {error.message}")
        except LambdaError as error:
            return Outcome(None, request_id, problem=f"{error.code}: {error.message}")
        assert result is not None
        response = read_response(result.function_error, result.payload, report_item_failures, identifiers)
        return Outcome(response, request_id, result)
