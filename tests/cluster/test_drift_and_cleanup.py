"""Keeping it true: drift is repaired, rotation propagates, what leaves is cleaned up."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

import pykube
import pytest

from tenant_registry.localcluster.harness import OperatorProcess
from tests.cluster.conftest import OPERATOR_ARGS, RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def _password(k8s: Cluster, ns: str, name: str) -> str | None:
    doc = k8s.dockerconfig(ns, f"{name}-pull")
    if doc is None:
        return None
    return str(doc["auths"][f"{name}.example"]["password"])


def test_deleted_copy_is_restored(k8s: Cluster, unique: str) -> None:
    name = f"del-{unique}"
    k8s.onboard(name, [f"{name}-a"])
    uid = k8s.copy(f"{name}-a", f"{name}-pull")["metadata"]["uid"]
    k8s.cp.kubectl("delete", "secret", f"{name}-pull", "-n", f"{name}-a")
    wait_for(
        lambda: (
            (k8s.copy(f"{name}-a", f"{name}-pull") or {}).get("metadata", {}).get("uid")
            not in (None, uid)
        ),
        what="a new copy",
    )


def test_edited_copy_is_restored(k8s: Cluster, unique: str) -> None:
    name = f"edit-{unique}"
    k8s.onboard(name, [f"{name}-a"])
    forged = base64.b64encode(
        json.dumps({"auths": {"evil.example": {"auth": "eDp5"}}}).encode()
    ).decode()
    secret = pykube.Secret.objects(k8s.api, namespace=f"{name}-a").get(name=f"{name}-pull")
    secret.patch({"data": {".dockerconfigjson": forged}})
    wait_for(lambda: _password(k8s, f"{name}-a", name) == "first-password", what="content restored")


def test_removed_entry_is_restored(k8s: Cluster, unique: str) -> None:
    name = f"rm-{unique}"
    k8s.onboard(name, [f"{name}-a"])
    sa = pykube.ServiceAccount.objects(k8s.api, namespace=f"{name}-a").get(name="default")
    sa.patch({"imagePullSecrets": []})
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(f"{name}-a"), what="entry restored")


def test_rotation_reaches_every_namespace(k8s: Cluster, unique: str) -> None:
    name = f"rot-{unique}"
    namespaces = [f"{name}-{i}" for i in range(5)]
    k8s.onboard(name, namespaces)
    before = wait_for(lambda: k8s.status(name).get("contentHash"), what="content hash")
    mark = k8s.audit_mark()
    k8s.credentials(name, username="u", password="second-password")
    for ns in namespaces:
        wait_for(
            lambda ns=ns: _password(k8s, ns, name) == "second-password",
            what=f"rotated copy in {ns}",
        )
    wait_for(
        lambda: k8s.status(name).get("contentHash") not in (None, before),
        what="new content hash in status",
    )
    secret_writes = [
        w for w in k8s.operator_writes(mark) if w["objectRef"]["resource"] == "secrets"
    ]
    assert len(secret_writes) == len(namespaces), "one write per namespace on rotation"
    sa_writes = [
        w for w in k8s.operator_writes(mark) if w["objectRef"]["resource"] == "serviceaccounts"
    ]
    assert sa_writes == [], "rotation does not touch ServiceAccounts"


def test_namespace_relabelled_out_loses_copy_and_entry(k8s: Cluster, unique: str) -> None:
    name = f"out-{unique}"
    k8s.onboard(name, [f"{name}-a", f"{name}-b"])
    k8s.label_namespace(f"{name}-b", tenant=None)
    wait_for(lambda: k8s.copy(f"{name}-b", f"{name}-pull") is None, what="copy removed")
    wait_for(lambda: f"{name}-pull" not in k8s.pull_secrets(f"{name}-b"), what="entry removed")
    assert k8s.copy(f"{name}-a", f"{name}-pull") is not None
    wait_for(lambda: k8s.status(name).get("selectedNamespaces") == 1, what="selected 1")


def test_deleting_the_tenant_removes_everything_it_added(k8s: Cluster, unique: str) -> None:
    name = f"gone-{unique}"
    namespaces = [f"{name}-{i}" for i in range(3)]
    k8s.onboard(name, namespaces)
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="TenantRegistry deleted (finalizer)")
    for ns in namespaces:
        assert k8s.copy(ns, f"{name}-pull") is None
        assert f"{name}-pull" not in k8s.pull_secrets(ns)
        # Never a finalizer on tenant namespaces.
        ns_obj = pykube.Namespace.objects(k8s.api).get(name=ns).obj
        assert not ns_obj["metadata"].get("finalizers")


def test_a_tenant_deleted_while_the_operator_was_down_leaves_nothing_behind(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    """Its finalizer removed by force while no operator ran: the copies go by the garbage
    collector (their ownerReference names a uid no object has), the entries recorded on
    ServiceAccounts are released once the operator has listed every TenantRegistry; a live
    tenant's and the user's entries stay."""
    gone, live = f"orph-{unique}", f"live-{unique}"
    ns = f"{gone}-a"
    k8s.onboard(gone, [ns])
    k8s.tenant_in(live, [ns], server="live.example")
    wait_for(lambda: f"{live}-pull" in k8s.pull_secrets(ns), what="the live tenant's entry")
    sa = pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="default")
    sa.patch({"imagePullSecrets": [*sa.obj["imagePullSecrets"], {"name": "users-own"}]})
    operator.stop()
    try:
        k8s.cp.kubectl("delete", "tenantregistry", gone, "--wait=false")
        k8s.drop_finalizers(gone, what="the TenantRegistry gone")
        wait_for(
            lambda: k8s.copy(ns, f"{gone}-pull") is None,
            what="its copy garbage-collected (no operator runs)",
            timeout=60,
        )
        assert f"{gone}-pull" in k8s.pull_secrets(ns), "the entry is still there"
    finally:
        operator.start()
    wait_for(lambda: f"{gone}-pull" not in k8s.pull_secrets(ns), what="its entry released")
    assert k8s.pull_secrets(ns) == [f"{live}-pull", "users-own"]
    claims = k8s.sa(ns)["metadata"]["annotations"]["registry.tenancy.dev/added-pull-secrets"]
    assert claims == f"{live}/{live}-pull"
    assert k8s.copy(ns, f"{live}-pull") is not None


def _rename(k8s: Cluster, name: str, secret_name: str) -> None:
    k8s.tenant(
        name,
        secret_name=secret_name,
        registries=[registry(f"{name}.example", name)],
        namespaces={"selector": {"matchLabels": {"tenant": name}}},
    )


def test_secret_name_change_moves_copy_and_entry_making_before_breaking(
    k8s: Cluster, unique: str
) -> None:
    name = f"ren-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    mark = k8s.audit_mark()
    _rename(k8s, name, f"{name}-new")
    wait_for(lambda: k8s.pull_secrets(ns) == [f"{name}-new"], what="entry renamed")
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="old copy removed", timeout=40)
    assert k8s.copy(ns, f"{name}-new") is not None
    writes = [
        (w["verb"], w["objectRef"]["resource"], w["objectRef"].get("name"))
        for w in k8s.operator_writes(mark)
        if w["objectRef"].get("namespace") == ns
    ]
    created = writes.index(("create", "secrets", f"{name}-new"))
    deleted = writes.index(("delete", "secrets", f"{name}-pull"))
    assert created < deleted, f"the new copy exists before the old one goes: {writes}"
    patched = [i for i, w in enumerate(writes) if w[1] == "serviceaccounts"]
    assert patched and all(created < i < deleted for i in patched), writes
    # Kept for the grace after the entries moved: annotated with its end, then deleted.
    stamped = writes.index(("patch", "secrets", f"{name}-pull"))
    assert max(patched) < stamped < deleted, writes


def _when(entry: dict[str, object]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(entry["requestReceivedTimestamp"]).replace("Z", "+00:00"))


def test_the_old_copy_outlives_a_restart_within_its_grace_and_goes_after_it(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    """Pods admitted with the old name just before the rename still find their Secret: it
    stays for --rename-grace after the entries moved, and a restart within the grace neither
    loses it (never deleted) nor deletes it before its time."""
    name = f"grace-{unique}"
    ns = f"{name}-a"
    old = f"{name}-pull"
    k8s.onboard(name, [ns])
    operator.stop()
    args = (*OPERATOR_ARGS, "--rename-grace=30")
    own = OperatorProcess(k8s.cp, *args, log_name=f"grace-{unique}-1").start()
    try:
        mark = k8s.audit_mark()
        _rename(k8s, name, f"{name}-new")
        wait_for(lambda: k8s.pull_secrets(ns) == [f"{name}-new"], what="entry renamed")
        annotation = "registry.tenancy.dev/delete-after"
        after = wait_for(
            lambda: (
                (k8s.copy(ns, old) or {}).get("metadata", {}).get("annotations", {}).get(annotation)
            ),
            what="the old copy annotated with its end",
        )
        retiring = wait_for(
            lambda: k8s.status(name).get("retiringSecrets"), what="status lists the old copy"
        )
        assert retiring == [{"name": old, "namespaces": 1, "deleteAfter": after}]
        own.stop()
        assert k8s.copy(ns, old) is not None, "still there while no operator runs"
        own = OperatorProcess(k8s.cp, *args, log_name=f"grace-{unique}-2").start()
        wait_for(lambda: k8s.copy(ns, old) is None, what="the old copy deleted", timeout=90)
        wait_for(lambda: not k8s.status(name).get("retiringSecrets"), what="status clears it")
    finally:
        own.stop()
        operator.start()
    writes = [w for w in k8s.operator_writes(mark) if w["objectRef"].get("namespace") == ns]
    moved = max(_when(w) for w in writes if w["objectRef"]["resource"] == "serviceaccounts")
    (deleted,) = [w for w in writes if w["verb"] == "delete"]
    due = dt.datetime.fromisoformat(after.replace("Z", "+00:00"))
    assert due >= moved.replace(microsecond=0) + dt.timedelta(seconds=30), (after, moved)
    assert _when(deleted) >= due, f"deleted at {deleted['requestReceivedTimestamp']}, due {after}"


def _blocked_rename_reported(k8s: Cluster, name: str, ns: str, reason: str, blocker: str) -> None:
    """The old copy and entry stay, not annotated for deletion, and every place a user looks
    says why: the failure in status, the conditions, an Event on the Secret in the way."""
    old = f"{name}-pull"
    k8s.settle()
    (failure,) = [f for f in k8s.status(name)["failures"] if f["namespace"] == ns]
    assert failure["reason"] == reason
    assert f"secretName {blocker} is blocked" in failure["message"], failure
    assert f"previous Secret {old} and its ServiceAccount entries stay" in failure["message"]
    assert k8s.condition(name, "Ready")["reason"] == "NamespacesFailed"
    assert k8s.condition(name, "Degraded")["reason"] == reason
    events = [
        e
        for e in k8s.namespace_events(ns)
        if e["reason"] == reason and e["involvedObject"].get("name") == blocker
    ]
    assert events and f"previous Secret {old}" in events[0]["message"], events
    copy = k8s.copy(ns, old)
    assert copy is not None, "the old copy stays"
    assert "registry.tenancy.dev/delete-after" not in (copy["metadata"].get("annotations") or {})
    assert not k8s.status(name).get("retiringSecrets")
    assert old in k8s.pull_secrets(ns), "the old entry stays"
    claims = k8s.sa(ns)["metadata"]["annotations"]["registry.tenancy.dev/added-pull-secrets"]
    assert f"{name}/{old}" in claims.split(","), "and stays claimed, so cleanup still removes it"


def test_secret_name_change_blocked_by_an_unmanaged_secret_keeps_the_old_copy_and_entry(
    k8s: Cluster, unique: str
) -> None:
    name = f"blk-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    k8s.secret(ns, f"{name}-new", "Opaque", {"mine": "keep-me"})
    _rename(k8s, name, f"{name}-new")
    wait_for(lambda: k8s.status(name).get("failedNamespaces") == 1, what="the block reported")
    _blocked_rename_reported(k8s, name, ns, "UnmanagedSecretExists", f"{name}-new")
    assert k8s.copy(ns, f"{name}-new")["type"] == "Opaque"
    # A rotation while blocked reaches the old copy, which Pods still use.
    k8s.credentials(name, username="u", password="rotated-while-blocked")
    wait_for(
        lambda: _password(k8s, ns, name) == "rotated-while-blocked", what="old copy kept current"
    )
    assert k8s.pull_secrets(ns) == [f"{name}-pull"]

    k8s.cp.kubectl("delete", "secret", f"{name}-new", "-n", ns)
    wait_for(lambda: k8s.pull_secrets(ns) == [f"{name}-new"], what="moved once free")
    wait_for(
        lambda: k8s.copy(ns, f"{name}-pull") is None, what="old copy removed after", timeout=40
    )
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")


def test_secret_name_change_onto_another_tenants_copy_keeps_the_old_copy_and_entry(
    k8s: Cluster, unique: str
) -> None:
    name, other = f"mov-{unique}", f"occ-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    k8s.tenant_in(other, [ns], server="occ.example", secret_name=f"{name}-taken")
    wait_for(lambda: k8s.copy(ns, f"{name}-taken") is not None, what="the other tenant's copy")
    _rename(k8s, name, f"{name}-taken")
    wait_for(
        lambda: any(
            f.get("reason") == "OwnedByOtherTenant" for f in k8s.status(name).get("failures", [])
        ),
        what="the block reported",
    )
    _blocked_rename_reported(k8s, name, ns, "OwnedByOtherTenant", f"{name}-taken")
    labels = k8s.copy(ns, f"{name}-taken")["metadata"]["labels"]
    assert labels["registry.tenancy.dev/tenant"] == other


def test_concurrent_writer_on_the_same_service_account(k8s: Cluster, unique: str) -> None:
    """Another controller keeps adding its own entries while we onboard: nobody loses one."""
    name = f"race-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.service_account(ns, "shared")
    stop = threading.Event()
    added: list[str] = []

    def other_writer() -> None:
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(k8s.cp.kubeconfig)))
        i = 0
        while not stop.is_set() and i < 40:
            sa = pykube.ServiceAccount.objects(api, namespace=ns).get(name="shared")
            entries = [*(sa.obj.get("imagePullSecrets") or []), {"name": f"theirs-{i}"}]
            sa.obj["imagePullSecrets"] = entries
            try:
                sa.update()  # a PUT with resourceVersion: optimistic, like a controller
                added.append(f"theirs-{i}")
                i += 1
            except pykube.exceptions.HTTPError:
                continue

    writer = threading.Thread(target=other_writer)
    writer.start()
    k8s.tenant_in(name, [ns], server="race.example", serviceAccounts={"names": ["shared"]})
    writer.join(timeout=60)
    stop.set()
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns, "shared"), what="our entry")
    final = k8s.pull_secrets(ns, "shared")
    assert all(a in final for a in added), "the other writer's entries all survive"
    assert final.count(f"{name}-pull") == 1


def test_a_users_secret_wearing_the_copy_labels_is_never_deleted_or_overwritten(
    k8s: Cluster, unique: str
) -> None:
    """Ownership is the ownerReference to the TenantRegistry, not labels anyone can set."""
    name = f"own-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    labels = {"app.kubernetes.io/managed-by": "tenant-registry-operator"}
    labels["registry.tenancy.dev/tenant"] = name
    for secret in ("users-own", f"{name}-pull-b"):
        k8s.secret(
            ns,
            secret,
            "kubernetes.io/dockerconfigjson",
            {".dockerconfigjson": '{"auths":{"mine.example":{}}}'},
            labels=labels,
        )
    # Renamed onto the user's Secret: it is not the tenant's to take.
    k8s.tenant(
        name,
        secret_name=f"{name}-pull-b",
        registries=[registry(f"{name}.example", name)],
        namespaces={"selector": {"matchLabels": {"tenant": name}}},
    )
    wait_for(
        lambda: any(
            f.get("reason") == "UnmanagedSecretExists" for f in k8s.status(name).get("failures", [])
        ),
        what="the user's Secret reported, not taken",
    )
    assert "mine.example" in str(k8s.dockerconfig(ns, f"{name}-pull-b"))
    k8s.label_namespace(ns, tenant=None)  # the namespace leaves the tenant
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="the real copy removed")
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="the tenant gone, finalizer released")
    assert k8s.copy(ns, "users-own") is not None, "the user's Secret is still there"
    assert "mine.example" in str(k8s.dockerconfig(ns, f"{name}-pull-b"))
