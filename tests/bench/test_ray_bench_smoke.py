"""Smoke test of bench/ray_executor.py (needs Ray and the machine's PostgreSQL): it runs in --quick
mode and prints its figures. Timings are not asserted (docs/performance.md, docs/scaling.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import BENCH, COMMON
from tests.conftest import require
from tests.e2e.test_cluster_ray import ray_unavailable
from tests.e2e.test_postgres import PG_HOST, PG_PORT, postgres_reachable


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_ray_bench_quick_run_prints_its_figures() -> None:
    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    reason = ray_unavailable()
    require(reason is None, f"the Ray bench needs Ray: {reason}")
    done = subprocess.run([sys.executable, str(BENCH / "ray_executor.py"), "--quick"],
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"ray_executor.py failed:\n{done.stdout}\n{done.stderr}"
    for expected in (*COMMON, "Ray executor (direct channel", "extra warm-invoke cost", "placement group",
                     "cold start, Ray executor", "Ray executor, 2 nodes", "Ray executor, 3 nodes", "target:"):
        assert expected in done.stdout, f"ray_executor.py did not print {expected!r}:\n{done.stdout}"
