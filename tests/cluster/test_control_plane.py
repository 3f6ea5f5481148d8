"""The local control plane is real: controllers, RBAC, admission and CRDs behave as in a cluster.

Each test fails if something in its place only pretends (no controller manager, no RBAC,
no optimistic concurrency).
"""

from __future__ import annotations

import json
import time

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(control_plane: ControlPlane) -> pykube.HTTPClient:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(control_plane.kubeconfig)))


def test_new_namespace_gets_default_service_account_nobody_created(
    control_plane: ControlPlane, api: pykube.HTTPClient, unique: str
) -> None:
    name = f"smoke-sa-{unique}"
    pykube.Namespace(api, {"metadata": {"name": name}}).create()
    sa = wait_for(
        lambda: pykube.ServiceAccount.objects(api, namespace=name).get_or_none(name="default"),
        what="the default ServiceAccount",
    )
    assert sa.obj["metadata"]["namespace"] == name


def test_deleting_a_namespace_removes_it_and_its_contents(
    api: pykube.HTTPClient, unique: str
) -> None:
    name = f"smoke-del-{unique}"
    ns = pykube.Namespace(api, {"metadata": {"name": name}})
    ns.create()
    pykube.Secret(
        api, {"metadata": {"name": "s", "namespace": name}, "stringData": {"k": "v"}}
    ).create()
    ns.delete()
    wait_for(
        lambda: not pykube.Namespace.objects(api).get_or_none(name=name),
        what="namespace deletion",
        timeout=60,
    )
    assert pykube.Secret.objects(api, namespace=name).get_or_none(name="s") is None


def test_kubectl_applies_a_crd_and_serves_its_resources(
    control_plane: ControlPlane, unique: str
) -> None:
    group = f"smoke{unique}.example.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(crd))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}")
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"size": 3},
    }
    wait_for(
        lambda: (
            control_plane.kubectl(
                "apply", "-f", "-", input=json.dumps(widget), check=False
            ).returncode
            == 0
        ),
        what="apply widget",
    )
    out = control_plane.kubectl("get", f"widgets.{group}", "w", "-n", "default", "-o", "json")
    assert json.loads(out.stdout)["spec"]["size"] == 3


def test_service_account_token_is_forbidden_until_a_role_allows(
    control_plane: ControlPlane, api: pykube.HTTPClient, unique: str
) -> None:
    ns = f"smoke-rbac-{unique}"
    pykube.Namespace(api, {"metadata": {"name": ns}}).create()
    pykube.ServiceAccount(api, {"metadata": {"name": "reader", "namespace": ns}}).create()
    kubeconfig = control_plane.serviceaccount_kubeconfig(ns, "reader")
    denied = control_plane.kubectl("get", "secrets", "-n", ns, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    control_plane.kubectl(
        "create", "role", "read-secrets", "-n", ns, "--verb=list", "--resource=secrets"
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "read-secrets",
        "-n",
        ns,
        "--role=read-secrets",
        f"--serviceaccount={ns}:reader",
    )
    wait_for(
        lambda: (
            control_plane.kubectl(
                "get", "secrets", "-n", ns, kubeconfig=kubeconfig, check=False
            ).returncode
            == 0
        ),
        what="RBAC grant",
    )


def test_json_patch_with_stale_resource_version_is_rejected(
    api: pykube.HTTPClient, unique: str
) -> None:
    ns = f"smoke-patch-{unique}"
    pykube.Namespace(api, {"metadata": {"name": ns}}).create()
    sa = pykube.ServiceAccount(api, {"metadata": {"name": "builder", "namespace": ns}})
    sa.create()
    stale = sa.obj["metadata"]["resourceVersion"]
    sa.obj["metadata"]["labels"] = {"touched": "yes"}
    sa.update()
    resp = api.session.patch(
        url=api.url + f"/api/v1/namespaces/{ns}/serviceaccounts/builder",
        headers={"Content-Type": "application/json-patch+json"},
        data=json.dumps(
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
                {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "x"}]},
            ]
        ),
    )
    assert resp.status_code == 422


def test_audit_log_records_writes(control_plane: ControlPlane, unique: str) -> None:
    name = f"smoke-audit-{unique}"
    control_plane.kubectl("create", "namespace", name)
    time.sleep(0.2)
    assert any(
        e.get("verb") == "create" and (e.get("objectRef") or {}).get("name") == name
        for e in control_plane.audit_events()
    )
