"""Several front ends on one PostgreSQL database: what cluster mode costs and how it scales here.

Measures, in one run:

* **warm invoke, one front end on SQLite (the baseline) vs one front end on PostgreSQL in cluster
  mode** (relay, leader, permits running): sequential invokes over one keep-alive connection, p50
  and p99; the extra cost is the difference of the medians;
* **throughput with 1, 2, … front ends** (``--front-ends``, default 3) sharing the database and a
  code bucket (moto, in this process): the same load (connections split over the front ends) for
  ``-d`` seconds, invokes/s in all, and the front ends' CPU per invoke (their own processes, not
  the environments');
* **PostgreSQL per asynchronous event**: transactions and rows written per event (from
  ``pg_stat_database``, less the idle background the front ends make in the same time: heartbeats,
  permits, the leader's lock), for ``--events`` events accepted and completed;
* **PostgreSQL per schedule tick**: the same for a schedule tick, on two more front ends (a database
  of their own) whose schedule clock runs 60 times faster (the test-only
  ``SQUALL_TEST_SCHEDULE_CLOCK``; their tickers poll 60 times as often, which their idle rate shows),
  each tick's delivery as an async event included.

The scaling model built from these figures is in docs/scaling.md.

    python bench/cluster.py [--quick] [--front-ends N] [-d SECONDS] [-c CONNECTIONS] [--events N] [--json [FILE]]
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import common
import loadgen

HANDLER = """\
def handler(event, context):
    return event
"""
PAYLOAD = b'{"n": 1}'
PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BUCKET = "squall-bench-code"
SPEED = 60  # schedule clock: a minute of schedule time per second
LOAD_MEMORY_MB = 128  # the throughput runs' function: one environment per connection fits
CAPACITY = {"SQUALL_MEMORY_CAPACITY_MB": "20000"}


def pg_counters(name: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                           "WHERE datname = %s", (name,)).fetchone()
    return {"commits": row[0], "inserted": row[1], "updated": row[2], "deleted": row[3]}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def settle_stats() -> None:
    time.sleep(1.2)  # backends flush their statistics about once a second


class Cluster:
    """N front ends on one fresh database and one bucket; stopped (and the database dropped) at the end."""

    def __init__(self, args: Any, moto: str, fast_schedules: bool = False) -> None:
        import psycopg

        self.db = f"squall_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.env = {"SQUALL_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db}",
                    "SQUALL_CODE_BUCKET": BUCKET, "SQUALL_AWS_ENDPOINT": moto, "SQUALL_AWS_ACCESS_KEY_ID": "test",
                    "SQUALL_AWS_SECRET_ACCESS_KEY": "test", "SQUALL_ASYNC_LEASE_SECONDS": "10", **CAPACITY}
        if fast_schedules:  # the test-only schedule clock: a minute a second (tickers poll 60 times as often)
            self.env["SQUALL_TEST_SCHEDULE_CLOCK"] = f"{time.time():.3f},{SPEED}"
        self.args = args
        self.front_ends: list[common.Server] = []

    def add(self) -> common.Server:
        server = common.start_server(self.args.isolation, self.env)
        self.front_ends.append(server)
        return server

    def close(self) -> None:
        import psycopg

        for server in self.front_ends:
            server.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def warm_latency(server: common.Server, name: str, n: int) -> list[float]:
    invoker = common.RawInvoker(server.endpoint, name, credentials=server.credentials)

    def one() -> None:
        status, response, body = invoker.invoke(PAYLOAD)
        if status != 200:
            common.check_invoke(status, response, body)

    for _ in range(max(20, n // 10)):
        one()
    try:
        return common.timed_loop(one, n)
    finally:
        invoker.close()


def load(servers: list[common.Server], name: str, connections: int, seconds: int, generator: str) -> dict[str, Any]:
    """The same load split over ``servers`` at once: invokes/s in all, the front ends' CPU per invoke."""
    results: list[dict[str, Any]] = [{} for _ in servers]
    meters = [common.CpuMeter(server.pid) for server in servers]
    per = max(1, connections // len(servers))

    def run(i: int, server: common.Server) -> None:
        url = f"{server.endpoint}{common.invoke_path(name)}"
        headers = common.sign(server.credentials, "POST", url, PAYLOAD, {"Content-Type": "application/json"})
        results[i] = loadgen.run_load(generator, url, PAYLOAD, per, seconds, headers=headers)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    throughput = sum(r["throughput_per_s"] for r in results)
    cpu = [m.per_op_us(max(1, r["requests"])) or {} for m, r in zip(meters, results)]
    front_end_cpu_us = sum(c.get("server_cpu_us", 0.0) * r["requests"] for c, r in zip(cpu, results)) / max(1, requests)
    environments_cpu_us = sum(c.get("environments_cpu_us", 0.0) * r["requests"]
                              for c, r in zip(cpu, results)) / max(1, requests)
    return {"n": requests, "throughput_per_s": throughput, "errors": errors, "front_end_cpu_us": front_end_cpu_us,
            "environments_cpu_us": environments_cpu_us,
            "p50_ms": max(r["p50_us"] for r in results) / 1000, "p99_ms": max(r["p99_us"] for r in results) / 1000}


def report_extra(report: common.Report, what: str, ratio_key: str, baseline: str, measured: dict[str, Any],
                 base: dict[str, Any]) -> None:
    """The extra p50 (and p99) of ``what`` over the baseline, their ratio, and the +0.5 ms target."""
    extra = measured["median_ms"] - base["median_ms"]
    report.figures("warm_extra", f"extra warm-invoke cost of {what} (p50 difference)",
                   {"extra_p50_ms": round(extra, 4), "extra_p99_ms": round(measured["p99_ms"] - base["p99_ms"], 4)})
    report.ratio(ratio_key, f"warm p50, {what} / {baseline}", common.ratio(measured["median_ms"], base["median_ms"]))
    report.target("warm_extra_p50", f"{what} adds at most 0.5 ms p50 to a warm invoke (ms)", extra, 0.5)


def wait_succeeded(server: common.Server, name: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = common.get_json(server.endpoint, f"/squall/queue?function={name}", server.credentials)
        row = report["functions"][0] if report.get("functions") else {}
        if row.get("succeeded", 0) >= count and row.get("depth", 1) == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"the async events of {name} did not complete within {timeout} s")


def background_rate(db: str, seconds: float) -> dict[str, float]:
    before = pg_counters(db)
    time.sleep(seconds)
    settle_stats()
    return {k: v / (seconds + 1.2) for k, v in delta(before, pg_counters(db)).items()}


def per_unit(raw: dict[str, int], idle: dict[str, float], seconds: float, units: int) -> dict[str, float]:
    return {k: round(max(0.0, raw[k] - idle[k] * seconds) / max(1, units), 2) for k in raw}


TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def schedule_ticks(server: common.Server, db: str, lam: Any, runtime: str, idle: dict[str, float],
                   seconds: float) -> tuple[int, dict[str, float]]:
    """5 schedules of rate(1 minute) (a tick a second each on the fast clock) for ``seconds``: the
    ticks delivered, and the database's work per tick."""
    import boto3

    key, secret = server.credentials

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret)

    iam, scheduler = client("iam"), client("scheduler")
    role = iam.create_role(RoleName=f"bench-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=TRUST)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="invoke", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    name = common.deploy(lam, HANDLER, runtime, memory=256)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    time.sleep(1)
    before, started = pg_counters(db), time.monotonic()
    schedules = [f"bench-{uuid.uuid4().hex[:6]}" for _ in range(5)]
    for schedule in schedules:
        scheduler.create_schedule(Name=schedule, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                                  Target={"Arn": arn, "RoleArn": role["Arn"]})
    time.sleep(seconds)
    for schedule in schedules:
        scheduler.delete_schedule(Name=schedule)
    time.sleep(1.5)
    row = common.get_json(server.endpoint, f"/squall/queue?function={name}", server.credentials)["functions"][0]
    ticks = int(row.get("succeeded", 0))
    wait_succeeded(server, name, ticks)
    settle_stats()
    took = time.monotonic() - started
    return ticks, per_unit(delta(before, pg_counters(db)), idle, took, ticks)


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=1769)
    p.add_argument("--front-ends", type=int, default=3, help="the most front ends to run at once (default 3)")
    p.add_argument("-d", type=int, help="seconds of load per throughput run (default 10; quick 2)")
    p.add_argument("-c", type=int, default=32, help="connections in all, split over the front ends (default 32)")
    p.add_argument("-n", type=int, help="sequential invokes for the latency comparison (default 2000; quick 100)")
    p.add_argument("--events", type=int, help="asynchronous events for the database figures (default 2000; quick 100)")
    p.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto")
    args = p.parse_args()
    seconds, n = args.d or (2 if args.quick else 10), args.n or (100 if args.quick else 2000)
    events = args.events or (100 if args.quick else 2000)
    generator = loadgen.choose(args.generator)
    report = common.Report("cluster", f"cluster mode on PostgreSQL: warm latency vs SQLite, throughput with 1..{args.front_ends} "
                           f"front ends ({args.c} connections, {seconds} s, {generator}), database work per async event "
                           "and per schedule tick", args)
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    import boto3

    boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    baseline = common.start_server(args.isolation, CAPACITY)
    cluster = Cluster(args, f"http://{host}:{port}")
    try:
        health = common.health(baseline.endpoint)
        report.server(baseline, health)
        runtime = common.pick_runtime(health)
        solo = common.deploy(common.lambda_client(baseline.endpoint, credentials=baseline.credentials), HANDLER, runtime,
                             memory=args.memory)
        report.section("warm invoke: one front end on SQLite vs one on PostgreSQL in cluster mode")
        local = report.latency("warm_sqlite", "SQLite, one server", warm_latency(baseline, solo, n), baseline=True)
        solo_load = common.deploy(common.lambda_client(baseline.endpoint, credentials=baseline.credentials), HANDLER,
                                  runtime, memory=LOAD_MEMORY_MB)
        base_load = load([baseline], solo_load, args.c, seconds, generator)
        report.figures("throughput_sqlite", "SQLite, one server, throughput", base_load, baseline=True)
        baseline.stop()

        first = cluster.add()
        name = common.deploy(common.lambda_client(first.endpoint, credentials=first.credentials), HANDLER, runtime,
                             memory=args.memory)
        clustered = report.latency("warm_cluster", "PostgreSQL, cluster mode, one front end",
                                   warm_latency(first, name, n))
        report_extra(report, "cluster mode", "warm_cluster_vs_sqlite", "the SQLite baseline", clustered, local)

        name = common.deploy(common.lambda_client(first.endpoint, credentials=first.credentials), HANDLER, runtime,
                             memory=LOAD_MEMORY_MB)
        report.section("throughput with 1.. front ends (one machine: they share its cores)")
        for count in range(1, args.front_ends + 1):
            while len(cluster.front_ends) < count:
                server = cluster.add()
                warm_latency(server, name, 20)  # served there, environments warm
            figures = load(cluster.front_ends, name, args.c, seconds, generator)
            report.figures(f"throughput_{count}", f"{count} front end(s)", figures)

        report.section("PostgreSQL per asynchronous event and per schedule tick (idle background subtracted)")
        settle_stats()
        window = 3.0 if args.quick else 6.0
        idle = background_rate(cluster.db, window)
        report.figures("pg_idle_per_s", f"idle background of {len(cluster.front_ends)} front ends, per second",
                       {k: round(v, 2) for k, v in idle.items()})
        lam = common.lambda_client(first.endpoint, pool=32, credentials=first.credentials)
        async_fn = common.deploy(lam, HANDLER, runtime, memory=256)
        before, started = pg_counters(cluster.db), time.monotonic()
        threads = []
        per_thread = events // 8

        def send(k: int) -> None:
            for i in range(per_thread):
                lam.invoke(FunctionName=async_fn, InvocationType="Event", Payload=json.dumps({"i": k * per_thread + i}))

        for k in range(8):
            threads.append(threading.Thread(target=send, args=(k,)))
            threads[-1].start()
        for thread in threads:
            thread.join()
        wait_succeeded(first, async_fn, per_thread * 8)
        settle_stats()
        took = time.monotonic() - started
        per_event = per_unit(delta(before, pg_counters(cluster.db)), idle, took, per_thread * 8)
        report.figures("pg_per_async_event", f"per async event ({per_thread * 8} accepted and completed)", per_event)

        ticking = Cluster(args, cluster.env["SQUALL_AWS_ENDPOINT"], fast_schedules=True)
        try:
            for _ in range(2):
                ticking.add()
            settle_stats()
            fast_idle = background_rate(ticking.db, window)
            report.figures("pg_idle_fast_clock_per_s", "idle background of 2 front ends on the 60x schedule clock, "
                           "per second", {k: round(v, 2) for k, v in fast_idle.items()})
            tick_lam = common.lambda_client(ticking.front_ends[0].endpoint, credentials=ticking.front_ends[0].credentials)
            ticks, per_tick = schedule_ticks(ticking.front_ends[0], ticking.db, tick_lam, runtime, fast_idle, 4 if args.quick else 15)
        finally:
            ticking.close()
        report.figures("pg_per_schedule_tick", f"per schedule tick, its delivery included ({ticks} ticks of 5 "
                       "schedules, 2 front ends ticking)", per_tick)
        report.figures("pg_per_schedule_claim", "per schedule tick, less its delivery (the claim)",
                       {k: round(per_tick[k] - per_event[k], 2) for k in per_tick})
        report.finish()
    finally:
        baseline.stop()
        cluster.close()
        moto.stop()


if __name__ == "__main__":
    main()
