"""Smoke test: ``bench/event_triggers.py --quick`` runs end to end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "event_triggers.py"


def test_event_triggers_quick(tmp_path):
    out = tmp_path / "event_triggers.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--events", "40", "--samples", "3", "--ticks", "5",
         "--isolation", "process", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    results, baselines = doc["results"], doc["baselines"]
    assert results["putevents_latency"]["n"] == 3 and results["putevents_latency"]["median_ms"] > 0
    assert results["schedule_drift"]["n"] == 5
    for size in (1, 10):
        assert results[f"putevents_{size}_per_call"]["n"] == 40
        assert results[f"putevents_{size}_per_call"]["throughput_per_s"] > 0
        assert doc["ratios"][f"putevents_{size}_vs_invoke"] is not None
    assert baselines["async_invoke"]["n"] == 40 and baselines["async_invoke"]["throughput_per_s"] > 0
