"""Pub/sub subjects as triggers: an MQTT topic filter, a core NATS subject or a Redis channel
(PUBLISH/SUBSCRIBE, not streams) mapped to a function.

``POST /squall/triggers/mqtt|nats|redis-pubsub`` (signed; ``{"FunctionName", "Broker", "Topic"}``)
stores a trigger (the ``triggers`` table: kind ``mqtt``/``nats``/``redis-pubsub``, source
``<broker>:<topic>``) and starts its listener; the server starts a listener for every stored one
at start-up and stops them at shutdown (with several front ends on one database, only the leader
listens: the others tell it of the triggers they make and delete over the bus). ``Broker`` is a
name of the ``event_source_brokers`` setting (``mqtt://host:port``, ``nats://host:port``,
``redis://host:port/db``). The creator needs ``lambda:AddPermission`` on the function (making a
trigger is granting a caller the right to invoke it); no resource-policy check is made per
message, as there is no AWS principal for these.

Every message becomes ONE asynchronous invocation (``accept_event``: retries, event age and
destinations apply) with the event::

    {"Records": [{"eventSource": "squall:mqtt" | "squall:nats" | "squall:redis-pubsub",
                  "eventSourceARN": "arn:aws:<mqtt|nats|redis>:<region>:<account>:<broker>/<topic|subject|channel>/<filter>",
                  "broker": "<name>", "subscription": "<the filter>", "topic": "<the actual topic/subject/channel>",
                  "payload": "<UTF-8 text, or base64>", "isBase64Encoded": bool, "receivedAt": "<ISO time>",
                  "qos": 0|1|2, "retain": bool (MQTT)  |  "replyTo": "…" (NATS, when set)}]}

Delivery: at most once up to the moment Squall accepts the message (``accept_event`` returns
after the durable commit): a message published while a listener is disconnected, or in flight
when the server dies, is lost (MQTT subscribes with a clean session; NATS core and Redis keep
nothing). From acceptance on it is as durable as any asynchronous invocation. A listener that
loses its broker reconnects with exponential backoff (0.5 s doubling to 30 s); its ``state``,
``reconnects`` and ``last_error`` show it (``/health`` → ``pubsub``, ``squall triggers``).

MQTT topic filters take ``+`` (one level) and ``#`` (the rest, last); NATS subjects ``*`` and
``>``; a Redis channel with ``*``, ``?`` or ``[`` is a PSUBSCRIBE glob pattern.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from squall.api.protocol import HttpResponse
from squall.arn import FunctionRef
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.errors import InvalidParameterValue, LambdaError, ResourceNotFound
from squall.sources.brokers import Brokers
from squall.store.triggers import StoredTrigger, TriggerRepository

log = logging.getLogger("squall.pubsub")

KINDS = {"mqtt": ("mqtt", "topic", ("mqtt", "tcp")),
         "nats": ("nats", "subject", ("nats", "tls")),
         "redis-pubsub": ("redis", "channel", ("redis", "rediss", "unix"))}
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
STATE_KIND = "triggers"  # the bus's StateChanged kind of the triggers table (name: the trigger id)


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def valid_topic(kind: str, topic: Any) -> str:
    """The topic filter / subject / channel, or InvalidParameterValue saying what is wrong."""
    if not isinstance(topic, str) or not topic or len(topic) > 1024 or "\x00" in topic:
        raise InvalidParameterValue("Topic is required (1 to 1024 characters).")
    if kind == "mqtt":
        levels = topic.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise InvalidParameterValue(f"MQTT topic filter {topic!r}: '#' must be a whole, last level.")
            if "+" in level and level != "+":
                raise InvalidParameterValue(f"MQTT topic filter {topic!r}: '+' must be a whole level.")
    elif kind == "nats":
        tokens = topic.split(".")
        if any(not t or any(c.isspace() for c in t) for t in tokens):
            raise InvalidParameterValue(f"NATS subject {topic!r} has an empty token or white space.")
        if any(">" in t and (t != ">" or i != len(tokens) - 1) for i, t in enumerate(tokens)) \
                or any("*" in t and t != "*" for t in tokens):
            raise InvalidParameterValue(f"NATS subject {topic!r}: '*' and '>' must be whole tokens, '>' last.")
    return topic


def message_event(kind: str, arn: str, broker: str, subscription: str, topic: str, payload: bytes,
                  **extra: Any) -> bytes:
    try:
        text, encoded = payload.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(payload).decode(), True
    record = {"eventSource": f"squall:{kind}", "eventSourceARN": arn, "broker": broker, "subscription": subscription,
              "topic": topic, "payload": text, "isBase64Encoded": encoded, "receivedAt": iso(time.time()), **extra}
    return orjson.dumps({"Records": [record]})


class Listener:
    """One trigger's subscription: connect, subscribe, hand each message on; reconnect with backoff."""

    def __init__(self, trigger: StoredTrigger, url: str, arn: str, service: "PubSub") -> None:
        self.trigger = trigger
        self.kind = trigger.kind
        self.broker = trigger.document["Broker"]
        self.topic = trigger.document["Topic"]
        self.url = url
        self.arn = arn
        self.service = service
        self.task: asyncio.Task[None] | None = None
        self.stats: dict[str, Any] = {"state": "starting", "received": 0, "delivered": 0, "failed": 0,
                                      "reconnects": 0, "last_delivery": None, "last_error": None}

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"pubsub-{self.trigger.trigger_id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.stats["state"] = "stopped"

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        connect = {"mqtt": self._mqtt, "nats": self._nats, "redis-pubsub": self._redis}[self.kind]
        while True:
            self.stats["state"] = "connecting"
            try:
                await connect()  # returns or raises when the connection is lost
                error = "the connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any client error: reconnect)
                error = f"{type(exc).__name__}: {exc}"
            if self.stats["state"] == "listening":
                delay = BACKOFF_FIRST  # it was up: start the backoff over
            self.stats.update(state="reconnecting", last_error=error)
            self.stats["reconnects"] += 1
            log.warning("pub/sub trigger %s (%s %s on %s): %s; reconnecting in %.1f s", self.trigger.trigger_id,
                        self.kind, self.topic, self.broker, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _listening(self) -> None:
        self.stats["state"] = "listening"
        log.info("pub/sub trigger %s: listening to %s %s on %s", self.trigger.trigger_id, self.kind, self.topic,
                 self.broker)

    async def _deliver(self, topic: str, payload: bytes, **extra: Any) -> None:
        self.stats["received"] += 1
        event = message_event(self.kind, self.arn, self.broker, self.topic, topic, payload, **extra)
        ok = await self.service.deliver(self.trigger, event)
        if ok:
            self.stats["delivered"] += 1
            self.stats["last_delivery"] = time.time()
        else:
            self.stats["failed"] += 1

    async def _mqtt(self) -> None:
        import aiomqtt

        parts = urlsplit(self.url)
        async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883,
                                  username=unquote(parts.username) if parts.username else None,
                                  password=unquote(parts.password) if parts.password else None,
                                  identifier=f"squall-{self.trigger.trigger_id[:16]}-{secrets.token_hex(4)}",
                                  timeout=10) as client:
            await client.subscribe(self.topic, qos=1)
            self._listening()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                await self._deliver(message.topic.value, payload, qos=message.qos, retain=bool(message.retain))

    async def _nats(self) -> None:
        import nats
        from nats.errors import TimeoutError as NatsTimeout

        async def quiet(exc: Exception) -> None:
            self.stats["last_error"] = f"{type(exc).__name__}: {exc}"

        nc = await nats.connect(servers=[self.url], allow_reconnect=False, connect_timeout=5, error_cb=quiet,
                                max_reconnect_attempts=0)
        try:
            sub = await nc.subscribe(self.topic)
            await nc.flush(timeout=5)
            self._listening()
            while nc.is_connected:
                try:
                    msg = await sub.next_msg(timeout=1)
                except NatsTimeout:
                    continue
                extra = {"replyTo": msg.reply} if msg.reply else {}
                await self._deliver(msg.subject, msg.data, **extra)
        finally:
            if not nc.is_closed:
                await nc.close()

    async def _redis(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5, health_check_interval=15)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            if any(c in self.topic for c in "*?["):
                await pubsub.psubscribe(self.topic)
            else:
                await pubsub.subscribe(self.topic)
            self._listening()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") not in ("message", "pmessage"):
                    continue
                channel = message["channel"]
                data = message["data"]
                await self._deliver(channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel),
                                    data if isinstance(data, bytes) else str(data).encode())
        finally:
            await pubsub.aclose()
            await client.aclose()


class PubSub:
    """The pub/sub triggers' listeners. Only a started PubSub listens (with several front ends on one
    database, the leader's): ``start`` and ``stop`` may alternate any number of times; after ``stop``
    no listener is left, and ``start`` starts one for every stored trigger again. A started PubSub
    follows the triggers other front ends make and delete (``StateChanged("triggers", id)`` from them)."""

    def __init__(self, repo: TriggerRepository, brokers: Brokers, region: str, account_id: str,
                 accept: Callable[[FunctionRef, bytes, str], Awaitable[None]],
                 exists: Callable[[FunctionRef], Awaitable[bool]], bus: EventBus | None = None) -> None:
        self.repo = repo
        self.brokers = brokers
        self.region = region
        self.account_id = account_id
        self.accept = accept
        self.exists = exists
        self.bus = bus
        self.listeners: dict[str, Listener] = {}
        self._running = False
        # start, stop, forget and the re-reads one at a time: a re-read never revives what is being stopped
        self._lock = asyncio.Lock()
        if bus is not None:
            bus.subscribe(StateChanged, self._state_changed)
            bus.subscribe(CachesReset, self._caches_reset)

    # ---- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        async with self._lock:
            self._running = True
            await self._sync(None)

    async def stop(self) -> None:
        async with self._lock:
            self._running = False
            listeners, self.listeners = list(self.listeners.values()), {}
            await asyncio.gather(*(listener.stop() for listener in listeners))

    async def forget(self, trigger_id: str) -> None:
        """A trigger is being deleted: its listener stops and its row goes (committed before the other
        front ends are told, so that the one listening finds it gone)."""
        async with self._lock:
            listener = self.listeners.pop(trigger_id, None)
            if listener is not None:
                await listener.stop()
            await asyncio.to_thread(self.repo.delete, trigger_id)
        self._changed(trigger_id)

    # ---- other front ends' triggers (squall/cluster/relay.py) --------------------------------------
    def _changed(self, trigger_id: str) -> None:
        if self.bus is not None:
            self.bus.publish(StateChanged(STATE_KIND, trigger_id))

    def _state_changed(self, event: StateChanged) -> None:
        assert self.bus is not None
        if event.kind != STATE_KIND or not self.bus.from_remote or not self._running:
            return
        trigger_id = event.name or None
        self.bus.defer(lambda: self._resync(trigger_id), f"the pub/sub trigger {trigger_id or '(all)'}")

    def _caches_reset(self, _event: CachesReset) -> None:
        assert self.bus is not None
        if self.bus.from_remote and self._running:
            self.bus.defer(lambda: self._resync(None), "the pub/sub triggers")

    async def _resync(self, trigger_id: str | None) -> None:
        async with self._lock:
            if self._running:
                await self._sync(trigger_id)

    async def _sync(self, trigger_id: str | None) -> None:
        """Listen to what the database holds (one trigger, or all), and to nothing else (lock held)."""
        if trigger_id is not None:
            found = await asyncio.to_thread(self.repo.get, trigger_id)
            wanted = {trigger_id: found} if found is not None and found.kind in KINDS else {}
            names = {trigger_id}
        else:
            wanted = {t.trigger_id: t for t in await asyncio.to_thread(self.repo.list) if t.kind in KINDS}
            names = set(self.listeners) | set(wanted)
        if not self._running:
            return
        for name in sorted(names):
            trigger, listener = wanted.get(name), self.listeners.get(name)
            if listener is not None and (trigger is None or (trigger.function_arn, trigger.document)
                                         != (listener.trigger.function_arn, listener.trigger.document)):
                del self.listeners[name]  # gone, or pointed elsewhere since
                await listener.stop()
            if trigger is not None:
                self._listen(trigger)

    def _listen(self, trigger: StoredTrigger) -> None:
        if trigger.trigger_id in self.listeners or not self._running:
            return
        try:
            url = self.brokers.url(trigger.document.get("Broker"))
        except InvalidParameterValue as exc:  # the setting changed since: say so, keep the trigger
            log.warning("pub/sub trigger %s not started: %s", trigger.trigger_id, exc.message)
            return
        listener = Listener(trigger, url, self.source_arn(trigger.kind, trigger.document["Broker"],
                                                          trigger.document["Topic"]), self)
        self.listeners[trigger.trigger_id] = listener
        listener.start()

    def source_arn(self, kind: str, broker: str, topic: str) -> str:
        service, noun, _ = KINDS[kind]
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{broker}/{noun}/{topic}"

    # ---- reports ---------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        total: dict[str, Any] = {"listeners": len(self.listeners), "listening": 0, "received": 0, "delivered": 0,
                                 "failed": 0, "reconnects": 0}
        for listener in self.listeners.values():
            total["listening"] += listener.stats["state"] == "listening"
            for key in ("received", "delivered", "failed", "reconnects"):
                total[key] += listener.stats[key]
        return total

    def trigger_stats(self, trigger_id: str) -> dict[str, Any] | None:
        listener = self.listeners.get(trigger_id)
        return None if listener is None else dict(listener.stats)

    # ---- making one (signed) -----------------------------------------------------------
    async def create(self, request: Any, kind: str, access: Any, function_arn: Callable[[Any], tuple[str, FunctionRef]]
                     ) -> HttpResponse:
        try:
            params = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidParameterValue("The body must be a JSON object.") from None
        if not isinstance(params, dict):
            raise InvalidParameterValue("The body must be a JSON object.")
        arn, ref = function_arn(params.get("FunctionName"))
        access.check(request.state.get("principal"), "lambda:AddPermission", arn)
        broker = params.get("Broker")
        url = self.brokers.url(broker if isinstance(broker, str) else None)
        scheme = urlsplit(url).scheme
        if scheme not in KINDS[kind][2]:
            raise InvalidParameterValue(f"Broker {broker!r} is {url.split('://')[0]}://, not a {kind} broker "
                                        f"({' or '.join(s + '://' for s in KINDS[kind][2])}).")
        topic = valid_topic(kind, params.get("Topic"))
        if not await self.exists(ref):
            raise ResourceNotFound(f"Function not found: {arn}")
        source = f"{broker}:{topic}"
        trigger = await asyncio.to_thread(self.repo.find, kind, arn, source)
        if trigger is None:
            trigger = StoredTrigger(secrets.token_urlsafe(18), kind, arn, source, None,
                                    {"Broker": broker, "Topic": topic}, time.time())
            await asyncio.to_thread(self.repo.put, trigger)
            self._changed(trigger.trigger_id)  # the leader (maybe another front end) starts listening
        self._listen(trigger)
        body = {"TriggerId": trigger.trigger_id, "Kind": kind, "FunctionArn": arn, "Broker": broker, "Topic": topic,
                "EventSourceArn": self.source_arn(kind, broker, topic)}
        return HttpResponse(200, [("Content-Type", "application/json")], orjson.dumps(body))

    async def deliver(self, trigger: StoredTrigger, event: bytes) -> bool:
        name = trigger.function_arn.split(":function:", 1)[1]
        function, _, qualifier = name.partition(":")
        try:
            await self.accept(FunctionRef(function, qualifier or None), event, str(uuid.uuid4()))
        except LambdaError as exc:
            log.warning("pub/sub trigger %s: %s: %s", trigger.trigger_id, exc.code, exc.message)
            return False
        except Exception:  # noqa: BLE001 (the store failed: count it, keep listening)
            log.exception("pub/sub trigger %s: accepting a message failed", trigger.trigger_id)
            return False
        return True
