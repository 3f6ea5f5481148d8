"""The planner: from the view's records to the writes, for one tenant x namespace."""

from __future__ import annotations

import pytest

from tenant_registry import names
from tenant_registry.desired import (
    Active,
    CreateCopy,
    DeleteCopy,
    Frozen,
    Gone,
    PairInput,
    PatchServiceAccount,
    UpdateCopy,
    plan_pair,
    tenant_intent,
)
from tenant_registry.view_types import CopyInfo, NamespaceInfo, ServiceAccountInfo
from tests.unit.samples import ACTIVE, COPY, OPNS, SPEC

NS = NamespaceInfo("acme-web")


def sa(
    name: str = "default",
    pulls: tuple[str, ...] = (),
    ours=(),
    rv: str = "10",
    annotations: bool = False,
) -> ServiceAccountInfo:
    return ServiceAccountInfo(
        "acme-web",
        name,
        rv,
        {},
        pulls,
        tuple(ours),
        has_annotations=annotations or bool(ours),
        has_pull_secrets=bool(pulls),
    )


def our_copy(
    tenant: str = "acme",
    data_hash: str = COPY.content_hash,
    name: str = "acme-pull",
    type_: str = names.DOCKERCONFIGJSON_TYPE,
) -> CopyInfo:
    return CopyInfo("acme-web", name, "5", tenant, type_, data_hash, data_hash, ("uid-1",))


def plan(intent=ACTIVE, ns=NS, copies=(), sas=(), **kw):  # type: ignore[no-untyped-def]
    return plan_pair(intent, PairInput("acme", ns, tuple(copies), tuple(sas), **kw), OPNS)


def kinds(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(o).__name__ for o in p.operations]


def test_onboarding_creates_the_copy_then_patches_the_service_account() -> None:
    p = plan(sas=[sa()])
    assert kinds(p) == ["CreateCopy", "PatchServiceAccount"]
    patch = p.operations[1].patch
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "10"}
    assert {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "acme-pull"}]} in patch
    assert {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {names.ANNOTATION_SA_ENTRIES: "acme/acme-pull"},
    } in patch


def test_converged_pair_plans_nothing() -> None:
    p = plan(copies=[our_copy()], sas=[sa(pulls=("acme-pull",), ours=[("acme", "acme-pull")])])
    assert p.operations == () and p.outcome.state == "synced"


def test_existing_entries_are_appended_to_not_replaced() -> None:
    p = plan(copies=[our_copy()], sas=[sa(pulls=("mine",))])
    assert {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "acme-pull"}} in (
        p.operations[0].patch
    )


def test_drifted_copy_is_updated_and_wrong_type_recreated() -> None:
    assert isinstance(plan(copies=[our_copy(data_hash="sha256:x")]).operations[0], UpdateCopy)
    op = plan(copies=[our_copy(type_="Opaque")]).operations[0]
    assert isinstance(op, UpdateCopy) and op.recreate


def test_copy_of_another_tenant_is_a_conflict_with_no_writes() -> None:
    p = plan(copies=[our_copy(tenant="beta")], sas=[sa()])
    assert p.operations == () and p.outcome.reason == "OwnedByOtherTenant"


@pytest.mark.parametrize(
    ("policy", "secret_type", "expected"),
    [
        ("Skip", names.DOCKERCONFIGJSON_TYPE, []),
        ("Skip", "Opaque", []),
        ("Adopt", names.DOCKERCONFIGJSON_TYPE, ["CreateCopy", "PatchServiceAccount"]),
        ("Adopt", "Opaque", []),  # type is immutable: never delete someone's other data
    ],
)
def test_unmanaged_secret_in_the_way(policy: str, secret_type: str, expected: list[str]) -> None:
    from dataclasses import replace

    intent = Active(replace(SPEC, conflict_policy=policy), COPY)
    p = plan(intent=intent, unmanaged_type=secret_type, sas=[sa()])
    assert kinds(p) == expected
    if expected:
        assert p.operations[0].adopt
    else:
        assert p.outcome.reason == "UnmanagedSecretExists"


def test_namespace_no_longer_selected_removes_only_ours() -> None:
    other_ns = NamespaceInfo("beta-web")
    p = plan(
        ns=other_ns,
        copies=[our_copy()],
        sas=[
            sa(
                pulls=("mine", "acme-pull", "beta-pull"),
                ours=[("acme", "acme-pull"), ("beta", "beta-pull")],
            )
        ],
    )
    assert kinds(p) == ["DeleteCopy", "PatchServiceAccount"]
    patch = p.operations[1].patch
    assert {"op": "remove", "path": "/imagePullSecrets/1"} in patch
    assert {
        "op": "add",
        "path": f"/metadata/annotations/{names.ANNOTATION_SA_ENTRIES.replace('/', '~1')}",
        "value": "beta/beta-pull",
    } in patch


def test_gone_tenant_removes_everything_ours() -> None:
    p = plan(
        intent=Gone(),
        copies=[our_copy(), our_copy(tenant="beta", name="beta-pull")],
        sas=[sa(pulls=("acme-pull",), ours=[("acme", "acme-pull")])],
    )
    assert kinds(p) == ["DeleteCopy", "PatchServiceAccount"]
    assert isinstance(p.operations[0], DeleteCopy) and p.operations[0].name == "acme-pull"


def test_frozen_and_terminating_plan_nothing() -> None:
    assert plan(intent=Frozen("Suspended"), copies=[our_copy(name="x")]).operations == ()
    terminating = NamespaceInfo("acme-web", terminating=True)
    assert plan(ns=terminating, sas=[sa()]).operations == ()


def test_removed_entry_of_ours_is_restored_unless_given_up() -> None:
    stripped = sa(ours=[("acme", "acme-pull")])
    op = plan(copies=[our_copy()], sas=[stripped]).operations[0]
    assert isinstance(op, PatchServiceAccount) and op.restored
    p = plan(copies=[our_copy()], sas=[stripped], gave_up=frozenset({"default"}))
    assert p.outcome.reason == "EntryRemovedRepeatedly"
    # Giving up is recorded on the ServiceAccount (one write), so a restart remembers it.
    (op,) = p.operations
    contested_path = f"/metadata/annotations/{names.ANNOTATION_SA_CONTESTED.replace('/', '~1')}"
    assert {"op": "add", "path": contested_path, "value": "acme/acme-pull"} in op.patch
    assert not any(o["path"].startswith("/imagePullSecrets") for o in op.patch)
    remembered = ServiceAccountInfo(
        "acme-web",
        "default",
        "11",
        {},
        (),
        (("acme", "acme-pull"),),
        contested=(("acme", "acme-pull"),),
        has_annotations=True,
    )
    p = plan(copies=[our_copy()], sas=[remembered])
    assert p.operations == () and p.outcome.reason == "EntryRemovedRepeatedly"
    # Cleanup drops the record too.
    p = plan(intent=Gone(), sas=[remembered])
    assert {"op": "remove", "path": contested_path} in p.operations[0].patch


def test_old_secret_name_is_cleaned_up() -> None:
    p = plan(
        copies=[our_copy(name="old-pull"), our_copy()],
        sas=[
            sa(pulls=("old-pull", "acme-pull"), ours=[("acme", "old-pull"), ("acme", "acme-pull")])
        ],
    )
    assert kinds(p) == ["DeleteCopy", "PatchServiceAccount"]
    assert {"op": "remove", "path": "/imagePullSecrets/0"} in p.operations[1].patch


def test_copy_manifest_carries_labels_hash_and_owner() -> None:
    op = plan().operations[0]
    assert isinstance(op, CreateCopy)
    from tenant_registry.desired import copy_manifest

    m = copy_manifest(op.copy, "acme-web")
    assert m["metadata"]["labels"][names.LABEL_TENANT] == "acme"
    assert m["metadata"]["annotations"][names.ANNOTATION_CONTENT_HASH] == COPY.content_hash
    assert m["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "p" not in repr(op.copy.content).replace("content", "").replace("bytes", "")


def test_intent_of_bad_input_is_frozen_with_the_field() -> None:
    body = {
        "metadata": {"name": "acme"},
        "spec": {
            "secretName": "x",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "missing"}}],
            "namespaces": {"names": ["a"]},
        },
    }
    intent = tenant_intent(body, {}, OPNS)
    assert isinstance(intent, Frozen) and intent.reason == "CredentialsInvalid"
    assert "spec.registries[0].credentialsRef" in intent.message
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert isinstance(tenant_intent(body, {}, OPNS), Gone)
