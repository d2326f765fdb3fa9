"""Smoke test: ``bench/async_accept.py --quick`` runs end to end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "async_accept.py"


def test_async_accept_quick(tmp_path):
    out = tmp_path / "async_accept.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--events", "400", "--samples", "5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    results, baselines = doc["results"], doc["baselines"]
    assert results["accept_group_commit"]["throughput_per_s"] > 0 and results["accept_group_commit"]["non_202"] == 0
    assert results["accept_group_commit"]["queued"] >= 400  # every 202 was stored
    assert results["drain"]["throughput_per_s"] > 0
    assert results["accept_while_dispatching"]["non_202"] == 0
    assert results["accept_to_start"]["n"] == 5 and results["accept_to_start"]["median_ms"] > 0
    assert baselines["accept_commit_per_event"]["throughput_per_s"] > 0 and baselines["sync_to_start"]["n"] == 5
    assert doc["ratios"]["group_vs_single_commit"] is not None
    assert set(doc["targets"]) == {"accepts_per_s", "accept_to_start_p50_ms"}
    assert "accept throughput" in run.stdout
