"""Two front ends on one PostgreSQL database and one code bucket (moto): one API, whichever serves.

Changes made through one front end reach the other's caches over LISTEN/NOTIFY
(squall/cluster/relay.py); exactly one front end is the leader (squall/cluster/leadership.py) and
another takes over when it stops. Propagation is awaited with a bounded poll (``within``): what is
checked is that the change arrives, the time it took is printed, not asserted.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import create_function, make_zip, start_server
from tests.e2e.test_async import aws as moto_client

pytestmark = pytest.mark.timeout(300)

BUCKET = "squall-cluster-code"
SPEED = 30  # the schedule clock runs 30 times faster (SQUALL_TEST_SCHEDULE_CLOCK): rate(1 minute) every 2 s
ANCHOR = time.time()
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
DEADLINE_S = 10.0  # far above the ~ms a notification takes: a missed change fails, a slow machine does not


def within(check, what: str, seconds: float = DEADLINE_S):
    """Poll ``check()`` until it returns a truthy value (or stops raising); that value."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < seconds:
        try:
            value = check()
            if value:
                print(f"{what}: {1000 * (time.monotonic() - started):.0f} ms")
                return value
        except Exception as exc:  # noqa: BLE001 - the change has not arrived yet
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s (last error: {last!r})")


def signed_get(server, path: str) -> dict:
    """GET one of Squall's own endpoints, signed as the administrator (as the CLI does)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"{server.endpoint}{path}")
    SigV4Auth(Credentials(*server.credentials), "lambda", "us-east-1").add_auth(request)
    answer = urllib.request.urlopen(urllib.request.Request(request.url, headers=dict(request.headers.items())),
                                    timeout=10)
    return json.loads(answer.read())


def queue_report(server, name: str) -> dict:
    """``GET /squall/queue?function=NAME``: what ``squall queue`` shows."""
    return signed_get(server, f"/squall/queue?function={name}")


def health(server) -> dict:
    return json.loads(urllib.request.urlopen(f"{server.endpoint}/health", timeout=10).read())


@pytest.fixture(scope="module")
def cluster_env(shared_database, moto_endpoint):
    moto_client("s3", moto_endpoint).create_bucket(Bucket=BUCKET)
    return {"SQUALL_DATABASE_URL": shared_database, "SQUALL_CODE_BUCKET": BUCKET, "SQUALL_AWS_ENDPOINT": moto_endpoint,
            "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
            "SQUALL_ASYNC_LEASE_SECONDS": "4",  # a dead front end's events run elsewhere 4 s later
            "SQUALL_TEST_SCHEDULE_CLOCK": f"{ANCHOR:.3f},{SPEED}"}


@pytest.fixture(scope="module")
def front_ends(cluster_env, tmp_path_factory):
    first = start_server(tmp_path_factory.mktemp("front-end-a"), env=cluster_env)
    second = start_server(tmp_path_factory.mktemp("front-end-b"), env=cluster_env)
    yield first, second
    for server in (first, second):
        if server.process.poll() is None:
            server.stop()


def test_one_key_for_every_front_end(front_ends):
    a, b = front_ends
    assert a.credentials == b.credentials  # the same server key, from the database
    assert b.client("lambda", credentials=a.credentials).list_functions()["Functions"] is not None


def test_created_on_one_invoked_on_the_other(front_ends):
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, "def handler(e, c):\n    return {'v': 1, 'e': e}\n")
    out = within(lambda: json.loads(lam_b.invoke(FunctionName=name, Payload=b'{"k": 2}')["Payload"].read()),
                 "a function created on A, invoked on B")
    assert out == {"v": 1, "e": {"k": 2}}

    lam_a.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return {'v': 2}\n"}))
    lam_a.get_waiter("function_updated_v2").wait(FunctionName=name)
    within(lambda: json.loads(lam_b.invoke(FunctionName=name)["Payload"].read()) == {"v": 2},
           "new code on A, served by B")

    lam_a.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "blue"}})
    lam_a.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lam_b.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"COLOR": "blue"}

    version = lam_a.publish_version(FunctionName=name)["Version"]
    lam_a.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    within(lambda: json.loads(lam_b.invoke(FunctionName=name, Qualifier="live")["Payload"].read()) == {"v": 2},
           "an alias made on A, invoked on B")

    lam_a.delete_function(FunctionName=name)

    def gone() -> bool:
        try:
            lam_b.invoke(FunctionName=name)
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    within(gone, "a function deleted on A, gone from B")


def test_permissions_and_urls_follow(front_ends):
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, "def handler(e, c):\n    return 'url'\n")
    lam_a.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                         Principal="sns.amazonaws.com")
    within(lambda: "sns.amazonaws.com" in lam_b.get_policy(FunctionName=name)["Policy"], "a permission added on A, on B")
    url = lam_a.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    lam_a.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl", Principal="*",
                         FunctionUrlAuthType="NONE")
    path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
    host = url.split("/")[2].split(".")[0]

    def through_b() -> bool:
        request = urllib.request.Request(f"{b.endpoint}/{path}", headers={"Host": url.split('/')[2]})
        return urllib.request.urlopen(request, timeout=10).read() == b"url"

    assert host
    within(through_b, "a function URL made on A, answered by B")


def test_an_access_key_made_on_one_works_on_the_other_until_deleted(front_ends):
    a, b = front_ends
    iam_a = a.client("iam")
    user = f"u-{uuid.uuid4().hex[:8]}"
    iam_a.create_user(UserName=user)
    iam_a.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}))
    key = iam_a.create_access_key(UserName=user)["AccessKey"]
    as_user = b.client("lambda", credentials=(key["AccessKeyId"], key["SecretAccessKey"]))
    within(lambda: as_user.list_functions() is not None, "a key made on A, accepted by B")
    iam_a.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])

    def refused() -> bool:
        try:
            as_user.list_functions()
        except ClientError as exc:
            return exc.response["Error"]["Code"] in ("UnrecognizedClientException", "InvalidSignatureException")
        return False

    within(refused, "a key deleted on A, refused by B")


def test_async_events_accepted_on_one_run_somewhere(front_ends):
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, "def handler(e, c):\n    print('event', e['n'])\n    return e\n")
    within(lambda: lam_b.invoke(FunctionName=name)["StatusCode"] == 200, "the function served by B")
    for n in range(10):
        (lam_a if n % 2 else lam_b).invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": n}))

    def settled() -> bool:
        row = queue_report(a, name)["functions"][0]
        return row.get("succeeded", 0) >= 10 and row.get("depth", 1) == 0

    within(settled, "10 async events accepted on both, completed", seconds=60)


def test_a_schedule_fires_once_per_tick_with_two_front_ends(front_ends):
    from tests.e2e.test_async import Webhook

    a, b = front_ends
    lam_a = a.client("lambda")
    iam = a.client("iam")
    role = iam.create_role(RoleName=f"sched-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=role.rsplit("/", 1)[1], PolicyName="invoke", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    hook = Webhook()
    try:
        name = create_function(lam_a, "def handler(e, c):\n    return e\n")
        lam_a.put_function_event_invoke_config(FunctionName=name,
                                               DestinationConfig={"OnSuccess": {"Destination": hook.url(name)}})
        arn = lam_a.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        within(lambda: b.client("lambda").invoke(FunctionName=name)["StatusCode"] == 200, "the function served by B")
        time.sleep(1)  # B's caches of the role (IAM) and the configs have it too
        schedule = f"tick-{uuid.uuid4().hex[:6]}"
        b.client("scheduler").create_schedule(
            Name=schedule, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": arn, "RoleArn": role, "Input": '{"tick": "<aws.scheduler.scheduled-time>"}'})
        records = hook.wait(name, 4, timeout=60)
        a.client("scheduler").delete_schedule(Name=schedule)
        time.sleep(2 * 60 / SPEED)  # a tick that was being delivered as it was deleted
        ticks = [r["requestPayload"]["tick"] for r in hook.records[name]]
        assert len(records) >= 4 and len(ticks) == len(set(ticks)), ticks  # every tick once, by one front end
    finally:
        hook.server.shutdown()


def test_a_killed_front_ends_events_complete_on_the_others(front_ends, cluster_env, tmp_path_factory):
    a, b = front_ends
    doomed = start_server(tmp_path_factory.mktemp("front-end-c"), env=cluster_env)
    lam_c = doomed.client("lambda")
    name = create_function(a.client("lambda"), "import time\ndef handler(e, c):\n    time.sleep(2)\n    return e\n",
                           Timeout=30)
    within(lambda: lam_c.invoke(FunctionName=name, Payload=b'{"warm": 1}')["StatusCode"] == 200,
           "the function served by C")
    for n in range(4):
        assert lam_c.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": n}))["StatusCode"] == 202
    within(lambda: health(doomed)["async"]["in_flight"] >= 1, "C runs the events it accepted")
    doomed.process.kill()  # SIGKILL: no graceful hand-back of its leases
    doomed.process.wait(10)

    def all_done() -> bool:
        row = queue_report(a, name)["functions"][0]
        return row.get("succeeded", 0) >= 4 and row.get("depth", 1) == 0

    within(all_done, "C's 4 events completed by A and B after its leases expired", seconds=60)


def test_reserved_concurrency_holds_across_front_ends(front_ends):
    from concurrent.futures import ThreadPoolExecutor

    a, b = front_ends
    lam_a = a.client("lambda")
    name = create_function(lam_a, "import time\ndef handler(e, c):\n    start = time.time()\n    time.sleep(1.5)\n"
                                  "    return [start, time.time()]\n", Timeout=30)
    lam_a.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=10)
    within(lambda: b.client("lambda").get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
           == 10, "the reservation known on B")
    clients = [a.client("lambda", max_pool_connections=20), b.client("lambda", max_pool_connections=20)]

    def call(i: int):
        try:
            return json.loads(clients[i % 2].invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(30) as pool:
        outcomes = list(pool.map(call, range(30)))
    ran = [o for o in outcomes if isinstance(o, list)]
    throttled = [o for o in outcomes if o == "TooManyRequestsException"]
    assert len(ran) + len(throttled) == 30, outcomes
    edges = sorted([(start, 1) for start, _ in ran] + [(end, -1) for _, end in ran])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    print(f"30 calls over two front ends, reserved 10: {len(ran)} ran (at most {peak} at once), "
          f"{len(throttled)} throttled")
    assert peak <= 10 and len(ran) >= 5 and throttled


def test_cluster_status_shows_every_front_end(front_ends):
    from tests.e2e.test_cli import squall

    a, b = front_ends
    def both_alive() -> dict:
        status = signed_get(a, "/squall/cluster")
        return status if {a.endpoint, b.endpoint} <= {fe["url"] for fe in status["front_ends"] if fe["alive"]} else {}

    status = within(both_alive, "both front ends listed")
    ids = {fe["url"]: fe for fe in status["front_ends"] if fe["alive"]}
    assert {a.endpoint, b.endpoint} <= set(ids)
    assert sum(fe["leader"] for fe in ids.values()) == 1
    assert all("environments" in fe and "in_flight" in fe for fe in ids.values())
    shown = squall(b.endpoint, "cluster", "status")
    assert shown.returncode == 0, shown.stderr
    assert a.endpoint in shown.stdout and b.endpoint in shown.stdout and "leader" in shown.stdout
    assert "FRONT END" in shown.stdout and " *" in shown.stdout  # the one asked is marked


def test_one_leader_and_a_takeover(front_ends):
    a, b = front_ends
    leaders = within(lambda: [s for s in (a, b) if health(s)["cluster"]["leader"]], "a leader elected")
    assert len(leaders) == 1
    leader = leaders[0]
    other = b if leader is a else a
    assert health(other)["cluster"]["relay"]["connected"] is True
    leader.stop()
    within(lambda: health(other)["cluster"]["leader"], "the other front end takes over", seconds=20)
