"""A small run of the benchmark script, so it cannot rot; its write counts are asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
            "--tenants",
            "4",
            "--tenant-namespaces",
            "3",
            "--scenarios",
            "single,multi,large",
            "--large-namespaces",
            "12",
            "--large-tenants",
            "4",
            "--large-service-accounts",
            "20",
            "--large-resync",
            "4",
            "--large-relist",
            "6",
            "--large-steady",
            "1",
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
        timeout=900,
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
    # T x K: 4 tenants of 3 namespaces each, applied at once, then all rotated at once.
    multi = r["writes_multi"]
    assert multi["create secrets"] == 12
    assert multi["patch serviceaccounts"] == 12
    assert r["writes_multi_rotation"]["patch secrets"] == 12
    assert "patch serviceaccounts" not in r["writes_multi_rotation"]
    assert r["multi_floor_seconds"] > 0 and r["multi_rotation_floor_seconds"] > 0
    assert r["multi_rotation_floor_reads_seconds"] > 0 and r["multi_rotation_vs_floor_reads"] > 0
    # Reads beside writes: one namespace read per rotated copy, the audit's lists counted.
    assert phases_reads(r, "multi_rotation").get("namespaces (verify)", 0) >= 12
    assert sum(phases_reads(r, p).get("pods (audit)", 0) for p in r["phases"]) >= 1
    # Per phase, the operator's own write metrics agree with the audit log.
    phases = r["phases"]
    assert phases["multi_onboarding"]["writes"]["create secrets"] == 12
    assert phases["multi_rotation"]["writes"]["patch secrets"] == 12
    assert phases["idle"]["writes"] == {}
    # The large run, small: 12 namespaces, 4 tenants, 20 ServiceAccounts, on its own cluster.
    assert r["writes_large"]["create secrets"] == 12
    assert r["writes_large"]["patch serviceaccounts"] == 12
    assert r["large_rss_mib"] > 0
    for name in ("large_steady", "large_resync", "large_relist"):  # nothing to do for tenants
        assert not [w for w in phases[name]["writes"] if "secrets" in w or "serviceaccounts" in w]
    for name in ("cold_start", "multi_onboarding", "multi_rotation", "idle", "large_resync"):
        assert phases[name]["cpu_seconds"] >= 0
        assert phases[name]["loop_lag_max_ms"] != "inf"


def phases_reads(r: dict[str, Any], phase: str) -> dict[str, int]:
    return dict(r["phases"][phase].get("reads") or {})
