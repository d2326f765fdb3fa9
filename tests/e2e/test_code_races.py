"""Issue 23 through the API, as the stress run found it: deletes racing creates, updates and
cold starts; and what in-flight invokes get when a shutdown's grace period runs out.

The forced interleavings are in ``tests/unit/test_code_store.py`` and
``tests/unit/test_function_code.py``; here the races are looped, bounded in count and time.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, make_zip, start_server, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

ZIP = make_zip({"app.py": "def handler(e, c):\n    return 'shared'\n"})
OTHER = make_zip({"app.py": "def handler(e, c):\n    return 'other'\n"})
ROUNDS = 200
TIME_CAP_S = 150


@pytest.fixture(scope="module")
def races_server(tmp_path_factory):
    from tests.contract import linux_unavailable

    isolation = "linux" if linux_unavailable() is None else "process"
    running = start_server(tmp_path_factory.mktemp("races"), "--isolation", isolation)
    yield running
    running.stop()


def create(lam, name: str, zip_bytes: bytes = ZIP, **settings) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_bytes}, **settings)


def wait_active(lam, name: str) -> None:
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.02, "MaxAttempts": 1000})


def wait_updated(lam, name: str) -> None:
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.02, "MaxAttempts": 1000})


def test_deletes_racing_creates_and_updates_of_the_same_zip_never_lose_code(races_server):
    lam = races_server.client("lambda", max_pool_connections=4)
    deadline = time.monotonic() + TIME_CAP_S
    rounds = 0
    with cf.ThreadPoolExecutor(2) as pool:
        while rounds < ROUNDS and time.monotonic() < deadline:
            a, b = unique_name("a"), unique_name("b")
            create(lam, a)
            if rounds % 2:  # the update race: b exists with other code, then takes the shared zip
                create(lam, b, OTHER)
                wait_active(lam, b)
            wait_active(lam, a)
            if rounds % 2:
                take = pool.submit(lam.update_function_code, FunctionName=b, ZipFile=ZIP)
            else:
                take = pool.submit(create, lam, b)
            drop = pool.submit(lam.delete_function, FunctionName=a)
            take.result()
            drop.result()
            wait_updated(lam, b) if rounds % 2 else wait_active(lam, b)
            config = lam.get_function_configuration(FunctionName=b)
            assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful"), config
            answer = lam.invoke(FunctionName=b)
            assert answer["Payload"].read() == b'"shared"' and "FunctionError" not in answer, (rounds, answer)
            lam.delete_function(FunctionName=b)
            rounds += 1
    assert rounds >= 50, f"only {rounds} rounds in {TIME_CAP_S} s"
    print(f"{rounds} rounds")


def test_cold_starts_racing_deletes_answer_with_the_code_or_not_found(races_server):
    """4 threads loop create → invoke → delete over 2 shared names: an invoke either runs
    (on the code it started with) or is told the function does not exist (or is not ready);
    never a function error the code did not cause."""
    lam = races_server.client("lambda", max_pool_connections=8)
    names = [unique_name("shared"), unique_name("shared")]
    stop_at = time.monotonic() + 45
    outcomes: dict[str, int] = {}
    bad: list[object] = []
    lock = threading.Lock()

    def count(what: str) -> None:
        with lock:
            outcomes[what] = outcomes.get(what, 0) + 1

    def loop(worker: int) -> None:
        for i in range(60):
            if time.monotonic() > stop_at:
                return
            name = names[(worker + i) % 2]
            try:
                create(lam, name)
            except ClientError as e:
                count(e.response["Error"]["Code"])
            try:
                answer = lam.invoke(FunctionName=name)
                body = answer["Payload"].read()
                if "FunctionError" in answer or body != b'"shared"':
                    with lock:
                        bad.append(body[:300])
                else:
                    count("ok")
            except ClientError as e:
                count(e.response["Error"]["Code"])
            try:
                lam.delete_function(FunctionName=name)
            except ClientError as e:
                count(e.response["Error"]["Code"])

    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(loop, range(4)))
    assert not bad, bad[:3]
    assert outcomes.get("ok", 0) > 0, outcomes
    assert set(outcomes) <= {"ok", "ResourceNotFoundException", "ResourceConflictException"}, outcomes
    print(outcomes)


def test_invokes_still_running_when_the_shutdown_grace_ends_get_a_503(tmp_path):
    server = start_server(tmp_path / "data", env={"SQUALL_SHUTDOWN_GRACE_SECONDS": "3"})
    # no retry: boto3 retries a 503, and the server is gone by then
    lam = server.client(retries={"total_max_attempts": 1}, max_pool_connections=8, read_timeout=120)
    name = unique_name("sleeper")
    create(lam, name, make_zip({"app.py": "import time\ndef handler(e, c):\n    time.sleep(30)\n"}), Timeout=60)
    wait_active(lam, name)
    errors: list[tuple[int, str, str]] = []

    def invoke(_: int) -> None:
        try:
            lam.invoke(FunctionName=name)
        except ClientError as e:
            errors.append((e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"],
                           e.response["Error"]["Message"]))

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(invoke, i) for i in range(8)]
        time.sleep(1.5)  # all 8 are running
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for future in futures:
            future.result(timeout=30)  # an answer, not a connection error (that would raise here)
    assert server.process.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert len(errors) == 8, errors
    assert {(status, code) for status, code, _ in errors} == {(503, "ServiceUnavailableException")}, errors
    assert "shutting down" in errors[0][2]
