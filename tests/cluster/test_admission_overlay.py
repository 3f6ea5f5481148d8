"""A kustomize overlay that moves the operator to another namespace keeps the admission policy
working: it matches the ServiceAccount tenant-registry-operator in any namespace.

ValidatingAdmissionPolicies are cluster-scoped, so this runs on a control plane of its own
(the session's keeps the default install).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pykube
import pytest
import yaml

from tenant_registry import names
from tenant_registry.localcluster import ControlPlane
from tests.cluster.as_operator import OPERATOR_SA, AsOperator, assert_denied
from tests.planes import own_control_plane
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
OVERLAY = Path(__file__).parent / "overlays" / "other-namespace"
ELSEWHERE = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["namespace"]
TENANT_NS = "team-a"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    """A control plane with the CRDs and the overlay applied, as an admin would."""
    with own_control_plane("overlay control plane") as cp:
        cp.kubectl("apply", "-k", str(ROOT / "crds"))
        cp.kubectl("apply", "-k", str(OVERLAY))
        cp.kubectl("create", "namespace", TENANT_NS)
        yield cp


@pytest.fixture(scope="module")
def admin(cluster: ControlPlane) -> pykube.HTTPClient:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(cluster.kubeconfig)))


@pytest.fixture(scope="module")
def moved_operator(cluster: ControlPlane, admin: pykube.HTTPClient) -> AsOperator:
    """The overlay's operator identity, once the API server enforces the policies (a new
    policy reaches the admission plugin through an informer, a moment after it is created)."""
    identity = AsOperator(cluster, ELSEWHERE)
    probe = {"metadata": {"name": "probe"}, "type": "Opaque", "data": {}}

    def enforced() -> bool:
        answer = identity.create("secrets", TENANT_NS, probe)
        if answer.code == 201:
            pykube.Secret(
                admin, {**probe, "metadata": {"name": "probe", "namespace": TENANT_NS}}
            ).delete()
        return answer.denied

    wait_for(enforced, what="the admission policy enforced", timeout=30)
    return identity


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_overlay_moves_the_operator(cluster: ControlPlane) -> None:
    sa = cluster.kubectl("get", "serviceaccount", OPERATOR_SA, "-n", ELSEWHERE, "-o", "name")
    assert sa.stdout.strip() == f"serviceaccount/{OPERATOR_SA}"
    subjects = cluster.kubectl(
        "get",
        "clusterrolebinding",
        OPERATOR_SA,
        "-o",
        "jsonpath={.subjects[0].namespace}",
    ).stdout
    assert subjects == ELSEWHERE
    assert ELSEWHERE != names.DEFAULT_OPERATOR_NAMESPACE


def test_the_moved_operator_is_confined_like_the_default_one(
    cluster: ControlPlane, admin: pykube.HTTPClient, moved_operator: AsOperator
) -> None:
    someones = {
        "metadata": {"name": "someones", "namespace": TENANT_NS},
        "type": names.DOCKERCONFIGJSON_TYPE,
        "data": {names.DOCKERCONFIGJSON_KEY: _b64('{"auths":{}}')},
    }
    pykube.Secret(admin, someones).create()
    pykube.ServiceAccount(
        admin,
        {
            "metadata": {
                "name": "app",
                "namespace": TENANT_NS,
                "annotations": {"iam.gke.io/gcp-service-account": "app@example.com"},
            },
            "imagePullSecrets": [{"name": "theirs"}],
        },
    ).create()

    opaque = {"metadata": {"name": "forged"}, "type": "Opaque", "data": {"a": _b64("b")}}
    assert_denied(moved_operator.create("secrets", TENANT_NS, opaque), "only its copies")
    relabel = {
        "metadata": {
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_TENANT: "t"}
        }
    }
    assert_denied(
        moved_operator.merge_patch("secrets", TENANT_NS, "someones", relabel),
        "may change only its copies",
    )
    assert_denied(
        moved_operator.delete("secrets", TENANT_NS, "someones"), "may delete only its copies"
    )
    identity = [
        {
            "op": "replace",
            "path": "/metadata/annotations/iam.gke.io~1gcp-service-account",
            "value": "attacker@example.com",
        }
    ]
    assert_denied(
        moved_operator.json_patch("serviceaccounts", TENANT_NS, "app", identity),
        "changes only the annotations",
    )
    remove_theirs = [{"op": "remove", "path": "/imagePullSecrets/0"}]
    assert_denied(
        moved_operator.json_patch("serviceaccounts", TENANT_NS, "app", remove_theirs),
        "never adds, removes or reorders",
    )
    secret = pykube.Secret.objects(admin, namespace=TENANT_NS).get(name="someones").obj
    assert "labels" not in secret["metadata"]


def test_the_moved_operator_may_still_write_its_copies(moved_operator: AsOperator) -> None:
    """RBAC followed the overlay too: a copy in the shape the operator writes gets through."""
    copy = {
        "metadata": {
            "name": "t-pull",
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_TENANT: "t"},
            "ownerReferences": [
                {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": "t", "uid": "u"}
            ],
        },
        "type": names.DOCKERCONFIGJSON_TYPE,
        "data": {names.DOCKERCONFIGJSON_KEY: _b64('{"auths":{}}')},
    }
    assert moved_operator.create("secrets", TENANT_NS, copy).code == 201
    assert moved_operator.delete("secrets", TENANT_NS, "t-pull").code == 200
