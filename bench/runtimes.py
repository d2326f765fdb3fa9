"""Runtimes: warm and cold invokes of an echo function in every language Squall serves.

For each runtime the machine has (Python built-in, a Go ``bootstrap`` on provided.al2023,
Node.js, Ruby, Java, C# on Mono as dotnet8), the same echo handler is invoked:

* warm: sequential invokes of one warm environment over one keep-alive HTTP connection;
* cold: invokes that each need a NEW environment (an environment variable is changed with
  UpdateFunctionConfiguration between them), client side and REPORT's Init Duration.

Baseline, same run: the built-in Python runtime, which talks to Squall over its frames
channel; every other runtime goes through the Lambda Runtime API over HTTP. The figure of
interest is the Runtime API's warm overhead: (custom runtime median) - (Python median).

    python bench/runtimes.py [--quick] [-n N] [--cold N] [--only nodejs,ruby,java,dotnet,...] [--isolation ...] [--json [FILE]]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

PAYLOAD = b'{"n": 1}'
TARGET_OVERHEAD_MS = 0.5

PYTHON = {"app.py": "def handler(event, context):\n    return event\n"}
NODE = {"index.mjs": "export const handler = async (event) => event;\n"}
RUBY = {"function.rb": "def handler(event:, context:)\n  event\nend\n"}
JAVA_SOURCE = """\
package bench;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.util.Map;

public class Echo implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return event;
    }
}
"""
GO_SOURCE = """\
package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	for {
		resp, err := http.Get(api + "next")
		if err != nil {
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		r, err := http.Post(api+id+"/response", "application/json", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
	}
}
"""


def go_package(workdir: Path) -> dict[str, bytes] | None:
    go = shutil.which("go")
    if go is None:
        return None
    (workdir / "main.go").write_text(GO_SOURCE)
    (workdir / "go.mod").write_text("module bootstrap\n\ngo 1.19\n")
    env = {**os.environ, "GOPROXY": "off", "CGO_ENABLED": "0", "GOCACHE": str(workdir / "cache"),
           "GOPATH": str(workdir / "gopath"), "HOME": str(workdir)}
    subprocess.run([go, "build", "-o", "bootstrap", "."], cwd=workdir, env=env, check=True, capture_output=True)
    return {"bootstrap": (workdir / "bootstrap").read_bytes()}


def java_package(workdir: Path) -> dict[str, bytes] | None:
    if shutil.which("javac") is None:
        return None
    from squall.runtimes import java

    runtime_dir = java.build_runtime(workdir / "java-runtime")
    out = workdir / "java-classes"
    java.compile_handler({"bench/Echo.java": JAVA_SOURCE}, runtime_dir, out)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.class")}


CSHARP_SOURCE = """\
using System.IO;
using Amazon.Lambda.Core;

namespace Bench {
    public class Echo {
        public Stream Handle(Stream input, ILambdaContext context) {
            var copy = new MemoryStream();
            input.CopyTo(copy);
            copy.Position = 0;
            return copy;
        }
    }
}
"""


def dotnet_package(workdir: Path) -> dict[str, bytes] | None:
    if shutil.which("mcs") is None or shutil.which("mono") is None:
        return None
    from squall.runtimes import dotnet

    runtime_dir = dotnet.build_runtime(workdir / "dotnet-runtime")
    out = dotnet.compile_handler({"Echo.cs": CSHARP_SOURCE}, runtime_dir, workdir / "dotnet" / "Function.dll")
    return {"Function.dll": out.read_bytes()}


def candidates(workdir: Path, offered: dict[str, Any], wanted: set[str]) -> list[tuple[str, str, str, dict[str, Any], dict[str, int]]]:
    """(label, runtime, handler, files, modes) for each runtime this machine and server have
    (and ``wanted`` names, when given: go, nodejs, ruby, java, dotnet)."""
    found = [("python (built-in, frames)", common.pick_runtime(offered), "app.handler", PYTHON, {})]
    runtimes = offered.get("runtimes") or {}

    def want(family: str, runtime: str) -> bool:
        return runtime in runtimes and (not wanted or family in wanted)

    go = go_package(workdir) if want("go", "provided.al2023") else None
    if go:
        found.append(("go bootstrap (provided.al2023)", "provided.al2023", "unused", go, {"bootstrap": 0o755}))
    if want("nodejs", "nodejs20.x"):
        found.append(("nodejs20.x", "nodejs20.x", "index.handler", NODE, {}))
    if want("ruby", "ruby3.3"):
        found.append(("ruby3.3", "ruby3.3", "function.handler", RUBY, {}))
    if want("java", "java17"):
        classes = java_package(workdir)
        if classes:
            found.append(("java17", "java17", "bench.Echo::handleRequest", classes, {}))
    if want("dotnet", "dotnet8"):
        assembly = dotnet_package(workdir)
        if assembly:
            found.append(("dotnet8 (C# on Mono)", "dotnet8", "Function::Bench.Echo::Handle", assembly, {}))
    return found


def create(client: Any, runtime: str, handler: str, files: dict[str, Any], modes: dict[str, int], memory: int) -> str:
    name = f"bench-{os.urandom(5).hex()}"
    try:
        client.create_function(FunctionName=name, Runtime=runtime, Role=common.ROLE, Handler=handler,
                               Code={"ZipFile": common.make_zip(files, modes)}, MemorySize=memory, Timeout=60,
                               Environment={"Variables": {"BENCH_GEN": "0"}})
    except client.exceptions.ResourceConflictException:
        # a fresh random name exists only if the SDK's retry re-sent a create that had worked
        print(f"note: CreateFunction of {name} was retried by the SDK after it had succeeded", file=sys.stderr)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600})
    return name


def warm(endpoint: str, name: str, n: int, warmup: int, credentials: tuple[str, str] | None = None) -> list[float]:
    invoker = common.RawInvoker(endpoint, name, credentials=credentials)
    try:
        for _ in range(warmup):
            common.check_invoke(*invoker.invoke(PAYLOAD))
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            status, response, body = invoker.invoke(PAYLOAD)
            samples.append((time.perf_counter() - started) * 1000)
            common.check_invoke(status, response, body)
        return samples
    finally:
        invoker.close()


def cold(client: Any, endpoint: str, name: str, n: int,
         credentials: tuple[str, str] | None = None) -> tuple[list[float], list[float]]:
    invoker = common.RawInvoker(endpoint, name, tail=True, credentials=credentials)
    latencies, inits = [], []
    try:
        for i in range(1, n + 1):
            client.update_function_configuration(FunctionName=name, Environment={"Variables": {"BENCH_GEN": str(i)}})
            client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600})
            time.sleep(0.05)
            started = time.perf_counter()
            status, response, body = invoker.invoke(PAYLOAD)
            latencies.append((time.perf_counter() - started) * 1000)
            common.check_invoke(status, response, body)
            init = common.init_duration_ms(common.log_tail(response))
            if init is not None:
                inits.append(init)
        return latencies, inits
    finally:
        invoker.close()


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=512)
    p.add_argument("-n", type=int, help="warm invokes per runtime (default 2000; quick 30)")
    p.add_argument("--cold", type=int, help="cold invokes per runtime (default 30; quick 2)")
    p.add_argument("--only", help="comma-separated runtimes to run: go,nodejs,ruby,java,dotnet (the Python baseline always runs)")
    args = p.parse_args()
    n = args.n or (30 if args.quick else 2000)
    n_cold = args.cold or (2 if args.quick else 30)
    report = common.Report(
        "runtimes",
        f"per runtime: {n} warm sequential invokes of an echo function over one keep-alive connection, and "
        f"{n_cold} cold invokes (a new environment each); {args.memory} MB functions",
        args,
    )
    with common.server_for(args) as server, tempfile.TemporaryDirectory() as tmp:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        wanted = set((args.only or "").split(",")) - {""}
        baseline_median = None
        compared = 0
        for label, runtime, handler, files, modes in candidates(Path(tmp), doc, wanted):
            is_baseline = runtime.startswith("python")
            name = create(client, runtime, handler, files, modes, args.memory)
            try:
                report.section(f"baseline: {label}" if is_baseline else label)
                key = label.split()[0].replace(".", "_")
                warm_summary = report.latency(f"{key}_warm", f"{label}: warm invoke", warm(server.endpoint, name, n, max(5, n // 10), server.credentials),
                                              baseline=is_baseline)
                latencies, inits = cold(client, server.endpoint, name, n_cold, server.credentials)
                report.latency(f"{key}_cold", f"{label}: cold invoke (client side)", latencies, baseline=is_baseline)
                report.latency(f"{key}_init", f"{label}: REPORT Init Duration", inits, baseline=is_baseline)
                if is_baseline:
                    baseline_median = warm_summary.get("median_ms")
                elif baseline_median is not None and warm_summary.get("median_ms") is not None:
                    overhead = warm_summary["median_ms"] - baseline_median
                    compared += 1
                    report.ratio(f"{key}_warm_vs_python", f"{label} warm median / Python built-in warm median",
                                 common.ratio(warm_summary["median_ms"], baseline_median))
                    if runtime.startswith("provided"):
                        report.target("runtime_api_overhead_ms",
                                      f"custom runtime warm overhead over the Python built-in <= {TARGET_OVERHEAD_MS} ms",
                                      overhead, TARGET_OVERHEAD_MS)
            finally:
                common.delete_quietly(client, name)
        if not compared:
            report.note("no runtime other than Python is available here (node, ruby, a JDK, go)")
            report.ratio("warm_vs_python", "other runtimes' warm median / Python built-in warm median", None)
    report.finish()


if __name__ == "__main__":
    main()
