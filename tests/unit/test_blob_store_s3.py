"""The blob store with a code bucket (an S3-compatible service: moto's server mode here):
the bucket is the durable copy every node reads, the local ``blobs/`` a cache of it."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from squall.code import inspect_zip
from squall.functions.code_store import CodeStore
from squall.store.blobs import BlobStore, CodeBucketError, S3CodeBucket
from tests.conftest import make_zip
from tests.e2e.test_async import aws as moto_client

BUCKET = "squall-code-unit"
PREFIX = "code/"


@pytest.fixture
def s3(moto_endpoint):
    client = moto_client("s3", moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def bucket(moto_endpoint: str, name: str = BUCKET) -> S3CodeBucket:
    return S3CodeBucket.connect(name, PREFIX, moto_endpoint, "test", "test", "us-east-1")


def package(text: str = "1"):
    return inspect_zip(make_zip({"app.py": f"def handler(e, c):\n    return {text}\n"}))


def keys(s3) -> list[str]:
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_put_read_has_remove_round_trip(tmp_path, s3, moto_endpoint):
    store = BlobStore(tmp_path, bucket(moto_endpoint))
    pkg = package()
    sha = pkg.sha256_hex
    assert not store.has_zip(sha)
    store.put(pkg)
    assert keys(s3) == [f"{PREFIX}{sha}.zip"]
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}{sha}.zip")["Body"].read() == pkg.data
    assert store.blob_path(sha).read_bytes() == pkg.data  # and the local cache
    assert store.has_zip(sha) and store.read(sha) == pkg.data
    store.put(pkg)  # again: nothing changes
    assert keys(s3) == [f"{PREFIX}{sha}.zip"]

    store.remove_zip(sha)
    assert not store.blob_path(sha).exists()
    store.close()  # the bucket's removal runs in the background: wait for it
    assert keys(s3) == []
    assert not store.has_zip(sha)
    with pytest.raises(FileNotFoundError):
        store.read(sha)


def test_has_zip_answers_for_the_bucket_when_the_cache_is_empty(tmp_path, s3, moto_endpoint):
    store = BlobStore(tmp_path, bucket(moto_endpoint))
    pkg = package("2")
    store.put(pkg)
    store.blob_path(pkg.sha256_hex).unlink()
    assert store.has_zip(pkg.sha256_hex)
    assert store.read(pkg.sha256_hex) == pkg.data
    assert store.blob_path(pkg.sha256_hex).read_bytes() == pkg.data  # cached again


def test_a_second_node_reads_and_extracts_the_zip_from_the_bucket(tmp_path, s3, moto_endpoint):
    first = BlobStore(tmp_path / "node1", bucket(moto_endpoint))
    pkg = package("3")
    first.put(pkg)
    second = BlobStore(tmp_path / "node2", bucket(moto_endpoint))
    sha = pkg.sha256_hex
    assert not second.blob_path(sha).exists()
    assert second.has_zip(sha)
    tree = second.ensure_tree(sha)
    assert (tree / "app.py").read_text().endswith("return 3\n")
    assert second.blob_path(sha).read_bytes() == pkg.data  # cached on the second node


def test_a_tampered_object_is_refused(tmp_path, s3, moto_endpoint):
    store = BlobStore(tmp_path, bucket(moto_endpoint))
    pkg, other = package("4"), package("5")
    sha = pkg.sha256_hex
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{sha}.zip", Body=other.data)  # someone else's zip under that key
    with pytest.raises(CodeBucketError, match="tampered") as caught:
        store.ensure_tree(sha)
    assert hashlib.sha256(other.data).hexdigest() in caught.value.message
    assert f"s3://{BUCKET}/{PREFIX}{sha}.zip" in caught.value.message
    assert not store.blob_path(sha).exists() and not store.tree_path(sha).exists()  # nothing cached


def test_an_upload_the_bucket_refuses_is_a_clear_error_and_nothing_is_stored(tmp_path, s3, moto_endpoint):
    store = BlobStore(tmp_path, bucket(moto_endpoint, "no-such-code-bucket"))
    pkg = package("6")
    with pytest.raises(CodeBucketError, match="code bucket 'no-such-code-bucket' could not be"):
        store.put(pkg)
    assert not store.blob_path(pkg.sha256_hex).exists()


def test_the_startup_check(s3, moto_endpoint):
    bucket(moto_endpoint).check()
    with pytest.raises(CodeBucketError, match="code bucket 'no-such-code-bucket' cannot be reached"):
        bucket(moto_endpoint, "no-such-code-bucket").check()


def test_the_code_store_removes_the_object_with_the_code(tmp_path, s3, moto_endpoint):
    async def scenario():
        store = CodeStore(BlobStore(tmp_path, bucket(moto_endpoint)), lambda sha: False)
        pkg = package("7")
        await store.put(pkg)
        await store.tree(pkg.sha256_hex, pkg)
        assert keys(s3) == [f"{PREFIX}{pkg.sha256_hex}.zip"]
        await store.collect([pkg.sha256_hex])
        assert not store.tree_path(pkg.sha256_hex).exists()
        assert wait_for(lambda: keys(s3) == [])
        assert not store.has_zip(pkg.sha256_hex)
        # stored again right after: the earlier removal cannot take the new upload away
        await store.put(pkg)
        await store.collect([])
        store.blobs.close()
        assert keys(s3) == [f"{PREFIX}{pkg.sha256_hex}.zip"]

    asyncio.run(scenario())


def test_without_a_bucket_nothing_changes(tmp_path):
    store = BlobStore(tmp_path)
    pkg = package("8")
    store.put(pkg)
    assert store.remote is None and store.has_zip(pkg.sha256_hex)
    store.remove_zip(pkg.sha256_hex)
    assert not store.has_zip(pkg.sha256_hex)
    with pytest.raises(FileNotFoundError):
        store.read(pkg.sha256_hex)


def test_a_put_waits_for_a_removal_of_the_same_code_still_under_way(tmp_path, s3, moto_endpoint):
    class SlowDelete(S3CodeBucket):
        def delete(self, sha256_hex: str) -> None:
            time.sleep(0.3)
            super().delete(sha256_hex)

    plain = bucket(moto_endpoint)
    store = BlobStore(tmp_path, SlowDelete(plain.client, BUCKET, PREFIX))
    pkg = package("9")
    store.put(pkg)
    store.remove_zip(pkg.sha256_hex)
    store.put(pkg)  # while the removal sleeps
    store.close()
    assert keys(s3) == [f"{PREFIX}{pkg.sha256_hex}.zip"]
    assert store.has_zip(pkg.sha256_hex)
