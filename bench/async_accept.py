"""Asynchronous invocation: durable accepts per second, and accept → handler-start latency.

1. **Accept throughput** (durable: every 202 comes after the commit that stored the event,
   fsynced). ``--clients`` concurrent keep-alive connections (an asyncio raw-HTTP client with
   pre-built requests, so the client costs little) POST ``X-Amz-Invocation-Type: Event``.
   Measured with dispatch paused (reserved concurrency 0: the queue only fills), and again
   while the dispatcher runs the events (a trivial handler) at the same time.
   **Baseline, same run:** a second server with ``SQUALL_ASYNC_COMMIT_BATCH=1`` — one commit
   (and fsync) per event, no group commit.
2. **Drain**: after unpausing, how fast the dispatcher runs the queued events.
3. **Accept → handler start when capacity is idle**: sequential events to a warm, idle
   environment; the handler returns ``time.time()`` at its first line and an OnSuccess
   webhook (an HTTP server in this process) brings it back. Latency = handler start − the
   moment the client started sending. **Baseline:** the same measured for a synchronous invoke.

    python bench/async_accept.py [--quick] [--events N] [--clients N] [--samples N] [--endpoint URL] [--json [FILE]]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import common

HANDLER = """\
import time

def handler(event, context):
    return time.time()
"""

TARGET_ACCEPTS_PER_S = 5000.0
TARGET_P50_MS = 5.0


# ------------------------------------------------------------------ webhook
class Webhook:
    """Receives destination records; wakes whoever waits for a request id."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                record = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                with hook.arrived:
                    hook.records[record["requestContext"]["requestId"]] = record
                    hook.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/records"

    def wait(self, request_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while request_id not in self.records:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no destination record for {request_id} within {timeout} s")
                self.arrived.wait(left)
            return self.records[request_id]

    def close(self) -> None:
        self.server.shutdown()


# ------------------------------------------------------------------ clients
def event_request(server: common.Server, name: str, body: bytes, invocation_type: str = "Event") -> bytes:
    """A whole signed request (valid for five minutes), sent again and again."""
    return common.build_post(server.host, server.port, common.invoke_path(name), body,
                             {"X-Amz-Invocation-Type": invocation_type}, credentials=server.credentials)


async def _blast(server: common.Server, request: bytes, count: int, clients: int) -> tuple[float, list[float], int]:
    """Send ``count`` pre-built requests over ``clients`` connections; (seconds, latencies ms, non-202s)."""
    remaining = count
    latencies: list[float] = []
    failures = 0

    async def connection() -> None:
        nonlocal remaining, failures
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                at = lower.find(b"content-length:")
                length = int(lower[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if length:
                    await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                if head[9:12] != b"202":
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(clients)))
    return time.perf_counter() - started, latencies, failures


def blast(server: common.Server, name: str, count: int, clients: int) -> tuple[float, list[float], int]:
    request = event_request(server, name, b'{"n": 1}')
    try:
        import uvloop

        return uvloop.run(_blast(server, request, count, clients))
    except ImportError:  # pragma: no cover
        return asyncio.run(_blast(server, request, count, clients))


def queue_depth(server: common.Server, name: str) -> int:
    report = common.get_json(server.endpoint, f"/squall/queue?function={name}", server.credentials)
    return int(report["functions"][0]["depth"]) if report["functions"] else 0


def wait_drained(server: common.Server, name: str, timeout: float) -> float:
    """Seconds until the queue is empty (polls /health's cheap in-memory depth, then checks)."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while common.health(server.endpoint)["async"]["depth"] > 0 or queue_depth(server, name) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the queue of {name} did not drain within {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - started


def accept_phase(
    report: common.Report, server: common.Server, key: str, label: str, events: int, clients: int, baseline: bool = False
) -> float:
    client = common.lambda_client(server.endpoint, credentials=server.credentials)
    runtime = common.pick_runtime(common.health(server.endpoint))
    name = common.deploy(client, HANDLER, runtime)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)  # dispatch paused
    blast(server, name, min(200, events), clients)  # warm-up: connections, caches, SQLite pages
    wait = 0.0
    elapsed, latencies, failures = blast(server, name, events, clients)
    depth = queue_depth(server, name)
    rate = events / elapsed
    report.latency(key, label, latencies, baseline=baseline, throughput_per_s=rate, non_202=failures, queued=depth)
    if failures or depth < events:
        report.note(f"{label}: {failures} requests were not answered 202; {depth} events queued of {events + min(200, events)}")
    if not baseline:
        # Unpause: the dispatcher drains what was accepted.
        client.delete_function_concurrency(FunctionName=name)
        wait = wait_drained(server, name, timeout=600)
        total = events + min(200, events)
        report.figures("drain", "drain after unpausing (trivial handler)", {"n": total, "seconds": wait, "throughput_per_s": total / wait})
    common.delete_quietly(client, name)
    return rate


def accept_while_dispatching(report: common.Report, server: common.Server, events: int, clients: int) -> None:
    client = common.lambda_client(server.endpoint, credentials=server.credentials)
    name = common.deploy(client, HANDLER, common.pick_runtime(common.health(server.endpoint)))
    elapsed, latencies, failures = blast(server, name, events, clients)
    drained = wait_drained(server, name, timeout=600)
    report.latency(
        "accept_while_dispatching",
        "accepts while the dispatcher runs them",
        latencies,
        throughput_per_s=events / elapsed,
        non_202=failures,
        processed_per_s=round(events / (elapsed + drained)),
    )
    common.delete_quietly(client, name)


def latency_phase(report: common.Report, server: common.Server, samples: int) -> float | None:
    hook = Webhook()
    client = common.lambda_client(server.endpoint, credentials=server.credentials)
    name = common.deploy(client, HANDLER, common.pick_runtime(common.health(server.endpoint)))
    client.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": hook.url}})
    client.invoke(FunctionName=name, Payload=b"{}")  # warm: one idle environment from now on
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    url = server.endpoint + common.invoke_path(name)
    event_headers = common.sign(server.credentials, "POST", url, b'{"n": 1}', {"X-Amz-Invocation-Type": "Event"})
    sync_headers = common.sign(server.credentials, "POST", url, b'{"n": 1}', {})
    async_ms, ack_ms, sync_ms = [], [], []
    try:
        for _ in range(samples):
            sent = time.time()
            conn.request("POST", common.invoke_path(name), body=b'{"n": 1}', headers=event_headers)
            response = conn.getresponse()
            response.read()
            acked = time.time()
            request_id = response.getheader("x-amzn-RequestId")
            record = hook.wait(request_id)
            async_ms.append((record["responsePayload"] - sent) * 1000)
            ack_ms.append((acked - sent) * 1000)
            time.sleep(0.005)  # the record is sent after the handler returns: let it settle
        for _ in range(samples):
            sent = time.time()
            conn.request("POST", common.invoke_path(name), body=b'{"n": 1}', headers=sync_headers)
            response = conn.getresponse()
            started = float(response.read())
            sync_ms.append((started - sent) * 1000)
    finally:
        conn.close()
        hook.close()
        common.delete_quietly(client, name)
    result = report.latency("accept_to_start", "accept -> handler start, idle warm environment", async_ms)
    report.latency("accept_ack", "accept -> 202 received (durable commit included)", ack_ms)
    base = report.latency("sync_to_start", "sync invoke -> handler start (RequestResponse)", sync_ms, baseline=True)
    report.ratio(
        "async_vs_sync_start",
        "async accept->start p50 / sync request->start p50",
        common.ratio(result.get("median_ms"), base.get("median_ms")),
    )
    return result.get("median_ms")


def main() -> None:
    p = common.parser(__doc__.split("\n", 1)[0])
    p.add_argument("--events", type=int, help="events per accept run (default 20000; quick 1000)")
    p.add_argument("--clients", type=int, default=64, help="concurrent connections (default 64)")
    p.add_argument("--samples", type=int, help="latency samples (default 200; quick 20)")
    args = p.parse_args()
    events = args.events or (1000 if args.quick else 20000)
    samples = args.samples or (20 if args.quick else 200)
    report = common.Report(
        "async_accept",
        "durable Event accepts/s (group commit vs one commit per event) and accept -> handler start when idle",
        args,
    )
    with common.server_for(args) as server:
        report.server(server, common.health(server.endpoint))
        report.section("accept throughput (durable: 202 after the fsynced commit)")
        rate = accept_phase(report, server, "accept_group_commit", "accepts, group commit, dispatch paused", events, args.clients)
        accept_while_dispatching(report, server, events, args.clients)
        report.section("latency")
        p50 = latency_phase(report, server, samples)
    baseline_rate = None
    if args.endpoint:
        report.note("baseline (one commit per event) needs a server started here; skipped with --endpoint")
    else:
        with common.server_for(args, env={"SQUALL_ASYNC_COMMIT_BATCH": "1"}) as server:
            report.section("baseline: SQUALL_ASYNC_COMMIT_BATCH=1 (one commit + fsync per event)")
            baseline_rate = accept_phase(
                report, server, "accept_commit_per_event", "accepts, one commit per event, dispatch paused",
                events, args.clients, baseline=True,
            )
    report.ratio("group_vs_single_commit", "group-commit accepts/s / commit-per-event accepts/s", common.ratio(rate, baseline_rate))
    report.target("accepts_per_s", f"durable accepts >= {TARGET_ACCEPTS_PER_S:,.0f}/s", rate, TARGET_ACCEPTS_PER_S, higher_is_better=True)
    report.target("accept_to_start_p50_ms", f"accept -> start p50 <= {TARGET_P50_MS} ms", p50, TARGET_P50_MS)
    report.finish()


if __name__ == "__main__":
    main()
