"""Warm throughput: 32 concurrent keep-alive connections invoking one function for D seconds.

Load comes from ``wrk`` (Debian package ``wrk``) with a Lua script for the POST body, or,
when wrk is not installed, from bench/loadgen.py's asyncio generator in a separate process.
Every connection POSTs to ``/2015-03-31/functions/NAME/invocations`` back to back; the
function scales out to as many warm environments as there are invokes in flight (a
warm-up run creates them before the measured run).

Baselines, same run, same generator: the HTTP floor (bench/hello_asgi.py, a trivial raw-ASGI
app on the same uvicorn/httptools/uvloop stack as Squall), and the rate of a fresh Python
process per invoke at the same concurrency.

    python bench/warm_throughput.py [--quick] [-d SECONDS] [-c 32] [--generator auto|wrk|asyncio]
                                    [--endpoint URL] [--isolation ...] [--json [FILE]]
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from pathlib import Path

import common
import loadgen

HANDLER = """\
def handler(event, context):
    return event
"""

PAYLOAD = b'{"n": 1}'
TARGET_PER_S = 10_000


def fresh_process_rate(connections: int, seconds: float) -> tuple[list[float], float]:
    """Invokes per second when every invoke is a fresh interpreter, `connections` at a time."""
    fresh = common.FreshProcess(HANDLER)
    samples: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            fresh.invoke(PAYLOAD)
            with lock:
                samples.append((time.perf_counter() - started) * 1000)

    try:
        fresh.invoke(PAYLOAD)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(connections) as pool:
            for future in [pool.submit(worker) for _ in range(connections)]:
                future.result()
        elapsed = time.perf_counter() - started
    finally:
        fresh.close()
    return samples, len(samples) / elapsed


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=128)
    p.add_argument("-d", "--duration", type=int, help="seconds per measured run (default 10; quick 1)")
    p.add_argument("-c", "--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto",
                   help="load generator (default: wrk when installed, else asyncio)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the cores to the server)")
    args = p.parse_args()
    duration = args.duration or (1 if args.quick else 10)
    warmup = 1 if args.quick else 3
    c = args.connections
    generator = loadgen.choose(args.generator)
    report = common.Report(
        "warm_throughput",
        f"{c} concurrent keep-alive connections invoking an echo function ({args.memory} MB) for {duration} s "
        f"(after a {warmup} s warm-up), load from {generator}",
        args,
    )
    if generator != "wrk":
        report.note("wrk is not installed (apt-get install wrk); using the asyncio generator, which needs more "
                    "CPU per request and so leaves less of the machine to the server")
    def run(url: str, secs: int, credentials: tuple[str, str] | None = None) -> dict:
        headers = common.sign(credentials, "POST", url, PAYLOAD, {"Content-Type": "application/json"}) if credentials else None
        return loadgen.run_load(generator, url, PAYLOAD, c, secs, args.threads, headers)

    env = {"SQUALL_ACCOUNT_CONCURRENCY": str(max(1000, 4 * c)),
           "SQUALL_MEMORY_CAPACITY_MB": str(max(20_000, 2 * c * args.memory))}
    with common.server_for(args, env) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        name = common.deploy(client, HANDLER, common.pick_runtime(doc), memory=args.memory)
        try:
            client.invoke(FunctionName=name, Payload=PAYLOAD)["Payload"].read()
            url = server.endpoint + common.invoke_path(name)
            run(url, warmup, server.credentials)  # scale out to c warm environments
            meter = common.CpuMeter(server.pid)
            result = run(url, duration, server.credentials)
            cpu = meter.per_op_us(result["requests"])
            environments = common.health(server.endpoint)["environments"]
        finally:
            common.delete_quietly(client, name)
        report.section("results")
        squall = loadgen.report_result(report, "warm_throughput", f"squall warm invokes, {c} connections", result)
        if cpu:
            cpu["generator_cpu_us"] = result["generator_cpu_s"] / max(1, result["requests"]) * 1e6
            cpu.pop("client_cpu_us", None)
            report.figures("cpu_per_invoke", "CPU per invoke (us; /proc, 10 ms ticks)",
                           {k: round(v, 1) for k, v in cpu.items()})
        report.line(f"  environments after the run: {environments}")
        if result["errors"]:
            report.note(f"{result['errors']} errors during the measured run (non-2xx or socket errors)")

    report.section("baselines")
    hello = common.start_listening([sys.executable, str(Path(__file__).resolve().parent / "hello_asgi.py")], None,
                                   "hello_asgi")
    try:
        run(hello.endpoint + "/", 1)
        floor = loadgen.report_result(report, "http_floor", "HTTP floor: raw-ASGI hello app, same uvicorn stack", run(hello.endpoint + "/", duration),
                     baseline=True)
    finally:
        hello.stop()
    samples, rate = fresh_process_rate(c, max(1.0, duration / 2))
    fresh = report.latency("fresh_process", f"fresh python process per invoke, {c} at a time", samples,
                           baseline=True, throughput_per_s=rate)
    report.ratio("squall_vs_http_floor", "squall invokes/s / HTTP floor requests/s",
                 common.ratio(squall["throughput_per_s"], floor["throughput_per_s"]))
    report.ratio("squall_vs_fresh_process", "squall invokes/s / fresh-process invokes/s",
                 common.ratio(squall["throughput_per_s"], fresh["throughput_per_s"]))
    report.target("warm_invokes_per_s", f">= {TARGET_PER_S:,} warm invokes/s at {c} connections",
                  squall["throughput_per_s"], TARGET_PER_S, higher_is_better=True)
    report.finish()


if __name__ == "__main__":
    main()
