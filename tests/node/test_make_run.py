"""`make run NODE=1` shows a newcomer a Pod in acme-web pulling a private image through the
operator's Secret, and the same Pod outside the tenant getting the registry's 401."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.node.conftest import SKIP_REASON

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON),
]


def test_make_run_with_the_node_shows_the_end_to_end_pull(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "tenant_registry.demo", "--node"),
            *("--state-dir", str(tmp_path / "run"), "--exit-after", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:] + out[-3000:]
    pods = {
        tuple(line.split()[:4])
        for line in out.splitlines()
        if line.startswith(("acme-web ", "default "))
    }
    assert ("acme-web", "hello", "1/1", "Running") in pods, out
    assert any(
        p[:2] == ("default", "hello") and p[3] in ("ErrImagePull", "ImagePullBackOff") for p in pods
    ), out
    assert "Successfully pulled image" in out
    assert "hello from acme-web" in out
    assert "401 Unauthorized" in out
    assert "stopped the node and the registry" in out
    assert "stopped the operator and the control plane" in out
