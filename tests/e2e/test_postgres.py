"""Squall on PostgreSQL (SQUALL_DATABASE_URL) instead of the embedded SQLite."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.conftest import create_function, start_server

PG_HOST, PG_PORT = "127.0.0.1", 5432


def postgres_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def database_url():
    from tests.conftest import fresh_postgres_database

    with fresh_postgres_database() as url:
        yield url


def test_functions_invokes_and_async_on_postgres(tmp_path, database_url):
    server = start_server(tmp_path / "data", env={"SQUALL_DATABASE_URL": database_url})
    try:
        lam = server.client()
        name = create_function(lam, "def handler(e, c):\n    return e\n", Tags={"team": "db"})
        assert json.loads(lam.invoke(FunctionName=name, Payload=b'{"x": 1}')["Payload"].read()) == {"x": 1}
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"y": 2}')["StatusCode"] == 202
        assert lam.list_tags(Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"])["Tags"] == {"team": "db"}
    finally:
        server.stop()

    # Everything survives a restart: the state lives in PostgreSQL.
    server = start_server(tmp_path / "data", env={"SQUALL_DATABASE_URL": database_url})
    try:
        lam = server.client()
        assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
        assert lam.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 0
        deadline = time.monotonic() + 20
        while lam.get_function_configuration(FunctionName=name)["State"] != "Active" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(lam.invoke(FunctionName=name, Payload=b'"again"')["Payload"].read()) == "again"
        lam.delete_function(FunctionName=name)
    finally:
        server.stop()
