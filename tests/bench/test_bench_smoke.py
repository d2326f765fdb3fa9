"""Smoke test of the benchmarks in bench/: each runs in --quick mode and prints its figures.

Benchmarks must not rot, but timings are not asserted here (performance is measured by
running the benchmarks in full mode; see docs/performance.md). Each script starts its own
server; together they take well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Fields every benchmark prints, plus each one's own.
COMMON = ("machine:", "nproc=", "MemTotal=", "kernel", "CPU:", "isolation:", "median", "p99", "baseline", "ratio:")
SCRIPTS = {
    "cold_start.py": ("cold invoke", "Init Duration", "fresh python process", "target:", "SnapStart:"),
    "warm_latency.py": ("warm invoke, http.client keep-alive", "boto3", "throughput", "target:"),
    "warm_throughput.py": ("squall warm invokes, 32 connections", "HTTP floor", "throughput", "target:"),
    "parallel_scaling.py": ("P= 1", "P= 4", "environments_used=", "throughput"),
    "runtimes.py": ("python (built-in, frames): warm invoke", "cold invoke", "REPORT Init Duration"),
    "density.py": ("private memory per environment", "PSS per environment", "idle environments on 24 GiB", "target:"),
}


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_quick_run_prints_its_figures(script: str) -> None:
    done = run(script)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    for expected in COMMON + SCRIPTS[script]:
        assert expected in done.stdout, f"{script} did not print {expected!r}:\n{done.stdout}"


@pytest.mark.e2e
def test_json_output_is_machine_readable() -> None:
    done = run("cold_start.py", "--json", "-n", "2")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the human report went to stderr
    assert doc["benchmark"] == "cold_start" and doc["mode"] == "quick"
    assert doc["isolation"]["name"] in ("process", "linux")
    assert doc["results"]["cold_invoke"]["n"] == 2
    assert {"median_ms", "p99_ms"} <= set(doc["results"]["cold_invoke"])
    assert doc["baselines"]["fresh_process"]["n"] == 2
    assert "cold_vs_fresh_median" in doc["ratios"]
    assert doc["machine"]["nproc"] >= 1
    assert "isolation:" in done.stderr
    if doc["isolation"]["name"] == "linux":  # SnapStart's stdlib case, against the same code from scratch
        assert doc["results"]["snap_stdlib"]["n"] == 2 and doc["baselines"]["scratch_stdlib"]["n"] == 2
        assert doc["results"]["snap_stdlib_restore"]["n"] == 2
