"""Recursive loop detection: each function's ``RecursiveLoop`` setting (Put/GetFunctionRecursionConfig)
and the check an asynchronous invocation passes before it runs (``squall/invoke/trace.py`` counts
the hops). ``Terminate`` (Lambda's default): the 17th time one chain of asynchronous invocations
reaches the same function, it is not invoked; the event ends with the condition
``RecursiveInvocationDetected`` (its on-failure destination and dead-letter queue get it).
``Allow``: Squall lets the loop run."""

from __future__ import annotations

import asyncio
from typing import Any

from squall.arn import Arns, FunctionRef
from squall.engine.bus import EventBus, FunctionDeleted
from squall.errors import RecursiveInvocation, ResourceNotFound
from squall.invoke.trace import MAX_HOPS, hop
from squall.store.function_settings import FunctionSettingsRepository
from squall.store.functions import FunctionRepository

KIND = "recursion"
DEFAULT = "Terminate"


class RecursionConfigs:
    def __init__(self, repo: FunctionSettingsRepository, functions: FunctionRepository, arns: Arns,
                 bus: EventBus) -> None:
        self.repo = repo
        self.functions = functions
        self.arns = arns
        self._loops: dict[str, str] = {}  # function → RecursiveLoop, where it is not the default
        bus.subscribe(FunctionDeleted, lambda e: self._loops.pop(e.name, None))

    async def load(self) -> None:
        for (name, _), document in (await asyncio.to_thread(self.repo.all, KIND)).items():
            self._loops[name] = document.get("RecursiveLoop", DEFAULT)

    async def put(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        value = params["RecursiveLoop"]
        if not await asyncio.to_thread(self.repo.put, ref.name, KIND, "", {"RecursiveLoop": value}):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        self._loops[ref.name] = value
        return {"RecursiveLoop": value}

    async def get(self, ref: FunctionRef) -> dict[str, Any]:
        if await asyncio.to_thread(self.functions.get, ref.name) is None:
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        return {"RecursiveLoop": self._loops.get(ref.name, DEFAULT)}

    def admit(self, name: str, trace: str | None, request_id: str, now: float) -> str:
        """The trace an asynchronous invocation of ``name`` runs with; RecursiveInvocation when
        it would be the loop's hop beyond ``MAX_HOPS`` and the function terminates loops."""
        header, count = hop(trace, self.arns.function(name), request_id, now)
        if count > MAX_HOPS and self._loops.get(name, DEFAULT) == "Terminate":
            raise RecursiveInvocation(
                f"Lambda has detected {self.arns.function(name)} being invoked in a recursive loop "
                f"({count - 1} times in one chain of asynchronous invocations) and stopped the invocation. "
                "PutFunctionRecursionConfig with RecursiveLoop Allow lets such a loop run.")
        return header
