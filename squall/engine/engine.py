"""The engine facade: everything the API layer (and later event sources) may ask for.

It wires the store, the function service, the environment pool and the log store, and
never imports the web framework.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from squall import __version__
from squall.arn import Arns, FunctionRef
from squall.code import CodeLimits
from squall.async_invoke.pipeline import AsyncInvocations
from squall.functions.code_store import CodeStore
from squall.invoke.concurrency import ConcurrencyLimits
from squall.functions.service import FunctionService
from squall.invoke.invocation import InvocationRequest, InvocationResult
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.observe.logs import LogStore
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox.base import SandboxBackend
from squall.settings import Settings
from squall.store.blobs import BlobStore
from squall.store.db import create_engine
from squall.store.functions import FunctionRepository


@dataclass(frozen=True)
class InvokeOptions:
    request_id: str
    client_context: str | None = None
    dry_run: bool = False
    # A platform line for the environment's log stream just before START (async attempts).
    prelude: str | None = None


class Engine:
    def __init__(
        self,
        settings: Settings,
        backend: SandboxBackend,
        runtimes: RuntimeRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.runtimes = runtimes
        self.arns = Arns(settings.region, settings.account_id)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = create_engine(settings.database)
        repo = FunctionRepository(self.db)
        self.code = CodeStore(BlobStore(settings.data_dir), repo.code_in_use)
        self.logs = LogStore(settings.data_dir / "logs")
        self.pool = EnvironmentPool(
            backend,
            self.logs,
            settings.region,
            PoolLimits(settings.memory_capacity, settings.keep_alive_seconds, settings.max_log_bytes_per_invocation),
            clock,
            self.code,
        )
        self.code_limits = CodeLimits()
        self.concurrency = ConcurrencyLimits(settings.account_concurrency)
        self.functions = FunctionService(
            repo,
            self.code,
            runtimes,
            self.arns,
            self.concurrency,
            self._function_changed,
            self.code_limits,
        )
        self.async_invocations = AsyncInvocations(
            settings,
            self.functions,
            self.concurrency,
            lambda ref, payload, request_id, prelude: self.invoke(ref, payload, InvokeOptions(request_id, prelude=prelude)),
            self.arns,
        )
        self.started_at = time.time()

    async def start(self) -> None:
        await self.functions.load()
        await self.async_invocations.start()
        self.logs.start()
        self.pool.start()

    async def stop(self) -> None:
        await self.async_invocations.stop(self.settings.shutdown_grace_seconds)
        await self.pool.shutdown(self.settings.shutdown_grace_seconds)
        await self.backend.close()
        await self.functions.close()
        await self.code.close()
        await self.logs.stop()
        await asyncio.to_thread(self.db.dispose)

    async def invoke(self, ref: FunctionRef, payload: bytes, options: InvokeOptions) -> InvocationResult | None:
        function = await self.functions.invocable(ref)
        if options.dry_run:
            return None
        runtime = self.runtimes.get(function.runtime)
        request = InvocationRequest(
            request_id=options.request_id,
            payload=payload,
            invoked_arn=self.arns.function(ref.name, ref.qualifier),
            client_context=options.client_context,
        )
        network = self.functions.network_enabled(function.name)
        with self.concurrency.slot(function.name):
            async with self.pool.lease(function, runtime, self.functions.code_path(function), network) as env:
                if options.prelude:
                    self.logs.append(env.group, env.stream, [(int(time.time() * 1000), options.prelude)])
                return await env.invoke(request)

    def _function_changed(self, name: str, revision: str | None) -> None:
        self.pool.retire(name, revision)
        if revision is None:  # deleted (or its sandbox settings changed)
            self.async_invocations.function_changed(name)

    async def account_settings(self) -> dict[str, Any]:
        usage = await asyncio.to_thread(self.functions.repo.usage)
        limits = self.code_limits
        return {
            "AccountLimit": {
                "TotalCodeSize": 80530636800,
                "CodeSizeUnzipped": limits.max_unzipped,
                "CodeSizeZipped": limits.max_zipped,
                "ConcurrentExecutions": self.concurrency.account_limit,
                "UnreservedConcurrentExecutions": self.concurrency.unreserved_limit,
            },
            "AccountUsage": usage,
        }

    def health(self) -> dict[str, Any]:
        missing_code = self.functions.problems()
        return {
            "status": "degraded" if missing_code else "ok",
            "problems": {"functions_missing_code": missing_code},
            "version": __version__,
            "isolation": self.backend.describe(),
            "runtimes": self.runtimes.describe(),
            "runtimes_unavailable": dict(self.runtimes.missing),
            "functions": self.functions.count(),
            "environments": self.pool.counts(),
            "concurrency": {
                "in_flight": self.concurrency.in_flight,
                "account_limit": self.concurrency.account_limit,
                "unreserved_limit": self.concurrency.unreserved_limit,
            },
            "async": self.async_invocations.health(),
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
