"""The README's `make run` works as written: same module, bounded so a test can end it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tenant_registry.localcluster import ensure_binaries
from tests.waiting import wait_for

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


def test_a_second_make_run_in_the_same_checkout_refuses_and_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    state = tmp_path / "run"
    out = tmp_path / "first.out"
    demo = [sys.executable, "-m", "tenant_registry.demo", "--state-dir", str(state)]
    with open(out, "w") as f:
        first = subprocess.Popen(
            [*demo, "--exit-after", "120"], stdout=f, stderr=subprocess.STDOUT, text=True
        )
    try:
        wait_for(
            lambda: "Following the operator's log" in out.read_text(),
            what="the first make run to be up",
            timeout=150,
        )
        ca = (state / "pki" / "ca.crt").read_bytes()

        second = subprocess.run(demo, capture_output=True, text=True, timeout=60, check=False)

        assert second.returncode != 0
        assert second.stdout == ""
        assert second.stderr.splitlines() == [
            f"make run is already running in this checkout (pid {first.pid}, state in {state}):"
            " stop it first, or pass --state-dir"
        ]
        # The first run's PKI and cluster are untouched: its kubeconfig still works.
        assert (state / "pki" / "ca.crt").read_bytes() == ca
        kubectl = ensure_binaries() / "kubectl"
        got = subprocess.run(
            [str(kubectl), f"--kubeconfig={state / 'admin.kubeconfig'}", "get", "treg", "acme"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert got.returncode == 0, got.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 0
    assert "stopped the operator and the control plane" in out.read_text()
