"""The control plane never outlives its owner, and failures say what to do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split()[2] != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _start_owner(state: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """`python -m tenant_registry.localcluster up`, once its KUBECONFIG line is out."""
    owner = subprocess.Popen(
        [sys.executable, "-m", "tenant_registry.localcluster", "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().startswith("export KUBECONFIG=")
    components = _children(owner.pid)
    assert len(components) == 3, "etcd, kube-apiserver and kube-controller-manager"
    return owner, components


def test_killed_owner_takes_the_control_plane_with_it(tmp_path: Path) -> None:
    owner, components = _start_owner(tmp_path / "cp")
    owner.send_signal(signal.SIGKILL)  # no cleanup code runs in the owner
    owner.wait()
    wait_for(lambda: not any(_alive(p) for p in components), what="components gone", timeout=20)


def test_sigterm_stops_a_running_control_plane_cleanly(tmp_path: Path) -> None:
    owner, components = _start_owner(tmp_path / "cp")
    started = time.monotonic()
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=20) == 0
    assert time.monotonic() - started < 15
    assert not any(_alive(p) for p in components)


def test_missing_go_toolchain_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "TRO_CACHE_DIR": str(tmp_path / "empty-cache"), "PATH": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-m", "tenant_registry.localcluster", "build"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: the Go toolchain is not on PATH: install Go >= 1.26 (it builds the local "
        "control plane from the Go module proxy), then run this again"
    ]
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error_and_nothing_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenant_registry.localcluster import controlplane
    from tenant_registry.localcluster.controlplane import ControlPlane, StartError

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    real = controlplane._free_port
    ports = iter([real(), real(), busy.getsockname()[1]])  # etcd client, peer, then apiserver
    monkeypatch.setattr(controlplane, "_free_port", lambda: next(ports))
    cp = ControlPlane(tmp_path / "cp")
    try:
        with pytest.raises(StartError) as err:
            cp.start()
    finally:
        busy.close()
    first_line = str(err.value).splitlines()[0]
    assert "kube-apiserver" in first_line and "a port is already in use" in first_line
    assert cp.pids() == {}, "etcd was stopped too"
