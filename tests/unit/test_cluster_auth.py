"""Several front ends on one database: one server key (in the database, not the data dir), one
administrator key however many start at once, and IAM directories that follow the other front
ends' writes (a remote ``StateChanged("iam")`` or ``CachesReset``)."""

from __future__ import annotations

import asyncio
import os
import stat
import threading

import pytest
import sqlalchemy as sa

from squall.auth.iam import ADMIN_USER
from squall.auth.identity import Identity
from squall.auth.sigv4 import Signed
from squall.engine.bus import CachesReset, EventBus, StateChanged
from squall.engine.stores import Stores, shared_server_key
from squall.errors import UnrecognizedClient
from squall.settings import Settings
from squall.store import db
from squall.store.iam import IamRepository
from tests.conftest import fresh_postgres_database


def _url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


def _signed(key_id: str) -> Signed:
    return Signed(key_id, "20250101", "us-east-1", "lambda", ("host",), "sig", "20250101T000000Z", None)


def _stored_keys(engine) -> list[bytes]:
    with engine.connect() as conn:
        return [bytes(v) for v in conn.execute(sa.select(db.server_secrets.c.value)).scalars()]


# ---- (1) one server key for every data dir ---------------------------------------------------------
def test_two_front_ends_with_their_own_data_dirs_get_the_database_key(tmp_path):
    url = _url(tmp_path)
    first = Stores.open(Settings(data_dir=tmp_path / "a", database_url=url))
    second = Stores.open(Settings(data_dir=tmp_path / "b", database_url=url))
    try:
        assert len(first.server_key) == 32
        assert first.server_key == second.server_key
        assert _stored_keys(first.db) == [first.server_key]
        for d in ("a", "b"):  # tools reading the file see the same key
            path = tmp_path / d / "secret"
            assert path.read_bytes() == first.server_key
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        for stores in (first, second):
            asyncio.run(stores.close())


def test_an_upgraded_installation_keeps_its_secret_file(tmp_path):
    data = tmp_path / "old"
    data.mkdir()
    old_key = os.urandom(32)
    (data / "secret").write_bytes(old_key)
    engine = db.create_engine(_url(tmp_path))
    assert shared_server_key(engine, data) == old_key  # adopted: existing access keys keep their secrets
    other = tmp_path / "new"
    other.mkdir()
    (other / "secret").write_bytes(b"a stale key of another data dir")
    assert shared_server_key(engine, other) == old_key  # the database's wins, and is copied over the file
    assert (other / "secret").read_bytes() == old_key
    assert _stored_keys(engine) == [old_key]
    engine.dispose()


# ---- (2) first starts at once ----------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path):
    """A fresh database, SQLite or (when one runs) PostgreSQL."""
    if request.param == "sqlite":
        yield _url(tmp_path)
        return
    with fresh_postgres_database("squall_auth") as url:
        yield url


def test_concurrent_first_key_creation_ends_with_one_key(tmp_path, shared_url):
    engines = [db.create_engine(shared_url) for _ in range(2)]
    barrier = threading.Barrier(4)
    got: list[bytes] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait()
            got.append(shared_server_key(engines[i % 2], tmp_path / f"d{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(got)) == 1 and len(got) == 4
    assert _stored_keys(engines[0]) == [got[0]]
    for i in range(4):
        assert (tmp_path / f"d{i}" / "secret").read_bytes() == got[0]
    for engine in engines:
        engine.dispose()


def _identity(engine, key: bytes, bus: EventBus | None = None) -> Identity:
    return Identity(IamRepository(engine), key, "123456789012", "us-east-1", True, bus=bus or EventBus())


def test_concurrent_first_starts_make_one_admin_user_and_key(tmp_path, shared_url):
    engine = db.create_engine(shared_url)
    key = shared_server_key(engine, tmp_path / "a")

    async def main() -> list[tuple[str, str]]:
        fronts = [_identity(engine, key), _identity(engine, key), _identity(engine, key)]
        for front in fronts:  # all loaded before any of them made anything
            await asyncio.to_thread(front.directory.load)
        return list(await asyncio.gather(*(front.iam.ensure_admin(None) for front in fronts)))

    admin_keys = asyncio.run(main())
    assert len(set(admin_keys)) == 1
    repo = IamRepository(engine)
    assert [u.name for u in repo.users()] == [ADMIN_USER]
    assert [k.key_id for k in repo.keys(ADMIN_USER)] == [admin_keys[0][0]]
    assert [name for _, name, _ in repo.policies("user", ADMIN_USER)] == ["AdministratorAccess"]
    assert len(repo.roles()) == 1
    engine.dispose()


# ---- (3) directories follow the other front ends' writes -----------------------------------------------
def test_the_directory_reloads_on_another_front_ends_iam_change(tmp_path):
    engine = db.create_engine(_url(tmp_path))
    key = shared_server_key(engine, tmp_path / "a")

    async def main() -> None:
        bus_a, bus_b = EventBus(), EventBus()
        a, b = _identity(engine, key, bus_a), _identity(engine, key, bus_b)
        sent: list[StateChanged] = []
        bus_b.subscribe(StateChanged, sent.append)  # what B's relay would send to A
        await a.start(None)
        await b.start(None)
        sent.clear()

        await b.iam.CreateUser({"UserName": "dev"}, None)
        created = await b.iam.CreateAccessKey({"UserName": "dev"}, None)
        key_id, secret = created["AccessKey"]["AccessKeyId"], created["AccessKey"]["SecretAccessKey"]
        assert sent and all(e.kind == "iam" for e in sent)
        assert key_id not in a.directory.access_keys  # A has not heard yet

        bus_a.publish(StateChanged("iam", "dev"))  # a local event (A's own change): no reload
        await asyncio.sleep(0.05)
        assert key_id not in a.directory.access_keys

        with bus_a.remote():
            bus_a.publish(StateChanged("iam", "dev"))
        await _until(lambda: key_id in a.directory.access_keys)
        principal = a.directory.authenticate(_signed(key_id), lambda s: s == secret)  # same server key: same secret
        assert principal.name == "dev"

        await b.iam.DeleteAccessKey({"UserName": "dev", "AccessKeyId": key_id}, None)
        with bus_a.remote():
            bus_a.publish(StateChanged("iam", "dev"))
        await _until(lambda: key_id not in a.directory.access_keys)
        with pytest.raises(UnrecognizedClient):  # a deleted key no longer authenticates
            a.directory.authenticate(_signed(key_id), lambda s: s == secret)

        # another kind's change is not the directory's business; a remote reset is
        await b.iam.CreateRole({"RoleName": "worker", "AssumeRolePolicyDocument": LAMBDA_TRUST}, None)
        with bus_a.remote():
            bus_a.publish(StateChanged("permissions", "f"))
        await asyncio.sleep(0.05)
        assert "worker" not in a.directory.roles
        with bus_a.remote():
            bus_a.publish(CachesReset("reconnected"))
        await _until(lambda: "worker" in a.directory.roles)

    asyncio.run(main())
    engine.dispose()


def test_a_reload_overlapping_a_local_write_keeps_it(tmp_path):
    engine = db.create_engine(_url(tmp_path))
    key = shared_server_key(engine, tmp_path / "a")

    async def main() -> None:
        front = _identity(engine, key)
        await front.start(None)
        directory = front.directory
        real_read = directory._read
        reads = 0

        def slow_read():  # the first read is taken before the local write commits, swapped after
            nonlocal reads
            reads += 1
            result = real_read()
            if reads == 1:
                started.set()
                proceed.wait(5)
            return result

        started, proceed = threading.Event(), threading.Event()
        directory._read = slow_read
        reload = asyncio.create_task(directory.reload())
        await asyncio.to_thread(started.wait, 5)
        await front.iam.CreateUser({"UserName": "local"}, None)
        proceed.set()
        assert await reload
        assert reads >= 2 and "local" in directory.users

    asyncio.run(main())
    engine.dispose()


LAMBDA_TRUST = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": '
                '"lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}')


async def _until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
