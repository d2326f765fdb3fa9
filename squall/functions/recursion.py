"""Recursive loop detection: each function's ``RecursiveLoop`` setting (Put/GetFunctionRecursionConfig)
and the check an asynchronous invocation passes before it runs (``squall/invoke/trace.py`` counts
the hops). ``Terminate`` (Lambda's default): the 17th time one chain of asynchronous invocations
reaches the same function, it is not invoked; the event ends with the condition
``RecursiveInvocationDetected`` (its on-failure destination and dead-letter queue get it).
``Allow``: Squall lets the loop run.

Several front ends may share the database: a change is published as ``StateChanged("recursion",
function)`` once committed, and the other front ends re-read that function's setting."""

from __future__ import annotations

import asyncio
from typing import Any

from squall.arn import Arns, FunctionRef
from squall.engine.bus import EventBus, FunctionDeleted, StateChanged
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
        self.bus = bus
        self._loops: dict[str, str] = {}  # function → RecursiveLoop, where it is not the default
        self._changes = 0  # counts changes to _loops: a reload that one overtook reads again
        bus.subscribe(FunctionDeleted, lambda e: self._set(e.name, None))
        bus.mirror(KIND, lambda name: self.reload(name), "recursion config of")

    async def load(self) -> None:
        for (name, _), document in (await asyncio.to_thread(self.repo.all, KIND)).items():
            self._loops[name] = document.get("RecursiveLoop", DEFAULT)

    def _set(self, name: str, value: str | None) -> None:
        if value is None:
            self._loops.pop(name, None)
        else:
            self._loops[name] = value
        self._changes += 1

    # ---- other front ends' changes (one database, several front ends) --------------------
    async def reload(self, name: str) -> None:
        """Re-read the setting of function ``name`` ("": of every function) from the database."""
        seen = -1
        while seen != self._changes:  # changed meanwhile (here): what was read may be older
            seen = self._changes
            if name:
                document = await asyncio.to_thread(self.repo.get, name, KIND)
                fresh = {} if document is None else {name: document.get("RecursiveLoop", DEFAULT)}
            else:
                fresh = {n: d.get("RecursiveLoop", DEFAULT)
                         for (n, _), d in (await asyncio.to_thread(self.repo.all, KIND)).items()}
        for gone in [n for n in self._loops if (not name or n == name) and n not in fresh]:
            del self._loops[gone]
        self._loops.update(fresh)
        self._changes += 1

    async def put(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        value = params["RecursiveLoop"]
        if not await asyncio.to_thread(self.repo.put, ref.name, KIND, "", {"RecursiveLoop": value}):
            raise ResourceNotFound(f"Function not found: {self.arns.function(ref.name)}")
        self._set(ref.name, value)
        self.bus.publish(StateChanged(KIND, ref.name))
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
