"""The engine facade: everything the API layer (and later event sources, triggers, a console)
may ask for. It never imports the web framework, and nothing reaches past it.

It is constructed with its stores, its executor and its clock; inside, it wires the services
of each Lambda noun (functions, versions, aliases, tags, concurrency, asynchronous
invocation) to one event bus, and runs every invocation through the same three steps::

    resolve(FunctionRef) -> Target  ·  admission.try_acquire(Target) -> Slot  ·  executor.lease(Target, Slot)
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from squall import __version__
from squall.arn import LATEST, Arns, FunctionRef, is_version
from squall.async_invoke.pipeline import AsyncInvocations
from squall.auth import credentials_file
from squall.auth.identity import Identity
from squall.auth.policy import Policy
from squall.code import CodeLimits
from squall.cluster.leadership import Leadership
from squall.cluster.members import FrontEnds
from squall.cluster.permits import ClusterPermits, NeedPermits
from squall.cluster.relay import ChangeRelay
from squall.engine.bus import (
    AsyncEventAccepted,
    AsyncEventSettled,
    DeliveryFinished,
    EventBus,
    FunctionDeleted,
    InvocationFinished,
    InvocationThrottled,
)
from squall.engine.stores import Stores
from squall.environments.environment import api_endpoint_env
from squall.environments.executor import Executor
from squall.errors import ResourceNotFound, TooManyRequests
from squall.function import FunctionVersion
from squall.functions.aliases import Aliases
from squall.functions.concurrency import ProvisionedConcurrency, ReservedConcurrency
from squall.functions.layer_trees import OptTrees
from squall.functions.layers import LayerService
from squall.functions.network import NetworkNames
from squall.functions.permissions import Permissions
from squall.functions.recursion import RecursionConfigs
from squall.functions.runtime_management import RuntimeManagement
from squall.functions.s3_code import S3Code
from squall.functions.service import FunctionService
from squall.functions.tags import Tags
from squall.functions.versions import Versions
from squall.invoke.admission import Admission, Slot
from squall.invoke.invocation import InvocationRequest, InvocationResult
from squall.invoke.resolver import Resolver, Target
from squall.invoke.streaming import ResponseStream, StreamedInvocation
from squall.invoke.trace import for_invocation
from squall.observe.logs import LogReader
from squall.observe.metrics import Gauges, Metrics
from squall.observe.tracing import Tracing
from squall.runtimes.registry import RuntimeRegistry
from squall.settings import Settings
from squall.sources.aws import AwsClients
from squall.sources.brokers import Brokers
from squall.sources.invoker import BatchInvoker
from squall.sources.service import EventSources
from squall.store.permits import PermitRepository
from squall.store.aliases import AliasRecord
from squall.triggers.deliveries import Deliveries
from squall.triggers.event_rules import EventRules
from squall.triggers.function_urls import FunctionUrls
from squall.triggers.http_apis import HttpApi, HttpApis
from squall.triggers.notifications import Notifications
from squall.triggers.pubsub import PubSub
from squall.triggers.scheduler import schedule_clock
from squall.triggers.schedules import Schedules

_ALLOW_ALL = Policy.parse({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


@dataclass(frozen=True)
class InvokeOptions:
    request_id: str
    client_context: str | None = None
    dry_run: bool = False
    # A platform line for the environment's log stream just before START (async attempts).
    prelude: str | None = None
    trace: str | None = None  # X-Amzn-Trace-Id: the runtime's _X_AMZN_TRACE_ID for this invocation
    queued_at: float | None = None  # an asynchronous event: when it was accepted (its span's queue time)
    log_tail: bool = False  # the caller wants the log's tail (LogType Tail): a remote executor brings it


@dataclass(frozen=True)
class FunctionDetails:
    """What GetFunction shows: the configuration, the qualifier its ARN carries, tags and
    reserved concurrency (those two only for an unqualified read)."""

    config: FunctionVersion
    arn_qualifier: str | None | bool
    tags: dict[str, str]
    reserved: int | None


def _python_sdk() -> dict[str, str]:
    """The SDK versions Python functions on the server's own interpreter find (bootstrap.RUNTIME_SDK)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


class Engine:
    def __init__(
        self,
        settings: Settings,
        stores: Stores,
        executor: Executor,
        runtimes: RuntimeRegistry,
        clock: Callable[[], float] = time.time,  # wall-clock time (event ages, timestamps)
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.executor = executor
        self.runtimes = runtimes
        self.clock = clock
        self.arns = Arns(settings.region, settings.account_id)
        self.code_limits = CodeLimits()
        self.bus = bus = EventBus()
        self.admission = Admission(settings.account_concurrency, bus)
        # several front ends on one PostgreSQL database: changes relayed, one leader (squall/cluster)
        shared_database = settings.database.startswith("postgresql")
        self.relay = ChangeRelay(bus, settings.database) if shared_database else None
        self.leadership = Leadership(settings.database, self._lead, self._follow)
        self.advertised_url = ""  # where clients reach this front end (set by the server once it listens)
        self.front_ends = FrontEnds(stores.front_ends, __version__, self._running_report, lambda: self.leadership.leader)
        self.permits = ClusterPermits(PermitRepository(stores.db), self.front_ends.id, self.front_ends.live,
                                      self.admission.usage, bus) if shared_database else None
        self.admission.permits = self.permits
        self.identity = Identity(
            stores.iam, stores.server_key, settings.account_id, settings.region, settings.auth, clock,
            upstream={role: (c.access_key_id, c.secret_access_key) for role, c in settings.upstream_roles.items()},
            upstream_endpoint=settings.aws_endpoint, bus=bus,
        )
        self.api_port: int | None = None  # where the server listens (environments call it there)
        self._function_arn_prefix = f"arn:aws:lambda:{settings.region}:{settings.account_id}:function:"
        self.tags = Tags(stores.functions, self.arns, bus, NetworkNames(settings.networks))
        self.versions = Versions(stores.functions, stores.code, self.arns, bus)
        # boto3 clients at the configured AWS-compatible endpoint: code from S3, event sources, triggers
        aws_clients = AwsClients(settings.aws_endpoint, settings.aws_access_key_id or None,
                                 settings.aws_secret_access_key or None)
        s3_code = S3Code(aws_clients, settings.region, self.code_limits)
        # layers: stored like code; merged per function into the tree its environments see at /opt
        self.layers = LayerService(stores.layers, stores.code, OptTrees(settings.data_dir / "opt"), self.arns, bus,
                                   self.code_limits, mountable=executor.layers_mountable,
                                   s3_code=s3_code)
        self.functions = FunctionService(
            stores.functions, stores.aliases, stores.code, self.versions, self.tags, runtimes, self.arns, bus, self.code_limits,
            role_usable=self.identity.role_usable, layers=self.layers, s3_code=s3_code,
        )
        self.functions.shared_database = shared_database
        self.resolver = Resolver(self.functions, stores.functions, stores.aliases, runtimes, self.arns, bus)
        executor.connect(bus, self.resolver, self._environment_env)
        self.reserved = ReservedConcurrency(stores.functions, self.admission, self.arns, bus)
        self.provisioned = ProvisionedConcurrency(
            stores.provisioned, stores.functions, stores.aliases, self.admission, self.arns, bus, executor.provisioned_status
        )
        self.permissions = Permissions(stores.iam, stores.functions, stores.aliases, self.arns, bus)
        self.recursion = RecursionConfigs(stores.function_settings, stores.functions, self.arns, bus)
        self.runtime_management = RuntimeManagement(stores.function_settings, stores.functions, self.arns)
        self.aliases = Aliases(stores.aliases, stores.functions, self.arns, bus, on_deleted=self._alias_deleted)
        self.async_invocations = AsyncInvocations(
            settings, self.resolver, self.admission, self._invoke_event, self._exists, self.arns, bus, clock
        )
        self.event_sources = EventSources(
            stores.event_sources,
            BatchInvoker(self._invoke_batch, self.admission, self._exists),
            aws_clients,
            Brokers(dict(settings.event_source_brokers),
                    {name: (s.username, s.password) for name, s in settings.event_source_secrets.items()}),
            self.arns,
            self._exists,
            self.async_invocations.senders.send,
            self._role_of,
            self._timeout_of,
            clock,
            bus=bus,
        )
        self.function_urls = FunctionUrls(stores.function_urls, self.arns, bus, self._exists, self._exists,
                                          lambda: self.api_port)
        self.http_apis = HttpApis(stores.http_apis, self.arns, lambda: self.api_port, bus)
        # per-trigger delivery counts of rules, schedules and notifications (``squall triggers``)
        self.trigger_deliveries = Deliveries()
        # EventBridge rules: deliveries go through the async queue; schedules tick on their own clock
        self.event_rules = EventRules(stores.event_rules, settings.region, settings.account_id, self.accept_event,
                                      self.resource_policy, *schedule_clock(clock, os.environ),
                                      deliveries=self.trigger_deliveries)
        # EventBridge Scheduler: the same ticker and clock; invocations with the target's role
        self.schedules = Schedules(stores.schedules, settings.region, settings.account_id, self.accept_event,
                                   self.async_invocations.senders.send, self._scheduler_role_policies,
                                   *schedule_clock(clock, os.environ), deliveries=self.trigger_deliveries)
        # SNS subscriptions and object-store webhooks: deliveries go through the async queue
        self.notifications = Notifications(stores.triggers, settings.region, settings.account_id, self.accept_event,
                                           self.resource_policy, self._exists, self.event_sources.clients,
                                           settings.aws_endpoint, deliveries=self.trigger_deliveries)
        # MQTT / NATS / Redis pub/sub subjects: one asynchronous invocation per message
        self.pubsub = PubSub(stores.triggers, self.event_sources.brokers, settings.region, settings.account_id,
                             self.accept_event, self._exists, bus)
        # what /metrics and the CloudWatch metrics subset show, fed from the bus; spans over OTLP
        self.metrics = Metrics(clock)
        self.tracing = Tracing(settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        self._observe(bus)
        self.started_at = time.time()

    def _observe(self, bus: EventBus) -> None:
        metrics, admission = self.metrics, self.admission

        def finished(e: InvocationFinished) -> None:
            metrics.record_invocation(e.function, e.qualifier, e.version, e.runtime, e.duration_ms,
                                      e.init_duration_ms, e.error_type)
            metrics.record_concurrency(e.function, e.concurrency, lambda: admission.in_flight)

        def settled(e: AsyncEventSettled) -> None:
            if e.condition != "Success":  # Lambda's AsyncEventsDropped: ended without a successful run
                metrics.record_async_dropped(e.function)

        bus.subscribe(InvocationFinished, finished)
        if self.tracing.enabled:
            tracing, arns = self.tracing, self.arns
            bus.subscribe(InvocationFinished, lambda e: tracing.record(e, arns.function(e.function, e.version)))
        bus.subscribe(InvocationThrottled, lambda e: metrics.record_throttle(e.function, e.qualifier, e.reason))
        bus.subscribe(AsyncEventAccepted, lambda e: metrics.record_async_accepted(e.function))
        bus.subscribe(AsyncEventSettled, settled)
        bus.subscribe(DeliveryFinished, lambda e: metrics.record_delivery(e.function, e.kind, e.ok))
        bus.subscribe(FunctionDeleted, lambda e: metrics.forget(e.name))

        def environments() -> dict[str, int]:
            counts = self.executor.counts()
            return {state: counts[state] for state in ("busy", "idle", "provisioned")}

        metrics.connect(Gauges(admission.in_flight_by_function, environments, self.async_invocations.repo.stats,
                               self.event_sources_report))

    # ---- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        known = credentials_file.read(self.settings.data_dir)
        key_id, secret = await self.identity.start(known[0] if known else None)
        if known != (key_id, secret):
            credentials_file.write(self.settings.data_dir, key_id, secret, self.settings.region)
        await self.functions.load()
        await self.permissions.load()
        await self.layers.load()
        await self.recursion.load()
        await self.function_urls.load()
        await self.http_apis.load()
        await self.provisioned.load()
        await self.async_invocations.start()
        self.stores.logs.start()
        self.executor.start()
        if self.relay is not None:  # other front ends' changes reach this one's caches
            self.relay.start()
        await self.event_sources.load()
        self.event_rules.start()
        self.schedules.start()
        await self.leadership.start()  # the leader (the only front end, on SQLite) polls and subscribes
        self.front_ends.start(self.advertised_url)
        if self.permits is not None:
            self.permits.start()

    async def _lead(self) -> None:
        await self.event_sources.run_pollers()
        await self.pubsub.start()

    async def _follow(self) -> None:
        await self.pubsub.stop()
        await self.event_sources.stop_pollers()

    def _running_report(self) -> dict[str, Any]:
        """What this front end runs now, for ``squall cluster status``."""
        return {"environments": self.executor.counts(), "in_flight": self.admission.in_flight,
                "functions": self.functions.count()}

    async def cluster_status(self) -> dict[str, Any]:
        status = await self.front_ends.status()
        nodes = self.executor.nodes_report()
        if nodes is not None:  # the Ray executor: the nodes environments run on
            status["nodes"] = nodes
        return status

    async def stop(self) -> None:
        if self.permits is not None:
            await self.permits.stop()
        await self.front_ends.stop()
        await self.leadership.stop()
        if self.relay is not None:
            await self.relay.stop()
        await self.schedules.stop()
        await self.event_rules.stop()
        await self.event_sources.stop()
        await self.async_invocations.stop(self.settings.shutdown_grace_seconds)
        await self.executor.shutdown(self.settings.shutdown_grace_seconds)
        await self.functions.close()
        await asyncio.to_thread(self.tracing.shutdown)
        await self.stores.close()

    # ---- invoking ----------------------------------------------------------------------
    async def invoke(self, ref: FunctionRef, payload: bytes, options: InvokeOptions,
                     stream: ResponseStream | None = None) -> InvocationResult | None:
        """``stream``: where a response-streaming runtime's bytes go as they come (``invoke_stream``)."""
        started_at = time.time()
        target = await self.resolver.resolve(ref)
        if options.dry_run:
            return None
        trace = for_invocation(options.trace, target.config.tracing_mode == "Active", options.request_id, started_at)
        request = InvocationRequest(options.request_id, payload, target.invoked_arn, options.client_context,
                                    trace_id=trace)
        if stream is not None:
            stream.executed_version = target.version or LATEST
            request.streaming_to(stream)
        if options.log_tail:
            request.wanting_tail()
        # No suspension from the resolution to the lease's new environment (see resolver.py).
        try:
            try:
                slot = self.admission.try_acquire(target.name, target.qualifier)
            except NeedPermits as need:  # several front ends: more of the cluster's limit first
                slot = await self._with_permit(target, need)
        except TooManyRequests as exc:
            self.bus.publish(InvocationThrottled(target.name, target.qualifier, exc.reason))
            raise
        with slot:
            async with self.executor.lease(target, slot) as lease:
                result = await lease.invoke(request, options.prelude)
            concurrency = self.admission.in_flight_of(target.name)
        if self.bus.wants(InvocationFinished):
            self.bus.publish(
                InvocationFinished(target.name, result.executed_version, result.request_id, result.duration_ms,
                                   result.init_duration_ms, result.error_type, target.qualifier,
                                   target.runtime.identifier, concurrency, trace, started_at, time.time(),
                                   options.queued_at)
            )
        return result

    async def _with_permit(self, target: Target, need: NeedPermits) -> Slot:
        assert self.permits is not None
        if not await self.permits.acquire(need.scope, need.limit, need.in_use):
            raise need.refusal
        try:
            return self.admission.try_acquire(target.name, target.qualifier)
        except NeedPermits as again:  # others of this front end took them meanwhile
            raise again.refusal from None

    def invoke_stream(self, ref: FunctionRef, payload: bytes, options: InvokeOptions) -> StreamedInvocation:
        """A synchronous invocation whose response can be read as the function writes it (function
        URLs in RESPONSE_STREAM mode, InvokeWithResponseStream). It runs beside the caller; the
        admission slot and the environment are held until the runtime has sent its whole response."""
        stream = ResponseStream()
        return StreamedInvocation(stream, asyncio.ensure_future(self.invoke(ref, payload, options, stream)))

    async def accept_event(self, ref: FunctionRef, payload: bytes, request_id: str, trace: str | None = None) -> None:
        """An asynchronous invocation: returns once the event is durably queued."""
        await self.async_invocations.accept(ref, payload, request_id, trace)
        self.bus.publish(AsyncEventAccepted(ref.name))

    async def _invoke_event(self, ref: FunctionRef, payload: bytes, request_id: str, prelude: str,
                            trace: str | None = None, queued_at: float | None = None) -> InvocationResult | None:
        """An attempt of an asynchronous invocation: counted as a hop of its chain (recursion)."""
        header = self.recursion.admit(ref.name, trace, request_id, self.clock())
        return await self.invoke(ref, payload, InvokeOptions(request_id, prelude=prelude, trace=header,
                                                             queued_at=queued_at))

    async def _invoke_batch(self, ref: FunctionRef, payload: bytes, request_id: str) -> InvocationResult | None:
        return await self.invoke(ref, payload, InvokeOptions(request_id))

    def _role_of(self, name: str) -> str:
        latest = self.functions.invocable_latest(name)
        return latest.role if latest is not None else self.arns.role_default()

    def _timeout_of(self, name: str) -> int | None:
        latest = self.functions.invocable_latest(name)
        return latest.timeout if latest is not None else None

    async def _exists(self, ref: FunctionRef) -> bool:
        """Whether a function (and the version or alias ``ref`` names) exists."""
        repo = self.stores.functions
        if ref.qualifier is None or ref.qualifier == LATEST or is_version(ref.qualifier):
            return await asyncio.to_thread(repo.get, ref.name, ref.qualifier or LATEST) is not None
        return await asyncio.to_thread(self.stores.aliases.get, ref.name, ref.qualifier) is not None

    # ---- functions ---------------------------------------------------------------------
    async def create_function(self, params: dict[str, Any]) -> FunctionVersion:
        return await self.functions.create(params)

    async def get_function(self, ref: FunctionRef) -> FunctionDetails:
        config, arn_qualifier = await self.functions.describe(ref)
        if ref.qualifier is not None:
            return FunctionDetails(config, arn_qualifier, {}, None)
        tags = await asyncio.to_thread(self.stores.functions.tags, ref.name)
        return FunctionDetails(config, arn_qualifier, tags, self.admission.reserved_of(ref.name))

    async def update_function_code(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        return await self.functions.update_code(ref, params)

    async def update_function_configuration(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        return await self.functions.update_configuration(ref, params)

    async def delete_function(self, ref: FunctionRef) -> None:
        await self.functions.delete(ref)

    async def list_functions(self, marker: str | None, max_items: int | None, all_versions: bool) -> tuple[list[FunctionVersion], str | None]:
        return await self.functions.page(marker, max_items, all_versions)

    async def read_code(self, sha256_hex: str) -> bytes:
        return await self.stores.code.read(sha256_hex)

    # ---- versions and aliases ---------------------------------------------------------
    async def publish_version(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionVersion:
        return await self.versions.publish(ref, params)

    async def list_versions(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[FunctionVersion], str | None]:
        return await self.versions.page(ref, marker, max_items)

    async def create_alias(self, ref: FunctionRef, params: dict[str, Any]) -> AliasRecord:
        return await self.aliases.create(ref, params)

    async def get_alias(self, ref: FunctionRef, name: str) -> AliasRecord:
        return await self.aliases.get(ref, name)

    async def update_alias(self, ref: FunctionRef, name: str, params: dict[str, Any]) -> AliasRecord:
        return await self.aliases.update(ref, name, params)

    async def delete_alias(self, ref: FunctionRef, name: str) -> None:
        await self.aliases.delete(ref, name)

    async def list_aliases(self, ref: FunctionRef, version: str | None, marker: str | None, max_items: int | None) -> tuple[list[AliasRecord], str | None]:
        return await self.aliases.page(ref, version, marker, max_items)

    # ---- concurrency -------------------------------------------------------------------
    async def put_function_concurrency(self, ref: FunctionRef, value: int) -> None:
        await self.reserved.put(ref, value)

    async def get_function_concurrency(self, ref: FunctionRef) -> int | None:
        return await self.reserved.get(ref)

    async def delete_function_concurrency(self, ref: FunctionRef) -> None:
        await self.reserved.delete(ref)

    async def put_provisioned_concurrency(self, ref: FunctionRef, value: int) -> dict[str, Any]:
        return await self.provisioned.put(ref, value)

    async def get_provisioned_concurrency(self, ref: FunctionRef) -> dict[str, Any]:
        return await self.provisioned.get(ref)

    async def delete_provisioned_concurrency(self, ref: FunctionRef) -> None:
        await self.provisioned.delete(ref)

    async def list_provisioned_concurrency(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> list[dict[str, Any]]:
        return await self.provisioned.page(ref, marker, max_items)

    # ---- tags --------------------------------------------------------------------------
    async def tag_resource(self, ref: FunctionRef, tags: dict[str, str]) -> None:
        await self.tags.tag(ref, tags)

    async def untag_resource(self, ref: FunctionRef, keys: list[str]) -> None:
        await self.tags.untag(ref, keys)

    async def list_tags(self, ref: FunctionRef) -> dict[str, str]:
        return await self.tags.list(ref)

    # ---- asynchronous invocation settings -------------------------------------------------
    async def put_event_invoke_config(self, ref: FunctionRef, params: dict[str, Any], merge: bool) -> Any:
        return await self.async_invocations.configs.store(ref, params, merge)

    async def get_event_invoke_config(self, ref: FunctionRef) -> Any:
        return await self.async_invocations.configs.get(ref)

    async def delete_event_invoke_config(self, ref: FunctionRef) -> None:
        await self.async_invocations.configs.delete(ref)

    async def list_event_invoke_configs(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[Any], str | None]:
        return await self.async_invocations.configs.page(ref, marker, max_items)

    async def queue_report(self, function_name: str | None) -> dict[str, Any]:
        if function_name is not None and not await asyncio.to_thread(self.stores.functions.exists, function_name):
            raise ResourceNotFound(f"Function not found: {self.arns.function(function_name)}")
        return await self.async_invocations.report(function_name)

    # ---- event source mappings ------------------------------------------------------------
    async def create_event_source_mapping(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.event_sources.create(params)

    async def get_event_source_mapping(self, uuid: str) -> dict[str, Any]:
        return await self.event_sources.get(uuid)

    async def update_event_source_mapping(self, uuid: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.event_sources.update(uuid, params)

    async def delete_event_source_mapping(self, uuid: str) -> dict[str, Any]:
        return await self.event_sources.delete(uuid)

    async def list_event_source_mappings(self, source_arn: str | None, function_name: str | None, marker: str | None,
                                         max_items: int | None) -> tuple[list[dict[str, Any]], str | None]:
        return await self.event_sources.list(source_arn, function_name, marker, max_items)

    def event_sources_report(self) -> list[dict[str, Any]]:
        return self.event_sources.report()

    # ---- function URLs ------------------------------------------------------------------------
    async def create_function_url(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        return await self.function_urls.create(ref, params)

    async def get_function_url(self, ref: FunctionRef) -> dict[str, Any]:
        return await self.function_urls.get(ref)

    async def update_function_url(self, ref: FunctionRef, params: dict[str, Any]) -> dict[str, Any]:
        return await self.function_urls.update(ref, params)

    async def delete_function_url(self, ref: FunctionRef) -> None:
        await self.function_urls.delete(ref)

    async def list_function_urls(self, ref: FunctionRef, marker: str | None, max_items: int | None) -> tuple[list[dict[str, Any]], str | None]:
        return await self.function_urls.list(ref, marker, max_items)

    # ---- HTTP APIs (API Gateway v2) ----------------------------------------------------------
    async def http_api_operation(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """One API Gateway v2 management operation (``HttpApis.SERVED``), boto3's shapes in and out."""
        return await self.http_apis.call(operation, params)

    def http_api(self, api_id: str) -> HttpApi | None:
        return self.http_apis.lookup(api_id)

    # ---- logs and the account ---------------------------------------------------------------
    def logs(self) -> LogReader:
        """Function logs, to read (the CloudWatch Logs subset, ``squall logs``)."""
        return self.stores.logs

    async def account_settings(self) -> dict[str, Any]:
        usage = await asyncio.to_thread(self.stores.functions.usage)
        limits = self.code_limits
        return {
            "AccountLimit": {
                "TotalCodeSize": 80530636800,
                "CodeSizeUnzipped": limits.max_unzipped,
                "CodeSizeZipped": limits.max_zipped,
                "ConcurrentExecutions": self.admission.account_limit,
                "UnreservedConcurrentExecutions": self.admission.unreserved_limit,
            },
            "AccountUsage": usage,
        }

    def health(self) -> dict[str, Any]:
        """What /health shows (blocking: it asks the database; run it in a thread). ``status`` is
        ``degraded`` with a reason under ``problems`` when something Squall needs does not work:
        the database, the sandbox's networks, a trigger's or event source's broker, stored code."""
        problems: dict[str, Any] = {}
        missing_code = self.functions.problems()
        if missing_code:
            problems["functions_missing_code"] = missing_code
        database = self.stores.check_database()
        if database:
            problems["database"] = database
        backend = self.executor.describe_isolation()
        networks = backend.get("networks") if isinstance(backend, dict) else None
        if isinstance(networks, dict) and networks.get("available") is False:
            problems["sandbox_networks"] = networks.get("problem") or "unavailable"
        brokers = {f"trigger {trigger_id}": stats.get("last_error") or stats.get("state")
                   for trigger_id, listener in self.pubsub.listeners.items()
                   if (stats := listener.stats).get("state") not in ("listening", "stopped", "starting")}
        brokers.update({f"event source mapping {m['uuid']}": m["last_result"] for m in self.event_sources_report()
                        if m.get("state") == "Enabled" and str(m.get("last_result") or "").startswith("PROBLEM")})
        if brokers:
            problems["brokers"] = brokers
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": __version__,
            "isolation": self.executor.describe_isolation(),
            "runtimes": self.runtimes.describe(),
            "runtimes_unavailable": dict(self.runtimes.missing),
            "runtimes_warnings": self.runtimes.warnings(),  # served by an interpreter older than the label
            "python_runtime_sdk": _python_sdk(),  # what Python functions on the server's interpreter can import
            "functions": self.functions.count(),
            "environments": self.executor.counts(),
            "snapshots": self.executor.snapshots_report(),
            "concurrency": {
                "in_flight": self.admission.in_flight,
                "account_limit": self.admission.account_limit,
                "unreserved_limit": self.admission.unreserved_limit,
            },
            "async": self.async_invocations.health(),
            "eventbridge": self.event_rules.report(),
            "scheduler": self.schedules.report(),
            "notifications": self.notifications.report(),
            "pubsub": self.pubsub.report(),
            "cluster": {**self.leadership.health(), **({"relay": self.relay.health()} if self.relay else {})},
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }

    async def _alias_deleted(self, name: str, alias: str) -> None:
        """What goes with an alias: its provisioned concurrency and its resource policy."""
        await self.provisioned.drop(name, alias)
        await self.permissions.drop_qualifier(name, alias)
        await self.function_urls.drop_alias(name, alias)

    def _scheduler_role_policies(self, role_arn: str):  # type: ignore[no-untyped-def]
        """A Scheduler target role's identity policies (None: no such role); with authentication
        off, a policy allowing everything."""
        if not self.identity.enabled:
            return (_ALLOW_ALL,)
        directory = self.identity.directory
        name = directory.role_name_of(role_arn)
        return None if name is None else tuple(directory.roles[name].policies.values())

    def resource_policy(self, resource: str):  # type: ignore[no-untyped-def]
        """The resource-based policy of the function, version or alias an ARN names (None: none)."""
        prefix = self._function_arn_prefix
        if not resource.startswith(prefix):
            return self.layers.policy_for(resource) if ":layer:" in resource else None
        name, _, qualifier = resource[len(prefix):].partition(":")
        return self.permissions.policy_for(name, qualifier or None)

    def _environment_env(self, role_arn: str, function_name: str, network: str | None) -> dict[str, str]:
        """What an environment gets besides Lambda's variables: its role's credentials, and
        where this server's APIs are from inside it (the SDKs' ``AWS_ENDPOINT_URL_<SERVICE>``)."""
        env = self.identity.environment_credentials(role_arn, function_name)
        host = self.executor.host_address(network)
        if host is not None and self.api_port is not None:
            env.update(api_endpoint_env(f"http://{host}:{self.api_port}"))
        return env

    def describe_isolation(self) -> dict[str, Any]:
        return self.executor.describe_isolation()
