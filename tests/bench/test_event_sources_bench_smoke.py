"""Smoke test: ``bench/event_sources.py --quick`` runs end to end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

BENCH = Path(__file__).resolve().parents[2] / "bench" / "event_sources.py"


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis(socket_connect_timeout=2).ping())
    except Exception:
        return False


def test_event_sources_quick(tmp_path):
    require(redis_answers(), "no Redis at 127.0.0.1:6379 for the Redis Streams half of the benchmark")
    out = tmp_path / "event_sources.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--records", "30", "--samples", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=400,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    for source in ("sqs", "redis"):
        for batch in (1, 10, 100):
            assert doc["results"][f"{source}_batch_{batch}"]["throughput_per_s"] > 0
            assert doc["baselines"][f"{source}_plain_batch_{batch}"]["throughput_per_s"] > 0
            assert doc["ratios"][f"{source}_batch_{batch}_vs_plain"] is not None
        assert doc["results"][f"{source}_latency"]["n"] == 3
        assert doc["baselines"][f"{source}_plain_latency"]["n"] == 3
    assert "records/s to a function at BatchSize 10" in run.stdout
