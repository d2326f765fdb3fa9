"""Code in a code bucket (``SQUALL_CODE_BUCKET``, an S3-compatible service: moto's server mode):
every stored zip is written there, removed from there with its function, and read back from
there when this node's local copy is gone."""

from __future__ import annotations

import base64
import shutil
import time

import pytest

from tests.conftest import create_function, start_server
from tests.e2e.test_async import aws as moto_client

BUCKET = "squall-code-e2e"
PREFIX = "squall-code/"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    client = moto_client("s3", moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


def server_env(moto_endpoint: str, bucket: str = BUCKET) -> dict[str, str]:
    return {
        "SQUALL_CODE_BUCKET": bucket,
        "SQUALL_AWS_ENDPOINT": moto_endpoint,
        "SQUALL_AWS_ACCESS_KEY_ID": "test",
        "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
    }


def object_key(lam, name: str) -> str:
    sha = base64.b64decode(lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"]).hex()
    return f"{PREFIX}{sha}.zip"


def exists(s3, key: str) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_code_lives_in_the_bucket_and_comes_back_from_it(tmp_path, s3, moto_endpoint):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, env=server_env(moto_endpoint))
    try:
        lam = server.client("lambda")
        gone = create_function(lam, "def handler(e, c):\n    return 'ok'\n")
        assert lam.invoke(FunctionName=gone)["Payload"].read() == b'"ok"'
        gone_key = object_key(lam, gone)
        assert exists(s3, gone_key)

        kept = create_function(lam, "def handler(e, c):\n    return 'kept'\n")
        assert lam.invoke(FunctionName=kept)["Payload"].read() == b'"kept"'
        kept_key = object_key(lam, kept)
        assert exists(s3, kept_key)

        lam.delete_function(FunctionName=gone)
        deadline = time.monotonic() + 10
        while exists(s3, gone_key) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not exists(s3, gone_key), "the deleted function's zip is still in the code bucket"
        assert exists(s3, kept_key)
    finally:
        assert server.stop() == 0

    # this node loses its local copies: the bucket has the code
    for zipped in (data_dir / "blobs").glob("*.zip"):
        zipped.unlink()
    for tree in (data_dir / "code").iterdir():
        shutil.rmtree(tree)

    server = start_server(data_dir, env=server_env(moto_endpoint))
    try:
        lam = server.client("lambda")
        assert lam.get_function(FunctionName=kept)["Configuration"]["State"] == "Active"
        assert lam.invoke(FunctionName=kept)["Payload"].read() == b'"kept"'
        assert any((data_dir / "blobs").glob("*.zip"))  # cached again
    finally:
        server.stop()


def test_the_server_does_not_start_when_the_code_bucket_cannot_be_reached(tmp_path, s3, moto_endpoint):
    with pytest.raises(RuntimeError) as caught:
        start_server(tmp_path / "data", env=server_env(moto_endpoint, "no-such-code-bucket"))
    assert "code bucket 'no-such-code-bucket' cannot be reached" in str(caught.value)
