"""Install the operator's manifests on a local control plane and run the operator process.

Shared by the tests, the demo and the benchmark. The operator runs as a subprocess with its
own ServiceAccount's token, bound by exactly the RBAC in deploy/, as it would in a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tenant_registry import names
from tenant_registry.localcluster.controlplane import ControlPlane, _die_with_parent, _free_port

REPO = Path(__file__).resolve().parents[3]
OPERATOR_SA = "tenant-registry-operator"


def install(cp: ControlPlane) -> None:
    """The CRD, the operator's namespace, ServiceAccount, RBAC and admission policy from
    deploy/, applied with kubectl (all but the Deployment: no nodes run pods here)."""
    cp.kubectl("apply", "-k", str(REPO / "crds"))
    deploy = REPO / "deploy"
    cp.kubectl(
        "apply",
        *("-f", str(deploy / "namespace.yaml")),
        *("-f", str(deploy / "rbac.yaml")),
        *("-f", str(deploy / "admission-policy.yaml")),
    )
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        f"crd/{names.PLURAL}.{names.GROUP}",
    )


class OperatorProcess:
    """`tenant-registry run` as the operator's ServiceAccount; stop() sends SIGTERM, kill()
    SIGKILL. With `server`, the operator talks to that address instead of the API server's (a
    fault-injecting proxy whose certificate the cluster CA signed).

    `pod_name` is the replica's identity for leader election, as a Pod's name is in a
    cluster: a process started again under the same name is that Pod's restarted container and
    takes its Lease back at once; two processes running at once need different names."""

    def __init__(
        self,
        cp: ControlPlane,
        *args: str,
        log_name: str = "operator",
        pod_name: str = "tenant-registry-operator-0",
        server: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.cp = cp
        self.args = args
        self.env = env or {}  # for the operator process only, over the test's environment
        self.pod_name = pod_name
        self.server = server
        self.log = cp.logs_dir / f"{log_name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0
        self.metrics_port = 0

    def start(self, timeout: float = 60, *, wait: bool = True) -> OperatorProcess:
        """Start the process; with `wait`, until it is ready (leading and synced, or standing
        by)."""
        kubeconfig = self.cp.serviceaccount_kubeconfig(
            names.DEFAULT_OPERATOR_NAMESPACE, OPERATOR_SA, server=self.server
        )
        self.health_port, self.metrics_port = _free_port(), _free_port()
        cmd = [
            sys.executable,
            "-m",
            "tenant_registry.cli",
            "run",
            f"--kubeconfig={kubeconfig}",
            f"--health-port={self.health_port}",
            f"--metrics-port={self.metrics_port}",
            *self.args,
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                # As in the image (Dockerfile): two malloc arenas.
                env={
                    **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
                    "MALLOC_ARENA_MAX": "2",
                    "POD_NAME": self.pod_name,
                    **self.env,
                },
            )
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}; log: {self.log}")
            if self.healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"operator not healthy within {timeout:.0f} s; log: {self.log}")

    def probe(self, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        """(HTTP status, decoded body) of a probe; (0, {}) when nothing answers."""
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                code, body = int(resp.status), resp.read()
        except urllib.error.HTTPError as e:
            code, body = int(e.code), e.read()
        except (OSError, urllib.error.URLError):
            return 0, {}
        try:
            return code, dict(json.loads(body))
        except ValueError:
            return code, {}

    def healthy(self) -> bool:
        """Ready: leading with the view synced, or standing by."""
        return self.probe("/readyz")[0] == 200

    def role(self) -> str:
        return str(self.probe("/readyz")[1].get("role", ""))

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            return str(resp.read().decode())

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs in the operator, as when a node dies."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15) -> float:
        """SIGTERM and wait; returns how long shutdown took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"operator ignored SIGTERM for {timeout} s; log: {self.log}"
            ) from None
        return time.monotonic() - started

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
