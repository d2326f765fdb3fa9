"""Functions and their code in the store (issue 23), through the real service and SQLite.

* two functions share one zip; one is deleted while the other takes the zip (create or
  update): the other keeps its code. The interleaving is forced: the other's database
  write waits until the delete has finished.
* a cold start racing a delete of its function keeps its code until its environment stops.
* at start, a function whose code is missing is Failed (and /health says so), not Active;
  new code mends it.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import threading
from pathlib import Path

import pytest

from squall.arn import Arns, FunctionRef
from squall.functions.code_store import CodeStore
from squall.engine.bus import EventBus, FunctionDeleted, FunctionUpdated
from squall.functions.network import NetworkNames
from squall.functions.tags import Tags
from squall.functions.versions import Versions
from squall.store.aliases import AliasRepository
from tests.targets import target_of
from squall.functions.service import FunctionService
from squall.invoke.invocation import InvocationRequest
from squall.environments.pool import EnvironmentPool, PoolLimits
from squall.errors import ResourceConflict
from squall.function import State, UpdateStatus
from squall.observe.logs import LogStore
from squall.runtimes.registry import RuntimeRegistry
from squall.sandbox.fake import FakeBackend
from squall.store.blobs import BlobStore
from squall.store.db import create_engine
from squall.store.functions import FunctionRepository
from tests.conftest import make_zip

ROLE = "arn:aws:iam::123456789012:role/r"
ZIP_Z = make_zip({"app.py": "def handler(e, c):\n    return 'z'\n"})
ZIP_Y = make_zip({"app.py": "def handler(e, c):\n    return 'y'\n"})


@pytest.fixture(scope="module")
def runtimes() -> RuntimeRegistry:
    return RuntimeRegistry.discover()


class Paused:
    """Wraps a blocking repository method: the next call waits until ``go_on`` is set."""

    def __init__(self, method) -> None:
        self.method = method
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        assert self.go_on.wait(10)
        return self.method(*args, **kwargs)


class World:
    def __init__(self, tmp_path: Path, runtimes: RuntimeRegistry) -> None:
        self.tmp_path = tmp_path
        self.runtimes = runtimes
        self.db = create_engine(f"sqlite:///{tmp_path / 'squall.db'}")
        self.changes: list[tuple[str, str | None]] = []
        self.service = self.new_service()

    def new_service(self) -> FunctionService:
        repo = FunctionRepository(self.db)
        self.code = CodeStore(BlobStore(self.tmp_path), repo.code_in_use)
        arns = Arns("us-east-1", "123456789012")
        self.bus = EventBus()
        self.bus.subscribe(FunctionUpdated, lambda e: self.changes.append((e.name, e.revision)))
        self.bus.subscribe(FunctionDeleted, lambda e: self.changes.append((e.name, None)))
        return FunctionService(
            repo, AliasRepository(self.db), self.code, Versions(repo, self.code, arns, self.bus),
            Tags(repo, arns, self.bus, NetworkNames()), self.runtimes, arns, self.bus,
        )

    async def create(self, name: str, zip_bytes: bytes = ZIP_Z):
        return await self.service.create(
            {"FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE,
             "Code": {"ZipFile": zip_bytes}}
        )

    async def settled(self, name: str):
        for _ in range(500):
            version = await asyncio.to_thread(self.service.repo.get, name)
            if version is not None and version.state != State.PENDING and version.last_update_status != UpdateStatus.IN_PROGRESS:
                return version
            await asyncio.sleep(0.01)
        raise AssertionError(f"{name} never settled")

    def code_present(self, version) -> bool:
        sha = version.code.sha256_hex
        return self.code.has_zip(sha) and (self.code.tree_path(sha) / "app.py").is_file()

    async def close(self) -> None:
        await self.service.close()
        await self.code.close()
        self.db.dispose()


def run(tmp_path, runtimes, scenario) -> None:
    async def main() -> None:
        world = World(tmp_path, runtimes)
        try:
            await scenario(world)
        finally:
            await world.close()

    asyncio.run(main())


def test_a_create_racing_the_delete_of_a_function_with_the_same_zip_keeps_its_code(tmp_path, runtimes):
    async def scenario(w: World) -> None:
        await w.create("a")
        await w.settled("a")
        paused = w.service.repo.create = Paused(w.service.repo.create)
        creating = asyncio.create_task(w.create("b"))  # same zip: stored, not yet committed
        assert await asyncio.to_thread(paused.entered.wait, 10)
        await w.service.delete(FunctionRef("a"))  # the store says nobody refers to the code
        paused.go_on.set()
        await creating
        b = await w.settled("b")
        assert b.state == State.ACTIVE and w.code_present(b)
        assert w.service.code_path(b).joinpath("app.py").is_file()

    run(tmp_path, runtimes, scenario)


def test_an_update_racing_the_delete_of_a_function_with_the_same_zip_keeps_its_code(tmp_path, runtimes):
    async def scenario(w: World) -> None:
        await w.create("a", ZIP_Z)
        await w.create("b", ZIP_Y)
        await w.settled("a")
        await w.settled("b")
        paused = w.service.repo.save = Paused(w.service.repo.save)
        updating = asyncio.create_task(w.service.update_code(FunctionRef("b"), {"ZipFile": ZIP_Z}))
        assert await asyncio.to_thread(paused.entered.wait, 10)
        w.service.repo.save = paused.method
        await w.service.delete(FunctionRef("a"))
        paused.go_on.set()
        await updating
        b = await w.settled("b")
        assert b.last_update_status == UpdateStatus.SUCCESSFUL and w.code_present(b)
        await asyncio.gather(*list(w.service._tasks))  # the settle's last step: collecting what it replaced
        await w.code.close()
        old_y = w.code.tree_path(base_sha(ZIP_Y))
        assert not old_y.exists()  # the code b no longer uses went, once nothing held it

    run(tmp_path, runtimes, scenario)


def base_sha(zip_bytes: bytes) -> str:
    import hashlib

    return hashlib.sha256(zip_bytes).hexdigest()


def test_a_cold_start_racing_a_delete_keeps_its_code_until_its_environment_stops(tmp_path, runtimes):
    async def scenario(w: World) -> None:
        await w.create("f")
        await w.settled("f")
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow(event, ctx):
            started.set()
            await finish.wait()
            return "done"

        pool = EnvironmentPool(FakeBackend({"app.handler": slow}), LogStore(w.tmp_path / "logs"), "us-east-1",
                               PoolLimits(100_000, 60.0, 1 << 20), code=w.code)
        fn = w.service.invocable_latest("f")
        runtime = runtimes.get(fn.runtime)

        async def invoke():
            async with pool.lease(target_of(fn, runtime, w.service.code_path(fn))) as env:
                return await env.invoke(InvocationRequest("r1", b"{}", "arn"))

        invoking = asyncio.create_task(invoke())
        await asyncio.wait_for(started.wait(), 10)
        await w.service.delete(FunctionRef("f"))
        assert w.code_present(fn)  # the environment holds it
        finish.set()
        result = await invoking
        assert result.function_error is None
        await pool.shutdown(0)
        await w.code.close()
        assert not w.code.has_zip(fn.code.sha256_hex) and not w.code.tree_path(fn.code.sha256_hex).exists()

    run(tmp_path, runtimes, scenario)


def test_at_start_a_function_whose_code_is_missing_is_failed_and_new_code_mends_it(tmp_path, runtimes):
    async def scenario(w: World) -> None:
        await w.create("lost", ZIP_Z)
        await w.create("tree-only-lost", ZIP_Y)
        lost = await w.settled("lost")
        other = await w.settled("tree-only-lost")
        await w.service.close()
        w.code.blobs.blob_path(lost.code.sha256_hex).unlink()
        shutil.rmtree(w.code.tree_path(lost.code.sha256_hex))
        shutil.rmtree(w.code.tree_path(other.code.sha256_hex))  # its zip is still there

        w.service = w.new_service()  # a restart on the same data
        await w.service.load()
        failed = await asyncio.to_thread(w.service.repo.get, "lost")
        assert failed.state == State.FAILED and failed.state_reason_code == "InternalError"
        assert "missing from this server's code store" in failed.state_reason
        assert lost.code.sha256 in failed.state_reason
        assert set(w.service.problems()) == {"lost"}
        assert w.service.invocable_latest("lost") is None
        with pytest.raises(ResourceConflict, match="Failed"):
            await w.service.explain_not_invocable("lost", "$LATEST")
        kept = w.service.invocable_latest("tree-only-lost")  # extracted again from its zip
        assert w.code_present(kept)

        await w.service.update_code(FunctionRef("lost"), {"ZipFile": ZIP_Z})
        mended = await w.settled("lost")
        assert mended.state == State.ACTIVE and mended.last_update_status == UpdateStatus.SUCCESSFUL
        assert w.code_present(mended) and not w.service.problems()
        assert w.service.invocable_latest("lost").revision_id == mended.revision_id
        assert base64.b64decode(mended.code.sha256).hex() == mended.code.sha256_hex

    run(tmp_path, runtimes, scenario)
