"""deploy/ installs with kubectl, runs restricted, and grants only what the code needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tenant_registry.localcluster import ControlPlane
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
NS = "tenant-registry-system"
SA = "tenant-registry-operator"


def _deployment() -> dict[str, Any]:
    return next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "deployment.yaml").read_text())
        if d["kind"] == "Deployment"
    )


def test_kubectl_apply_k_crds_then_deploy_installs_cleanly(
    control_plane: ControlPlane, operator: RunningOperator
) -> None:
    """README "Install": crds/ first (Established), then deploy/, which holds no CRD."""
    control_plane.kubectl("apply", "-k", str(ROOT / "crds"))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "customresourcedefinition/tenantregistries.registry.tenancy.dev",
    )
    out = control_plane.kubectl("apply", "-k", str(ROOT / "deploy"))
    assert "would violate PodSecurity" not in out.stderr, out.stderr
    assert "customresourcedefinition" not in out.stdout, out.stdout
    got = control_plane.kubectl("get", "deployment", SA, "-n", NS, "-o", "name").stdout
    assert got.strip() == f"deployment.apps/{SA}"
    ns = control_plane.kubectl("get", "ns", NS, "-o", "jsonpath={.metadata.labels}").stdout
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in ns


def test_deployment_runs_two_restricted_replicas_with_probes_and_a_budget() -> None:
    d = _deployment()
    spec = d["spec"]
    # Two replicas, one active (a Lease): a rollout never leaves the operator without one.
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SA
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # large clusters
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    docs = {
        doc["kind"]: doc
        for f in ("pdb.yaml", "service.yaml")
        for doc in yaml.safe_load_all((ROOT / "deploy" / f).read_text())
    }
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert docs["Service"]["spec"]["ports"][0]["name"] == "metrics"


def test_optional_service_monitor_applies_where_prometheus_operator_runs(
    control_plane: ControlPlane, operator: RunningOperator
) -> None:
    """deploy/monitoring/ is deploy/ plus a ServiceMonitor; with the CRD present it applies."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
    )
    control_plane.kubectl("apply", "-k", str(ROOT / "deploy" / "monitoring"))
    got = control_plane.kubectl("get", "servicemonitor", "-n", NS, "-o", "name").stdout
    assert got.strip() == "servicemonitor.monitoring.coreos.com/tenant-registry-operator"


def _can(cp: ControlPlane, *args: str) -> bool:
    kubeconfig = cp.serviceaccount_kubeconfig(NS, SA)
    out = cp.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    return out.stdout.strip() == "yes"


@pytest.mark.parametrize(
    "args",
    [
        ("list", "secrets", "-A"),
        ("create", "secrets", "-n", "any-tenant-ns"),
        ("patch", "serviceaccounts", "-n", "any-tenant-ns"),
        ("list", "namespaces"),
        ("patch", "tenantregistries.registry.tenancy.dev/status"),
        ("create", "events", "-n", "default"),
        ("create", "events", "-n", "any-tenant-ns"),
        ("create", "leases.coordination.k8s.io", "-n", NS),
        ("update", "leases.coordination.k8s.io/tenant-registry-operator", "-n", NS),
        # the pull-readiness audit (auditor.py); the delete is narrowed by admission
        ("watch", "pods", "-A"),
        ("list", "events", "-A"),
        ("delete", "pods", "-n", "any-tenant-ns"),
    ],
)
def test_operator_identity_can_what_the_code_needs(
    control_plane: ControlPlane, operator: RunningOperator, args: tuple[str, ...]
) -> None:
    assert _can(control_plane, *args)


@pytest.mark.parametrize(
    "args",
    [
        ("patch", "namespaces"),
        ("delete", "namespaces"),
        ("create", "namespaces"),
        ("create", "pods", "-n", "default"),
        ("create", "serviceaccounts", "-n", "default"),
        ("delete", "serviceaccounts", "-n", "default"),
        ("create", "serviceaccounts/token", "-n", "default"),
        ("update", "tenantregistries.registry.tenancy.dev"),
        ("delete", "tenantregistries.registry.tenancy.dev"),
        ("update", "events", "-n", "default"),
        ("delete", "events", "-n", "default"),
        ("get", "pods", "-n", "default"),
        ("patch", "pods", "-n", "default"),
        ("update", "pods/status", "-n", "default"),
        ("create", "pods/eviction", "-n", "default"),
        ("create", "pods/exec", "-n", "default"),
        ("deletecollection", "pods", "-n", "default"),
        ("get", "configmaps", "-n", "kube-system"),
        ("create", "clusterrolebindings"),
        ("escalate", "clusterroles"),
        ("impersonate", "users"),
        ("update", "leases.coordination.k8s.io/someone-elses", "-n", NS),
        ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
        ("update", "leases.coordination.k8s.io/kube-controller-manager", "-n", "kube-system"),
        ("delete", "leases.coordination.k8s.io/tenant-registry-operator", "-n", NS),
    ],
)
def test_operator_identity_cannot_do_anything_else(
    control_plane: ControlPlane, operator: RunningOperator, args: tuple[str, ...]
) -> None:
    assert not _can(control_plane, *args)


def test_onboarding_rotation_and_cleanup_work_under_that_identity(
    k8s: Cluster, unique: str
) -> None:
    """The session's operator runs with deploy/'s RBAC and policy; the whole cycle works."""
    name = f"priv-{unique}"
    ns = k8s.onboard_one(name, server="p.example")
    k8s.credentials(name, password="two")
    wait_for(
        lambda: (
            (k8s.dockerconfig(ns, f"{name}-pull") or {})
            .get("auths", {})
            .get("p.example", {})
            .get("password")
            == "two"
        ),
        what="rotated",
    )
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="deleted")
    assert k8s.copy(ns, f"{name}-pull") is None
    assert k8s.pull_secrets(ns) == []
