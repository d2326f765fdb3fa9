"""Smoke test of bench/cluster.py (needs the machine's PostgreSQL): it runs in --quick mode and
prints its figures. Timings are not asserted (docs/performance.md, docs/scaling.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import BENCH, COMMON
from tests.conftest import require
from tests.e2e.test_postgres import PG_HOST, PG_PORT, postgres_reachable


@pytest.mark.e2e
def test_cluster_bench_quick_run_prints_its_figures() -> None:
    require(postgres_reachable(), f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    done = subprocess.run([sys.executable, str(BENCH / "cluster.py"), "--quick", "--front-ends", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"cluster.py failed:\n{done.stdout}\n{done.stderr}"
    for expected in (*COMMON, "PostgreSQL, cluster mode, one front end", "extra warm-invoke cost", "2 front end(s)",
                     "per async event", "per schedule tick", "target:"):
        assert expected in done.stdout, f"cluster.py did not print {expected!r}:\n{done.stdout}"
