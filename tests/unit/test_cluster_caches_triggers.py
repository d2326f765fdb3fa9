"""Several front ends on one database: the caches of function URLs and HTTP APIs follow what
another front end changed when the bus says so (``StateChanged`` from a remote front end, as
squall/cluster/relay.py publishes it), and not for their own changes; the pub/sub triggers'
listeners start, stop and start again, and follow the triggers other front ends make and delete."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest

from squall.arn import Arns, FunctionRef
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.sources.brokers import Brokers
from squall.store import db
from squall.store.function_urls import FunctionUrlRepository
from squall.store.http_apis import HttpApiRepository
from squall.store.triggers import StoredTrigger, TriggerRepository
from squall.triggers import pubsub as pubsub_module
from squall.triggers.function_urls import FunctionUrls
from squall.triggers.http_apis import HttpApis
from squall.triggers.pubsub import PubSub

ARNS = Arns("us-east-1", "123456789012")
FN = "arn:aws:lambda:us-east-1:123456789012:function:items"


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def settle(bus: EventBus) -> None:
    """Wait (bounded) for the refreshes the bus deferred."""
    if bus._deferred:
        await asyncio.wait_for(asyncio.gather(*list(bus._deferred)), 2.0)


def remote(bus: EventBus, event: object) -> None:
    with bus.remote():
        bus.publish(event)


# ---- function URLs -----------------------------------------------------------------------------------
async def _exists(_ref: FunctionRef) -> bool:
    return True


def _urls(engine: Any, bus: EventBus) -> FunctionUrls:
    return FunctionUrls(FunctionUrlRepository(engine), ARNS, bus, _exists, _exists, lambda: 9000)


def test_function_urls_follow_another_front_ends_changes(tmp_path):
    async def scenario() -> None:
        engine = db.create_engine(f"sqlite:///{tmp_path / 'urls.db'}")
        with engine.begin() as conn:
            for name in ("items", "other"):
                conn.execute(db.functions.insert().values(name=name, tags={}, created_at=0.0))
        bus_a, bus_b = EventBus(), EventBus()
        published: list[object] = []
        bus_b.subscribe(StateChanged, published.append)
        a, b = _urls(engine, bus_a), _urls(engine, bus_b)
        await a.load()
        await b.load()

        # B creates: A does not know until the bus says so (from another front end)
        created = await b.create(FunctionRef("items", None), {"AuthType": "NONE"})
        assert published == [StateChanged("function_urls", "items")]
        url_id = created["FunctionUrl"].split("//", 1)[1].split(".", 1)[0]
        assert a.lookup(url_id) is None
        bus_a.publish(StateChanged("function_urls", "items"))  # a local event: no re-read
        assert not bus_a._deferred
        await asyncio.sleep(0.05)
        assert a.lookup(url_id) is None
        remote(bus_a, StateChanged("function_urls", "items"))
        assert await until(lambda: a.lookup(url_id) is not None)
        assert (await a.get(FunctionRef("items", None)))["AuthType"] == "NONE"

        # an update, then a deletion
        await b.update(FunctionRef("items", None), {"AuthType": "AWS_IAM"})
        remote(bus_a, StateChanged("function_urls", "items"))
        await settle(bus_a)
        assert a.lookup(url_id).record.auth_type == "AWS_IAM"
        await b.delete(FunctionRef("items", None))
        assert published[-1] == StateChanged("function_urls", "items")
        remote(bus_a, StateChanged("function_urls", "items"))
        assert await until(lambda: a.lookup(url_id) is None)
        assert a._by_target == {}

        # CachesReset from another front end: everything re-read
        other = await b.create(FunctionRef("other", None), {"AuthType": "NONE"})
        other_id = other["FunctionUrl"].split("//", 1)[1].split(".", 1)[0]
        remote(bus_a, CachesReset("test"))
        assert await until(lambda: a.lookup(other_id) is not None)

        # drop_alias deletes the row even when this front end never heard of the URL
        with engine.begin() as conn:
            conn.execute(db.function_urls.insert().values(
                function_name="items", qualifier="live", url_id="x" * 32, auth_type="NONE", cors=None,
                invoke_mode="BUFFERED", created="t", last_modified="t"))
        assert a.lookup("x" * 32) is None
        await a.drop_alias("items", "live")
        assert [r for r in a.repo.all() if r.qualifier == "live"] == []

    asyncio.run(scenario())


# ---- HTTP APIs -----------------------------------------------------------------------------------------
def test_http_apis_follow_another_front_ends_changes(tmp_path):
    async def scenario() -> None:
        engine = db.create_engine(f"sqlite:///{tmp_path / 'apis.db'}")
        bus_a, bus_b = EventBus(), EventBus()
        published: list[object] = []
        bus_b.subscribe(StateChanged, published.append)
        a = HttpApis(HttpApiRepository(engine), ARNS, lambda: 9000, bus_a)
        b = HttpApis(HttpApiRepository(engine), ARNS, lambda: 9000, bus_b)
        await a.load()
        await b.load()

        api_id = (await b.call("CreateApi", {"Name": "q", "ProtocolType": "HTTP", "Target": FN}))["ApiId"]
        assert published == [StateChanged("http_apis", api_id)]
        await b.call("GetApi", {"ApiId": api_id})
        assert len(published) == 1  # reads are not changes
        assert a.lookup(api_id) is None
        bus_a.publish(StateChanged("http_apis", api_id))  # local: no re-read
        assert not bus_a._deferred
        assert a.lookup(api_id) is None
        remote(bus_a, StateChanged("http_apis", api_id))
        assert await until(lambda: a.lookup(api_id) is not None)
        assert a.lookup(api_id).route_for("GET", "/x")[0].key == "$default"

        # a route added on B: A serves it after the event
        integration = await b.call("CreateIntegration", {"ApiId": api_id, "IntegrationType": "AWS_PROXY",
                                                         "IntegrationUri": FN, "PayloadFormatVersion": "1.0"})
        await b.call("CreateRoute", {"ApiId": api_id, "RouteKey": "GET /pets/{id}",
                                     "Target": f"integrations/{integration['IntegrationId']}"})
        assert published[-1] == StateChanged("http_apis", api_id)
        assert a.lookup(api_id).route_for("GET", "/pets/1")[0].key == "$default"
        remote(bus_a, StateChanged("http_apis", api_id))
        await settle(bus_a)
        assert a.lookup(api_id).route_for("GET", "/pets/1")[0].key == "GET /pets/{id}"

        # deleted on B: gone from A
        await b.call("DeleteApi", {"ApiId": api_id})
        remote(bus_a, StateChanged("http_apis", api_id))
        assert await until(lambda: a.lookup(api_id) is None)

        # CachesReset from another front end: all re-read
        second = (await b.call("CreateApi", {"Name": "s", "ProtocolType": "HTTP"}))["ApiId"]
        remote(bus_a, CachesReset("test"))
        assert await until(lambda: a.lookup(second) is not None)

    asyncio.run(scenario())


# ---- pub/sub triggers ----------------------------------------------------------------------------------
@pytest.fixture
def quiet_listeners(monkeypatch):
    """Listeners that connect to nothing: they say ``listening`` and wait to be cancelled."""

    async def run(self) -> None:
        self.stats["state"] = "listening"
        await asyncio.Event().wait()

    monkeypatch.setattr(pubsub_module.Listener, "_run", run)


def _trigger(trigger_id: str, kind: str = "mqtt") -> StoredTrigger:
    return StoredTrigger(trigger_id, kind, FN, f"mq:t/{trigger_id}", None, {"Broker": "mq", "Topic": f"t/{trigger_id}"},
                         time.time())


async def _accept(_ref: FunctionRef, _event: bytes, _request_id: str) -> None:
    return None


def _pubsub(repo: TriggerRepository, bus: EventBus) -> PubSub:
    return PubSub(repo, Brokers({"mq": "mqtt://127.0.0.1:1"}), "us-east-1", "123456789012", _accept, _exists, bus)


def test_pubsub_starts_stops_and_starts_again(tmp_path, quiet_listeners):
    async def scenario() -> None:
        repo = TriggerRepository(db.create_engine(f"sqlite:///{tmp_path / 'triggers.db'}"))
        repo.put(_trigger("one"))
        repo.put(_trigger("two"))
        repo.put(_trigger("hook", kind="s3"))  # not a pub/sub trigger: never listened to
        service = _pubsub(repo, EventBus())
        await service.stop()  # before any start: nothing to do
        await service.start()
        first = dict(service.listeners)
        assert sorted(first) == ["one", "two"]
        assert await until(lambda: all(listener.stats["state"] == "listening" for listener in first.values()))
        await service.start()  # again while started: the same listeners
        assert service.listeners == first
        await service.stop()
        assert service.listeners == {}
        assert all(listener.task.done() and listener.stats["state"] == "stopped" for listener in first.values())
        service._listen(_trigger("one"))  # what create does: not while stopped
        assert service.listeners == {}
        await service.stop()
        repo.put(_trigger("three"))
        await service.start()
        assert sorted(service.listeners) == ["one", "three", "two"]
        assert all(service.listeners[name] is not first.get(name) for name in service.listeners)
        await service.forget("two")
        assert sorted(service.listeners) == ["one", "three"] and repo.get("two") is None
        await service.stop()
        assert service.listeners == {}

    asyncio.run(scenario())


def test_pubsub_follows_other_front_ends_triggers(tmp_path, quiet_listeners):
    async def scenario() -> None:
        engine = db.create_engine(f"sqlite:///{tmp_path / 'triggers.db'}")
        bus_leader, bus_other = EventBus(), EventBus()
        published: list[object] = []
        bus_other.subscribe(StateChanged, published.append)
        leader = _pubsub(TriggerRepository(engine), bus_leader)
        other = _pubsub(TriggerRepository(engine), bus_other)  # not started: a follower
        await leader.start()
        assert leader.listeners == {}

        other.repo.put(_trigger("new"))  # what another front end's create commits, then tells
        bus_leader.publish(StateChanged("triggers", "new"))  # a local event: nothing
        assert not bus_leader._deferred and leader.listeners == {}
        remote(bus_leader, StateChanged("triggers", "new"))
        assert await until(lambda: "new" in leader.listeners)

        await other.forget("new")  # deletes the row, then tells
        assert published == [StateChanged("triggers", "new")]
        assert other.listeners == {}
        remote(bus_leader, StateChanged("triggers", "new"))
        assert await until(lambda: "new" not in leader.listeners)

        # CachesReset: all re-read (one made, one gone)
        other.repo.put(_trigger("a"))
        other.repo.put(_trigger("b"))
        remote(bus_leader, CachesReset("test"))
        assert await until(lambda: sorted(leader.listeners) == ["a", "b"])
        other.repo.delete("a")
        remote(bus_leader, CachesReset("test"))
        assert await until(lambda: sorted(leader.listeners) == ["b"])

        # a stopped PubSub (no longer the leader) ignores them
        await leader.stop()
        other.repo.put(_trigger("c"))
        remote(bus_leader, StateChanged("triggers", "c"))
        remote(bus_leader, CachesReset("test"))
        await settle(bus_leader)
        assert leader.listeners == {}
        await leader.start()
        assert sorted(leader.listeners) == ["b", "c"]
        await leader.stop()

    asyncio.run(scenario())


def test_pubsub_create_tells_the_other_front_ends(tmp_path, quiet_listeners):
    class Request:
        body = b'{"FunctionName": "items", "Broker": "mq", "Topic": "a/b"}'
        state: dict[str, Any] = {}

    class Access:
        def check(self, *_args: Any) -> None:
            return None

    async def scenario() -> None:
        bus = EventBus()
        published: list[object] = []
        bus.subscribe(StateChanged, published.append)
        follower = _pubsub(TriggerRepository(db.create_engine(f"sqlite:///{tmp_path / 'triggers.db'}")), bus)
        response = await follower.create(Request(), "mqtt", Access(), lambda _name: (FN, FunctionRef("items", None)))
        assert response.status == 200
        [trigger] = follower.repo.list()
        assert published == [StateChanged("triggers", trigger.trigger_id)]
        assert follower.listeners == {}  # not started: the leader listens
        await follower.create(Request(), "mqtt", Access(), lambda _name: (FN, FunctionRef("items", None)))
        assert len(published) == 1  # the same trigger again: no change

    asyncio.run(scenario())
