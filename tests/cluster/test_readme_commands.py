"""The README's `make run` works as written: same module, bounded so a test can end it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def test_demo_shows_the_example_tenant_ready_and_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tenant_registry.demo",
            "--state-dir",
            str(tmp_path / "run"),
            "--exit-after",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"export KUBECONFIG={tmp_path / 'run' / 'admin.kubeconfig'}" in out
    tenant_line = next(line for line in out.splitlines() if line.startswith("acme "))
    assert tenant_line.split()[1:5] == ["True", "2", "2", "0"], tenant_line
    assert "acme-web     acme-pull   kubernetes.io/dockerconfigjson" in out
    assert '[{"name":"acme-pull"}]' in out
    assert "stopped the operator and the control plane" in out
    for line in (tmp_path / "run" / "logs" / "operator.log").read_text().splitlines():
        assert "Handler 'tenant_changed' succeeded" not in line
