"""When shared code may be removed: references in the store, holds in the process.

The interleavings that lost code (issue 23) are forced here with barriers, not left to luck.
"""

from __future__ import annotations

import asyncio
import threading

from squall.code import inspect_zip
from squall.functions.code_store import CodeStore
from squall.store.blobs import BlobStore
from tests.conftest import make_zip


class References:
    """The database's side: which code rows refer to; ``pause`` stops the next lookup."""

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.asked = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def pause(self) -> None:
        self.asked.clear()
        self.go_on.clear()

    def in_use(self, sha: str) -> bool:
        answer = sha in self.rows  # read first, as a query does; a commit after it is not seen
        self.asked.set()
        assert self.go_on.wait(10)
        return answer


def setup(tmp_path):
    refs = References()
    store = CodeStore(BlobStore(tmp_path), refs.in_use)
    package = inspect_zip(make_zip({"app.py": "def handler(e, c):\n    return 1\n"}))
    return refs, store, package


async def stored(store: CodeStore, package) -> None:
    await store.put(package)
    await store.tree(package.sha256_hex, package)


def present(store: CodeStore, sha: str) -> tuple[bool, bool]:
    return store.has_zip(sha), (store.tree_path(sha) / "app.py").exists()


def test_unreferenced_unheld_code_is_removed_and_referenced_code_kept(tmp_path):
    async def scenario():
        refs, store, package = setup(tmp_path)
        sha = package.sha256_hex
        await stored(store, package)
        refs.rows.add(sha)
        await store.collect([sha])
        assert present(store, sha) == (True, True)
        refs.rows.discard(sha)
        await store.collect([sha])
        assert present(store, sha) == (False, False)
        assert not [p for p in store.blobs.trees.iterdir()]  # the moved tree is gone too

    asyncio.run(scenario())


def test_held_code_stays_until_its_last_hold_goes(tmp_path):
    async def scenario():
        refs, store, package = setup(tmp_path)
        sha = package.sha256_hex
        await stored(store, package)
        first, second = store.hold(sha), store.hold(sha)
        await store.collect([sha])
        assert present(store, sha) == (True, True)
        first.release()
        first.release()  # idempotent: still one hold
        await asyncio.sleep(0.05)
        assert store.held(sha) == 1 and present(store, sha) == (True, True)
        second.release()
        await store.close()  # the collection the last release started
        assert present(store, sha) == (False, False)

    asyncio.run(scenario())


def test_an_upload_that_holds_while_a_collection_asks_the_store_keeps_its_code(tmp_path):
    """The create race: the delete of ``a`` asks the store (no row yet for ``b``), ``b``'s
    upload takes its hold and commits its row, then the delete goes on."""

    async def scenario():
        refs, store, package = setup(tmp_path)
        sha = package.sha256_hex
        await stored(store, package)  # function a's code
        refs.pause()
        collecting = asyncio.create_task(store.collect([sha]))  # a was deleted
        assert await asyncio.to_thread(refs.asked.wait, 10)  # ... and the store said: nobody
        hold = store.hold(sha)  # b's upload, in between
        await store.put(package)
        refs.rows.add(sha)  # b's row committed
        refs.go_on.set()
        await collecting
        assert present(store, sha) == (True, True)
        hold.release()  # b settled (its cache holds the code now in the service)
        await store.close()
        assert present(store, sha) == (True, True)  # asked again: b's row refers to it

    asyncio.run(scenario())


def test_an_upload_after_the_code_went_stores_it_again(tmp_path):
    async def scenario():
        refs, store, package = setup(tmp_path)
        sha = package.sha256_hex
        await stored(store, package)
        await store.collect([sha])
        assert present(store, sha) == (False, False)
        hold = store.hold(sha)
        await stored(store, package)
        refs.rows.add(sha)
        hold.release()
        await store.close()
        assert present(store, sha) == (True, True)

    asyncio.run(scenario())


def test_sweep_removes_what_a_crashed_run_left_half_done(tmp_path):
    async def scenario():
        refs, store, package = setup(tmp_path)
        await stored(store, package)
        (store.blobs.trees / ".trash.abc.1234").mkdir()
        (store.blobs.trees / ".abc.x1.partial").mkdir()
        (store.blobs.blobs / "abc.tmp-1234").write_bytes(b"half")
        store.sweep()
        assert sorted(p.name for p in store.blobs.trees.iterdir()) == [package.sha256_hex]
        assert sorted(p.name for p in store.blobs.blobs.iterdir()) == [f"{package.sha256_hex}.zip"]

    asyncio.run(scenario())
