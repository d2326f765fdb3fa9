"""Event source mappings: the five operations, their states, and one poller per enabled mapping.

States move as on Lambda: Create answers ``Creating`` and the mapping becomes ``Enabled`` (or
``Disabled``) once its poller has started (or not); Update answers ``Updating`` / ``Enabling`` /
``Disabling``; Delete answers ``Deleting`` and the mapping goes once its poller has stopped.
Those transitions take milliseconds here; an Update or Delete that arrives during one waits
for it briefly, then gets ``ResourceInUseException``.

Several front ends may share one database. Every front end answers the API from it; pollers run
on one of them only, the leader (``run_pollers`` / ``stop_pollers``). A change is published on
the bus as ``StateChanged("event_sources", uuid)`` once committed; another front end's change
(``bus.from_remote``) is re-read from the database, and the leader starts, restarts or stops the
mapping's poller to match, and finishes a delete (a front end without pollers leaves its deletes
in ``Deleting`` for the leader, which alone knows when the poller has stopped).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuids
from dataclasses import replace
from typing import Any, Awaitable, Callable

from squall.arn import LATEST, Arns, FunctionRef
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceInUse,
    ResourceNotFound,
)
from squall.paging import decode_marker, encode_marker
from squall.sources.aws import AwsClients
from squall.sources.brokers import Brokers
from squall.sources.invoker import BatchInvoker
from squall.sources.mapping import (
    CREATING,
    DELETING,
    DISABLED,
    DISABLING,
    ENABLED,
    ENABLING,
    NO_RECORDS,
    TRANSITIONAL,
    UPDATING,
    USER_INITIATED,
    EventSourceMapping,
    Source,
    settings_for,
    settings_from_json,
    settings_to_json,
)
from squall.sources.poller import Poller, PollerDeps, PollerStats
from squall.store.event_sources import EventSourceRepository, MappingRow

log = logging.getLogger("squall.sources")

TRANSITION_WAIT = 2.0  # how long an Update/Delete waits for a transition in progress
KIND = "event_sources"  # StateChanged.kind of a mapping's change
SETTLING = TRANSITIONAL - {DELETING}  # the transitions another front end ends in milliseconds
LIST_DEFAULT, LIST_MAX = 100, 10000

KAFKA_REFUSED = (
    "Squall does not serve Kafka event sources (Amazon MSK or self-managed): no Kafka broker can run in its "
    "tests on this machine, and it ships no source it has not tested. See docs/event-sources.md for the sources "
    "it polls (SQS, Kinesis, DynamoDB Streams, RabbitMQ, Redis Streams, NATS JetStream, PostgreSQL changes).")

Exists = Callable[[FunctionRef], Awaitable[bool]]
Send = Callable[[str, bytes], Awaitable[None]]


class EventSources:
    def __init__(self, repo: EventSourceRepository, invoker: BatchInvoker, clients: AwsClients, brokers: Brokers, arns: Arns,
                 exists: Exists, send: Send, role_of: Callable[[str], str], timeout_of: Callable[[str], int | None],
                 clock: Callable[[], float] = time.time, bus: EventBus | None = None) -> None:
        self.repo = repo
        self.invoker = invoker
        self.clients = clients
        self.brokers = brokers
        self.arns = arns
        self.exists = exists
        self.send = send
        self.role_of = role_of
        self.timeout_of = timeout_of
        self.clock = clock
        self.bus = bus
        self._mappings: dict[str, EventSourceMapping] = {}
        self._pollers: dict[str, tuple[Poller, asyncio.Task[None]]] = {}
        self._stats: dict[str, PollerStats] = {}
        self._transitions: dict[str, asyncio.Task[None]] = {}
        # held while a mapping's row and ``_mappings`` change together (and while they are re-read)
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        self._running = False  # pollers run on this front end (it is the leader)
        self._leading = asyncio.Lock()  # run_pollers / stop_pollers, one at a time
        self._guards: dict[str, asyncio.Lock] = {}  # per mapping: its poller is started / stopped by one at a time
        self._removing: set[str] = set()  # mappings whose delete this front end is finishing
        self._refreshes: set[asyncio.Task[Any]] = set()  # re-reads of other front ends' changes in progress
        if bus is not None:
            bus.subscribe(StateChanged, self._state_changed)
            bus.subscribe(CachesReset, self._caches_reset)

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the mappings and run their pollers here (a front end that is always the leader)."""
        await self.load()
        await self.run_pollers()

    async def stop(self) -> None:
        await self.stop_pollers()
        await asyncio.gather(*self._writes, return_exceptions=True)
        self.clients.close()

    @property
    def polling(self) -> bool:
        """Whether pollers run on this front end (between ``run_pollers`` and ``stop_pollers``)."""
        return self._running

    async def load(self) -> None:
        """Read every mapping from the database (for the API and ``report``); starts no poller."""
        await self._reload()

    async def run_pollers(self) -> None:
        """This front end became the leader: re-read every mapping, finish the deletes left in
        ``Deleting``, start one poller per enabled mapping and settle each mapping's state
        (``Enabled`` / ``Disabled``). Idempotent: nothing happens when pollers run already."""
        async with self._leading:
            if self._running:
                return
            self._running = True
            await self._reload()
            for uuid in sorted(self._mappings):
                mapping = self._mappings.get(uuid)
                if mapping is None:
                    continue
                if mapping.state == DELETING:  # the delete did not finish before the last stop
                    if uuid not in self._removing:
                        self._removing.add(uuid)
                        await self._remove(uuid)
                    continue
                await self._sync(uuid)
                mapping = self._mappings.get(uuid)
                if mapping is not None and mapping.state != DELETING:
                    state = ENABLED if mapping.settings.enabled else DISABLED
                    if mapping.state != state:
                        await self._set_state(uuid, state, mapping.state_reason)

    async def stop_pollers(self) -> None:
        """This front end is no longer the leader: stop every poller. When it returns no poller task
        remains and none starts until ``run_pollers``. Idempotent."""
        async with self._leading:
            self._running = False
            me = asyncio.current_task()
            await asyncio.gather(*(t for t in list(self._refreshes) if t is not me), return_exceptions=True)
            for task in list(self._transitions.values()):
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.gather(*(self._stop_poller(uuid) for uuid in list(self._pollers)))

    # ---- other front ends' changes ----------------------------------------------------------------
    def _state_changed(self, event: StateChanged) -> None:
        if event.kind != KIND or self.bus is None or not self.bus.from_remote:
            return  # this front end's own change: it is current already
        uuid = event.name
        self.bus.defer(lambda: self._refresh(uuid), f"event source mapping {uuid or '(all)'}")

    def _caches_reset(self, event: CachesReset) -> None:
        if self.bus is None or not self.bus.from_remote:
            return
        self.bus.defer(lambda: self._refresh(""), "event source mappings")

    async def _refresh(self, uuid: str) -> None:
        """Re-read ``uuid`` ("" : every mapping) from the database, then match the pollers to it."""
        task = asyncio.current_task()
        if task is not None:
            self._refreshes.add(task)
        try:
            if uuid:
                async with self._lock:
                    row = await asyncio.to_thread(self.repo.get, uuid)
                    if row is None:
                        self._mappings.pop(uuid, None)
                    else:
                        self._mappings[uuid] = self._from_row(row)
                uuids = [uuid]
            else:
                before = set(self._mappings) | set(self._pollers)
                await self._reload()
                uuids = sorted(before | set(self._mappings) | set(self._pollers))
            for each in uuids:
                await self._sync(each)
                if each not in self._mappings and each not in self._pollers and each not in self._removing:
                    self._stats.pop(each, None)
        finally:
            if task is not None:
                self._refreshes.discard(task)

    async def _reload(self) -> None:
        async with self._lock:
            rows = await asyncio.to_thread(self.repo.all)
            self._mappings = {row.uuid: self._from_row(row) for row in rows}

    async def _sync(self, uuid: str) -> None:
        """Make this front end's poller of ``uuid`` match the mapping (when pollers run here): enabled,
        poll with its settings; disabled or gone, stop; ``Deleting``, finish the delete."""
        async with self._guard(uuid):
            if not self._running:
                return
            mapping = self._mappings.get(uuid)
            if mapping is not None and mapping.state == DELETING:
                self._finish_delete(uuid)
                return
            entry = self._pollers.get(uuid)
            if mapping is not None and mapping.settings.enabled and entry is not None and _same_work(entry[0].mapping, mapping):
                return  # already polling with these settings
            await self._stop_poller(uuid)
            mapping = self._mappings.get(uuid)
            if mapping is not None and mapping.settings.enabled and mapping.state != DELETING and self._running:
                self._start_poller(mapping)

    def _guard(self, uuid: str) -> asyncio.Lock:
        guard = self._guards.get(uuid)
        if guard is None:
            guard = self._guards[uuid] = asyncio.Lock()
        return guard

    def _publish(self, uuid: str) -> None:
        """Tell the other front ends (after the commit)."""
        if self.bus is not None:
            self.bus.publish(StateChanged(KIND, uuid))

    # ---- the API --------------------------------------------------------------------------------
    async def create(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("EventSourceArn")
        if params.get("SelfManagedEventSource") or (arn or "").split(":")[2:3] == ["kafka"]:
            raise InvalidParameterValue(KAFKA_REFUSED)
        if not arn:
            raise InvalidParameterValue("EventSourceArn is required. See docs/event-sources.md for the sources Squall polls.")
        source = Source.parse(arn)
        ref = self.arns.parse(params["FunctionName"])
        if ref.qualifier == LATEST:
            ref = FunctionRef(ref.name, None)
        if not await self.exists(ref):
            raise ResourceNotFound(f"Function does not exist: {self.arns.function(ref.name, ref.qualifier)}")
        settings = replace(settings_for(source, params), created_at=self.clock())
        mapping = EventSourceMapping(str(uuids.uuid4()), ref.name, ref.qualifier, source, settings, CREATING,
                                     USER_INITIATED, self.clock())
        self._refuse_duplicate(mapping)
        await self._check_source(mapping)  # may take a while (a remote endpoint): outside the lock
        async with self._lock:
            self._refuse_duplicate(mapping)
            # another front end's mapping this one has not heard of yet
            for row in await asyncio.to_thread(self.repo.all):
                if row.uuid not in self._mappings:
                    self._refuse_duplicate(mapping, [self._from_row(row)])
            await asyncio.to_thread(self.repo.put, self._to_row(mapping))
            self._mappings[mapping.uuid] = mapping
            self._stats[mapping.uuid] = PollerStats()
        self._publish(mapping.uuid)
        self._transition(mapping.uuid, self._settle(mapping.uuid))
        return self._api(mapping)

    async def get(self, uuid: str) -> dict[str, Any]:
        row = await asyncio.to_thread(self.repo.get, uuid)  # the database: whichever front end changed it
        if row is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return self._api(self._from_row(row))

    async def update(self, uuid: str, params: dict[str, Any]) -> dict[str, Any]:
        await self._wait_transition(uuid)
        async with self._lock:
            current = await self._current(uuid)
            if current.state in TRANSITIONAL:
                raise ResourceInUse(f"Cannot update the event source mapping because it is in use: {current.state}.")
            function = (current.function_name, current.qualifier)
            if params.get("FunctionName"):
                ref = self.arns.parse(params["FunctionName"])
                ref = FunctionRef(ref.name, None) if ref.qualifier == LATEST else ref
                if not await self.exists(ref):
                    raise ResourceNotFound(f"Function does not exist: {self.arns.function(ref.name, ref.qualifier)}")
                function = (ref.name, ref.qualifier)
            settings = settings_for(current.source, params, current.settings)
            state = UPDATING
            if settings.enabled != current.settings.enabled:
                state = ENABLING if settings.enabled else DISABLING
            mapping = replace(current, function_name=function[0], qualifier=function[1], settings=settings,
                              state=state, state_reason=USER_INITIATED, last_modified=self.clock())
            await asyncio.to_thread(self.repo.put, self._to_row(mapping))
            self._mappings[uuid] = mapping
        self._publish(uuid)
        self._transition(uuid, self._settle(uuid))
        return self._api(mapping)

    async def delete(self, uuid: str) -> dict[str, Any]:
        await self._wait_transition(uuid)
        async with self._lock:
            current = await self._current(uuid)
            if current.state in TRANSITIONAL:
                raise ResourceInUse(f"Cannot delete the event source mapping because it is in use: {current.state}.")
            mapping = current.with_state(DELETING)
            await asyncio.to_thread(self.repo.set_state, uuid, DELETING, USER_INITIATED)
            self._mappings[uuid] = mapping
        self._publish(uuid)
        if self._running:  # else the leader finishes it (it alone can stop the poller first)
            self._finish_delete(uuid)
        return self._api(mapping)

    async def list(self, source_arn: str | None, function_name: str | None, marker: str | None,
                   max_items: int | None) -> tuple[list[dict[str, Any]], str | None]:
        ref = None
        if function_name:
            ref = self.arns.parse(function_name)
        # the database: whichever front end changed it (rows come sorted by uuid)
        mappings = [self._from_row(row) for row in await asyncio.to_thread(self.repo.all)]
        if source_arn:
            mappings = [m for m in mappings if m.source.arn == source_arn]
        if ref is not None:
            mappings = [m for m in mappings if m.function_name == ref.name
                        and (ref.qualifier is None or (m.qualifier or LATEST) == ref.qualifier)]
        if marker:
            after = decode_marker(marker)
            mappings = [m for m in mappings if m.uuid > after]
        limit = max_items or LIST_DEFAULT
        page = mappings[:limit]
        next_marker = encode_marker(page[-1].uuid) if len(mappings) > limit else None
        return [self._api(m) for m in page], next_marker

    def report(self) -> list[dict[str, Any]]:
        """What ``squall event-sources`` shows."""
        out = []
        for m in sorted(self._mappings.values(), key=lambda m: (m.function_name, m.uuid)):
            stats = self._stats.setdefault(m.uuid, PollerStats())
            out.append({"uuid": m.uuid, "function": self.arns.function(m.function_name, m.qualifier),
                        "source": m.source.arn, "kind": m.source.kind, "state": m.state,
                        "last_result": m.last_result, "batch_size": m.settings.batch_size, **stats.to_json()})
        return out

    # ---- states and pollers ---------------------------------------------------------------------
    def _transition(self, uuid: str, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        self._transitions[uuid] = task
        task.add_done_callback(lambda t: self._transitions.pop(uuid, None) if self._transitions.get(uuid) is t else None)

    async def _wait_transition(self, uuid: str) -> None:
        task = self._transitions.get(uuid)
        if task is not None:
            await asyncio.wait({task}, timeout=TRANSITION_WAIT)
            return
        # another front end's transition (it ends in milliseconds there): wait for it as briefly
        deadline = time.monotonic() + TRANSITION_WAIT
        while time.monotonic() < deadline:
            row = await asyncio.to_thread(self.repo.get, uuid)
            if row is None or row.state not in SETTLING:
                return
            await asyncio.sleep(0.05)

    async def _current(self, uuid: str) -> EventSourceMapping:
        """The mapping as the database has it now (another front end may have changed it); under ``_lock``."""
        row = await asyncio.to_thread(self.repo.get, uuid)
        if row is None:
            self._mappings.pop(uuid, None)
            raise ResourceNotFound("The resource you requested does not exist.")
        mapping = self._mappings[uuid] = self._from_row(row)
        return mapping

    async def _settle(self, uuid: str) -> None:
        """Finish Creating / Updating / Enabling / Disabling: (re)start or stop the poller (if pollers
        run on this front end), then the final state."""
        async with self._guard(uuid):
            await self._stop_poller(uuid)
            mapping = self._mappings.get(uuid)
            if mapping is None:
                return
            if mapping.settings.enabled and self._running:
                self._start_poller(mapping)
            await self._set_state(uuid, ENABLED if mapping.settings.enabled else DISABLED, USER_INITIATED)

    def _finish_delete(self, uuid: str) -> None:
        if uuid not in self._removing:
            self._removing.add(uuid)
            self._transition(uuid, self._remove(uuid))

    async def _remove(self, uuid: str) -> None:
        """Finish a delete: stop the poller, let the source forget the mapping, drop the row.
        The caller put ``uuid`` in ``_removing``."""
        try:
            async with self._guard(uuid):
                poller = await self._stop_poller(uuid)
                mapping = self._mappings.get(uuid)
                if poller is None and mapping is not None:  # disabled: a poller that never ran cleans up
                    poller = mapping.source.spec.entry("make_poller")(mapping, self._deps(mapping))
                if poller is not None:
                    try:
                        await asyncio.wait_for(poller.forget(), 15.0)
                    except Exception as error:  # the mapping goes anyway; what the source kept is logged
                        log.warning("event source mapping %s: could not clean up at its source: %r", uuid, error)
                async with self._lock:
                    await asyncio.to_thread(self.repo.delete, uuid)
                    self._mappings.pop(uuid, None)
                self._stats.pop(uuid, None)
        finally:
            self._removing.discard(uuid)
        self._guards.pop(uuid, None)
        self._publish(uuid)

    async def _set_state(self, uuid: str, state: str, reason: str) -> None:
        async with self._lock:
            mapping = self._mappings.get(uuid)
            if mapping is None:
                return
            await asyncio.to_thread(self.repo.set_state, uuid, state, reason)
            self._mappings[uuid] = mapping.with_state(state, reason)
        self._publish(uuid)

    def _set_result(self, uuid: str, result: str) -> None:
        mapping = self._mappings.get(uuid)
        if mapping is None:
            return
        self._mappings[uuid] = replace(mapping, last_result=result)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.repo.set_result, uuid, result))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _deps(self, mapping: EventSourceMapping) -> PollerDeps:
        uuid = mapping.uuid
        return PollerDeps(
            invoker=self.invoker,
            clients=self.clients,
            brokers=self.brokers,
            report=lambda result: self._set_result(uuid, result),
            stats=self._stats.setdefault(uuid, PollerStats()),
            function_arn=self.arns.function(mapping.function_name, mapping.qualifier),
            role_arn=lambda: self.role_of(mapping.function_name),
            positions=lambda: asyncio.to_thread(self.repo.positions, uuid),
            checkpoint=lambda shard, position: asyncio.to_thread(self.repo.checkpoint, uuid, shard, position),
            send=self.send,
        )

    def _start_poller(self, mapping: EventSourceMapping) -> None:
        poller: Poller = mapping.source.spec.entry("make_poller")(mapping, self._deps(mapping))
        task = asyncio.get_running_loop().create_task(poller.run())

        def ended(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("event source mapping %s: poller stopped: %r", mapping.uuid, t.exception())
                self._set_result(mapping.uuid, f"PROBLEM: Internal error: {t.exception()!r}")

        task.add_done_callback(ended)
        self._pollers[mapping.uuid] = (poller, task)

    async def _stop_poller(self, uuid: str) -> Poller | None:
        entry = self._pollers.pop(uuid, None)
        if entry is None:
            return None
        poller, task = entry
        poller.stopping.set()
        done, _ = await asyncio.wait({task}, timeout=5.0)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stats = self._stats.get(uuid)
        if stats is not None:
            stats.pollers = 0
        return poller

    # ---- helpers --------------------------------------------------------------------------------
    async def _check_source(self, mapping: EventSourceMapping) -> None:
        """What Lambda checks when a mapping is made (the source exists, …): each kind's own."""
        extra = {"settings": mapping.settings} if mapping.source.spec.takes_queues else {}  # the queue, the secret
        await mapping.source.spec.entry("check")(mapping.source, self._deps(mapping), self.timeout_of(mapping.function_name),
                                                 **extra)

    def _refuse_duplicate(self, mapping: EventSourceMapping, others: Any = None) -> None:
        for other in self._mappings.values() if others is None else others:
            if other.source.arn == mapping.source.arn and other.settings.queues == mapping.settings.queues and (
                    other.function_name, other.qualifier) == (mapping.function_name, mapping.qualifier):
                raise ResourceConflict(
                    f"The event source arn (\" {other.source.arn} \") and function (\" {other.function_name} \") "
                    f"provided mapping already exists. Please update or delete the existing mapping with UUID {other.uuid}")

    def _api(self, m: EventSourceMapping) -> dict[str, Any]:
        return m.to_api(self.arns.function(m.function_name, m.qualifier),
                        f"arn:aws:lambda:{self.arns.region}:{self.arns.account_id}:event-source-mapping:{m.uuid}")

    @staticmethod
    def _to_row(m: EventSourceMapping) -> MappingRow:
        return MappingRow(m.uuid, m.function_name, m.qualifier, m.source.arn, settings_to_json(m.settings), m.state,
                          m.state_reason, m.last_modified, m.last_result)

    @staticmethod
    def _from_row(r: MappingRow) -> EventSourceMapping:
        return EventSourceMapping(r.uuid, r.function_name, r.qualifier, Source.parse(r.source_arn),
                                  settings_from_json(r.settings), r.state, r.state_reason, r.last_modified,
                                  r.last_result or NO_RECORDS)


def _same_work(a: EventSourceMapping, b: EventSourceMapping) -> bool:
    """Whether a poller started for ``a`` polls as ``b`` asks (states and results aside)."""
    return (a.function_name, a.qualifier, a.source, a.settings) == (b.function_name, b.qualifier, b.source, b.settings)
