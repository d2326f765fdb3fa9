"""HTTP load generators for the throughput benchmark: wrk, or an asyncio equivalent.

``run_load`` drives C keep-alive connections that each POST the same request back to back
for D seconds, and returns requests, errors, invokes/s and latency percentiles. It uses
``wrk`` (Debian package ``wrk``) when asked or when installed, with a Lua script for the
POST body and a JSON summary; otherwise this file's own generator: plain
``asyncio.open_connection`` streams (uvloop when installed), one coroutine per connection,
run as a SEPARATE process so it never shares the server's (or the caller's) event loop.

As a script (what ``run_load`` starts for the asyncio generator)::

    python bench/loadgen.py --url http://127.0.0.1:PORT/PATH --body '{"n": 1}' -c 32 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import common

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"connect_errors\\": %%d, \\"read_errors\\": %%d, " ..
    "\\"write_errors\\": %%d, \\"status_errors\\": %%d, \\"timeouts\\": %%d, \\"p50_us\\": %%.1f, \\"p90_us\\": %%.1f, " ..
    "\\"p99_us\\": %%.1f, \\"mean_us\\": %%.1f, \\"max_us\\": %%.1f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


def choose(generator: str) -> str:
    """'wrk', 'asyncio' or 'auto' (wrk when installed)."""
    if generator == "auto":
        return "wrk" if common.wrk_path() else "asyncio"
    if generator == "wrk" and not common.wrk_path():
        raise SystemExit("wrk is not installed: apt-get install wrk (or use --generator asyncio)")
    return generator


def run_load(generator: str, url: str, body: bytes, connections: int, duration: int, threads: int = 1,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one load test; the result includes the generator's own CPU seconds. ``headers``:
    sent with every request (a signature made for the run: valid for five minutes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if generator == "wrk":
        result = _run_wrk(url, body, connections, duration, threads, headers or {})
    else:
        result = _run_asyncio(url, body, connections, duration, headers or {})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["generator"] = generator
    result["connections"] = connections
    result["generator_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["errors"] = sum(result.get(k, 0) for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    result["throughput_per_s"] = result["requests"] / (result["duration_us"] / 1e6) if result["duration_us"] else 0.0
    return result


def report_result(report: common.Report, key: str, label: str, result: dict[str, Any], baseline: bool = False) -> dict[str, Any]:
    """Print and record one run's figures (latency percentiles, throughput, errors)."""
    figures = {
        "n": result["requests"],
        "median_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "mean_ms": result["mean_us"] / 1000,
        "throughput_per_s": result["throughput_per_s"],
        "errors": result["errors"],
        "seconds": round(result["duration_us"] / 1e6, 2),
    }
    return report.figures(key, label, figures, baseline)


def _run_wrk(url: str, body: bytes, connections: int, duration: int, threads: int,
             headers: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write("".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items() if k.lower() != "content-type"))
        fh.write(WRK_SCRIPT % {"body": body.decode()})
        script = fh.name
    try:
        done = subprocess.run(
            [common.wrk_path() or "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
             "--timeout", "10s", "-s", script, url],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        os.unlink(script)
    match = re.search(r"^WRK_JSON (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
    return json.loads(match.group(1))


def _run_asyncio(url: str, body: bytes, connections: int, duration: int, headers: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--url", url, "--body", body.decode(),
         "-c", str(connections), "-d", str(duration), "--headers", json.dumps(headers)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"asyncio load generator failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


# ------------------------------------------------------------------ the asyncio generator


async def _connection(host: str, port: int, request: bytes, deadline: float, latencies: list[float],
                      counts: dict[str, int]) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        counts["connect_errors"] += 1
        return
    perf = time.perf_counter
    try:
        while perf() < deadline:
            started = perf()
            writer.write(request)
            try:
                status, _, _ = await common.read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                counts["read_errors"] += 1
                return
            latencies.append(perf() - started)
            counts["requests"] += 1
            if status >= 400:
                counts["status_errors"] += 1
    finally:
        writer.close()


async def generate(url: str, body: bytes, connections: int, duration: float,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    request = common.build_post(host, port, u.path or "/", body, extra_headers=headers)
    latencies: list[float] = []
    counts = {"requests": 0, "connect_errors": 0, "read_errors": 0, "write_errors": 0, "status_errors": 0, "timeouts": 0}
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_connection(host, port, request, deadline, latencies, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    values = sorted(latencies)
    pct = lambda q: common.percentile(values, q) * 1e6 if values else 0.0  # noqa: E731
    return {
        **counts,
        "duration_us": int(elapsed * 1e6),
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "mean_us": (sum(values) / len(values) * 1e6) if values else 0.0,
        "max_us": values[-1] * 1e6 if values else 0.0,
        "event_loop": "uvloop" if _uvloop() else "asyncio",
    }


def _uvloop() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def main() -> None:
    p = argparse.ArgumentParser(description="asyncio HTTP POST load generator (keep-alive connections)")
    p.add_argument("--url", required=True)
    p.add_argument("--body", default="{}")
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-d", "--duration", type=float, default=10.0)
    p.add_argument("--headers", default="{}", help="JSON object of headers for every request (a signature)")
    args = p.parse_args()
    common.raise_fd_limit()
    coro = generate(args.url, args.body.encode(), args.connections, args.duration, json.loads(args.headers))
    uvloop = _uvloop()
    result = uvloop.run(coro) if uvloop else asyncio.run(coro)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
