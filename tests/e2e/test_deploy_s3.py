"""``squall deploy --s3-bucket``: a package over 50 MB goes through an S3-compatible store
(moto's server mode), with a progress bar; without a bucket it is refused before any upload.

The CLI uploads with boto3's own credentials (here a shared-credentials file), and signs the
Squall API with the server's administrator key from its data dir: the two never mix.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from squall.cli.deploy import DIRECT_UPLOAD_LIMIT
from tests.conftest import start_server, unique_name

APP = "def handler(event, context):\n    return {'answer': %d, 'event': event}\n"
BIG_FILE_BYTES = 55 * 1024 * 1024  # random, so the zip stays over 50 MB


@pytest.fixture(scope="module")
def squall(tmp_path_factory, moto_endpoint):
    running = start_server(
        tmp_path_factory.mktemp("squall-s3-deploy"),
        env={"SQUALL_AWS_ENDPOINT": moto_endpoint, "SQUALL_AWS_ACCESS_KEY_ID": "test",
             "SQUALL_AWS_SECRET_ACCESS_KEY": "test"},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("big-fn")
    (directory / "app.py").write_text(APP % 55)
    with open(directory / "blob.bin", "wb") as out:
        for _ in range(BIG_FILE_BYTES // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    return directory


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def run_cli(server, moto: str, tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    credentials = tmp_path / "s3-credentials"
    credentials.write_text("[default]\naws_access_key_id = test\naws_secret_access_key = test\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"SQUALL_ENDPOINT": server.endpoint, "SQUALL_DATA_DIR": str(server.data_dir),
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
                "AWS_ENDPOINT_URL_S3": moto, "AWS_DEFAULT_REGION": "us-east-1", **extra_env})
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def invoke(lam, name: str) -> dict:
    response = lam.invoke(FunctionName=name, Payload=b'{"n": 1}')
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def test_a_big_package_goes_through_the_bucket_with_a_progress_bar(squall, moto_endpoint, s3, big_dir, tmp_path):
    bucket = unique_name("code").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    name = unique_name("big")
    done = run_cli(squall, moto_endpoint, tmp_path, "deploy", str(big_dir), "--name", name, "--s3-bucket", bucket)
    assert done.returncode == 0, done.stderr
    assert "Uploading" in done.stderr and f"s3://{bucket}/squall-deploy/" in done.stderr
    assert "100%" in done.stderr and "25%" in done.stderr  # progress lines (stderr is not a terminal)

    lam = squall.client("lambda")
    config = lam.get_function_configuration(FunctionName=name)
    assert config["State"] == "Active" and config["LastUpdateStatus"] == "Successful"
    assert config["CodeSize"] > DIRECT_UPLOAD_LIMIT
    sha_hex = base64.b64decode(config["CodeSha256"]).hex()
    stored = s3.head_object(Bucket=bucket, Key=f"squall-deploy/{sha_hex}.zip")  # content-addressed key
    assert stored["ContentLength"] == config["CodeSize"]
    assert invoke(lam, name) == {"answer": 55, "event": {"n": 1}}


def test_a_big_package_without_a_bucket_is_refused_before_uploading(squall, moto_endpoint, big_dir, tmp_path):
    name = unique_name("big")
    done = run_cli(squall, moto_endpoint, tmp_path, "deploy", str(big_dir), "--name", name)
    assert done.returncode == 1, done.stderr
    assert "--s3-bucket" in done.stderr and "52,428,800 bytes" in done.stderr
    assert "Creating function" not in done.stderr and "Traceback" not in done.stderr
    lam = squall.client("lambda")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name)


def test_a_small_package_through_the_bucket_then_an_update(squall, moto_endpoint, s3, tmp_path):
    bucket = unique_name("code").lower()
    s3.create_bucket(Bucket=bucket)
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(APP % 1)
    name = unique_name("small")
    args = ("deploy", str(code), "--name", name, "--s3-bucket", bucket, "--s3-prefix", "builds/")
    first = run_cli(squall, moto_endpoint, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    (code / "app.py").write_text(APP % 2)
    second = run_cli(squall, moto_endpoint, tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "Updating code of" in second.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2 and all(k.startswith("builds/") and k.endswith(".zip") for k in keys)
    assert invoke(squall.client("lambda"), name)["answer"] == 2


def test_a_missing_bucket_or_an_unreachable_store_says_what_to_do(squall, moto_endpoint, tmp_path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(APP % 1)
    name = unique_name("nobucket")
    missing = run_cli(squall, moto_endpoint, tmp_path, "deploy", str(code), "--name", name,
                      "--s3-bucket", "no-such-bucket-for-squall")
    assert missing.returncode == 1, missing.stderr
    assert "Bucket no-such-bucket-for-squall does not exist" in missing.stderr
    assert "aws s3 mb s3://no-such-bucket-for-squall" in missing.stderr and "Traceback" not in missing.stderr

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = run_cli(squall, moto_endpoint, tmp_path, "deploy", str(code), "--name", name,
                          "--s3-bucket", "any", "--s3-endpoint", closed)
    assert unreachable.returncode == 1, unreachable.stderr
    assert f"Cannot reach S3 at {closed}" in unreachable.stderr and "--s3-endpoint" in unreachable.stderr

    lam = squall.client("lambda")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name)
