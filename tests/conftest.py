"""Shared fixtures: a real ``squall server`` on an ephemeral port, boto3 clients, zips."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.config import Config

from squall.auth import credentials_file

ROLE = "arn:aws:iam::123456789012:role/squall-function"  # the execution role every server has from its first start


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    endpoint: str
    data_dir: Path
    output: list[str]
    isolation: str = "auto"

    @property
    def credentials(self) -> tuple[str, str]:
        """The administrator's key the server wrote to its data dir (``squall credentials``)."""
        found = credentials_file.read(self.data_dir)
        assert found is not None, f"no credentials in {self.data_dir}"
        return found

    def client(self, service: str = "lambda", credentials: tuple[str, str] | None = None, **config: object):
        key_id, secret = credentials or self.credentials
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(**{"retries": {"max_attempts": 1}, "read_timeout": 120, **config}),
        )

    def aws_env(self, tmp_path: Path | None = None) -> dict[str, str]:
        """Environment variables for the AWS CLI (or boto3 in a subprocess) as the administrator."""
        key_id, secret = self.credentials
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        return env

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


_STARTED: list[RunningServer] = []  # every server a test started, stopped at the end of the session


def signed_headers(server: RunningServer, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None, service: str = "lambda") -> dict[str, str]:
    """``headers`` plus the administrator's SigV4 signature for a raw request (botocore's signer;
    a ``Host`` among the headers is what gets signed)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=server.endpoint + path, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(*server.credentials), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def server_at(endpoint: str) -> RunningServer | None:
    """The server a test started at ``endpoint`` (its data dir has its credentials)."""
    return next((s for s in reversed(_STARTED) if s.endpoint == endpoint), None)


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_servers() -> Iterator[None]:
    yield
    for running in _STARTED:
        running.stop()


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> RunningServer:
    """Start ``squall server --port 0`` and wait for the line with its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "squall.cli.main", "server", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            server = RunningServer(process, match.group(1), data_dir, output)
            _STARTED.append(server)
            _drain_in_background(process, output)
            return server
    process.kill()
    raise RuntimeError("squall server did not start:\n" + "".join(output))


@pytest.fixture(scope="session")
def strongest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on the ``linux`` sandbox where this machine can build it, else on ``process``
    (its ``isolation`` says which)."""
    from tests.contract import linux_unavailable

    isolation = "linux" if linux_unavailable() is None else "process"
    running = start_server(tmp_path_factory.mktemp("squall-strongest"), "--isolation", isolation)
    running.isolation = isolation
    yield running
    running.stop()


def _drain_in_background(process: subprocess.Popen[str], output: list[str]) -> None:
    import threading

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=pump, daemon=True).start()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("squall-data"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def lam(server: RunningServer):
    return server.client("lambda")


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto in server mode (S3, SQS, SNS, …) on an ephemeral port of 127.0.0.1, for one module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, textwrap.dedent(content) if isinstance(content, str) else content)
    return buffer.getvalue()


def unique_name(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_function(lam, code: str | dict[str, str], handler: str = "app.handler", wait: bool = True, **kwargs) -> str:
    """Create a function (python3.11 from ``app.py`` unless told) and wait until it is Active.

    ``modes``: file modes inside the zip (e.g. ``{"bootstrap": 0o755}``)."""
    files = {"app.py": code} if isinstance(code, str) else code
    name = kwargs.pop("FunctionName", None) or unique_name()
    modes = kwargs.pop("modes", None)
    lam.create_function(
        FunctionName=name,
        Runtime=kwargs.pop("Runtime", "python3.11"),
        Role=kwargs.pop("Role", ROLE),
        Handler=handler,
        Code={"ZipFile": make_zip(files, modes)},
        **kwargs,
    )
    if wait:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    return name


def wait_for(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """``check()``'s first truthy value, polled every 0.05 s for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def require(condition: bool, reason: str) -> None:
    """Skip when a machine lacks what a test needs; in CI (SQUALL_TEST_STRICT=1) fail instead."""
    if condition:
        return
    if os.environ.get("SQUALL_TEST_STRICT") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def processes_with_arg(*args: str) -> list[int]:
    """Pids of processes whose command line contains one of ``args`` as a whole argument."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg in cmd for arg in args):
            found.append(int(pid))
    return found


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "squall_test") -> Iterator[str]:
    """A new database on the machine's PostgreSQL (its SQLAlchemy URL), dropped afterwards; the
    test is skipped (failed under SQUALL_TEST_STRICT) where no PostgreSQL runs."""
    from tests.e2e.test_postgres import PG_HOST, PG_PORT, postgres_reachable

    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    psycopg = pytest.importorskip("psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def shared_database():
    """A fresh PostgreSQL database on the machine's server, for one module (dropped after)."""
    with fresh_postgres_database("squall_shared") as url:
        yield url
