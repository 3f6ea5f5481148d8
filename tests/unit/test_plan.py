"""`plan -f`: the file read as kubectl would apply it, planned by the operator's planner."""

from __future__ import annotations

import pytest

from tenant_registry import names
from tenant_registry.plan import (
    Live,
    apply_manifests,
    plan_lines,
    plan_tenant,
    read_manifests,
)
from tenant_registry.session import UsageError
from tenant_registry.view import copy_record
from tenant_registry.view_types import NamespaceInfo, ServiceAccountInfo, blocker_info
from tests.unit.test_explain import OPNS, copy_of, credentials

FILE = """
apiVersion: v1
kind: Secret
metadata: {name: acme, namespace: tenant-registry-system}
type: kubernetes.io/basic-auth
stringData: {username: u, password: pw}
---
apiVersion: v1
kind: Namespace
metadata: {name: acme-new, labels: {tenant: acme}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: default}
---
apiVersion: registry.tenancy.dev/v1alpha1
kind: TenantRegistry
metadata: {name: acme}
spec:
  secretName: acme-pull
  registries:
  - {server: acme.example, credentialsRef: {name: acme}}
  namespaces:
    names: ["!acme-old"]
    selector: {matchLabels: {tenant: acme}}
"""


def live() -> Live:
    state = Live()
    for name in ("acme-web", "acme-old", "other"):
        labels = {"tenant": "acme"} if name.startswith("acme") else {}
        state.namespaces[name] = NamespaceInfo(name, labels)
    state.add_account(ServiceAccountInfo("acme-web", "default", "1"))
    state.add_account(
        ServiceAccountInfo(
            "acme-old",
            "default",
            "2",
            pull_secrets=("acme-pull",),
            ours=(("acme", "acme-pull"),),
            has_annotations=True,
            has_pull_secrets=True,
        )
    )
    state.add_copy(copy_record(copy_of("acme", "acme-old")))
    state.add_copy(copy_record(copy_of("acme", "acme-web", content_of="old")))
    state.tenants["acme"] = {
        "metadata": {"name": "acme", "uid": "uid-acme", "generation": 4},
        "spec": {
            "secretName": "acme-pull",
            "registries": [{"server": "old.example", "credentialsRef": {"name": "acme"}}],
            "namespaces": {"selector": {"matchLabels": {"tenant": "acme"}}},
        },
    }
    return state


def test_a_file_is_planned_against_what_exists() -> None:
    manifests = read_manifests("acme.yaml", FILE, OPNS)
    assert manifests.ignored == ["ConfigMap other"]
    state = live()
    apply_manifests(state, manifests)
    plan = plan_tenant(manifests.tenants[0], state, OPNS)
    assert (plan.before, plan.after) == ({"acme-web", "acme-old"}, {"acme-web", "acme-new"})
    lines = plan_lines(plan, state, OPNS)
    assert lines[0] == "TenantRegistry acme (applying it changes the existing TenantRegistry)"
    assert lines[1] == "  namespaces: 2 selected now, 2 after; +1, -1"
    assert (
        lines[2]
        == "    + acme-new (created by this file): selected by the label selector tenant=acme"
    )
    assert lines[3] == "    - acme-old: no longer selected: excluded by the name '!acme-old'"
    text = "\n".join(lines)
    assert "    - delete Secret acme-old/acme-pull" in text
    assert (
        "    - patch ServiceAccount acme-old/default: remove imagePullSecrets entry acme-pull"
        in text
    )
    assert "    + create Secret acme-new/acme-pull (content sha256:" in text
    assert (
        "    + patch ServiceAccount acme-new/default (once kube-controller-manager creates it): "
        "add imagePullSecrets entry acme-pull"
    ) in text
    assert "    ~ update Secret acme-web/acme-pull: content sha256:" in text
    assert (
        "    + patch ServiceAccount acme-web/default: add imagePullSecrets entry acme-pull" in text
    )
    assert lines[-1] == (
        "  summary: copies: 1 to create, 1 to update, 1 to delete; entries: 2 to add, 1 to remove; "
        "namespaces that would fail: 0"
    )
    assert "pw" not in text


def test_credentials_from_the_file_count_and_missing_ones_freeze_the_tenant() -> None:
    manifests = read_manifests("acme.yaml", FILE.split("---", 1)[1], OPNS)  # no Secret
    state = live()
    apply_manifests(state, manifests)
    plan = plan_tenant(manifests.tenants[0], state, OPNS)
    lines = plan_lines(plan, state, OPNS)
    assert lines[1].startswith(
        "  the operator would write nothing and remove nothing for it: CredentialsInvalid: "
        "spec.registries[0].credentialsRef: Secret tenant-registry-system/acme not found"
    )
    assert lines[2] == "  its spec selects 2 namespace(s): acme-new, acme-web"
    state.credentials["acme"] = credentials("acme")
    assert not plan_lines(plan_tenant(manifests.tenants[0], state, OPNS), state, OPNS)[
        1
    ].startswith("  the operator would write nothing")


def test_an_unmanaged_secret_in_the_way_is_a_planned_failure() -> None:
    manifests = read_manifests("acme.yaml", FILE, OPNS)
    state = live()
    state.unmanaged["acme-pull"] = {
        "acme-web": blocker_info(
            {"metadata": {"name": "acme-pull", "namespace": "acme-web"}, "type": "Opaque"}
        )
    }
    state.copies.pop("acme-web")
    apply_manifests(state, manifests)
    lines = plan_lines(plan_tenant(manifests.tenants[0], state, OPNS), state, OPNS)
    assert "    ! would fail: UnmanagedSecretExists: Secret acme-pull exists" in "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "-f f.yaml: not valid YAML at line 1: expected the node content, but found"),
        (
            "kind: ConfigMap\napiVersion: v1\n",
            f"-f f.yaml: holds no TenantRegistry ({names.API_VERSION})",
        ),
        ("- 1\n", "-f f.yaml: document 1 is not a Kubernetes object"),
        (
            f"apiVersion: {names.API_VERSION}\nkind: TenantRegistry\nspec: {{}}\n",
            "-f f.yaml: document 1: the TenantRegistry has no metadata.name",
        ),
        (
            "apiVersion: registry.tenancy.dev/v1\nkind: TenantRegistry\nmetadata: {name: a}\n",
            f"-f f.yaml: document 1: apiVersion must be {names.API_VERSION}",
        ),
    ],
)
def test_bad_files_are_one_line_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        read_manifests("f.yaml", text, OPNS)
    assert str(e.value).startswith(message)


def test_a_list_is_read_item_by_item() -> None:
    items = FILE.split("---")[-1].replace("\n", "\n    ")
    manifests = read_manifests(
        "l.yaml", f"apiVersion: v1\nkind: List\nitems:\n  - {items.strip()}\n", OPNS
    )
    assert [t["metadata"]["name"] for t in manifests.tenants] == ["acme"]
