"""A control plane of a fault test's own: a test that kills, stops or starves processes must
not hurt the session cluster the other tests share."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pykube

from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.harness import OperatorProcess, install
from tests.cluster.tenants import OPERATOR_USER, Cluster
from tests.leaks import LEDGER, operator_haystacks
from tests.waiting import wait_for

# The fault tests' operator: re-plans and re-checks only rarely, so what converges was repaired
# by the operator's reaction to the fault (a relist, a retry), not by a periodic sweep.
FAULT_OPERATOR_ARGS = ("--resync=600", "--conflict-recheck=600", "--log-format=json")


class IsolatedCluster:
    """etcd, kube-apiserver and kube-controller-manager for one test, with deploy/ installed;
    `operator()` starts operator processes (each with its own log) as the operator's SA."""

    def __init__(self, label: str, **control_plane: Any) -> None:
        self.label = label
        self.cp = ControlPlane(kcm_qps=200, kcm_burst=400, **control_plane)
        self.operators: list[OperatorProcess] = []
        self.k8s: Cluster

    def __enter__(self) -> IsolatedCluster:
        self.cp.start()
        try:
            install(self.cp)
        except BaseException:
            self.cp.cleanup()
            raise
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(self.cp.kubeconfig)))
        self.k8s = Cluster(api, self.cp)
        return self

    def __exit__(self, *exc: object) -> None:
        for op in self.operators:
            try:
                op.stop()
            except RuntimeError:
                op.kill()
        try:
            if self.cp.pids().get("kube-apiserver"):
                for where, text in operator_haystacks(self.cp, self.k8s, self.label):
                    LEDGER.keep(where, text)
            else:
                for p in sorted(self.cp.logs_dir.glob("operator*.log")):
                    LEDGER.keep(f"{self.label} {p.name}", p.read_text(errors="replace"))
        finally:
            if os.environ.get("TRO_KEEP_STATE") or exc[0] is not None:
                self.cp.stop()
                print(f"\n{self.label}: control plane state kept in {self.cp.dir}")
            else:
                self.cp.cleanup()

    def operator(
        self, *args: str, server: str | None = None, start: bool = True
    ) -> OperatorProcess:
        op = OperatorProcess(
            self.cp,
            *(args or FAULT_OPERATOR_ARGS),
            log_name=f"operator-{len(self.operators) + 1}",
            server=server,
        )
        self.operators.append(op)
        if start:
            op.start()
        return op

    def operator_log(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.cp.logs_dir.glob("operator-*.log"))
        )

    def namespaces(self, names: list[str], **labels: str) -> None:
        """Create many namespaces in one kubectl call; wait for their default ServiceAccounts."""
        items = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
            for n in names
        ]
        self.cp.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        wanted = set(names)
        wait_for(
            lambda: (
                wanted
                <= {
                    sa.namespace
                    for sa in pykube.ServiceAccount.objects(self.k8s.api, namespace=pykube.all)
                    if sa.name == "default"
                }
            ),
            what=f"default ServiceAccounts in {len(names)} namespaces",
            timeout=120,
        )


class AuditTail:
    """The API server's audit log, read incrementally (write verbs only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.entries: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        """Entries appended since the last poll (complete lines only)."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.entries += new
        return new

    def mark(self) -> int:
        self.poll()
        return len(self.entries)

    def operator_writes(self, since: int = 0) -> list[dict[str, Any]]:
        """Successful writes by the operator's identity (entry index `since` on)."""
        self.poll()
        return [
            e
            for e in self.entries[since:]
            if (e.get("user") or {}).get("username") == OPERATOR_USER
            and (e.get("responseStatus") or {}).get("code", 0) < 400
        ]


def per_namespace(writes: list[dict[str, Any]], namespaces: set[str]) -> dict[str, list[str]]:
    """namespace -> ["create secrets", "patch serviceaccounts", ...] for the given writes."""
    out: dict[str, list[str]] = {}
    for w in writes:
        ref = w.get("objectRef") or {}
        if ref.get("namespace") in namespaces:
            out.setdefault(ref["namespace"], []).append(f"{w['verb']} {ref.get('resource')}")
    return out
