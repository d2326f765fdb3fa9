"""Two front ends with ``--executor ray`` on a two-node Ray cluster of this machine (Ray's own
``ray.cluster_utils.Cluster``: a head and a second node, each with its own resources), one
PostgreSQL database and one code bucket (moto).

Environments run in the nodes' agents (squall/cluster/node_agent.py), placed by Ray; warm
invokes go over the front end's direct channel to the agent. The failure test removes a node
under a stream of sync and async invokes: async events must all complete (none lost), failed
sync calls are counted and printed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from squall.cluster.agent_actor import local_agent_pids
from tests.conftest import create_function, require, start_server
from tests.e2e.test_async import Webhook
from tests.e2e.test_async import aws as moto_client
from tests.e2e.test_cluster_front_ends import signed_get, within

pytestmark = pytest.mark.timeout(420)

BUCKET = "squall-ray-code"
NODE_MEMORY = (2 << 30) + (256 << 20)  # four 512 MB environments per node, and a little more


def ray_unavailable() -> str | None:
    try:
        import ray  # noqa: F401
        from ray.cluster_utils import Cluster  # noqa: F401
    except ImportError as exc:
        return f"Ray is not installed ({exc}): pip install ray"
    return None


@pytest.fixture(scope="module")
def ray_cluster():
    reason = ray_unavailable()
    require(reason is None, f"the Ray executor tests need Ray: {reason}")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "memory": NODE_MEMORY, "resources": {"squall-test-head": 1},
        # Ray's failure detection, quicker than its default (~15 s) so that the test is short
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                           "health_check_initial_delay_ms": 1000}})
    second = cluster.add_node(num_cpus=2, memory=NODE_MEMORY, resources={"squall-test-second": 1})
    try:
        yield cluster, second
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def front_ends(ray_cluster, shared_database, moto_endpoint, tmp_path_factory):
    cluster, _ = ray_cluster
    moto_client("s3", moto_endpoint).create_bucket(Bucket=BUCKET)
    env = {"SQUALL_DATABASE_URL": shared_database, "SQUALL_CODE_BUCKET": BUCKET, "SQUALL_AWS_ENDPOINT": moto_endpoint,
           "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
           "SQUALL_ASYNC_LEASE_SECONDS": "4", "SQUALL_EXECUTOR": "ray", "SQUALL_RAY_ADDRESS": cluster.address,
           "SQUALL_RAY_NODE_DIR": str(tmp_path_factory.mktemp("ray-nodes"))}
    first = start_server(tmp_path_factory.mktemp("ray-front-end-a"), env=env)
    second = start_server(tmp_path_factory.mktemp("ray-front-end-b"), env=env)
    within(lambda: all(n["agent"] == "connected" for n in nodes(first)) and len(nodes(first)) == 2,
           "both nodes' agents connected", 120)
    yield first, second
    for server in (first, second):
        if server.process.poll() is None:
            server.stop()


def nodes(server) -> list[dict]:
    return signed_get(server, "/squall/cluster").get("nodes", [])


SLEEPER = """
import json, os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("ran", event.get("id"))
    return {"id": event.get("id"), "pid": os.getpid()}
"""


def test_created_on_one_front_end_run_on_a_node_through_the_other(front_ends):
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, SLEEPER, MemorySize=256)
    first = lam_b.invoke(FunctionName=name, Payload=b'{"id": "one"}', LogType="Tail")
    assert json.loads(first["Payload"].read())["id"] == "one"
    import base64
    tail = base64.b64decode(first["LogResult"]).decode()
    assert "ran one" in tail and "Init Duration" in tail, tail  # a cold start, its tail brought back
    second = lam_b.invoke(FunctionName=name, Payload=b'{"id": "two"}', LogType="Tail")
    assert "Init Duration" not in base64.b64decode(second["LogResult"]).decode()  # warm: the same environment
    logs = b.client("logs")

    def shipped() -> bool:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        return any("ran two" in e["message"] for e in events)

    within(shipped, "the node's log lines in the front end's log store")
    report = within(lambda: (r := nodes(a)) and sum(n["busy"] + n["idle"] for n in r) >= 1 and r,
                    "the environment in the nodes' status (read every second)")
    assert len(report) == 2 and all(n["alive"] for n in report)


def test_reserved_concurrency_holds_across_front_ends_on_the_nodes(front_ends):
    """A burst of 30 through two front ends against reserved concurrency 10: never more than 10
    run at once (admission is the front ends', across them by permits; squall/cluster/permits.py),
    wherever Ray placed the environments."""
    from tests.e2e.test_cluster_front_ends import test_reserved_concurrency_holds_across_front_ends

    test_reserved_concurrency_holds_across_front_ends(front_ends)


def test_environments_are_placed_on_both_nodes(front_ends):
    a, b = front_ends
    lam_a = a.client("lambda", read_timeout=60)
    name = create_function(lam_a, SLEEPER, MemorySize=512)
    with ThreadPoolExecutor(8) as pool:  # 8 at once: 4 per node is all the memory there is
        results = list(pool.map(lambda i: json.loads(lam_a.invoke(
            FunctionName=name, Payload=json.dumps({"id": i, "sleep": 1.5}).encode())["Payload"].read()), range(8)))
    assert sorted(r["id"] for r in results) == list(range(8))
    report = within(lambda: (r := nodes(a)) and all(n["idle"] >= 1 for n in r) and r, "environments on both nodes")
    print("nodes:", [(n["node"][:8], n["idle"], n["memory_mb"]) for n in report])


def test_functions_reach_the_api_from_a_node(front_ends):
    a, _ = front_ends
    lam, iam = a.client("lambda"), a.client("iam")
    role = iam.create_role(RoleName="ray-invoker", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="ray-invoker", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    target = create_function(lam, "def handler(e, c):\n    return {'echo': e}\n")
    caller = create_function(lam, f"""
import json, boto3
def handler(event, context):
    out = boto3.client("lambda").invoke(FunctionName="{target}", Payload=b'{{"x": 1}}')
    return json.loads(out["Payload"].read())
""", Role=role["Role"]["Arn"])
    got = lam.invoke(FunctionName=caller)
    assert json.loads(got["Payload"].read()) == {"echo": {"x": 1}}, got.get("FunctionError")


STREAMER = """
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  responseStream.write('chunk-1\\n');
  await new Promise((resolve) => setTimeout(resolve, 300));
  responseStream.write('chunk-2\\n');
  responseStream.end();
});
"""


def test_a_streamed_response_comes_from_the_node_chunk_by_chunk(front_ends):
    a, _ = front_ends
    lam = a.client("lambda")
    name = create_function(lam, {"index.mjs": STREAMER}, handler="index.handler", Runtime="nodejs20.x")
    response = lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}", LogType="Tail")
    events = [event for event in response["EventStream"]]
    chunks = [e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e]
    assert chunks[0] == b"chunk-1\n" and b"".join(chunks) == b"chunk-1\nchunk-2\n"  # the first came on its own
    complete = events[-1]["InvokeComplete"]
    assert "ErrorCode" not in complete
    import base64
    assert "REPORT RequestId:" in base64.b64decode(complete["LogResult"]).decode()


def test_a_version_update_is_served_at_once(front_ends):
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, "def handler(e, c):\n    return 1\n")
    assert json.loads(lam_b.invoke(FunctionName=name)["Payload"].read()) == 1
    from tests.conftest import make_zip
    lam_a.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 2\n"}))
    lam_a.get_waiter("function_updated_v2").wait(FunctionName=name)
    within(lambda: json.loads(lam_b.invoke(FunctionName=name)["Payload"].read()) == 2, "new code on a node")


def test_provisioned_concurrency_is_placed_across_the_nodes(front_ends):
    """The leader places a spread placement group for the version and tells each node's agent how
    many to keep; every front end reads the agents' status; invokes of the version use them."""
    a, b = front_ends
    lam_a, lam_b = a.client("lambda"), b.client("lambda")
    name = create_function(lam_a, SLEEPER, MemorySize=256)
    version = lam_a.publish_version(FunctionName=name)["Version"]
    lam_a.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=2)
    for lam in (lam_a, lam_b):
        config = within(lambda: (c := lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version))
                        ["Status"] == "READY" and c, "provisioned concurrency READY", 60)
        assert config["AllocatedProvisionedConcurrentExecutions"] == 2
    report = within(lambda: (r := nodes(a)) and sum(n["provisioned"] for n in r) == 2 and r,
                    "the provisioned environments in the nodes' status")
    print("provisioned per node:", [(n["node"][:8], n["provisioned"]) for n in report])
    # Ray's SPREAD strategy puts them on different nodes where there is room (the earlier tests'
    # idle environments may fill one node): where they went is printed, not asserted
    import base64
    out = lam_b.invoke(FunctionName=name, Qualifier=version, Payload=b'{"id": "p"}', LogType="Tail")
    assert json.loads(out["Payload"].read())["id"] == "p"
    assert "Init Duration" not in base64.b64decode(out["LogResult"]).decode()  # its init ran beforehand
    lam_a.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    within(lambda: sum(n["provisioned"] for n in nodes(a)) == 0, "the provisioned environments stopped", 30)


def test_a_killed_agent_is_restarted_by_ray_and_used_again(front_ends):
    a, _ = front_ends
    lam = a.client("lambda", retries={"max_attempts": 3, "mode": "standard"})
    name = create_function(lam, SLEEPER, MemorySize=256)
    assert json.loads(lam.invoke(FunctionName=name, Payload=b'{"id": 1}')["Payload"].read())["id"] == 1
    before = local_agent_pids()
    assert len(before) == 2, before  # one per node, started by Ray (not by this test)
    os.kill(before[0], signal.SIGKILL)
    within(lambda: len(set(local_agent_pids()) - set(before)) == 1, "Ray restarted the agent", 60)
    within(lambda: all(n["agent"] == "connected" for n in nodes(a)), "the front end reconnected", 60)
    for i in range(6):  # every invoke is served: on the other node, or on the restarted agent
        assert json.loads(lam.invoke(FunctionName=name, Payload=json.dumps({"id": i}).encode())["Payload"].read())["id"] == i


def test_a_node_removed_under_load_loses_no_accepted_event(front_ends, ray_cluster):
    """Sync and async invokes stream in through both front ends; the second node is removed, then
    the second front end is killed. Every async event that got a 202 completes (re-delivered by the
    queue, or taken over from the dead front end); sync calls in flight on the node fail with a
    retryable 5xx, which the SDK retries elsewhere; those on the killed front end fail: counted."""
    cluster, second = ray_cluster
    a, b = front_ends
    hook = Webhook()
    try:
        name = create_function(a.client("lambda"), SLEEPER, MemorySize=256)
        a.client("lambda").put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=2,
            DestinationConfig={"OnSuccess": {"Destination": hook.url("done")},
                               "OnFailure": {"Destination": hook.url("failed")}})
        clients = [s.client("lambda", read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
                   for s in (a, b)]
        sync_failures: list[str] = []
        sync_ok = [0]
        accepted: list[int] = []
        stop = threading.Event()
        lock = threading.Lock()

        def sync_stream(k: int) -> None:
            lam = clients[k % 2]
            for i in range(400):  # bounded: stops at the flag or after 400 calls
                if stop.is_set():
                    return
                try:
                    out = lam.invoke(FunctionName=name, Payload=json.dumps({"id": f"s{k}-{i}", "sleep": 0.2}).encode())
                    ok = "FunctionError" not in out
                    with lock:
                        if ok:
                            sync_ok[0] += 1
                        else:
                            sync_failures.append(out["Payload"].read().decode()[:200])
                except ClientError as exc:
                    with lock:
                        sync_failures.append(f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}")
                except Exception as exc:  # noqa: BLE001 - the front end itself is gone (killed below)
                    with lock:
                        sync_failures.append(f"front end gone: {type(exc).__name__}")
                    return  # its clients would go to another front end (the load balancer's job)

        def async_stream() -> None:
            for i in range(60):
                if stop.is_set():
                    return
                lam = clients[i % 2]
                try:
                    out = lam.invoke(FunctionName=name, InvocationType="Event",
                                     Payload=json.dumps({"id": i, "sleep": 0.3}).encode())
                except Exception:  # noqa: BLE001 - the front end is gone: not accepted, so not owed
                    continue
                if out["StatusCode"] == 202:
                    with lock:
                        accepted.append(i)
                time.sleep(0.1)

        threads = [threading.Thread(target=sync_stream, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=async_stream))
        for thread in threads:
            thread.start()
        time.sleep(3)
        within(lambda: sum(n["busy"] + n["idle"] for n in nodes(a) if n["node"] == second.node_id) > 0,
               "environments on the second node before it goes")
        cluster.remove_node(second, allow_graceful=False)
        removed_at = time.monotonic()
        within(lambda: any(n["node"] == second.node_id and not n["alive"] for n in nodes(a)),
               "Ray says the node is dead", 60)
        print(f"node seen dead after {time.monotonic() - removed_at:.1f} s")
        time.sleep(3)  # invokes go on, on the surviving node
        b.process.kill()  # then a front end: its leased events run on the other after their lease
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        done = {r["responsePayload"]["id"] for r in hook.wait("done", len(accepted), timeout=120)}
        failed = hook.records.get("failed", [])
        print(f"sync: {sync_ok[0]} ok, {len(sync_failures)} failed: {sync_failures[:5]}")
        print(f"async: {len(accepted)} accepted, {len(done)} done, {len(failed)} failed")
        assert not failed, failed[:3]
        assert set(accepted) <= done  # nothing that got a 202 is lost
        assert sync_ok[0] > 0
        after = json.loads(clients[0].invoke(FunctionName=name, Payload=b'{"id": "after"}')["Payload"].read())
        assert not any(f.startswith("ServiceException") for f in sync_failures)  # the SDK's retries served them
        assert after["id"] == "after"  # placed on the surviving node
    finally:
        hook.server.shutdown()


def test_cluster_status_shows_the_nodes(front_ends):
    a, _ = front_ends
    from click.testing import CliRunner

    from squall.cli.main import cli
    result = CliRunner().invoke(cli, ["cluster", "status"], env={
        "SQUALL_ENDPOINT": a.endpoint, "AWS_ACCESS_KEY_ID": a.credentials[0],
        "AWS_SECRET_ACCESS_KEY": a.credentials[1], "AWS_DEFAULT_REGION": "us-east-1"})
    assert result.exit_code == 0, result.output
    assert "NODE" in result.output and "alive" in result.output
    health = json.loads(urllib.request.urlopen(f"{a.endpoint}/health", timeout=10).read())
    assert health["isolation"]["name"] == "ray"
