"""Install, upgrade and uninstall as the README says, with kubectl, on this module's own
control plane (uninstalling the session's cluster would pull it from under the other tests).

Each test installs again (kubectl apply is idempotent) and starts its own operator process,
as its ServiceAccount with deploy/'s RBAC and policy; the Deployment is applied too but never
runs (no nodes), as in the rest of the suite.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.harness import OperatorProcess
from tests.cluster.conftest import OPERATOR_ARGS
from tests.cluster.tenants import Cluster, registry
from tests.planes import own_control_plane
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
CRD = "customresourcedefinition/tenantregistries.registry.tenancy.dev"
OPERATOR_NS = "tenant-registry-system"
PREFIX = "registry.tenancy.dev/"
COPIES = "app.kubernetes.io/managed-by=tenant-registry-operator"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with own_control_plane("lifecycle control plane") as plane:
        yield plane


@pytest.fixture
def k8s(cp: ControlPlane) -> Iterator[Cluster]:
    """Installed as the README says; afterwards, removed again whatever the test left."""
    _install(cp)
    yield Cluster(pykube.HTTPClient(pykube.KubeConfig.from_file(str(cp.kubeconfig))), cp)
    # Whatever the test left (no operator runs now), so the next one starts from nothing.
    cp.kubectl("delete", "-k", str(ROOT / "deploy"), "--ignore-not-found", "--timeout=60s")
    if not _gone(cp, CRD):
        assert _uninstall(cp, "--yes").returncode == 0
    cp.kubectl("delete", "-f", str(ROOT / "examples"), "--ignore-not-found", "--timeout=60s")
    cp.kubectl("delete", "-k", str(ROOT / "crds"), "--ignore-not-found", "--timeout=60s")


_operators = 0


def _start_operator(cp: ControlPlane) -> OperatorProcess:
    global _operators
    _operators += 1
    return OperatorProcess(cp, *OPERATOR_ARGS, log_name=f"lifecycle-{_operators}").start()


def _install(cp: ControlPlane) -> None:
    """README "Install": the CRDs first (wait until served), then the operator, then a tenant."""
    cp.kubectl("apply", "-k", str(ROOT / "crds"))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", CRD)
    cp.kubectl("apply", "-k", str(ROOT / "deploy"))


def _onboard_examples(k8s: Cluster) -> None:
    """examples/ as the README applies it, plus entries of the user's own around ours."""
    k8s.cp.kubectl("apply", "-f", str(ROOT / "examples"))
    for ns in ("acme-web", "acme-batch"):
        wait_for(lambda ns=ns: "acme-pull" in k8s.pull_secrets(ns), what=f"entry in {ns}")
    # A user's entries before and after ours (a JSON Patch, as another tool would write).
    _json_patch(
        k8s,
        "acme-web",
        "default",
        [
            {"op": "add", "path": "/imagePullSecrets/0", "value": {"name": "user-first"}},
            {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "user-last"}},
        ],
    )
    # A ServiceAccount that had an entry and an annotation of its own before the operator's.
    k8s.cp.kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "builder-ci",
                    "namespace": "acme-batch",
                    "annotations": {"example.com/owner": "ci-team"},
                },
                "imagePullSecrets": [{"name": "team-registry"}],
            }
        ),
    )
    wait_for(
        lambda: k8s.pull_secrets("acme-batch", "builder-ci") == ["team-registry", "acme-pull"],
        what="the operator's entry on builder-ci",
    )
    wait_for(lambda: k8s.condition("acme", "Ready").get("status") == "True", what="acme Ready")


USER_ENTRIES = {
    ("acme-web", "default"): ["user-first", "user-last"],
    ("acme-batch", "default"): [],
    ("acme-batch", "builder-ci"): ["team-registry"],
}


def _json_patch(k8s: Cluster, ns: str, sa: str, patch: list[dict[str, object]]) -> None:
    k8s.cp.kubectl("patch", "serviceaccount", sa, "-n", ns, "--type=json", "-p", json.dumps(patch))


def _uninstall(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """`tenant-registry uninstall` with the admin's kubeconfig, as the README says."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tenant_registry.cli",
            "uninstall",
            f"--kubeconfig={cp.kubeconfig}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )


def _copies(cp: ControlPlane) -> list[str]:
    out = cp.kubectl("get", "secrets", "-A", "-l", COPIES, "-o", "name").stdout
    return out.split()


def _gone(cp: ControlPlane, *what: str) -> bool:
    out = cp.kubectl("get", *what, "--ignore-not-found", "-o", "name", check=False)
    return out.returncode == 0 and out.stdout.strip() == ""


def _assert_nothing_of_ours_left(k8s: Cluster) -> None:
    """No copy, no entry of ours, no annotation of ours, the user's entries intact in order."""
    assert _copies(k8s.cp) == []
    for sa in pykube.ServiceAccount.objects(k8s.api, namespace=pykube.all):
        meta = sa.obj["metadata"]
        keys = [k for k in meta.get("annotations") or {} if k.startswith(PREFIX)]
        assert keys == [], f"{meta['namespace']}/{meta['name']}: {keys}"
        entries = [p.get("name") for p in sa.obj.get("imagePullSecrets") or []]
        assert not {"acme-pull", "beta-pull"} & set(entries), f"{meta['name']}: {entries}"
    for (ns, name), entries in USER_ENTRIES.items():
        assert k8s.pull_secrets(ns, name) == entries, (ns, name)
    builder = k8s.sa("acme-batch", "builder-ci") or {}
    assert builder["metadata"]["annotations"] == {"example.com/owner": "ci-team"}


def _assert_the_operator_is_gone(cp: ControlPlane) -> None:
    for what in (
        ("namespace", OPERATOR_NS),
        ("clusterrole", "tenant-registry-operator"),
        ("clusterrolebinding", "tenant-registry-operator"),
        ("validatingadmissionpolicy", "tenant-registry-operator-writes"),
        ("validatingadmissionpolicybinding", "tenant-registry-operator-writes"),
    ):
        assert _gone(cp, *what), what


def _versions(cp: ControlPlane, kustomization: str) -> dict[str, str]:
    """Each object of a kustomization, by kind and name: its resourceVersion."""
    got = json.loads(cp.kubectl("get", "-k", kustomization, "-o", "json").stdout)
    items = got["items"] if got["kind"] == "List" else [got]  # one object comes bare
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in items}


def _delete_crds_promptly(cp: ControlPlane) -> float:
    started = time.monotonic()
    cp.kubectl("delete", "-k", str(ROOT / "crds"), "--timeout=30s")
    took = time.monotonic() - started
    assert _gone(cp, CRD)
    return took


def test_install_as_documented_keeps_the_operator_namespace_restricted(
    cp: ControlPlane, k8s: Cluster
) -> None:
    kustomized = cp.kubectl("kustomize", str(ROOT / "deploy")).stdout
    assert "kind: CustomResourceDefinition" not in kustomized, "the CRD is installed apart"

    cp.kubectl("apply", "-f", str(ROOT / "examples"))

    labels = json.loads(
        cp.kubectl("get", "ns", OPERATOR_NS, "-o", "jsonpath={.metadata.labels}").stdout
    )
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels


def test_upgrade_reapplying_crds_and_deploy_changes_nothing(cp: ControlPlane, k8s: Cluster) -> None:
    """README "Upgrade": apply crds/ then deploy/ again over a working install. (A restart of
    the operator writes nothing either: tests/cluster/test_economy.py counts zero writes.)"""
    op = _start_operator(cp)
    try:
        _onboard_examples(k8s)
        k8s.settle()  # let the last status write and Event land
        mark = k8s.audit_mark()

        for kustomization in ("crds", "deploy"):
            where = str(ROOT / kustomization)
            before = _versions(cp, where)
            # kubectl may say "configured" for the ValidatingAdmissionPolicy: client-side
            # apply re-sends its resourceRules every time; the server stores nothing new.
            cp.kubectl("apply", "-k", where)
            assert _versions(cp, where) == before, "an object was rewritten"
            diff = cp.kubectl("diff", "-k", where, check=False)
            assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr

        time.sleep(2)  # time for the operator to react, if it did
        writes = k8s.operator_writes(mark)
        assert writes == [], [(w["verb"], w["objectRef"]) for w in writes]
    finally:
        op.stop()


def test_uninstall_with_the_operator_running_leaves_nothing_behind(
    cp: ControlPlane, k8s: Cluster
) -> None:
    """README "Uninstall": TenantRegistries first (the operator cleans up), then deploy/,
    then crds/."""
    op = _start_operator(cp)
    try:
        _onboard_examples(k8s)

        cp.kubectl("delete", "treg", "--all", "--timeout=60s")  # waits for the finalizer
        assert _copies(cp) == []
        cp.kubectl("delete", "-k", str(ROOT / "deploy"), "--timeout=60s")
    finally:
        op.stop()  # the Pod goes with the Deployment
    took = _delete_crds_promptly(cp)

    assert took < 15, f"kubectl delete -k crds/ took {took:.1f}s"
    _assert_nothing_of_ours_left(k8s)
    _assert_the_operator_is_gone(cp)


def _as_the_operator_leaves_a_contested_entry(k8s: Cluster) -> None:
    """What the operator records after another writer kept removing its entry: the entry is
    gone, `added-pull-secrets` still names it, `contested-pull-secrets` too."""
    _json_patch(
        k8s,
        "acme-batch",
        "default",
        [
            {"op": "remove", "path": "/imagePullSecrets/0"},
            {
                "op": "add",
                "path": "/metadata/annotations/registry.tenancy.dev~1contested-pull-secrets",
                "value": "acme/acme-pull",
            },
        ],
    )


def _second_tenant_on_acme_web(k8s: Cluster) -> None:
    """Tenant beta: its own copy in acme-web and an entry on the same default
    ServiceAccount, so one ServiceAccount carries two tenants' entries."""
    k8s.tenant(
        "beta",
        secret_name="beta-pull",
        registries=[registry("beta.example", "acme-registry")],
        namespaces={"names": ["acme-web"]},
    )
    wait_for(
        lambda: (
            k8s.pull_secrets("acme-web") == ["user-first", "acme-pull", "user-last", "beta-pull"]
        ),
        what="beta's entry after the user's",
    )


def _state(k8s: Cluster) -> dict[str, object]:
    return {
        "copies": _copies(k8s.cp),
        "entries": {f"{ns}/{sa}": k8s.pull_secrets(ns, sa) for ns, sa in USER_ENTRIES},
        "annotations": {
            f"{ns}/{sa}": (k8s.sa(ns, sa) or {}).get("metadata", {}).get("annotations")
            for ns, sa in USER_ENTRIES
        },
        "finalizers": (k8s.tenant_obj("acme") or {}).get("metadata", {}).get("finalizers"),
    }


def test_uninstall_command_cleans_up_after_the_operator_is_gone(
    cp: ControlPlane, k8s: Cluster
) -> None:
    """README "Uninstall", the operator gone first: `tenant-registry uninstall` removes what
    it wrote, exactly, and releases the finalizer, so deleting the CRD completes."""
    op = _start_operator(cp)
    try:
        _onboard_examples(k8s)
        _second_tenant_on_acme_web(k8s)
    finally:
        op.stop()  # gone: crashlooping, say, or never coming back
    _as_the_operator_leaves_a_contested_entry(k8s)
    before = _state(k8s)
    assert before["finalizers"] == ["registry.tenancy.dev/cleanup"]

    # While its Deployment still wants a replica, the operator could come back and restore
    # everything: the command refuses and writes nothing.
    refused = _uninstall(cp, "--yes")
    assert refused.returncode == 1
    assert "Deployment tenant-registry-system/tenant-registry-operator" in refused.stderr
    assert "Nothing was written" in refused.stderr
    assert _state(k8s) == before

    cp.kubectl("delete", "-k", str(ROOT / "deploy"), "--timeout=60s")

    # Without --yes: what it would do, and nothing written.
    dry = _uninstall(cp)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    for expected in (
        "would delete secret acme-batch/acme-pull",
        "would delete secret acme-web/acme-pull",
        "would delete secret acme-web/beta-pull",
        # Two tenants on one ServiceAccount: one guarded patch each, the second planned on
        # what the first leaves.
        "would patch serviceaccount acme-web/default: remove imagePullSecrets entry acme-pull;"
        " set annotation registry.tenancy.dev/added-pull-secrets=beta/beta-pull",
        "would patch serviceaccount acme-web/default: remove imagePullSecrets entry beta-pull;"
        " remove annotation registry.tenancy.dev/added-pull-secrets",
        "would patch serviceaccount acme-batch/default: remove annotation"
        " registry.tenancy.dev/added-pull-secrets;"
        " remove annotation registry.tenancy.dev/contested-pull-secrets",
        "would patch serviceaccount acme-batch/builder-ci: remove imagePullSecrets entry"
        " acme-pull; remove annotation registry.tenancy.dev/added-pull-secrets",
        "would remove finalizer registry.tenancy.dev/cleanup from tenantregistry acme",
        "would remove finalizer registry.tenancy.dev/cleanup from tenantregistry beta",
    ):
        assert expected in lines, dry.stdout
    assert lines[-1] == "dry run: nothing was written; run again with --yes to do the above"
    assert _state(k8s) == before

    done = _uninstall(cp, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    # The dry run said exactly what was then done.
    assert [f"would {line}" for line in done.stdout.splitlines()[:-1]] == lines[:-1]
    assert (
        done.stdout.splitlines()[-1]
        == f"done: {len(lines) - 1} write(s); nothing of the operator is left"
    )
    _assert_nothing_of_ours_left(k8s)
    for tenant in ("acme", "beta"):
        assert (k8s.tenant_obj(tenant) or {})["metadata"].get("finalizers") is None
    again = _uninstall(cp, "--yes")
    assert again.stdout.splitlines() == [
        "nothing to remove: no copies, entries, annotations or finalizers of the operator"
    ]

    took = _delete_crds_promptly(cp)
    assert took < 15, f"kubectl delete -k crds/ took {took:.1f}s"
    _assert_the_operator_is_gone(cp)


def test_uninstall_command_unsticks_a_crd_deletion_that_waits_for_the_operator(
    cp: ControlPlane, k8s: Cluster
) -> None:
    """The old trap: the operator and the CRD deleted together. The TenantRegistries keep
    their finalizer (only the operator releases it), so the CRD stays Terminating; the
    command cleans up and the deletion completes."""
    op = _start_operator(cp)
    try:
        _onboard_examples(k8s)
    finally:
        op.stop()
    cp.kubectl("delete", "-k", str(ROOT / "deploy"), "--timeout=60s")
    cp.kubectl("delete", "-k", str(ROOT / "crds"), "--wait=false")
    wait_for(
        lambda: (k8s.tenant_obj("acme") or {}).get("metadata", {}).get("deletionTimestamp"),
        what="the TenantRegistry to be deleted with its CRD",
    )
    stuck = k8s.tenant_obj("acme") or {}
    assert stuck["metadata"]["finalizers"] == ["registry.tenancy.dev/cleanup"]
    assert not _gone(cp, CRD)

    done = _uninstall(cp, "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: _gone(cp, CRD), what="the CRD gone", timeout=30)
    _assert_nothing_of_ours_left(k8s)


LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/tenant-registry-operator"


def _stale_lease(cp: ControlPlane, holder: str, renewed_ago: float) -> None:
    """The Lease as a replica leaves it when it dies without releasing it (SIGKILL, a lost
    node): held, its last renewal `renewed_ago` seconds back."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=renewed_ago)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {
        "holderIdentity": holder,
        "leaseDurationSeconds": 10,
        "acquireTime": stamp,
        "renewTime": stamp,
    }
    existing = cp.kubectl("get", "lease", "-n", OPERATOR_NS, "-o", "name", check=False).stdout
    if "tenant-registry-operator" in existing:
        cp.api("DELETE", LEASE)
    cp.api(
        "POST",
        f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases",
        {"metadata": {"name": "tenant-registry-operator"}, "spec": spec},
    )


def test_uninstall_refuses_while_a_replica_holds_the_lease(cp: ControlPlane, k8s: Cluster) -> None:
    """An operator running outside its Deployment (scaled to 0 here; or a Pod whose Deployment
    is gone) would restore what the command removes: the fresh Lease says it is there."""
    cp.kubectl("scale", "deployment/tenant-registry-operator", "-n", OPERATOR_NS, "--replicas=0")
    op = _start_operator(cp)
    try:
        _onboard_examples(k8s)
        before = _state(k8s)
        refused = _uninstall(cp, "--yes")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert (
            f"the leader-election Lease {OPERATOR_NS}/tenant-registry-operator is held by"
            f" {op.pod_name}, renewed " in refused.stderr
        ), refused.stderr
        assert "the operator's Deployment" not in refused.stderr  # it wants no replica
        assert "Nothing was written" in refused.stderr
        assert _state(k8s) == before
        dry = _uninstall(cp)
        assert dry.returncode == 0
        assert dry.stdout.startswith(
            f"note: the leader-election Lease {OPERATOR_NS}/tenant-registry-operator is held by"
        ), dry.stdout
    finally:
        op.stop()  # SIGTERM: it releases the Lease

    leases = json.loads(cp.kubectl("get", "lease", "-n", OPERATOR_NS, "-o", "json").stdout)
    assert not any(lease["spec"].get("holderIdentity") for lease in leases["items"])
    # A holder that died without releasing it is in the way while it might still renew...
    _stale_lease(cp, "tenant-registry-operator-1", renewed_ago=1)
    assert "is held by tenant-registry-operator-1" in _uninstall(cp, "--yes").stderr
    assert _state(k8s) == before
    # ...and not once its Lease has expired.
    _stale_lease(cp, "tenant-registry-operator-killed", renewed_ago=60)
    done = _uninstall(cp, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_nothing_of_ours_left(k8s)
