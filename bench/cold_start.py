"""Cold start: a NEW execution environment of a stdlib-only Python function per invoke.

Between invokes the script changes an environment variable with
UpdateFunctionConfiguration (and waits for ``function_updated_v2``), which retires the
function's environments, so the next invoke must start a new one. Only the invoke call is
timed: client-side latency through the HTTP API (one keep-alive connection, no SDK), and
the "Init Duration" of the REPORT line in the log tail (``X-Amz-Log-Type: Tail``).

Baseline, same run: a fresh ``python -s`` process per invoke doing the same work (spawn the
interpreter, import the same handler file, call it, write the reply).

``--layers N``: the function uses N layers (each a small Python module at /opt/python, which the
handler imports), merged at /opt: the cold start with layers.

SnapStart (``--apps``, default all; ``--quick``: stdlib only): for each app — a stdlib-only
function, one that imports requests and boto3 (and makes a client), a FastAPI app through
Mangum (their packages vendored in the zip, as this venv has them), the same primed by a
before-snapshot hook that runs one request (as AWS advises for SnapStart), a Node.js and a Java
echo function (environments initialised ahead: they cannot be forked) — a published version with
SnapStart and the same code without, invoked alternately on a second server whose environments
are reaped 0.2 s after use, so that every invoke is cold: restored from the snapshot, or
initialised from scratch (the baseline, same run). Client side, and REPORT's Restore Duration /
Init Duration.

    python bench/cold_start.py [--quick] [-n N] [--layers N] [--apps stdlib,requests,fastapi,fastapi-primed,node,java|none]
        [--snap-memory MB] [--endpoint URL] [--isolation auto|process|linux] [--json [FILE]]
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import common
import runtimes
from vendored import app_zip

HANDLER = """\
import json
import os

def handler(event, context):
    return {"stream": context.log_stream_name, "gen": os.environ.get("BENCH_GEN"), "echo": event}
"""

PAYLOAD = b'{"cold": true}'
TARGET_P50_MS = 5.0
TARGET_P99_MS = 15.0

REQUESTS_APP = """\
import boto3
import requests

SESSION = requests.Session()
S3 = boto3.client("s3", region_name="us-east-1")

def handler(event, context):
    return {"requests": requests.__version__, "s3": S3.meta.region_name}
"""
FASTAPI_APP = """\
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI(title="bench")

@app.get("/")
def root():
    return {"hello": "world"}

handler = Mangum(app, lifespan="off")
"""
HTTP_EVENT = json.dumps({
    "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {"host": "bench"},
    "requestContext": {"http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                "userAgent": "bench"}, "stage": "$default", "requestId": "bench", "accountId": "1",
                       "apiId": "bench", "domainName": "bench", "domainPrefix": "bench", "time": "", "timeEpoch": 0},
    "isBase64Encoded": False, "body": "",
}).encode()
# The same app, primed as AWS advises for SnapStart: a before-snapshot hook runs one request, so that
# what FastAPI and pydantic build lazily on the first request is in the snapshot already.
PRIMING = """
from snapshot_restore_py import register_before_snapshot

@register_before_snapshot
def prime():
    import json
    handler(json.loads(%r), None)
"""


@dataclass(frozen=True)
class App:
    """A SnapStart case: its files (Python: app.py and vendored packages), runtime, handler, payload
    and the issue's target for its restored cold start (p50, ms)."""

    code: str = ""
    vendored: tuple[str, ...] = ()
    payload: bytes = b"{}"
    target_ms: float = 0.0
    runtime: str = ""  # empty: the server's Python
    handler: str = "app.handler"
    files: Callable[[Path], dict[str, Any] | None] | None = None  # another language's package

    def zipped(self, workdir: Path) -> bytes | None:
        if self.files is None:
            return app_zip(self.code, self.vendored)[0]
        files = self.files(workdir)
        return common.make_zip(files) if files else None


APPS = {
    "stdlib": App(HANDLER, payload=PAYLOAD, target_ms=5.0),
    "requests": App(REQUESTS_APP, ("requests",), target_ms=10.0),  # boto3: the runtime's SDK
    "fastapi": App(FASTAPI_APP, ("fastapi", "mangum"), HTTP_EVENT, 15.0),
    "fastapi-primed": App(FASTAPI_APP + PRIMING % HTTP_EVENT.decode(), ("fastapi", "mangum"), HTTP_EVENT, 15.0),
    # runtimes that cannot be forked after init: environments initialised ahead (docs/snapstart.md)
    "node": App(target_ms=30.0, runtime="nodejs20.x", handler="index.handler", files=lambda _: runtimes.NODE),
    "java": App(target_ms=60.0, runtime="java17", handler="bench.Echo::handleRequest", files=runtimes.java_package),
}
REAPED_AFTER_S = 0.2  # keep_alive_seconds of the SnapStart cases' server


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=128)
    p.add_argument("-n", type=int, help="cold invokes (default 200; quick 5)")
    p.add_argument("--layers", type=int, default=0, help="layers the function uses (0-5; default 0)")
    p.add_argument("--settle-ms", type=float, default=20.0,
                   help="pause after each update so the retired environment's shutdown is not timed (default 20)")
    p.add_argument("--apps", help="SnapStart cases: stdlib,requests,fastapi,fastapi-primed,node,java or none "
                   "(default all; quick: stdlib)")
    p.add_argument("--snap-memory", type=int, default=512, help="MemorySize of the SnapStart cases (default 512)")
    args = p.parse_args()
    n = args.n or (5 if args.quick else 200)
    report = common.Report(
        "cold_start",
        f"{n} invokes, each in a NEW environment of a stdlib-only {args.memory} MB Python function"
        f"{f' with {args.layers} layers' if args.layers else ''} (forced by "
        "UpdateFunctionConfiguration of an env var between invokes); only the invoke is timed, "
        "client side, over one keep-alive HTTP connection",
        args,
    )
    with common.server_for(args) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        layers = [client.publish_layer_version(
            LayerName=f"bench-layer-{i}", Content={"ZipFile": common.make_zip({f"python/bench_layer_{i}.py": f"N = {i}\n"})},
        )["LayerVersionArn"] for i in range(args.layers)]
        code = "".join(f"import bench_layer_{i}\n" for i in range(args.layers)) + HANDLER
        name = common.deploy(client, code, common.pick_runtime(doc), memory=args.memory, env={"BENCH_GEN": "0"},
                             layers=layers)
        invoker = common.RawInvoker(server.endpoint, name, tail=True, credentials=server.credentials)
        latencies, inits, outside, streams = [], [], [], set()
        missing_init = 0
        try:
            for i in range(1, n + 1):
                client.update_function_configuration(FunctionName=name, Environment={"Variables": {"BENCH_GEN": str(i)}})
                client.get_waiter("function_updated_v2").wait(
                    FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600}
                )
                time.sleep(args.settle_ms / 1000)
                started = time.perf_counter()
                status, response, body = invoker.invoke(PAYLOAD)
                latencies.append((time.perf_counter() - started) * 1000)
                common.check_invoke(status, response, body)
                result = json.loads(body)
                if result.get("gen") != str(i):
                    raise RuntimeError(f"invoke {i} ran an environment of configuration {result.get('gen')!r}")
                streams.add(result["stream"])
                init = common.init_duration_ms(common.log_tail(response))
                if init is None:
                    missing_init += 1
                else:
                    inits.append(init)
                    outside.append(latencies[-1] - init)
        finally:
            invoker.close()
            common.delete_quietly(client, name)

        report.section("results")
        cold = report.latency("cold_invoke", "cold invoke, end to end (client side)", latencies,
                              new_environments=len(streams))
        report.latency("init_duration", "REPORT Init Duration", inits)
        report.latency("outside_init", "invoke minus its Init Duration (HTTP, API, lease, first invoke)", outside)
        if missing_init:
            report.note(f"{missing_init} of {n} invokes had no Init Duration in their REPORT line (not cold?)")
        if len(streams) != n:
            report.note(f"only {len(streams)} distinct environments served {n} invokes")

    report.section("baseline")
    fresh = common.FreshProcess(HANDLER)
    try:
        fresh.invoke(PAYLOAD)  # page cache warm, as the server's interpreter is
        base = report.latency(
            "fresh_process",
            "fresh python process per invoke (spawn + import + handler + reply)",
            fresh.timed(PAYLOAD, n),
            baseline=True,
        )
    finally:
        fresh.close()
    r = common.ratio(cold.get("median_ms"), base.get("median_ms"))
    report.ratio("cold_vs_fresh_median", "cold invoke median / fresh process median", r,
                 "below 1: Squall's cold start beats starting a fresh interpreter")
    report.ratio("cold_vs_fresh_p99", "cold invoke p99 / fresh process p99",
                 common.ratio(cold.get("p99_ms"), base.get("p99_ms")))
    isolated = bool((report.doc["isolation"] or {}).get("isolated"))
    suffix = "" if isolated else " (backend is NOT isolated: the target is for a fully sandboxed start)"
    report.target("cold_p50_ms", f"cold p50 <= {TARGET_P50_MS} ms{suffix}", cold.get("median_ms"), TARGET_P50_MS)
    report.target("cold_p99_ms", f"cold p99 <= {TARGET_P99_MS} ms{suffix}", cold.get("p99_ms"), TARGET_P99_MS)
    apps = [a for a in (args.apps or ("stdlib" if args.quick else ",".join(APPS))).split(",") if a and a != "none"]
    if apps:
        snap_start_cases(args, report, apps, max(2, n // 4) if not args.quick else 2)
    report.finish()


def snap_start_cases(args, report: common.Report, apps: list[str], n: int) -> None:  # type: ignore[no-untyped-def]
    """Cold starts restored from a SnapStart snapshot against the same code initialised from scratch."""
    report.section(f"SnapStart: {n} cold invokes per app and flavour, {args.snap_memory} MB")
    if args.endpoint:
        report.note("skipped: the SnapStart cases start a server of their own (short keep-alive)")
        return
    if not (report.doc["isolation"] or {}).get("isolated"):
        report.note("skipped: SnapStart needs the linux sandbox")
        return
    with common.server_for(args, env={"SQUALL_KEEP_ALIVE_SECONDS": str(REAPED_AFTER_S)}) as server:
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        offered = common.health(server.endpoint)
        python = common.pick_runtime(offered)
        workdir = Path(tempfile.mkdtemp(prefix="squall-bench-snap-"))
        for app in apps:
            case = APPS[app]
            runtime = case.runtime or python
            zipped = case.zipped(workdir) if runtime in (offered.get("runtimes") or {}) else None
            if zipped is None:
                report.note(f"{app}: skipped ({runtime} is not served here, or cannot be built)")
                continue
            payload, target = case.payload, case.target_ms
            timed: dict[str, list[float]] = {"snap": [], "scratch": []}
            phases: dict[str, list[float]] = {"snap": [], "scratch": []}
            invokers, names = {}, []
            try:
                for flavour in timed:
                    name = common.deploy(client, "", runtime, memory=args.snap_memory, zipped=zipped,
                                         snap_start=flavour == "snap", handler=case.handler)
                    names.append(name)
                    version = client.publish_version(FunctionName=name)["Version"]
                    client.get_waiter("published_version_active").wait(
                        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600})
                    invokers[flavour] = common.RawInvoker(server.endpoint, name, tail=True, credentials=server.credentials,
                                                          qualifier=version)
                time.sleep(1.0 if not case.runtime else 3.0)  # the snapshot is taken at publish
                for _ in range(n):
                    for flavour, invoker in invokers.items():
                        time.sleep(REAPED_AFTER_S * 2)  # the last environment is reaped: this invoke is cold
                        started = time.perf_counter()
                        status, response, body = invoker.invoke(payload)
                        timed[flavour].append((time.perf_counter() - started) * 1000)
                        common.check_invoke(status, response, body)
                        found = re.search(r"(Restore|Init) Duration: ([\d.]+) ms", common.log_tail(response))
                        expected = "Restore" if flavour == "snap" else "Init"
                        if found is None or found.group(1) != expected:
                            raise RuntimeError(f"{app} ({flavour}) was not a {expected.lower()}: {common.log_tail(response)}")
                        phases[flavour].append(float(found.group(2)))
            finally:
                for invoker in invokers.values():
                    invoker.close()
                for name in names:
                    common.delete_quietly(client, name)
            snap = report.latency(f"snap_{app}", f"{app}: cold invoke restored from its snapshot (client side)",
                                  timed["snap"])
            report.latency(f"snap_{app}_restore", f"{app}: REPORT Restore Duration", phases["snap"])
            base = report.latency(f"scratch_{app}", f"{app}: cold invoke initialised from scratch (client side)",
                                  timed["scratch"], baseline=True)
            report.latency(f"scratch_{app}_init", f"{app}: REPORT Init Duration", phases["scratch"], baseline=True)
            report.ratio(f"snap_vs_scratch_{app}", f"{app}: restored / from scratch, median",
                         common.ratio(snap.get("median_ms"), base.get("median_ms")))
            report.target(f"snap_{app}_p50_ms", f"{app} restored cold p50 <= {target} ms", snap.get("median_ms"), target)


if __name__ == "__main__":
    main()
