"""Warm latency: sequential invokes of a warm environment over ONE keep-alive HTTP connection.

The client is ``http.client`` POSTing to ``/2015-03-31/functions/NAME/invocations`` (no SDK:
boto3 adds about a millisecond of its own per call and would hide the server); where wrk is
installed, also wrk with one connection (a C client: http.client spends ~150 µs of CPU of its
own per request, half the target). As asides it
also times a raw socket client with a pre-built request (the least client overhead), boto3's
``invoke`` and ``GET /health`` on the same server (HTTP + ASGI floor without an invoke).

Baseline, same run: a fresh ``python -s`` process per invoke running the same handler.

Qualified invokes (``NAME:1``, a published version; ``NAME:live``, an alias of it) are timed in
the same run, interleaved with unqualified ones in rounds of shuffled order, and compared:
resolving a version or an alias must cost nothing measurable on the warm path. A version runs
environments of its own, so version vs unqualified also compares two environments (which
differ by a few per cent here); the alias runs the version's environment, so alias vs version
isolates what resolving the alias costs.

``--profile FILE`` afterwards samples the server with py-spy during extra invokes and prints
where the server's time goes (collapsed stacks are written to FILE).

    python bench/warm_latency.py [--quick] [-n N] [--endpoint URL] [--isolation ...] [--json [FILE]] [--profile FILE]
"""

from __future__ import annotations

import collections
import random
import socket
import subprocess
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
TARGET_P50_MS = 0.3
TARGET_P99_MS = 1.0


class SocketInvoker:
    """A pre-built request on a raw socket: measures the server with almost no client cost."""

    def __init__(self, server: common.Server, name: str) -> None:
        self.sock = socket.create_connection((server.host, server.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = common.build_post(server.host, server.port, common.invoke_path(name), PAYLOAD,
                                         credentials=server.credentials)
        self.buffer = b""

    def invoke(self) -> None:
        self.sock.sendall(self.request)
        data = self.buffer
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                head = data[:end]
                if head[9:12] != b"200":
                    raise RuntimeError(f"invoke failed: {head[:200]!r}")
                lower = head.lower()
                at = lower.find(b"content-length:")
                length = int(lower[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
                total = end + 4 + length
                if len(data) >= total:
                    self.buffer = data[total:]
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk

    def close(self) -> None:
        self.sock.close()


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], memory_mb=1769)
    p.add_argument("-n", type=int, help="timed invokes (default 2000; quick 50)")
    p.add_argument("--profile", metavar="FILE", help="sample the server with py-spy and write collapsed stacks to FILE")
    p.add_argument("--profile-seconds", type=float, default=10.0, help="how long to profile (default 10)")
    args = p.parse_args()
    n = args.n or (50 if args.quick else 2000)
    warmup = 20 if args.quick else 300
    n_aside = max(20, n // 4)
    n_fresh = 5 if args.quick else 200
    report = common.Report(
        "warm_latency",
        f"{n} sequential warm invokes (after {warmup} warm-up) of an echo function ({args.memory} MB: one vCPU "
        "on an isolating backend, so the function's CPU quota is not what is measured) over one keep-alive "
        "HTTP connection (http.client, no SDK)",
        args,
    )
    with common.server_for(args) as server:
        doc = common.health(server.endpoint)
        report.server(server, doc)
        client = common.lambda_client(server.endpoint, credentials=server.credentials)
        name = common.deploy(client, HANDLER, common.pick_runtime(doc), memory=args.memory)
        invoker = common.RawInvoker(server.endpoint, name, credentials=server.credentials)

        def one() -> None:
            status, response, body = invoker.invoke(PAYLOAD)
            if status != 200 or body != PAYLOAD:
                common.check_invoke(status, response, body)
                raise RuntimeError(f"unexpected reply {body[:200]!r}")

        try:
            for _ in range(warmup):
                one()
            meter = common.CpuMeter(server.pid)
            started = time.perf_counter()
            samples = common.timed_loop(one, n)
            wall = time.perf_counter() - started
            cpu = meter.per_op_us(n)
            report.section("results")
            warm = report.latency("warm_invoke", "warm invoke, http.client keep-alive", samples,
                                  throughput_per_s=n / wall)
            if cpu:
                report.figures("cpu_per_invoke", "CPU per warm invoke (us; /proc, 10 ms ticks)",
                               {k: round(v, 1) for k, v in cpu.items()})
            c_client = None
            if common.wrk_path():  # a C client: what the server's latency is, without Python's client cost
                seconds = 1 if args.quick else 5
                c_client = loadgen.report_result(
                    report, "warm_invoke_c_client", f"warm invoke, wrk (C) keep-alive, 1 connection, {seconds} s",
                    loadgen.run_load("wrk", server.endpoint + common.invoke_path(name), PAYLOAD, 1, seconds,
                                     headers=common.sign(server.credentials, "POST", server.endpoint + common.invoke_path(name),
                                                         PAYLOAD, {"Content-Type": "application/json"})))
            else:
                report.note("wrk is not installed (apt-get install wrk): no C-client figure")
            qualified = qualified_comparison(report, client, server, name, n)
            environments = common.health(server.endpoint)["environments"]
            report.section("asides (same server)")
            raw = SocketInvoker(server, name)
            try:
                raw.invoke()
                report.latency("warm_invoke_raw_socket", "warm invoke, raw socket + pre-built request",
                               common.timed_loop(raw.invoke, n))
            finally:
                raw.close()
            for _ in range(10):
                client.invoke(FunctionName=name, Payload=PAYLOAD)["Payload"].read()
            report.latency(
                "warm_invoke_boto3",
                "warm invoke, boto3 client.invoke",
                common.timed_loop(lambda: client.invoke(FunctionName=name, Payload=PAYLOAD)["Payload"].read(), n_aside),
            )

            def health_once() -> None:
                invoker.conn.request("GET", "/health")
                response = invoker.conn.getresponse()
                response.read()

            report.latency("health_floor", "GET /health (HTTP + ASGI, no invoke)", common.timed_loop(health_once, n_aside))
            check = signature_cost(report, server, name, n)
            recording = metrics_cost(report, n)
            if cpu and cpu.get("server_cpu_us"):
                report.ratio("signature_check_vs_server_cpu", "signature check median / server CPU per warm invoke",
                             common.ratio(check.get("median_ms"), cpu["server_cpu_us"] / 1000))
                report.ratio("metrics_recording_vs_server_cpu", "metrics recording median / server CPU per warm invoke",
                             common.ratio(recording.get("median_ms"), cpu["server_cpu_us"] / 1000))
            report.line(f"  environments after the run: {environments}")
            if args.profile:
                profile(server, one, args.profile, args.profile_seconds, report)
        finally:
            invoker.close()
            common.delete_quietly(client, name)

    report.section("baseline")
    fresh = common.FreshProcess(HANDLER)
    try:
        fresh.invoke(PAYLOAD)
        base = report.latency("fresh_process", "fresh python process per invoke", fresh.timed(PAYLOAD, n_fresh),
                              baseline=True)
    finally:
        fresh.close()
    report.ratio("warm_vs_fresh_median", "warm median / fresh process median",
                 common.ratio(warm.get("median_ms"), base.get("median_ms")))
    speedup = common.ratio(base.get("median_ms"), warm.get("median_ms"))
    if speedup:
        report.line(f"           (a warm invoke is {speedup:,.0f}x faster than a fresh process)")
    report.ratio("version_vs_unqualified_median", "version (NAME:1) median / unqualified median (two environments)",
                 common.ratio(qualified["version"].get("median_ms"), qualified["unqualified"].get("median_ms")))
    report.ratio("alias_vs_version_median", "alias (NAME:live) median / version median (one environment)",
                 common.ratio(qualified["alias"].get("median_ms"), qualified["version"].get("median_ms")))
    report.target("warm_p50_ms", f"warm p50 <= {TARGET_P50_MS} ms (http.client)", warm.get("median_ms"), TARGET_P50_MS)
    report.target("warm_p99_ms", f"warm p99 <= {TARGET_P99_MS} ms (http.client)", warm.get("p99_ms"), TARGET_P99_MS)
    if c_client:
        report.target("warm_p50_ms_c_client", f"warm p50 <= {TARGET_P50_MS} ms (wrk)", c_client.get("median_ms"), TARGET_P50_MS)
        report.target("warm_p99_ms_c_client", f"warm p99 <= {TARGET_P99_MS} ms (wrk)", c_client.get("p99_ms"), TARGET_P99_MS)
    report.finish()


# ------------------------------------------------------------------ authentication


def signature_cost(report: common.Report, report_server: common.Server, name: str, n: int) -> dict:
    """What checking the signature of one warm invoke costs the server, measured in process
    (squall.auth.sigv4: read the claims, check the time, rebuild the canonical request with
    botocore, one HMAC with the cached signing key): the same work the server does per request."""
    from urllib.parse import urlsplit

    from squall.auth import sigv4

    key_id, secret = report_server.credentials
    url = report_server.endpoint + common.invoke_path(name)
    headers = {k.lower(): v for k, v in common.sign((key_id, secret), "POST", url, PAYLOAD,
                                                     {"Content-Type": "application/json"}).items()}
    headers["host"] = urlsplit(url).netloc
    path_url = url

    def check() -> None:
        claims = sigv4.read("POST", headers, {})
        sigv4.check_time(claims)
        if not sigv4.verify(claims, secret, "POST", path_url, headers, {}, PAYLOAD):
            raise RuntimeError("the benchmark's own signature does not verify")

    for _ in range(50):
        check()
    return report.latency("signature_check", "SigV4 check of a warm invoke, in process (read, time, verify)",
                          common.timed_loop(check, n))


def metrics_cost(report: common.Report, n: int) -> dict:
    """What recording one finished invocation costs (squall/observe/metrics.py), in process: the
    engine's InvocationFinished published on the bus to the same subscriber the engine uses
    (Prometheus counters and histogram, CloudWatch's per-minute series). It runs after the
    result exists, on the event loop, once per invoke."""
    from squall.engine.bus import EventBus, InvocationFinished
    from squall.observe.metrics import Metrics

    bus, metrics = EventBus(), Metrics()

    def finished(e: InvocationFinished) -> None:
        metrics.record_invocation(e.function, e.qualifier, e.version, e.runtime, e.duration_ms, e.init_duration_ms,
                                  e.error_type)
        metrics.record_concurrency(e.function, e.concurrency, lambda: 1)

    bus.subscribe(InvocationFinished, finished)

    def record() -> None:
        bus.publish(InvocationFinished("bench-fn", "$LATEST", "r", 0.42, None, None, None, "python3.11", 1))

    for _ in range(1000):
        record()
    return report.latency("metrics_recording", "recording one invocation's metrics, in process (bus + Prometheus + "
                          "CloudWatch series)", common.timed_loop(record, max(n, 10000)))


# ------------------------------------------------------------------ versions and aliases


def qualified_comparison(report: common.Report, client, server: common.Server, name: str, n: int) -> dict[str, dict]:
    """Unqualified, version and alias invokes of the same code, interleaved in rounds (so that
    the machine's drift hits all three alike), each on its own keep-alive connection."""
    version = client.publish_version(FunctionName=name)["Version"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    invokers = {
        "unqualified": common.RawInvoker(server.endpoint, name, credentials=server.credentials),
        "version": common.RawInvoker(server.endpoint, f"{name}:{version}", credentials=server.credentials),
        "alias": common.RawInvoker(server.endpoint, f"{name}:live", credentials=server.credentials),
    }
    samples: dict[str, list[float]] = {key: [] for key in invokers}
    try:
        def caller(invoker):
            def one() -> None:
                status, response, body = invoker.invoke(PAYLOAD)
                if status != 200 or body != PAYLOAD:
                    common.check_invoke(status, response, body)
                    raise RuntimeError(f"unexpected reply {body[:200]!r}")
            return one

        calls = {key: caller(invoker) for key, invoker in invokers.items()}
        for one in calls.values():  # each its own warm environment (versions have their own)
            for _ in range(50):
                one()
        rounds = 10
        per_round = max(5, n // rounds)
        order = list(calls)
        shuffle = random.Random(1).shuffle
        for _ in range(rounds):
            shuffle(order)  # no key always first (or last) in a round
            for key in order:
                samples[key].extend(common.timed_loop(calls[key], per_round))
    finally:
        for invoker in invokers.values():
            invoker.close()
    report.section("qualified invokes (same run, interleaved)")
    return {
        key: report.latency(f"warm_invoke_{key}", f"warm invoke, {label}", samples[key])
        for key, label in (("unqualified", "unqualified NAME"), ("version", f"version NAME:{version}"), ("alias", "alias NAME:live"))
    }


# ------------------------------------------------------------------ profiling


def profile(server: common.Server, one, out: str, seconds: float, report: common.Report) -> None:
    """py-spy the server (native frames too) while invoking; print where its time goes."""
    spy = common.py_spy_path()
    pid = server.pid
    if spy is None or pid is None:
        report.note("profile skipped: " + ("py-spy not found (pip install py-spy)" if spy is None else "no server pid"))
        return
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", out,
         "--duration", str(int(seconds)), "--native"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    count = 0

    def drive() -> None:
        nonlocal count
        while not stop.is_set():
            one()
            count += 1

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    _, err = proc.communicate(timeout=seconds + 60)
    stop.set()
    driver.join()
    if proc.returncode != 0 or not Path(out).exists():
        report.note(f"py-spy failed: {err.strip()[-300:]}")
        return
    report.section(f"profile of the server's event loop thread (py-spy --native, {count} invokes, stacks in {out})")
    for line in summarize_profile(Path(out).read_text()):
        report.line("  " + line)


# Where a busy sample of the event loop thread is spent, by its innermost frames.
_SYSCALLS = {"write": "write(2)", "writev": "write(2)", "send": "write(2)", "sendmsg": "write(2)",
             "read": "read(2)", "recv": "read(2)", "recvfrom": "read(2)", "readv": "read(2)"}
_IDLE = ("epoll_wait", "epoll_pwait")


def _category(frames: list[str]) -> str:
    leaf = frames[-1].split(" (", 1)[0]
    python = [f for f in frames if ".py" in f.partition(" (")[2]]
    if leaf in _SYSCALLS:
        caller = _frame_name(python[-1]) if python else "native code"
        return f"syscall {_SYSCALLS[leaf]} from {caller}"
    for frame in reversed(python):
        where = frame.partition(" (")[2]
        if "squall/api" in where or "squall/arn" in where:
            return "squall api (routing, parsing, serialising)"
        if "squall/" in where and "squall/server.py" not in where and "cli/main.py" not in where:
            return "squall engine (pool, environment, frames, logs)"
        if "uvicorn/" in where:
            return "uvicorn (HTTP protocol)"
        if "asyncio/" in where:
            return "asyncio (streams, timeouts, tasks)"
        return "other python: " + where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return "uvloop/libuv and interpreter native code"


def summarize_profile(text: str, top: int = 18) -> list[str]:
    """Busy vs idle of the event loop thread, time by layer, and the heaviest functions."""
    categories: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    main = busy = 0
    for row in text.splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any(f.startswith("Runner.run ") or f.startswith("run (uvloop") for f in frames):
            continue  # other threads (log flusher, thread pool) are idle on the warm path
        count = int(count_text)
        main += count
        if frames[-1].split(" (", 1)[0] in _IDLE:
            continue
        busy += count
        categories[_category(frames)] += count
        for frame in {_frame_name(f) for f in frames if "squall/" in f and "cli/main.py" not in f and "squall/server.py" not in f}:
            inclusive[frame] += count
    if not main:
        return ["no samples of the event loop thread"]
    lines = [f"event loop thread: {main} samples, busy {100 * busy / main:.0f}% (rest: waiting in epoll)"]
    if not busy:
        return lines
    lines.append("busy time by layer (innermost frame):")
    for name, count in categories.most_common():
        lines.append(f"  {100 * count / busy:5.1f}%  {name}")
    lines.append("squall functions, inclusive % of busy time:")
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / busy:5.1f}%  {frame}")
    return lines


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (to/file.py)'."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name


if __name__ == "__main__":
    main()
