"""The resolver: names → frozen targets, alias routing, invalidation by bus events."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from squall.arn import LATEST, Arns, FunctionRef
from squall.engine.bus import AliasChanged, EventBus, FunctionUpdated, VersionDeleted
from squall.errors import ResourceConflict, ResourceNotFound
from squall.function import Code, FunctionVersion, State
from squall.invoke.resolver import AliasRoute, Resolver
from squall.runtimes.registry import Runtime, RuntimeRegistry
from squall.store.aliases import AliasRecord, AliasRepository
from squall.store.db import create_engine
from squall.store.functions import FunctionRepository

ARNS = Arns("us-east-1", "123456789012")
RUNTIMES = RuntimeRegistry((Runtime("python3.11", "python", "/usr/bin/python3", "3.11.0"),))


def version(number: str = LATEST, state: State = State.ACTIVE, **changes) -> FunctionVersion:
    fv = FunctionVersion(name="f", runtime="python3.11", handler="app.handler", role="arn:aws:iam::123456789012:role/r",
                         code=Code("c2hh", "ab" * 32, 10), version=number, state=state)
    return dataclasses.replace(fv, **changes)


class Functions:
    """The function service's side the resolver uses: the $LATEST cache and what it knows."""

    def __init__(self) -> None:
        self.latest: dict[str, FunctionVersion] = {}
        self.lookups = 0

    def invocable_latest(self, name: str) -> FunctionVersion | None:
        self.lookups += 1
        return self.latest.get(name)

    async def explain_not_invocable(self, name: str, qualifier: str):
        raise ResourceNotFound(f"Function not found: {ARNS.function(name, qualifier)}")

    def code_path(self, config: FunctionVersion) -> Path:
        return Path("/code") / config.code.sha256_hex

    def network_of(self, config: FunctionVersion) -> str | None:
        return "default"

    def opt_path(self, config: FunctionVersion) -> Path | None:
        return None

    async def ensure_local(self, config: FunctionVersion) -> bool:
        return True


@pytest.fixture
def world(tmp_path):
    db = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    repo, aliases = FunctionRepository(db), AliasRepository(db)
    repo.create(version(), {}, version("1"))
    repo.update_and_publish(version(revision_id="x"), repo.get("f").revision_id, lambda n: version(str(n)))
    bus, functions = EventBus(), Functions()
    functions.latest["f"] = version()
    resolver = Resolver(functions, repo, aliases, RUNTIMES, ARNS, bus)

    def set_draws(values: list[float]) -> None:  # the next draws of the weighted choice
        resolver.draw = iter(values).__next__

    yield resolver, repo, aliases, bus, functions, set_draws
    db.dispose()


def test_latest_is_the_cached_invocable_version_and_a_dict_lookup_after(world):
    resolver, _, _, bus, functions, _ = world

    async def scenario():
        target = await resolver.resolve(FunctionRef("f"))
        assert target.version == LATEST and target.invoked_arn == ARNS.function("f") and target.qualifier is None
        await resolver.resolve(FunctionRef("f"))
        assert functions.lookups == 1  # cached
        named = await resolver.resolve(FunctionRef("f", LATEST))
        assert named.invoked_arn == ARNS.function("f", LATEST)
        bus.publish(FunctionUpdated("f", "new"))
        functions.latest["f"] = version(description="new")
        assert (await resolver.resolve(FunctionRef("f"))).config.description == "new"

    asyncio.run(scenario())


def test_unknown_names_versions_and_aliases_are_not_found_with_lambdas_arns(world):
    resolver, *_ = world

    async def scenario():
        for ref, arn in [
            (FunctionRef("nope"), ARNS.function("nope", LATEST)),
            (FunctionRef("f", "9"), ARNS.function("f", "9")),
            (FunctionRef("f", "live"), ARNS.function("f", "live")),
            (FunctionRef("f", "$latest"), ARNS.function("f", "$latest")),
        ]:
            with pytest.raises(ResourceNotFound) as info:
                await resolver.resolve(ref)
            assert info.value.message == f"Function not found: {arn}"

    asyncio.run(scenario())


def test_published_versions_and_pending_ones(world):
    resolver, repo, *_ = world

    async def scenario():
        target = await resolver.resolve(FunctionRef("f", "1"))
        assert target.version == "1" and target.invoked_arn == ARNS.function("f", "1")
        repo.save(version("2", state=State.PENDING))
        with pytest.raises(ResourceConflict, match="Pending"):
            await resolver.resolve(FunctionRef("f", "2"))

    asyncio.run(scenario())


def test_aliases_route_by_weight_per_invocation_and_follow_changes(world):
    resolver, repo, aliases, bus, _, set_draws = world

    async def scenario():
        aliases.create(AliasRecord("f", "live", "1", "rev", "", {"2": 0.25}))
        set_draws([0.1, 0.3, 0.9, 0.24])
        versions = [(await resolver.resolve(FunctionRef("f", "live"))).version for _ in range(4)]
        assert versions == ["2", "1", "1", "2"]
        route = await resolver.route(FunctionRef("f", "live"))
        assert isinstance(route, AliasRoute) and route.weight == 0.25
        aliases.save(AliasRecord("f", "live", "2", "rev2"), "rev")
        set_draws([0.9])
        assert (await resolver.resolve(FunctionRef("f", "live"))).version == "1"  # still cached
        bus.publish(AliasChanged("f", "live"))
        set_draws([0.0])
        target = await resolver.resolve(FunctionRef("f", "live"))
        assert target.version == "2" and target.invoked_arn == ARNS.function("f", "live")

    asyncio.run(scenario())


def test_a_read_overtaken_by_a_change_is_not_kept(world):
    resolver, repo, _, bus, *_ = world

    async def scenario():
        original = repo.get

        def racing_get(name, number=LATEST):
            found = original(name, number)
            bus.publish(VersionDeleted("f", "1"))  # the version changes while it is being read
            return found

        repo.get = racing_get
        await resolver.resolve(FunctionRef("f", "1"))
        repo.get = original
        assert ("f", "1") not in resolver._cache

    asyncio.run(scenario())
