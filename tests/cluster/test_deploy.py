"""deploy/ installs with kubectl, runs restricted, and grants only what the code needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.controlplane import KubectlError
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


def test_deployment_runs_restricted_one_replica_with_probes() -> None:
    d = _deployment()
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SA
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


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
        ("list", "events", "-n", "default"),
        ("get", "configmaps", "-n", "kube-system"),
        ("create", "clusterrolebindings"),
        ("escalate", "clusterroles"),
        ("impersonate", "users"),
    ],
)
def test_operator_identity_cannot_do_anything_else(
    control_plane: ControlPlane, operator: RunningOperator, args: tuple[str, ...]
) -> None:
    assert not _can(control_plane, *args)


def test_admission_policy_stops_the_operator_touching_secrets_it_does_not_own(
    k8s: Cluster, unique: str
) -> None:
    ns = f"vap-{unique}"
    k8s.namespace(ns)
    k8s.secret(ns, "someone-elses", "Opaque", {"k": "v"})
    kubeconfig = k8s.cp.serviceaccount_kubeconfig(NS, SA)
    for verb in (
        ("delete", "secret", "someone-elses", "-n", ns),
        ("label", "secret", "someone-elses", "-n", ns, "x=y"),
        ("create", "secret", "generic", "forged", "-n", ns, "--from-literal=a=b"),
    ):
        with pytest.raises(KubectlError, match="denied request"):
            k8s.cp.kubectl(*verb, kubeconfig=kubeconfig)
    assert k8s.copy(ns, "someone-elses") is not None


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
