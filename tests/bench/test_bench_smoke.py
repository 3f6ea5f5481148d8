"""A small run of the benchmark script, so it cannot rot; its write counts are asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--namespaces",
            "15",
            "--latency-samples",
            "3",
            "--idle",
            "2",
            "--unrelated-secrets",
            "50",
            "--settle",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cold start / floor" in proc.stdout
    r = json.loads(out.read_text())
    onboarding = r["writes_onboarding"]
    assert onboarding["create secrets"] == 15
    assert onboarding["patch serviceaccounts"] == 15
    assert r["writes_rotation"]["patch secrets"] == 15 + 3
    assert "patch serviceaccounts" not in r["writes_rotation"]
    assert r["writes_idle"] == {}
    assert r["writes_restart"] == {}
    assert r["http_429"] == 0
    assert 0 < r["max_in_flight_writes"] <= 16
    assert r["latency_samples"] == 3
