"""Onboarding: copies and ServiceAccount entries appear wherever a tenant's namespaces are."""

from __future__ import annotations

import base64

import pytest

from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_tenant_with_many_namespaces_gets_a_copy_and_entry_in_each(
    k8s: Cluster, unique: str
) -> None:
    namespaces = [f"many-{unique}-{i}" for i in range(25)]
    for ns in namespaces:
        k8s.namespace(ns, tenant=f"many-{unique}")
    k8s.credentials(f"many-{unique}", username="robot", password="pw-many")
    k8s.tenant(
        f"many-{unique}",
        secret_name="many-pull",
        registries=[registry("registry.many.example:5000", f"many-{unique}")],
        namespaces={"selector": {"matchLabels": {"tenant": f"many-{unique}"}}},
    )

    for ns in namespaces:
        wait_for(lambda ns=ns: "many-pull" in k8s.pull_secrets(ns), what=f"entry in {ns}")
        copy = k8s.copy(ns, "many-pull")
        assert copy is not None and copy["type"] == "kubernetes.io/dockerconfigjson"
        labels = copy["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tenant-registry-operator"
        assert labels["registry.tenancy.dev/tenant"] == f"many-{unique}"
        assert copy["metadata"]["annotations"]["registry.tenancy.dev/content-hash"]
        assert copy["metadata"]["ownerReferences"][0]["kind"] == "TenantRegistry"
    auth = k8s.dockerconfig(namespaces[0], "many-pull")["auths"]["registry.many.example:5000"]
    assert base64.b64decode(auth["auth"]).decode() == "robot:pw-many"

    wait_for(
        lambda: k8s.condition(f"many-{unique}", "Ready").get("status") == "True", what="Ready=True"
    )
    status = k8s.status(f"many-{unique}")
    assert status["selectedNamespaces"] == 25
    assert status["syncedNamespaces"] == 25
    assert status["failedNamespaces"] == 0
    assert status["contentHash"].startswith("sha256:")
    wait_for(
        lambda: any(e["reason"] == "Synced" for e in k8s.events(f"many-{unique}")),
        what="a Synced Event",
    )
    events = k8s.cp.kubectl("describe", "tenantregistry", f"many-{unique}").stdout
    assert "Synced" in events.split("Events:")[1], "kubectl describe finds the Event"


def test_namespace_created_after_the_tenant_is_onboarded(k8s: Cluster, unique: str) -> None:
    k8s.credentials(f"late-{unique}")
    k8s.tenant(
        f"late-{unique}",
        secret_name="late-pull",
        registries=[registry("late.example", f"late-{unique}")],
        namespaces={"names": [f"late-{unique}-*"]},
    )
    wait_for(
        lambda: k8s.condition(f"late-{unique}", "Ready").get("status") == "True",
        what="Ready with no namespaces yet",
    )
    k8s.namespace(f"late-{unique}-a")
    wait_for(
        lambda: "late-pull" in k8s.pull_secrets(f"late-{unique}-a"),
        what="entry in the new namespace",
    )
    assert k8s.copy(f"late-{unique}-a", "late-pull") is not None
    wait_for(
        lambda: k8s.status(f"late-{unique}").get("syncedNamespaces") == 1, what="synced count 1"
    )


def test_late_service_accounts_get_the_entry(k8s: Cluster, unique: str) -> None:
    ns = f"sa-{unique}"
    k8s.namespace(ns)
    k8s.credentials(f"sa-{unique}")
    k8s.tenant(
        f"sa-{unique}",
        secret_name="sa-pull",
        registries=[registry("sa.example", f"sa-{unique}")],
        namespaces={"names": [ns]},
        serviceAccounts={"names": ["default", "builder-*"]},
    )
    wait_for(lambda: "sa-pull" in k8s.pull_secrets(ns), what="default SA entry")

    # A ServiceAccount created later, matching a glob.
    k8s.service_account(ns, "builder-1")
    wait_for(lambda: "sa-pull" in k8s.pull_secrets(ns, "builder-1"), what="builder-1 entry")
    # One that does not match stays untouched.
    k8s.service_account(ns, "other")
    assert k8s.pull_secrets(ns, "other") == []

    # The default ServiceAccount appearing late: the controller manager recreates it.
    uid = k8s.sa(ns)["metadata"]["uid"]
    k8s.cp.kubectl("delete", "serviceaccount", "default", "-n", ns)
    wait_for(
        lambda: (k8s.sa(ns) or {}).get("metadata", {}).get("uid") not in (None, uid),
        what="a new default ServiceAccount",
    )
    wait_for(lambda: "sa-pull" in k8s.pull_secrets(ns), what="entry on the new default SA")
    assert k8s.pull_secrets(ns, "other") == []


def test_users_own_pull_secrets_survive_add_and_cleanup(k8s: Cluster, unique: str) -> None:
    ns = f"own-{unique}"
    k8s.namespace(ns)
    k8s.service_account(ns, "app", pull_secrets=["mine-a", "mine-b"])
    k8s.credentials(f"own-{unique}")
    k8s.tenant(
        f"own-{unique}",
        secret_name="own-pull",
        registries=[registry("own.example", f"own-{unique}")],
        namespaces={"names": [ns]},
        serviceAccounts={"names": ["app"]},
    )
    wait_for(
        lambda: k8s.pull_secrets(ns, "app") == ["mine-a", "mine-b", "own-pull"],
        what="our entry appended after the user's",
    )
    annotations = k8s.sa(ns, "app")["metadata"]["annotations"]
    assert annotations["registry.tenancy.dev/added-pull-secrets"] == f"own-{unique}/own-pull"

    k8s.delete_tenant(f"own-{unique}")
    wait_for(
        lambda: k8s.pull_secrets(ns, "app") == ["mine-a", "mine-b"], what="only our entry removed"
    )
    assert "registry.tenancy.dev/added-pull-secrets" not in (
        k8s.sa(ns, "app")["metadata"].get("annotations") or {}
    )


def test_entry_the_user_added_already_is_not_ours_to_remove(k8s: Cluster, unique: str) -> None:
    ns = f"pre-{unique}"
    k8s.namespace(ns)
    k8s.service_account(ns, "app", pull_secrets=["pre-pull"])
    k8s.credentials(f"pre-{unique}")
    k8s.tenant(
        f"pre-{unique}",
        secret_name="pre-pull",
        registries=[registry("pre.example", f"pre-{unique}")],
        namespaces={"names": [ns]},
        serviceAccounts={"names": ["app"]},
    )
    wait_for(lambda: k8s.copy(ns, "pre-pull") is not None, what="copy")
    wait_for(lambda: k8s.status(f"pre-{unique}").get("syncedNamespaces") == 1, what="synced")
    assert k8s.pull_secrets(ns, "app") == ["pre-pull"]
    k8s.delete_tenant(f"pre-{unique}")
    wait_for(lambda: k8s.copy(ns, "pre-pull") is None, what="copy removed")
    assert k8s.pull_secrets(ns, "app") == ["pre-pull"]
