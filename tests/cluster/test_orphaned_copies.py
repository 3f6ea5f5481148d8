"""Copies orphaned of their TenantRegistry: `kubectl delete treg X --cascade=orphan` has the
garbage collector (in kube-controller-manager, running here) strip every copy's
ownerReference. Those copies are still the tenant's (its label, the operator's content-hash
annotation, no TenantRegistry ownerReference): the deletion removes them, and a TenantRegistry
created again under that name re-owns them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tenant_registry import names
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def _no_operator(operator: RunningOperator) -> Iterator[None]:
    """No operator runs inside; a new process starts after, whatever happened."""
    operator.stop()
    try:
        yield
    finally:
        operator.process = operator._new()
        operator.start()


def _orphan_delete(k8s: Cluster, name: str) -> None:
    """`kubectl delete --cascade=orphan`, until the garbage collector orphaned the dependents
    (its finalizer gone; the TenantRegistry's own finalizer may still hold it)."""
    k8s.cp.kubectl("delete", "tenantregistry", name, "--cascade=orphan", "--wait=false")
    wait_for(
        lambda: (
            "orphan"
            not in ((k8s.tenant_obj(name) or {}).get("metadata") or {}).get("finalizers", [])
        ),
        what="the garbage collector orphaned the dependents",
        timeout=120,
    )


def _orphan_delete_while_down(k8s: Cluster, operator: RunningOperator, name: str, ns: str) -> None:
    """With no operator running, so the garbage collector surely strips the ownerReferences
    first (with one running it is a race; both orders must end the same)."""
    with _no_operator(operator):
        _orphan_delete(k8s, name)
        orphaned = k8s.copy(ns, f"{name}-pull")
        assert orphaned is not None and not orphaned["metadata"].get("ownerReferences")


def _owners(copy: dict[str, Any] | None) -> list[str]:
    return [
        o.get("uid", "") for o in ((copy or {}).get("metadata") or {}).get("ownerReferences") or []
    ]


def test_deleting_a_tenant_with_cascade_orphan_removes_its_copies(
    k8s: Cluster, unique: str
) -> None:
    """The operator running: the garbage collector and the cleanup race."""
    name = f"orph-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    k8s.cp.kubectl("delete", "tenantregistry", name, "--cascade=orphan", "--wait=false")
    wait_for(lambda: k8s.tenant_obj(name) is None, what="the tenant gone", timeout=120)
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="the copy removed")
    assert f"{name}-pull" not in k8s.pull_secrets(ns)


def test_copies_orphaned_while_no_operator_ran_are_removed(
    k8s: Cluster, unique: str, operator: RunningOperator
) -> None:
    name = f"orpd-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    _orphan_delete_while_down(k8s, operator, name, ns)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="the tenant gone", timeout=120)
    assert k8s.copy(ns, f"{name}-pull") is None, "the finalizer went only after the copy"
    assert f"{name}-pull" not in k8s.pull_secrets(ns)


def test_a_tenant_created_again_re_owns_its_orphaned_copy(
    k8s: Cluster, unique: str, operator: RunningOperator
) -> None:
    """The old TenantRegistry's copies outlived it (orphaned, its finalizer removed by hand):
    the same name applied again (GitOps) takes them back, with the new credentials."""
    name = f"orpr-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    old_uid = (k8s.tenant_obj(name) or {})["metadata"]["uid"]
    with _no_operator(operator):
        _orphan_delete(k8s, name)
        k8s.drop_finalizers(name, what="the old tenant gone")
        assert _owners(k8s.copy(ns, f"{name}-pull")) == []
        k8s.credentials(name, username="u", password="second-password")
        k8s.tenant(
            name,
            secret_name=f"{name}-pull",
            registries=[registry(f"{name}.example", name)],
            namespaces={"selector": {"matchLabels": {"tenant": name}}},
        )
        new_uid = (k8s.tenant_obj(name) or {})["metadata"]["uid"]
        assert new_uid != old_uid
    wait_for(
        lambda: (
            _owners(k8s.copy(ns, f"{name}-pull")) == [new_uid]
            and "second-password" in str(k8s.dockerconfig(ns, f"{name}-pull"))
        ),
        what="the orphaned copy re-owned, with the new credentials",
    )
    wait_for(
        lambda: (
            k8s.status(name).get("syncedNamespaces") == 1 and not k8s.status(name).get("failures")
        ),
        what="synced, nothing reported",
    )
    assert k8s.pull_secrets(ns).count(f"{name}-pull") == 1
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="removed with the new tenant")


def test_orphaned_copies_of_a_tenant_gone_while_no_operator_ran_are_removed(
    k8s: Cluster, unique: str, operator: RunningOperator
) -> None:
    """Orphaned, then its finalizer removed by hand: no TenantRegistry and no ownerReference
    the garbage collector could go by. The operator's look for leftovers finds the copy."""
    name = f"orpg-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    with _no_operator(operator):
        _orphan_delete(k8s, name)
        k8s.drop_finalizers(name, what="the tenant gone")
        # Its entry removed by someone too: only the orphaned copy names the tenant now.
        k8s.cp.kubectl(
            "patch",
            "serviceaccount",
            "default",
            "-n",
            ns,
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/imagePullSecrets"},'
            '{"op":"remove","path":"/metadata/annotations"}]',
        )
        assert _owners(k8s.copy(ns, f"{name}-pull")) == []
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="the orphaned copy removed")


def test_a_copy_whose_owner_reference_someone_removed_is_repaired(
    k8s: Cluster, unique: str
) -> None:
    name = f"orpu-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    uid = (k8s.tenant_obj(name) or {})["metadata"]["uid"]
    k8s.cp.kubectl(
        "patch",
        "secret",
        f"{name}-pull",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/ownerReferences"}]',
    )
    wait_for(lambda: _owners(k8s.copy(ns, f"{name}-pull")) == [uid], what="the owner put back")
    # Another controller's claim, though, is never fought over: the Secret is reported.
    cm = k8s.cp.kubectl("create", "configmap", "claims", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    ref = (
        '[{"op":"replace","path":"/metadata/ownerReferences","value":[{"apiVersion":"v1",'
        f'"kind":"ConfigMap","name":"claims","uid":"{cm.stdout.strip()}","controller":true}}]}}]'
    )
    k8s.cp.kubectl("patch", "secret", f"{name}-pull", "-n", ns, "--type=json", "-p", ref)
    wait_for(
        lambda: any(
            f.get("reason") == "UnmanagedSecretExists" for f in k8s.status(name).get("failures", [])
        ),
        what="reported as not the operator's",
    )
    copy = k8s.copy(ns, f"{name}-pull")
    assert [o["kind"] for o in (copy or {})["metadata"]["ownerReferences"]] == ["ConfigMap"]
    assert copy is not None and copy["metadata"]["labels"][names.LABEL_TENANT] == name
