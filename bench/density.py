"""Density: how many idle warm environments of a 128 MB Python function fit on a machine.

K invokes run AT ONCE so that K environments start: each handler connects back to this
script and blocks until all K are in (or, where it cannot reach the script, sleeps until a
deadline). Environments reach nothing of the host by default, so the server this script
starts has a network ``bench`` that may reach the script's port on the host (at the network's
gateway), and the function joins it (tag ``squall:network=bench``). Released, they finish and stay warm and idle. Then the script
measures every environment's processes (the server's new descendants, grouped by session):
private memory (Private_Clean + Private_Dirty from /proc/PID/smaps_rollup) and PSS, and the
host's MemAvailable before and after. It reports MB per environment and extrapolates to a
24 GiB machine (target: >= 1,000 environments).

The server this script starts gets SQUALL_ACCOUNT_CONCURRENCY and SQUALL_MEMORY_CAPACITY_MB
large enough for K (admission counts MemorySize, 128 MB each, not real use).

Full mode aims at K=1000: it first starts 20, measures what one costs, and lowers K if the
machine's free memory (minus a 2 GiB reserve) would not hold 1,000; it prints what it does.

Baseline, same run: the same number of idle fresh Python processes (``python -s`` that
imported the same handler and wait on stdin), measured the same way.

    python bench/density.py [--quick] [-k K] [--endpoint URL] [--isolation ...] [--json [FILE]]
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import common

MEMORY_MB = 128
MACHINE_GIB = 24
TARGET_ENVIRONMENTS = 1000
RESERVE_KB = 2 * 1024 * 1024
PROBE_K = 20

HANDLER = """\
import socket
import time

def handler(event, context):
    how = "released"
    try:
        s = socket.create_connection((event["host"], event["port"]), timeout=event["max_wait_s"])
        s.recv(1)  # blocks until every environment of the burst is running
        s.close()
    except OSError:
        how = "timed"
        time.sleep(max(0.0, event["until"] - time.time()))
    return {"stream": context.log_stream_name, "how": how}
"""

PRIMER = """\
def handler(event, context):
    return {}
"""

_IDLE_BASELINE = (
    "import sys,json\n"
    "sys.path.insert(0,sys.argv[1])\n"
    "import app\n"
    "sys.stdout.write('ready\\n');sys.stdout.flush()\n"
    "sys.stdin.read()\n"
)


def _tree_cpu(pid: int) -> float:
    return common.cpu_seconds([pid, *common.descendants(pid)])


async def burst(server: common.Server, server_pid: int, name: str, k: int, max_wait_s: float,
                stall_s: float, rendezvous: socket.socket, host: str) -> dict[str, Any]:
    """K concurrent invokes held until all K run; returns counts and timings.

    Gives up waiting when for `stall_s` no new environment has come in and the server and its
    environments used almost no CPU (nothing is starting), or after `max_wait_s`; then it
    releases whatever runs and reports how many ran at once.
    """
    arrived: list[asyncio.StreamWriter] = []
    released = False
    last_arrival = time.perf_counter()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal last_arrival
        if released:
            writer.close()  # a late one: let it go at once
            return
        arrived.append(writer)
        last_arrival = time.perf_counter()

    listening = socket.socket(fileno=os.dup(rendezvous.fileno()))  # closed with the listener; ours stays
    listener = await asyncio.start_server(on_connect, sock=listening, backlog=4096)
    port = rendezvous.getsockname()[1]
    event = json.dumps({"host": host, "port": port, "max_wait_s": max_wait_s,
                        "until": time.time() + max_wait_s}).encode()
    request = common.build_post(server.host, server.port, common.invoke_path(name), event, credentials=server.credentials)
    started = time.perf_counter()
    tasks = [asyncio.create_task(common.post_once(server.host, server.port, request)) for _ in range(k)]
    ramp_s = stalled = None
    last_progress, last_check = started, started
    cpu_before = _tree_cpu(server_pid)
    while True:
        now = time.perf_counter()
        if len(arrived) >= k:
            ramp_s = now - started
            break
        if now - last_check >= 1.0:  # environments still starting keep the server's tree busy
            cpu_now = _tree_cpu(server_pid)
            if cpu_now - cpu_before > 0.2 * (now - last_check):
                last_progress = now
            cpu_before, last_check = cpu_now, now
        if now - max(last_arrival, last_progress) > stall_s or now - started > max_wait_s:
            stalled = len(arrived)
            break
        await asyncio.sleep(0.05)
    in_at_once = len(arrived)
    released = True
    for writer in arrived:  # release everyone
        writer.close()
    done, pending = await asyncio.wait(tasks, timeout=60 if stalled is None else 15)
    for task in pending:
        task.cancel()
    listener.close()
    streams, failures, timed = set(), [], 0
    for task in tasks:
        if task in pending:
            failures.append("no reply (still waiting when the burst was abandoned)")
            continue
        if task.exception() is not None:
            failures.append(repr(task.exception()))
            continue
        status, head, body = task.result()
        if status != 200 or b"x-amz-function-error" in head.lower():
            failures.append(f"HTTP {status}: {body[:300]!r}")
            continue
        reply = json.loads(body)
        streams.add(reply["stream"])
        timed += reply["how"] == "timed"
    return {"k": k, "ramp_s": ramp_s, "in_at_once": in_at_once, "environments": len(streams),
            "failures": failures, "timed": timed, "stalled_at": stalled}


def measure(server_pid: int, before: set[int]) -> dict[str, Any]:
    """Memory of the environments that appeared since `before`, grouped by session."""
    server_session = os.getsid(server_pid)
    groups: dict[int, list[dict[str, int]]] = {}
    for pid in common.descendants(server_pid):
        if pid in before:
            continue
        try:
            session = os.getsid(pid)
        except ProcessLookupError:
            continue
        if session == server_session:
            continue
        rollup = common.smaps_rollup_kb(pid)
        if rollup:
            groups.setdefault(session, []).append(rollup)
    per_env = []
    for rollups in groups.values():
        per_env.append({
            "processes": len(rollups),
            "private_kb": sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups),
            "pss_kb": sum(r.get("Pss", 0) for r in rollups),
            "rss_kb": sum(r.get("Rss", 0) for r in rollups),
            "process_private_kb": sorted(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups),
        })
    return {"groups": per_env}


def idle_fresh_processes(k: int) -> dict[str, Any]:
    """The baseline: k idle fresh interpreters holding the same handler module."""
    fresh = common.FreshProcess(HANDLER)
    procs: list[subprocess.Popen[bytes]] = []
    available0 = common.read_meminfo().get("MemAvailable", 0)
    try:
        for _ in range(k):
            proc = subprocess.Popen([sys.executable, "-s", "-c", _IDLE_BASELINE, fresh.dir],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        time.sleep(0.3)
        available1 = common.read_meminfo().get("MemAvailable", 0)
        rollups = [common.smaps_rollup_kb(p.pid) for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        fresh.close()
    return {
        "private_kb": [r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups],
        "pss_kb": [r.get("Pss", 0) for r in rollups],
        "host_delta_kb": available0 - available1,
    }


def mb(kb: float) -> float:
    return kb / 1024


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("-k", type=int, help=f"environments to start (default {TARGET_ENVIRONMENTS}; quick 20)")
    p.add_argument("--max-wait", type=float, default=600.0, help="longest a burst may take to ramp up (s)")
    p.add_argument("--stall", type=float, default=30.0,
                   help="give up a burst when for this long no new environment came in and nothing was starting (s, default 30)")
    args = p.parse_args()
    k_wanted = args.k or (20 if args.quick else TARGET_ENVIRONMENTS)
    report = common.Report(
        "density",
        f"up to {k_wanted} idle warm environments of a {MEMORY_MB} MB Python function "
        "(started by as many invokes held at once); memory per environment",
        args,
    )
    rendezvous = socket.create_server(("0.0.0.0", 0), backlog=4096)  # where handlers wait
    env = {
        "SQUALL_ACCOUNT_CONCURRENCY": str(k_wanted + 100),
        "SQUALL_MEMORY_CAPACITY_MB": str((k_wanted + 20) * MEMORY_MB),
        "SQUALL_NETWORKS": json.dumps({"bench": {"host_ports": [rendezvous.getsockname()[1]]}}),
    }
    if args.endpoint:
        report.note(f"given --endpoint: its account concurrency and memory capacity must allow {k_wanted} "
                    f"environments of {MEMORY_MB} MB")
    with common.server_for(args, env) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        server_pid = server.pid
        if server_pid is None:
            raise SystemExit("cannot find the server's process (it must run on this machine)")
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        runtime = common.pick_runtime(doc)
        primer = common.deploy(client, PRIMER, runtime, memory=MEMORY_MB)
        bench_network = ((doc.get("isolation") or {}).get("networks") or {}).get("networks", {}).get("bench")
        host = bench_network["gateway"] if bench_network else "127.0.0.1"
        tags = {"squall:network": "bench"} if bench_network else None
        name = common.deploy(client, HANDLER, runtime, memory=MEMORY_MB, timeout=900, tags=tags)
        try:
            client.invoke(FunctionName=primer, Payload=b"{}")["Payload"].read()  # starts any zygote now
            client.delete_function(FunctionName=primer)
            time.sleep(0.5)
            before = set(common.descendants(server_pid))
            server_rss_kb0 = common.smaps_rollup_kb(server_pid).get("Rss", 0)
            available0 = common.read_meminfo().get("MemAvailable", 0)
            k = k_wanted
            if not args.quick and k_wanted > PROBE_K:
                probe = asyncio.run(burst(server, server_pid, name, PROBE_K, args.max_wait, args.stall, rendezvous, host))
                time.sleep(0.5)
                cost_kb = max(1, (available0 - common.read_meminfo().get("MemAvailable", 0)) / max(1, probe["environments"]))
                room = (common.read_meminfo().get("MemAvailable", 0) - RESERVE_KB) / (1.5 * cost_kb) + PROBE_K
                k = max(PROBE_K, min(k_wanted, int(room)))
                report.line(f"plan:      {PROBE_K} environments cost {mb(cost_kb):.1f} MB each of MemAvailable; "
                            f"starting {k} in all" + ("" if k == k_wanted else f" (not {k_wanted}: free memory)"))
            else:
                report.line(f"plan:      starting {k} environments at once")
            result = asyncio.run(burst(server, server_pid, name, k, args.max_wait, args.stall, rendezvous, host))
            if result["stalled_at"] is not None and server.output:
                report.line("server output (last lines), for the stall:")
                for line in list(server.output)[-15:]:
                    report.line("  | " + line.rstrip())
            time.sleep(1.0)  # let the released invokes finish their bookkeeping
            health_after = common.health(server.endpoint)
            available1 = common.read_meminfo().get("MemAvailable", 0)
            server_rss_kb1 = common.smaps_rollup_kb(server_pid).get("Rss", 0)
            memory = measure(server_pid, before)
        finally:
            common.delete_quietly(client, name)

    groups = memory["groups"]
    n_env = result["environments"]
    report.section("results")
    ramp = "n/a" if result["ramp_s"] is None else f"{result['ramp_s']:.2f} s"
    report.line(f"  burst: {k} invokes, {result['in_at_once']} running at once after {ramp}, "
                f"{n_env} distinct environments, {len(result['failures'])} failures; "
                f"server says {health_after['environments']}")
    if result["stalled_at"] is not None:
        report.note(f"the burst STALLED: {result['stalled_at']} of {k} invokes were running when no new environment "
                    f"had come in for {args.stall:g} s; measuring the environments that exist")
    if result["failures"]:
        report.note(f"{len(result['failures'])} failures, first: {result['failures'][0]}")
    if result["timed"]:
        report.note(f"{result['timed']} handlers could not reach this script ({host}) and slept instead")
    private = [g["private_kb"] / 1024 for g in groups]
    pss = [g["pss_kb"] / 1024 for g in groups]
    processes = statistics.median([g["processes"] for g in groups]) if groups else 0
    host_delta_kb = available0 - available1
    per_env_host = mb(host_delta_kb / n_env) if n_env else float("nan")
    report.figures("private_mb", f"private memory per environment (MB; {len(groups)} environments found, "
                   f"{processes:g} processes each)", _mb_summary(private))
    report.figures("pss_mb", "PSS per environment (MB)", _mb_summary(pss))
    if groups:
        shapes = collections.Counter(len(g["process_private_kb"]) for g in groups)
        size = shapes.most_common(1)[0][0]
        columns = [statistics.median(g["process_private_kb"][i] for g in groups if len(g["process_private_kb"]) == size)
                   for i in range(size)]
        report.line("  private memory of an environment's processes, smallest to largest (median MB): "
                    + ", ".join(f"{mb(c):.2f}" for c in columns))
    report.figures("host", "host memory", {
        "memavailable_delta_mb": round(mb(host_delta_kb), 1),
        "per_environment_mb": round(per_env_host, 2),
        "server_rss_growth_mb": round(mb(server_rss_kb1 - server_rss_kb0), 1),
    })
    per_env_private = statistics.median(private) if private else float("nan")
    worst = max(x for x in (per_env_private, per_env_host) if x == x) if groups else float("nan")
    fit = (MACHINE_GIB * 1024) / worst if worst == worst and worst > 0 else None
    report.figures("extrapolation", f"idle environments on {MACHINE_GIB} GiB", {
        "by_private_memory": int(MACHINE_GIB * 1024 / per_env_private) if per_env_private > 0 else None,
        "by_memavailable_delta": int(MACHINE_GIB * 1024 / per_env_host) if per_env_host > 0 else None,
        "conservative": int(fit) if fit else None,
    })

    report.section(f"baseline ({min(k, 200)} idle fresh python processes holding the same handler)")
    base = idle_fresh_processes(min(k, 200))
    base_private = [x / 1024 for x in base["private_kb"]]
    base_row = report.figures("fresh_private_mb", "private memory per process (MB)", _mb_summary(base_private), baseline=True)
    report.figures("fresh_pss_mb", "PSS per process (MB)", _mb_summary([x / 1024 for x in base["pss_kb"]]), baseline=True)
    report.figures("fresh_host", "host memory", {
        "per_process_mb": round(mb(base["host_delta_kb"] / max(1, len(base_private))), 2)}, baseline=True)
    report.ratio("private_vs_fresh", "environment private MB / fresh process private MB",
                 common.ratio(per_env_private, base_row.get("median_mb")))
    report.target("environments_on_24gib", f">= {TARGET_ENVIRONMENTS:,} idle environments of a {MEMORY_MB} MB function "
                  f"on {MACHINE_GIB} GiB (extrapolated, conservative)", fit, TARGET_ENVIRONMENTS, higher_is_better=True)
    report.finish()


def _mb_summary(values: list[float]) -> dict[str, Any]:
    """A latency-style summary of MB values (median/p99 keys reuse the report's columns)."""
    s = common.summarize(values)
    if not values:
        return s
    # The report prints *_ms keys with a unit; MB figures get their own keys.
    return {"n": s["n"], "median_mb": round(s["median_ms"], 2), "p99_mb": round(s["p99_ms"], 2),
            "mean_mb": round(s["mean_ms"], 2), "max_mb": round(s["max_ms"], 2), "total_mb": round(sum(values), 1)}


if __name__ == "__main__":
    main()
