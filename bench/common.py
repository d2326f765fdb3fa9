"""Shared helpers for Squall's benchmarks.

Every benchmark in ``bench/`` is a plain script::

    python bench/NAME.py [--quick] [--endpoint URL] [--isolation auto|process|linux] [--json [FILE]]

Without ``--endpoint`` it starts its own ``squall server`` (same interpreter, ephemeral port,
temporary data dir) and stops it at the end. Each prints what ran, the machine, the
isolation backend the server reports in ``/health``, median / p99 (and throughput where it
applies), a baseline measured in the same run and the ratio between the two. ``--json``
writes the same figures as one JSON document (``-`` or no value: to stdout, and the
human-readable report goes to stderr).

Run them inside a virtual environment: a base interpreter that imports things from
``.pth`` files at start-up (certifi, editable finders) makes every fresh Python process,
the function runtimes' included, slower than it needs to be. ``machine()`` reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import http.client
import io
import json
import math
import os
import platform
import queue
import re
import resource
import shutil
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlsplit

BENCH_DIR = Path(__file__).resolve().parent
ROLE = "arn:aws:iam::123456789012:role/squall-function"  # every server has it from its first start
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
SERVER_START_TIMEOUT_S = 60.0


# ------------------------------------------------------------------ arguments


def parser(description: str, memory_mb: int | None = None) -> argparse.ArgumentParser:
    """The options every benchmark understands (and --memory when the script has a default)."""
    p = argparse.ArgumentParser(description=description)
    if memory_mb is not None:
        p.add_argument(
            "--memory",
            type=int,
            default=memory_mb,
            help=f"MemorySize of the benchmarked function in MB (default {memory_mb}); on an isolating "
            "backend it also sets the function's CPU share (1,769 MB = 1 vCPU, as on Lambda)",
        )
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the smoke test uses it)")
    p.add_argument("--endpoint", metavar="URL", help="benchmark a running server instead of starting one")
    p.add_argument(
        "--isolation",
        choices=("auto", "process", "linux"),
        default="auto",
        help="sandbox backend for the server this script starts (default: auto)",
    )
    p.add_argument("--auth", choices=("on", "off"), default="on",
                   help="the started server checks signatures and policies (on, default) or not (off: for A/B)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write the results as JSON to FILE (no value or '-': JSON on stdout, report on stderr)",
    )
    return p


# ------------------------------------------------------------------ statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linear interpolation."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low))


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """n, median, p90, p99, mean, min, max of latencies in milliseconds."""
    values = sorted(samples_ms)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "mean_ms": statistics.fmean(values),
        "min_ms": values[0],
        "max_ms": values[-1],
    }


def fmt_ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value < 1:
        return f"{value:.3f} ms"
    if value < 100:
        return f"{value:.2f} ms"
    return f"{value:.0f} ms"


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


# ------------------------------------------------------------------ the machine


def read_meminfo() -> dict[str, int]:
    """/proc/meminfo in kB (empty off Linux)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    values[key] = int(parts[0])
    except OSError:
        pass
    return values


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _startup_pth_imports() -> list[str]:
    """.pth files of this interpreter that run code at every start (they slow fresh processes)."""
    found = []
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith(".pth"):
                continue
            try:
                text = Path(directory, name).read_text(errors="replace")
            except OSError:
                continue
            if any(line.startswith(("import ", "import\t")) for line in text.splitlines()):
                found.append(name)
    return found


def machine() -> dict[str, Any]:
    mem = read_meminfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 0
    return {
        "nproc": cores,
        "mem_total_gib": round(mem.get("MemTotal", 0) / 1048576, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "venv": sys.prefix != sys.base_prefix,
        "startup_pth_imports": _startup_pth_imports(),
        "cpu_model": _cpu_model(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


# ------------------------------------------------------------------ the report


class Report:
    """Collects the figures, prints them as they come, and writes JSON at the end."""

    def __init__(self, name: str, what: str, args: argparse.Namespace) -> None:
        self.args = args
        self.json_target = args.json
        self.out = sys.stderr if self.json_target == "-" else sys.stdout
        self.doc: dict[str, Any] = {
            "benchmark": name,
            "what": what,
            "mode": "quick" if args.quick else "full",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine(),
            "server": None,
            "isolation": None,
            "results": {},
            "baselines": {},
            "ratios": {},
            "targets": {},
            "notes": [],
        }
        m = self.doc["machine"]
        self.line(f"squall bench: {name} ({self.doc['mode']} mode)")
        self.line(f"what:      {what}")
        self.line(
            f"machine:   nproc={m['nproc']}, MemTotal={m['mem_total_gib']} GiB, kernel {m['kernel']} ({m['os']}), "
            f"Python {m['python']}, CPU: {m['cpu_model']}"
        )
        self.line(
            f"python:    {m['python_executable']} ({'venv' if m['venv'] else 'NOT a venv'}); "
            f"load average at start {' '.join(map(str, m['load_avg_at_start']))}"
        )
        if m["startup_pth_imports"] and not m["venv"]:
            self.note(
                "this interpreter runs code from .pth files at every start ("
                + ", ".join(m["startup_pth_imports"])
                + "): fresh Python processes (runtimes and baselines) pay for it; benchmark inside a venv"
            )

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        self.doc["notes"].append(text)
        self.line(f"note:      {text}")

    def server(self, server: "Server", health: dict[str, Any]) -> None:
        iso = health.get("isolation") or {}
        self.doc["server"] = {
            "endpoint": server.endpoint,
            "started_here": server.process is not None,
            "requested_isolation": None if server.process is None else self.args.isolation,
            "version": health.get("version"),
        }
        self.doc["isolation"] = iso
        how = f"started here with --isolation {self.args.isolation}" if server.process else "given with --endpoint"
        self.line(f"server:    {server.endpoint} ({how}), Squall {health.get('version')}")
        isolated = "isolated" if iso.get("isolated") else "NOT isolated"
        details = [f"{k}={iso[k]}" for k in ("cgroup_version", "uid") if iso.get(k) is not None]
        zygotes = iso.get("zygotes")
        if isinstance(zygotes, dict) and zygotes:
            details.append(f"zygotes={len(zygotes)}")
        extra = f" - {iso['note']}" if iso.get("note") else ""
        extra += f" ({', '.join(details)})" if details else ""
        self.line(f"isolation: {iso.get('name', 'unknown')} ({isolated}){extra}")

    def section(self, title: str) -> None:
        self.line(f"{title}:")

    def latency(
        self, key: str, label: str, samples_ms: Sequence[float], baseline: bool = False, **extra: Any
    ) -> dict[str, Any]:
        """Record and print a latency distribution (and any extra figures, e.g. throughput)."""
        summary: dict[str, Any] = summarize(samples_ms)
        summary.update(extra)
        return self.figures(key, label, summary, baseline)

    def figures(self, key: str, label: str, summary: dict[str, Any], baseline: bool = False) -> dict[str, Any]:
        summary = {"label": label, **summary}
        (self.doc["baselines"] if baseline else self.doc["results"])[key] = summary
        parts = [f"  {label}:"]
        if "n" in summary:
            parts.append(f"n={summary['n']}")
        if "median_ms" in summary:
            parts.append(f"median {fmt_ms(summary['median_ms'])}")
        if "p99_ms" in summary:
            parts.append(f"p99 {fmt_ms(summary['p99_ms'])}")
        if "mean_ms" in summary:
            parts.append(f"mean {fmt_ms(summary['mean_ms'])}")
        if "throughput_per_s" in summary:
            parts.append(f"throughput {summary['throughput_per_s']:,.0f}/s")
        for name, value in summary.items():
            if name in ("label", "n", "median_ms", "p99_ms", "mean_ms", "throughput_per_s", "p90_ms", "min_ms", "max_ms"):
                continue
            parts.append(f"{name}={_short(value)}")
        self.line("  ".join(parts))
        return summary

    def ratio(self, key: str, label: str, value: float | None, explain: str = "") -> None:
        self.doc["ratios"][key] = value
        shown = "n/a" if value is None else f"{value:.3f}"
        self.line(f"ratio:     {label} = {shown}{('  (' + explain + ')') if explain else ''}")

    def target(self, key: str, label: str, measured: float | None, limit: float, higher_is_better: bool = False) -> None:
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            met = None
        else:
            met = measured >= limit if higher_is_better else measured <= limit
        self.doc["targets"][key] = {"label": label, "measured": measured, "target": limit, "met": met}
        verdict = "not measured" if met is None else ("met" if met else "NOT met")
        shown = "n/a" if measured is None else f"{measured:,.3f}".rstrip("0").rstrip(".")
        self.line(f"target:    {label}: measured {shown} -> {verdict}")

    def finish(self) -> None:
        self.doc["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        self.line(f"load average at end: {' '.join(map(str, self.doc['machine']['load_avg_at_end']))}")
        if self.json_target:
            text = json.dumps(self.doc, indent=2, default=str)
            if self.json_target == "-":
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            else:
                Path(self.json_target).write_text(text + "\n")
                self.line(f"json:      written to {self.json_target}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


# ------------------------------------------------------------------ the server


@dataclass
class Server:
    endpoint: str
    process: subprocess.Popen[str] | None = None
    data_dir: Path | None = None
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=400))

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 80

    @property
    def credentials(self) -> tuple[str, str]:
        """The key to sign with: the administrator's, from the data dir of a server started
        here; for one given with --endpoint, boto3's usual chain (e.g. `eval "$(squall credentials)"`)."""
        if self.data_dir is not None:
            from squall.auth import credentials_file

            for _ in range(100):
                found = credentials_file.read(self.data_dir)
                if found is not None:
                    return found
                time.sleep(0.05)
            raise SystemExit(f"the server wrote no credentials to {self.data_dir}")
        import boto3

        found_credentials = boto3.session.Session().get_credentials()
        if found_credentials is None:
            raise SystemExit("no credentials for the server given with --endpoint: export the lines `squall credentials` prints")
        frozen = found_credentials.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key

    @property
    def pid(self) -> int | None:
        """The server's pid (found through its listening socket when given with --endpoint)."""
        if self.process is not None:
            return self.process.pid
        return find_listener_pid(self.port)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def raise_fd_limit(wanted: int = 65536) -> None:
    """Many connections and environments need more than the usual 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def start_server(isolation: str = "auto", env: dict[str, str] | None = None) -> Server:
    """``squall server --port 0`` with a temporary data dir; returns once it listens."""
    data_dir = Path(tempfile.mkdtemp(prefix="squall-bench-"))
    argv = [sys.executable, "-m", "squall.cli.main", "server", "--port", "0", "--data-dir", str(data_dir),
            "--isolation", isolation]
    server = start_listening(argv, env, f"squall server (--isolation {isolation})")
    server.data_dir = data_dir
    return server


def start_listening(argv: list[str], env: dict[str, str] | None, what: str) -> Server:
    """Start a process that prints "listening on http://HOST:PORT"; return once it has."""
    raise_fd_limit()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = Server("", process)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            server.endpoint = match.group(1)
            return server
    server.stop()
    raise SystemExit(f"{what} did not start:\n" + "".join(server.output))


class server_for:
    """Context manager: the server given with --endpoint, or one started for this run."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env
        self.server: Server | None = None

    def __enter__(self) -> Server:
        if self.args.endpoint:
            self.server = Server(self.args.endpoint.rstrip("/"))
        else:
            env = dict(self.env or {})
            if getattr(self.args, "auth", "on") == "off":
                env["SQUALL_AUTH"] = "false"
            self.server = start_server(self.args.isolation, env)
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()


def find_listener_pid(port: int) -> int | None:
    """The pid of the process that listens on a local TCP port (Linux /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for row in fh:
                    cols = row.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except (OSError, StopIteration):
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:
            continue
    return None


def get_json(endpoint: str, path: str, credentials: tuple[str, str] | None = None) -> dict[str, Any]:
    """GET one of Squall's own endpoints (signed as a Lambda request when ``credentials``)."""
    u = urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        headers = sign(credentials, "GET", endpoint + path, b"", {}) if credentials else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def health(endpoint: str) -> dict[str, Any]:
    return get_json(endpoint, "/health")


# ------------------------------------------------------------------ functions


def lambda_client(endpoint: str, pool: int = 10, credentials: tuple[str, str] | None = None):
    import boto3
    from botocore.config import Config

    key_id, secret = credentials or ("bench", "bench")
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=900, connect_timeout=10, max_pool_connections=pool),
    )


def make_zip(files: dict[str, str] | dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buffer.getvalue()


def pick_runtime(health_doc: dict[str, Any]) -> str:
    """python3.X of this interpreter if the server offers it, else the newest it offers."""
    offered = sorted(health_doc.get("runtimes") or {}, key=lambda r: [int(x) for x in re.findall(r"\d+", r)])
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if mine in offered or not offered:
        return mine
    return offered[-1]


def deploy(
    client: Any,
    code: str,
    runtime: str,
    *,
    name: str | None = None,
    memory: int = 128,
    timeout: int = 30,
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    layers: list[str] | None = None,
    zipped: bytes | None = None,
    snap_start: bool = False,
    handler: str = "app.handler",
) -> str:
    """CreateFunction from source (``app.py``, handler ``app.handler``; ``zipped``: a whole zip
    instead) and wait until Active."""
    name = name or f"bench-{uuid.uuid4().hex[:10]}"
    kwargs: dict[str, Any] = {}
    if layers:
        kwargs["Layers"] = layers
    if env:
        kwargs["Environment"] = {"Variables": env}
    if tags:
        kwargs["Tags"] = tags
    if snap_start:
        kwargs["SnapStart"] = {"ApplyOn": "PublishedVersions"}
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": zipped or make_zip({"app.py": textwrap.dedent(code)})},
        MemorySize=memory,
        Timeout=timeout,
        **kwargs,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 600})
    return name


def delete_quietly(client: Any, name: str) -> None:
    try:
        client.delete_function(FunctionName=name)
    except Exception:  # clean-up only; the server may already be gone
        pass


def invoke_path(name: str) -> str:
    return INVOKE_PATH.format(name=quote(name, safe=""))


class RawInvoker:
    """Invokes over ONE keep-alive connection with http.client (no SDK overhead)."""

    def __init__(self, endpoint: str, name: str, tail: bool = False, credentials: tuple[str, str] | None = None,
                 qualifier: str | None = None) -> None:
        u = urlsplit(endpoint)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=900)
        self.conn.connect()
        self.url = f"http://{u.hostname}:{u.port}"
        self.path = invoke_path(name) + (f"?Qualifier={quote(qualifier)}" if qualifier else "")
        self.headers = {"Content-Type": "application/json"}
        if tail:
            self.headers["X-Amz-Log-Type"] = "Tail"
        self.credentials = credentials
        self._signed: dict[bytes, tuple[float, dict[str, str]]] = {}

    def _headers(self, payload: bytes) -> dict[str, str]:
        """Signed headers, made once a minute per payload: the server checks the signature of
        every request; the client does not pay for signing each one."""
        if self.credentials is None:
            return self.headers
        now = time.monotonic()
        held = self._signed.get(payload)
        if held is None or now - held[0] > 60:
            held = (now, sign(self.credentials, "POST", self.url + self.path, payload, self.headers))
            self._signed[payload] = held
        return held[1]

    def invoke(self, payload: bytes) -> tuple[int, http.client.HTTPResponse, bytes]:
        self.conn.request("POST", self.path, body=payload, headers=self._headers(payload))
        response = self.conn.getresponse()
        body = response.read()
        return response.status, response, body

    def close(self) -> None:
        self.conn.close()


def check_invoke(status: int, response: http.client.HTTPResponse, body: bytes) -> None:
    if status != 200 or response.getheader("X-Amz-Function-Error"):
        tail = log_tail(response)
        raise RuntimeError(
            f"invoke failed: HTTP {status} {response.getheader('X-Amz-Function-Error')}: {body[:500]!r}"
            + (f"\nlog tail:\n{tail}" if tail else "")
        )


def log_tail(response: http.client.HTTPResponse) -> str:
    encoded = response.getheader("X-Amz-Log-Result") or ""
    return base64.b64decode(encoded).decode("utf-8", "replace") if encoded else ""


def init_duration_ms(tail: str) -> float | None:
    match = re.search(r"Init Duration: ([\d.]+) ms", tail)
    return float(match.group(1)) if match else None


# ------------------------------------------------------------------ raw asyncio HTTP


def sign(credentials: tuple[str, str], method: str, url: str, body: bytes, headers: dict[str, str],
         service: str = "lambda", region: str = "us-east-1") -> dict[str, str]:
    """``headers`` plus a SigV4 signature (botocore's signer), good for five minutes."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(*credentials), service, region).add_auth(request)
    return dict(request.headers.items())


def build_post(host: str, port: int, path: str, body: bytes, extra_headers: dict[str, str] | None = None,
               credentials: tuple[str, str] | None = None) -> bytes:
    """A whole HTTP request, signed when ``credentials`` are given (valid for five minutes)."""
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json", "Content-Length": str(len(body))}
    headers.update(extra_headers or {})
    if credentials is not None:
        headers = sign(credentials, "POST", f"http://{host}:{port}{path}", body, headers)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, raw headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    body = await reader.readexactly(length) if length else b""
    return status, head, body


async def post_once(host: str, port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """Open a connection, send one request, read the response, close."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


# ------------------------------------------------------------------ baselines


_FRESH_RUNNER = (
    "import sys,json\n"
    "sys.path.insert(0,sys.argv[1])\n"
    "class C:\n"
    " aws_request_id='fresh';log_stream_name='fresh-process';function_name='fresh'\n"
    " def get_remaining_time_in_millis(self):return 30000\n"
    "import app\n"
    "sys.stdout.write(json.dumps(app.handler(json.loads(sys.stdin.buffer.read() or b'null'),C())))\n"
)


class FreshProcess:
    """The baseline: a fresh interpreter per invoke (spawn + import handler + call + reply).

    Same interpreter and flags as Squall's Python runtime (``-s``), the same handler file.
    """

    def __init__(self, code: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="squall-bench-fresh-")
        Path(self.dir, "app.py").write_text(textwrap.dedent(code))
        self.argv = [sys.executable, "-s", "-c", _FRESH_RUNNER, self.dir]

    def invoke(self, payload: bytes) -> bytes:
        done = subprocess.run(self.argv, input=payload, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"baseline process failed: {done.stderr.decode(errors='replace')[-800:]}")
        return done.stdout

    def timed(self, payload: bytes, n: int) -> list[float]:
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            self.invoke(payload)
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def timed_loop(fn: Callable[[], Any], n: int) -> list[float]:
    samples = []
    perf = time.perf_counter
    for _ in range(n):
        started = perf()
        fn()
        samples.append((perf() - started) * 1000)
    return samples


# ------------------------------------------------------------------ processes and memory


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc."""
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        kids[int(fields[1])].append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = children_map()
    found, stack = [], [pid]
    while stack:
        for child in kids.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """Rss, Pss, Private_Clean, Private_Dirty, ... of one process in kB ({} if gone)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    values[key] = int(parts[0])
    except OSError:
        return {}
    return values


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of processes (all their threads), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class CpuMeter:
    """CPU used by the server, its environments (every descendant) and this client, per operation."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.start()

    def start(self) -> None:
        self.kids = descendants(self.server_pid) if self.server_pid else []
        self.server0 = cpu_seconds([self.server_pid]) if self.server_pid else 0.0
        self.kids0 = cpu_seconds(self.kids)
        self.client0 = time.process_time()

    def per_op_us(self, ops: int) -> dict[str, float] | None:
        if not self.server_pid or ops <= 0:
            return None
        server = cpu_seconds([self.server_pid]) - self.server0
        kids = cpu_seconds(self.kids) - self.kids0
        client = time.process_time() - self.client0
        return {
            "server_cpu_us": server / ops * 1e6,
            "environments_cpu_us": kids / ops * 1e6,
            "client_cpu_us": client / ops * 1e6,
        }


def wrk_path() -> str | None:
    return shutil.which("wrk")


def py_spy_path() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")
