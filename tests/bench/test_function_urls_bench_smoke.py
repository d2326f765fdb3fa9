"""Smoke test: ``bench/function_urls.py --quick`` runs end to end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "function_urls.py"


def test_function_urls_quick(tmp_path):
    out = tmp_path / "function_urls.json"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "-c", "4", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    assert doc["results"]["function_url"]["throughput_per_s"] > 0 and doc["results"]["function_url"]["errors"] == 0
    assert doc["baselines"]["invoke"]["throughput_per_s"] > 0 and doc["baselines"]["invoke"]["errors"] == 0
    assert doc["ratios"]["url_cost_vs_invoke"] is not None
    assert set(doc["targets"]) == {"url_cost_ratio"}
    assert "function URL (AuthType NONE)" in run.stdout
