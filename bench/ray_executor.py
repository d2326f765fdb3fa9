"""The Ray executor (``--executor ray``): what running environments on Ray nodes costs.

Measures, in one run:

* **warm invoke, local executor (the baseline) vs the Ray executor**: one front end each,
  sequential invokes over one keep-alive connection, p50 and p99; the extra cost (the target:
  at most +0.5 ms p50) is the difference of the medians. The Ray front end reaches the
  environment over its direct channel to the node's agent;
* **placement latency**: Ray's part of a cold start on the Ray executor, a placement group of
  one bundle (memory, CPU) created and ready, measured as the executor does it, p50 and p99;
* **cold start, local vs Ray**: a new function invoked for the first time, end to end;
* **throughput per node**: the same load against the local front end and against the Ray
  front end with a one-node cluster, then two and three nodes (one machine: the nodes share its cores).

The Ray cluster is Ray's own ``ray.cluster_utils.Cluster`` (a head and a second node in this
machine); the front end uses the machine's PostgreSQL and a code bucket in moto.

    python bench/ray_executor.py [--quick] [-n N] [-d SECONDS] [-c CONNECTIONS] [--json [FILE]]
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid

import common

from squall.cluster.agent_actor import local_agent_pids
from cluster import BUCKET, CAPACITY, PG, load, report_extra, warm_latency

HANDLER = """\
def handler(event, context):
    return event
"""
NODE_MEMORY = 4 << 30


def wait_for(check, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"waited {seconds:g} s for {what}")


def connected_agents(front_end: common.Server) -> int:
    nodes = common.get_json(front_end.endpoint, "/squall/cluster", front_end.credentials).get("nodes", [])
    return sum(node.get("agent") == "connected" for node in nodes)


def placement_latency(address: str, n: int) -> list[float]:
    """Placement groups of one 128 MB bundle (as the executor makes them), created and ready (ms)."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    ray.init(address=address, namespace="squall-bench", log_to_driver=False, logging_level="WARNING")
    try:
        took = []
        for i in range(n + 1):  # the first (this driver's first request to Ray's scheduler) is not counted
            started = time.perf_counter()
            group = placement_group([{"memory": float(128 << 20), "CPU": 0.0724}], strategy="STRICT_PACK")
            ray.get(group.ready(), timeout=30)
            placement_group_table(group)
            if i:
                took.append((time.perf_counter() - started) * 1000)
            remove_placement_group(group)
        return took
    finally:
        ray.shutdown()


def ray_load(front_end: common.Server, name: str, connections: int, seconds: int, generator: str) -> dict:
    """``load`` against the Ray front end, with the node agents' CPU per invoke (and their environments')."""
    meters = [common.CpuMeter(pid) for pid in local_agent_pids()]
    figures = load([front_end], name, connections, seconds, generator)
    per = [m.per_op_us(max(1, figures["n"])) or {} for m in meters]
    figures["agents_cpu_us"] = round(sum(c.get("server_cpu_us", 0.0) for c in per), 1)
    figures["environments_cpu_us"] = round(sum(c.get("environments_cpu_us", 0.0) for c in per), 1)
    return figures


def cold_starts(server: common.Server, runtime: str, n: int) -> list[float]:
    lam = common.lambda_client(server.endpoint, credentials=server.credentials)
    took = []
    for _ in range(n):
        name = common.deploy(lam, HANDLER, runtime, memory=128)
        started = time.perf_counter()
        lam.invoke(FunctionName=name, Payload=b"{}")
        took.append((time.perf_counter() - started) * 1000)
    return took


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=1769)
    p.add_argument("-n", type=int, help="sequential invokes for the latency comparison (default 2000; quick 100)")
    p.add_argument("-d", type=int, help="seconds of load per throughput run (default 10; quick 2)")
    p.add_argument("-c", type=int, default=16, help="connections (default 16)")
    p.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto")
    args = p.parse_args()
    n, seconds = args.n or (100 if args.quick else 2000), args.d or (2 if args.quick else 10)
    colds = 5 if args.quick else 20
    import loadgen

    generator = loadgen.choose(args.generator)
    report = common.Report("ray_executor", f"Ray executor: warm latency vs local, placement latency, cold starts, "
                           f"throughput on 1, 2 and 3 nodes ({args.c} connections, {seconds} s, {generator})", args)
    import boto3
    import psycopg
    from moto.server import ThreadedMotoServer
    from ray.cluster_utils import Cluster

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    db = f"squall_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    ray_cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "memory": NODE_MEMORY})
    local = common.start_server(args.isolation, CAPACITY)
    front_end = None
    try:
        health = common.health(local.endpoint)
        report.server(local, health)
        runtime = common.pick_runtime(health)
        env = {"SQUALL_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
               "SQUALL_CODE_BUCKET": BUCKET, "SQUALL_AWS_ENDPOINT": f"http://{host}:{port}",
               "SQUALL_AWS_ACCESS_KEY_ID": "test", "SQUALL_AWS_SECRET_ACCESS_KEY": "test",
               "SQUALL_EXECUTOR": "ray", "SQUALL_RAY_ADDRESS": ray_cluster.address,
               "SQUALL_RAY_NODE_DIR": tempfile.mkdtemp(prefix="squall-bench-nodes-")}
        front_end = common.start_server(args.isolation, env)
        wait_for(lambda: connected_agents(front_end) == 1, 120, "the node agent to connect")

        report.section("warm invoke: local executor vs Ray executor (one front end each)")
        solo = common.deploy(common.lambda_client(local.endpoint, credentials=local.credentials), HANDLER, runtime,
                             memory=args.memory)
        base = report.latency("warm_local", "local executor", warm_latency(local, solo, n), baseline=True)
        remote = common.deploy(common.lambda_client(front_end.endpoint, credentials=front_end.credentials), HANDLER,
                               runtime, memory=args.memory)
        ray_warm = report.latency("warm_ray", "Ray executor (direct channel to the node agent)",
                                  warm_latency(front_end, remote, n))
        report_extra(report, "the Ray executor", "warm_ray_vs_local", "the local executor baseline", ray_warm, base)

        report.section("placement latency and cold starts")
        report.latency("placement", "Ray placement group (one bundle) created and ready",
                       placement_latency(ray_cluster.address, 20 if args.quick else 200))
        report.latency("cold_local", "cold start, local executor", cold_starts(local, runtime, colds), baseline=True)
        report.latency("cold_ray", "cold start, Ray executor (placement included)", cold_starts(front_end, runtime, colds))

        report.section("throughput: local vs the Ray executor on 1, 2 and 3 nodes (one machine)")
        lam_local = common.lambda_client(local.endpoint, credentials=local.credentials)
        name = common.deploy(lam_local, HANDLER, runtime, memory=128)
        report.figures("throughput_local", "local executor", load([local], name, args.c, seconds, generator),
                       baseline=True)
        ray_lam = common.lambda_client(front_end.endpoint, credentials=front_end.credentials)
        for count in (1, 2, 3):
            if count > 1:
                ray_cluster.add_node(num_cpus=2, memory=NODE_MEMORY)
                wait_for(lambda: connected_agents(front_end) == count, 120, f"node {count}'s agent to connect")
            name = common.deploy(ray_lam, HANDLER, runtime, memory=128)
            report.figures(f"throughput_ray_{count}", f"Ray executor, {count} node{'s' if count > 1 else ''}",
                           ray_load(front_end, name, args.c, seconds, generator))
        nodes = common.get_json(front_end.endpoint, "/squall/cluster", front_end.credentials).get("nodes", [])
        report.figures("environments_per_node", "environments per node after the 3-node run",
                       {node["node"][:8]: node.get("busy", 0) + node.get("idle", 0) for node in nodes})
        report.finish()
    finally:
        if front_end is not None:
            front_end.stop()
        local.stop()
        ray_cluster.shutdown()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        moto.stop()


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
