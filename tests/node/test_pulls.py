"""End to end on a real node: a tenant's Pods pull private images through the operator's
Secret, from registries that check a password (docker-registry, htpasswd, bcrypt).

The operator runs as a process with its ServiceAccount (deploy/'s RBAC); the kubelet
(v1.37.2, containerd 1.6) pulls. The tests never write the tenant's pull Secret: only the
credentials Secret in the operator's namespace, as an admin would. The Secrets a test writes
in tenant namespaces are the user's own, which the operator must never break.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tenant_registry import names
from tenant_registry.localcluster.harness import OperatorProcess
from tenant_registry.localcluster.registry import Registry
from tests.node.conftest import SKIP_REASON, Registries
from tests.node.pods import NodeCluster
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON),
]


@pytest.fixture(scope="module")
def k8s(node_cluster: NodeCluster) -> Iterator[NodeCluster]:
    with OperatorProcess(node_cluster.cp, "--log-format=json", log_name="operator"):
        yield node_cluster


def _credentials(k8s: NodeCluster, name: str, registry: Registry) -> None:
    k8s.credentials(name, username=registry.user, password=registry.password)


def _tenant(k8s: NodeCluster, name: str, servers: dict[str, str], **spec: object) -> None:
    """TenantRegistry `name` selecting namespaces labelled tenant=<name>; `servers` maps each
    registry key to its credentials Secret."""
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[
            # Plain HTTP registries named without a scheme: not checked (https).
            {"server": s, "credentialsRef": {"name": c}, "verify": False}
            for s, c in servers.items()
        ],
        namespaces={"selector": {"matchLabels": {"tenant": name}}},
        **spec,
    )


def _content_hash(k8s: NodeCluster, namespace: str, name: str) -> str:
    copy = k8s.copy(namespace, name) or {}
    return str(
        (copy.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_CONTENT_HASH)
    )


def _entry(k8s: NodeCluster, namespace: str, secret: str, sa: str = "default") -> None:
    wait_for(
        lambda: secret in k8s.pull_secrets(namespace, sa), what=f"{secret} on {namespace}/{sa}"
    )


def test_pods_pull_through_the_operators_secret_once_the_tenant_exists(
    k8s: NodeCluster, registries: Registries, unique: str, measured: dict[str, str]
) -> None:
    tenant, acme, own = f"acme-{unique}", registries["acme"], registries["own"]
    web = f"{tenant}-web"
    private = registries.image("acme", f"acme/web-{unique}:v1")
    own_image = registries.image("own", f"own/tool-{unique}:v1")

    # Given a tenant namespace whose user pulls from their own registry with their own entry
    k8s.namespace(web, tenant=tenant)
    k8s.wait_default_sa(web)
    k8s.user_pull_secret(web, "own-cred", own.host, own.user, own.password)
    k8s.add_user_entry(web, "own-cred")
    k8s.pod(web, "own-before", own_image)
    k8s.wait_running(web, "own-before")

    # Before the tenant exists, a Pod of the private image fails with the registry's 401
    k8s.pod(web, "before", private)
    k8s.assert_unauthorized(web, "before")

    # When the admin applies the credentials and the TenantRegistry
    _credentials(k8s, tenant, acme)
    applied = time.monotonic()
    _tenant(k8s, tenant, {acme.host: tenant}, serviceAccounts={"names": ["default", "builder"]})
    _entry(k8s, web, f"{tenant}-pull")
    entry_at = time.monotonic()

    # Then a new Pod pulls through the operator's Secret, next to the user's entry
    k8s.pod(web, "after", private)
    k8s.wait_running(web, "after")
    pulled = time.monotonic() - applied
    measured["apply → SA entry"] = f"{entry_at - applied:.2f} s"
    measured["apply → first private Pod running"] = f"{pulled:.2f} s"
    assert [s["name"] for s in k8s.pod_obj(web, "after")["spec"]["imagePullSecrets"]] == [
        "own-cred",
        f"{tenant}-pull",
    ]
    assert k8s.node.container_log(web, "after", "app") == "hello from after\n"
    assert (f"acme/web-{unique}", True) in acme.manifest_requests()
    # The Pod created before keeps failing: admission fixed its pull secrets at creation.
    assert k8s.container_state(web, "before")["waiting"]["reason"] in (
        "ErrImagePull",
        "ImagePullBackOff",
    )
    assert [s["name"] for s in k8s.pod_obj(web, "before")["spec"]["imagePullSecrets"]] == [
        "own-cred"
    ]

    # A namespace created later pulls as soon as the operator gave it the entry
    later = f"{tenant}-later"
    created = time.monotonic()
    k8s.namespace(later, tenant=tenant)
    _entry(k8s, later, f"{tenant}-pull")
    k8s.pod(later, "app", private)
    k8s.wait_running(later, "app")
    measured["namespace created → Pod running"] = f"{time.monotonic() - created:.2f} s"

    # A ServiceAccount the tenant selects (builder) pulls; one it does not select does not
    k8s.service_account(web, "builder")
    k8s.service_account(web, "unselected")
    _entry(k8s, web, f"{tenant}-pull", sa="builder")
    k8s.pod(web, "as-builder", private, service_account="builder")
    k8s.wait_running(web, "as-builder")
    k8s.pod(web, "as-unselected", private, service_account="unselected")
    k8s.assert_unauthorized(web, "as-unselected")

    # The user's own entry kept working all along
    k8s.pod(web, "own-after", own_image)
    k8s.wait_running(web, "own-after")
    k8s.delete_tenant(tenant)


def test_rotation_new_pulls_fail_until_the_credentials_secret_is_updated(
    k8s: NodeCluster, registries: Registries, unique: str, measured: dict[str, str]
) -> None:
    tenant, rot = f"rot-{unique}", registries["rot"]
    ns = f"{tenant}-a"
    image = registries.image("rot", f"rot/app-{unique}:v1")
    k8s.namespace(ns, tenant=tenant)
    _credentials(k8s, tenant, rot)
    _tenant(k8s, tenant, {rot.host: tenant})
    _entry(k8s, ns, f"{tenant}-pull")
    k8s.pod(ns, "first", image)
    k8s.wait_running(ns, "first")

    # When the registry's password changes, every new pull with the old one fails
    rot.change_password(f"rot-pw-{unique}")
    k8s.pod(ns, "always", image, policy="Always")
    k8s.assert_unauthorized(ns, "always")
    # ...but the image is on the node, and the kubelet (KubeletEnsureSecretPulledImages)
    # accepts a Pod with IfNotPresent whose pull Secret is the one that pulled it before:
    # its record matches the Secret's namespace, name and uid. It does not ask the registry.
    asked = len(rot.manifest_requests())
    k8s.pod(ns, "cached", image, policy="IfNotPresent")
    k8s.wait_running(ns, "cached")
    assert len(rot.manifest_requests()) == asked

    # When the admin updates the credentials Secret, the copy follows and new pulls work again
    before = _content_hash(k8s, ns, f"{tenant}-pull")
    updated = time.monotonic()
    k8s.credentials(tenant, username=rot.user, password=rot.password)
    wait_for(lambda: _content_hash(k8s, ns, f"{tenant}-pull") != before, what="the copy rotated")
    rotated = time.monotonic() - updated
    k8s.pod(ns, "after-update", image, policy="Always")
    k8s.wait_running(ns, "after-update")
    measured["credentials updated → copy rotated"] = f"{rotated:.2f} s"
    measured["credentials updated → new pull running"] = f"{time.monotonic() - updated:.2f} s"
    assert rot.manifest_requests()[-1] == (f"rot/app-{unique}", True)
    k8s.delete_tenant(tenant)


def test_a_namespace_that_leaves_and_a_deleted_tenant_lose_their_pulls_not_the_users(
    k8s: NodeCluster, registries: Registries, unique: str
) -> None:
    tenant, acme, own = f"gone-{unique}", registries["acme"], registries["own"]
    leaving, staying = f"{tenant}-leaving", f"{tenant}-staying"
    private = registries.image("acme", f"acme/gone-{unique}:v1")
    own_image = registries.image("own", f"own/gone-{unique}:v1")
    for ns in (leaving, staying):
        k8s.namespace(ns, tenant=tenant)
        k8s.wait_default_sa(ns)
        k8s.user_pull_secret(ns, "own-cred", own.host, own.user, own.password)
        k8s.add_user_entry(ns, "own-cred")
    _credentials(k8s, tenant, acme)
    _tenant(k8s, tenant, {acme.host: tenant})
    for ns in (leaving, staying):
        _entry(k8s, ns, f"{tenant}-pull")
        k8s.pod(ns, "while-member", private)
        k8s.wait_running(ns, "while-member")

    # When a namespace is relabelled out of the tenant, its new Pods cannot pull: the image is
    # on the node, but the kubelet pulled it with a Secret this Pod no longer has, so it asks
    # the registry again, even with IfNotPresent, and gets the 401
    k8s.label_namespace(leaving, tenant="someone-else")
    _left(k8s, leaving, tenant)
    k8s.pod(leaving, "after-leaving", private, policy="IfNotPresent")
    k8s.assert_unauthorized(leaving, "after-leaving")
    k8s.pod(leaving, "own-after-leaving", own_image)
    k8s.wait_running(leaving, "own-after-leaving")

    # When the TenantRegistry is deleted, the same for the namespace that stayed
    k8s.delete_tenant(tenant)
    _left(k8s, staying, tenant)
    k8s.pod(staying, "after-delete", private, policy="IfNotPresent")
    k8s.assert_unauthorized(staying, "after-delete")
    k8s.pod(staying, "own-after-delete", own_image)
    k8s.wait_running(staying, "own-after-delete")


def test_two_registries_merged_in_one_secret_both_pull(
    k8s: NodeCluster, registries: Registries, unique: str
) -> None:
    tenant, acme, beta = f"two-{unique}", registries["acme"], registries["beta"]
    ns = f"{tenant}-a"
    from_acme = registries.image("acme", f"acme/two-{unique}:v1")
    from_beta = registries.image("beta", f"beta/two-{unique}:v1")
    k8s.namespace(ns, tenant=tenant)
    _credentials(k8s, f"{tenant}-acme", acme)
    _credentials(k8s, f"{tenant}-beta", beta)
    _tenant(k8s, tenant, {acme.host: f"{tenant}-acme", beta.host: f"{tenant}-beta"})
    _entry(k8s, ns, f"{tenant}-pull")
    assert set(k8s.dockerconfig(ns, f"{tenant}-pull")["auths"]) == {acme.host, beta.host}  # type: ignore[index]

    k8s.pod(ns, "from-acme", from_acme)
    k8s.pod(ns, "from-beta", from_beta)
    k8s.wait_running(ns, "from-acme")
    k8s.wait_running(ns, "from-beta")
    assert (f"beta/two-{unique}", True) in beta.manifest_requests()
    k8s.delete_tenant(tenant)


def _left(k8s: NodeCluster, namespace: str, tenant: str) -> None:
    """Until the operator removed what it added there, and only that."""
    wait_for(
        lambda: (
            k8s.copy(namespace, f"{tenant}-pull") is None
            and k8s.pull_secrets(namespace) == ["own-cred"]
        ),
        what=f"the copy and the entry gone from {namespace}",
    )


def _explain(image: str, server: str) -> bool:
    """Whether `tenant-registry explain` says a key serves the image."""
    proc = subprocess.run(
        [sys.executable, "-m", "tenant_registry.cli", "explain", image, server],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def test_a_registry_key_with_a_path_serves_the_images_under_it(
    k8s: NodeCluster, registries: Registries, unique: str
) -> None:
    tenant, acme = f"path-{unique}", registries["acme"]
    ns = f"{tenant}-a"
    key = f"{acme.host}/team-{unique}"
    under = registries.image("acme", f"team-{unique}/app:v1")
    deeper = registries.image("acme", f"team-{unique}/sub/app:v1")
    beside = registries.image("acme", f"other-{unique}/app:v1")
    k8s.namespace(ns, tenant=tenant)
    _credentials(k8s, tenant, acme)
    _tenant(k8s, tenant, {key: tenant})
    _entry(k8s, ns, f"{tenant}-pull")

    # The kubelet sends the key's credentials for images under its path, and none elsewhere
    k8s.pod(ns, "under", under)
    k8s.pod(ns, "deeper", deeper)
    k8s.pod(ns, "beside", beside)
    k8s.wait_running(ns, "under")
    k8s.wait_running(ns, "deeper")
    k8s.assert_unauthorized(ns, "beside")
    # ...and `tenant-registry explain` says the same for each
    assert _explain(under, key) and _explain(deeper, key)
    assert not _explain(beside, key)

    k8s.delete_tenant(tenant)


def test_the_kubelet_matches_a_key_path_as_a_plain_prefix(
    k8s: NodeCluster, registries: Registries, unique: str
) -> None:
    """The kubelet's URLsMatch compares paths as strings: key `.../team-X` also serves
    `.../team-Xy/app`; `explain` says the same (it ports the kubelet's keyring)."""
    tenant, acme = f"quirk-{unique}", registries["acme"]
    ns = f"{tenant}-a"
    key = f"{acme.host}/team-{unique}"
    quirk = registries.image("acme", f"team-{unique}y/app:v1")
    k8s.namespace(ns, tenant=tenant)
    _credentials(k8s, tenant, acme)
    _tenant(k8s, tenant, {key: tenant})
    _entry(k8s, ns, f"{tenant}-pull")
    k8s.pod(ns, "prefix-quirk", quirk)
    k8s.wait_running(ns, "prefix-quirk")
    k8s.delete_tenant(tenant)
    assert _explain(quirk, key), "explain disagrees with what the kubelet did"
