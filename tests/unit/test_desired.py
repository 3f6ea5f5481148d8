"""The planner: from the view's records to the writes, for one tenant x namespace."""

from __future__ import annotations

import base64
from dataclasses import replace

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
    TakeOverSecret,
    UpdateCopy,
    copy_patch,
    fight_lost,
    format_time,
    in_place,
    plan_pair,
    tenant_intent,
)
from tenant_registry.view_types import Blocker, CopyInfo, NamespaceInfo, ServiceAccountInfo
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


def blocker(
    type_: str = names.DOCKERCONFIGJSON_TYPE, consent: str = "acme", **kw: object
) -> Blocker:
    return Blocker("acme-web", "acme-pull", "7", type_, consent=consent, **kw)  # type: ignore[arg-type]


FOREIGN = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-cm"}


@pytest.mark.parametrize(
    ("policy", "found", "expected", "why"),
    [
        ("Skip", blocker(), [], "conflictPolicy: Skip"),
        ("Skip", blocker("Opaque"), [], "type Opaque"),
        ("Adopt", blocker(), ["TakeOverSecret", "PatchServiceAccount"], ""),
        ("Adopt", blocker("Opaque"), [], "type Opaque"),  # type is immutable: never
        ("Adopt", blocker(consent=""), [], "registry.tenancy.dev/adopt=acme"),
        ("Adopt", blocker(consent="beta"), [], "registry.tenancy.dev/adopt=acme"),
        ("Adopt", blocker(controller="Deployment/web"), [], "controlled by Deployment/web"),
        ("Adopt", blocker(immutable=True), [], "immutable"),
        # Our own copy whose tenant label was stripped: repaired under either policy.
        (
            "Skip",
            blocker(consent="", managed_by_us=True, owner_uids=("uid-1",)),
            ["TakeOverSecret", "PatchServiceAccount"],
            "",
        ),
        ("Skip", blocker(consent="", managed_by_us=True, owner_uids=("uid-9",)), [], "Skip"),
    ],
)
def test_secret_in_the_way(policy: str, found: Blocker, expected: list[str], why: str) -> None:
    intent = Active(replace(SPEC, conflict_policy=policy), COPY)
    p = plan(intent=intent, blocker=found, sas=[sa()])
    assert kinds(p) == expected
    if expected:
        op = p.operations[0]
        assert isinstance(op, TakeOverSecret) and op.resource_version == "7"
        assert op.adopted != found.managed_by_us
    else:
        assert p.outcome.reason == "UnmanagedSecretExists"
        assert why in p.outcome.message


def test_adoption_and_later_writes_keep_foreign_owner_references() -> None:
    intent = Active(replace(SPEC, conflict_policy="Adopt"), COPY)
    op = plan(intent=intent, blocker=blocker(foreign_owners=(FOREIGN,), other_data_keys=("x",)))
    take = op.operations[0]
    assert isinstance(take, TakeOverSecret)
    patch = copy_patch(take.copy, take.resource_version, take.other_data_keys, take.other_owners)
    assert patch["metadata"]["ownerReferences"][0] == FOREIGN
    assert patch["data"]["x"] is None
    # A rotation of the adopted copy repeats them (a merge patch replaces the list whole).
    adopted = replace(our_copy(data_hash="sha256:old"), foreign_owners=(FOREIGN,))
    (update,) = plan(copies=[adopted]).operations
    assert isinstance(update, UpdateCopy) and update.other_owners == (FOREIGN,)
    patch = copy_patch(update.copy, update.resource_version, other_owners=update.other_owners)
    assert [o["kind"] for o in patch["metadata"]["ownerReferences"]] == [
        "ConfigMap",
        "TenantRegistry",
    ]


def test_a_copy_whose_tenant_label_is_empty_but_owned_by_us_is_repaired() -> None:
    stripped = replace(our_copy(), tenant="")
    (op,) = plan(copies=[stripped]).operations
    assert isinstance(op, UpdateCopy)
    other = replace(our_copy(), tenant="", owner_uids=("uid-9",))
    p = plan(copies=[other])
    assert p.operations == () and p.outcome.reason == "UnmanagedSecretExists"


def test_content_fights_are_counted_and_given_up() -> None:
    edited = our_copy(data_hash="sha256:edited")
    edited = replace(edited, annotated_hash=COPY.content_hash)  # we had written this content
    (op,) = plan(copies=[edited]).operations
    assert isinstance(op, UpdateCopy) and op.restored
    rotation = our_copy(data_hash="sha256:old")  # annotation names the old content: rotation
    (op,) = plan(copies=[rotation]).operations
    assert isinstance(op, UpdateCopy) and not op.restored
    lost = frozenset({("Secret", "acme-pull", "")})
    p = plan(copies=[edited], gave_up=lost)
    assert p.operations == () and p.outcome.reason == "CopyRewrittenRepeatedly"
    # Another writer putting back old content and its annotation: the runtime counted our
    # writes (it clears the count on a rotation), so this is given up on as well.
    p = plan(copies=[rotation], gave_up=lost)
    assert p.operations == () and p.outcome.reason == "CopyRewrittenRepeatedly"


def test_the_tenant_keeping_a_wanted_name_reports_its_rival() -> None:
    p = plan(
        copies=[our_copy()],
        sas=[sa(pulls=("acme-pull",), ours=[("acme", "acme-pull")])],
        rivals=("beta",),
    )
    assert p.operations == ()
    assert p.outcome.reason == "WantedByOtherTenant" and "beta" in p.outcome.message


@pytest.mark.parametrize(
    ("restores", "now", "lost"),
    [
        ((), 100.0, False),
        ((1.0, 2.0), 3.0, False),
        ((1.0, 2.0, 3.0), 4.0, True),
        ((1.0, 2.0, 3.0), 602.0, False),  # the first left the 600 s window
        ((0.0, 1_000_000.0, 2_000_000.0), 2_000_001.0, False),  # weeks apart: no fight
    ],
)
def test_fight_lost_counts_within_the_window(
    restores: tuple[float, ...], now: float, lost: bool
) -> None:
    assert fight_lost(restores, now, 600.0, 3) is lost


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
    lost = frozenset({("ServiceAccount", "default", "")})
    p = plan(copies=[our_copy()], sas=[stripped], gave_up=lost)
    assert p.outcome.reason == "EntryRemovedRepeatedly"
    # Giving up is recorded on the ServiceAccount (one write), so a restart remembers it; the
    # claim goes in the same write: the entry is not held any more.
    (op,) = p.operations
    assert isinstance(op, PatchServiceAccount) and op.contest
    entries_path = f"/metadata/annotations/{names.ANNOTATION_SA_ENTRIES.replace('/', '~1')}"
    contested_path = f"/metadata/annotations/{names.ANNOTATION_SA_CONTESTED.replace('/', '~1')}"
    assert {"op": "add", "path": contested_path, "value": "acme/acme-pull"} in op.patch
    assert {"op": "remove", "path": entries_path} in op.patch
    assert not any(o["path"].startswith("/imagePullSecrets") for o in op.patch)
    remembered = ServiceAccountInfo(
        "acme-web",
        "default",
        "11",
        {},
        (),
        contested=(("acme", "acme-pull"),),
        has_annotations=True,
    )
    p = plan(copies=[our_copy()], sas=[remembered])
    assert p.operations == () and p.outcome.reason == "EntryRemovedRepeatedly"
    # The other manager adding that name itself later: its entry, synced, never claimed.
    theirs = replace(remembered, pull_secrets=("acme-pull",), has_pull_secrets=True)
    p = plan(copies=[our_copy()], sas=[theirs])
    assert p.operations == () and p.outcome.state == "synced"
    # Cleanup drops the record and never the entry it does not hold.
    (op,) = plan(intent=Gone(), sas=[theirs]).operations
    assert {"op": "remove", "path": contested_path} in op.patch
    assert not any(o["path"].startswith("/imagePullSecrets") for o in op.patch)
    # The record deleted by an admin: the entry is added again (a fresh claim, no fight yet).
    (op,) = plan(copies=[our_copy()], sas=[sa()]).operations
    assert isinstance(op, PatchServiceAccount) and not op.restored


def test_an_older_record_holding_both_claim_and_give_up_releases_the_claim() -> None:
    both = ServiceAccountInfo(
        "acme-web",
        "default",
        "11",
        {},
        (),
        (("acme", "acme-pull"),),
        contested=(("acme", "acme-pull"),),
        has_annotations=True,
    )
    (op,) = plan(copies=[our_copy()], sas=[both]).operations
    entries_path = f"/metadata/annotations/{names.ANNOTATION_SA_ENTRIES.replace('/', '~1')}"
    assert {"op": "remove", "path": entries_path} in op.patch


def test_old_secret_name_is_cleaned_up_after_the_new_one_exists() -> None:
    p = plan(
        copies=[our_copy(name="old-pull"), our_copy()],
        sas=[
            sa(pulls=("old-pull", "acme-pull"), ours=[("acme", "old-pull"), ("acme", "acme-pull")])
        ],
    )
    assert kinds(p) == ["PatchServiceAccount", "DeleteCopy"]
    assert {"op": "remove", "path": "/imagePullSecrets/0"} in p.operations[0].patch


def test_renaming_makes_before_it_breaks() -> None:
    renamed = sa(pulls=("old-pull",), ours=[("acme", "old-pull")])
    p = plan(copies=[our_copy(name="old-pull")], sas=[renamed])
    # The executor stops at the first failure: nothing after the create runs without it.
    assert kinds(p) == ["CreateCopy", "PatchServiceAccount", "DeleteCopy"]
    patch = p.operations[1].patch
    assert {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "acme-pull"}} in patch
    assert {"op": "remove", "path": "/imagePullSecrets/0"} in patch


NOW = 1_700_000_000.0


def test_after_a_rename_the_old_copy_is_kept_for_the_grace_its_end_written_on_it() -> None:
    renamed = sa(pulls=("old-pull",), ours=[("acme", "old-pull")])
    old = our_copy(name="old-pull")
    p = plan(copies=[old], sas=[renamed], now=NOW, rename_grace=600)
    assert kinds(p) == ["CreateCopy", "PatchServiceAccount", "UpdateCopy"]
    stamp = p.operations[2]
    assert isinstance(stamp, UpdateCopy) and stamp.copy.secret_name == "old-pull"
    assert stamp.delete_after == format_time(NOW + 600) == "2023-11-14T22:23:20Z"
    annotations = copy_patch(stamp.copy, "5", delete_after=stamp.delete_after)["metadata"][
        "annotations"
    ]
    assert annotations[names.ANNOTATION_DELETE_AFTER] == "2023-11-14T22:23:20Z"

    # Stamped (entries moved): nothing to do until then, and a wake-up at that time; a
    # restarted operator reads the same from the copy.
    moved = sa(pulls=("acme-pull",), ours=[("acme", "acme-pull")])
    kept = replace(old, delete_after=stamp.delete_after)
    p = plan(copies=[kept, our_copy()], sas=[moved], now=NOW + 599, rename_grace=600)
    assert p.operations == () and p.outcome.state == "synced"
    assert p.wake_at == NOW + 600
    # A rotation within the grace reaches it too, the stamp kept.
    rotated = replace(kept, data_hash="sha256:old", annotated_hash="sha256:old")
    p = plan(copies=[rotated, our_copy()], sas=[moved], now=NOW + 1, rename_grace=600)
    (op,) = p.operations
    assert isinstance(op, UpdateCopy) and op.delete_after == stamp.delete_after
    # Due: deleted.
    p = plan(copies=[kept, our_copy()], sas=[moved], now=NOW + 600, rename_grace=600)
    assert kinds(p) == ["DeleteCopy"] and p.wake_at is None
    # Junk in the annotation is no time: stamped again, never deleted early.
    junk = replace(old, delete_after="soon")
    p = plan(copies=[junk, our_copy()], sas=[moved], now=NOW, rename_grace=600)
    assert kinds(p) == ["UpdateCopy"]
    # No grace: deleted at once, as before.
    p = plan(copies=[old], sas=[renamed], now=NOW, rename_grace=0)
    assert kinds(p) == ["CreateCopy", "PatchServiceAccount", "DeleteCopy"]


def test_a_copy_named_again_within_its_grace_loses_its_delete_after() -> None:
    back = replace(our_copy(), delete_after=format_time(NOW))
    entry = sa(pulls=("acme-pull",), ours=[("acme", "acme-pull")])
    p = plan(copies=[back], sas=[entry], now=NOW + 5, rename_grace=600)
    (op,) = p.operations
    assert isinstance(op, UpdateCopy) and op.delete_after == ""
    patch = copy_patch(op.copy, "5", delete_after=op.delete_after)
    assert patch["metadata"]["annotations"][names.ANNOTATION_DELETE_AFTER] is None


@pytest.mark.parametrize(
    ("copies", "found", "reason"),
    [
        ([our_copy(name="old-pull")], blocker("Opaque"), "UnmanagedSecretExists"),
        ([our_copy(name="old-pull"), our_copy(tenant="beta")], None, "OwnedByOtherTenant"),
    ],
)
def test_a_blocked_rename_keeps_the_old_copy_and_entry(
    copies: list[CopyInfo], found: Blocker | None, reason: str
) -> None:
    renamed = sa(pulls=("old-pull",), ours=[("acme", "old-pull")])
    p = plan(copies=copies, sas=[renamed], blocker=found)
    assert p.operations == ()
    assert p.outcome.reason == reason and "old-pull" in p.outcome.message
    # While blocked, a rotation still reaches the old copy, under its own name.
    stale = [replace(c, data_hash="sha256:old", annotated_hash="sha256:old") for c in copies]
    p = plan(copies=stale, sas=[renamed], blocker=found)
    (op,) = [o for o in p.operations if o.copy.secret_name == "old-pull"]  # type: ignore[union-attr]
    assert isinstance(op, UpdateCopy)


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


def _body(name: str = "acme") -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "uid": "u"},
        "spec": {
            "secretName": "x",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "creds"}}],
            "namespaces": {"names": ["a"]},
        },
    }


def test_credentials_nested_too_deeply_are_this_tenants_credentials_invalid() -> None:
    nested = '{"a":' * 2000 + "1" + "}" * 2000
    doc = '{"auths":{"r.example":' + nested + "}}"
    secret = {
        "type": names.DOCKERCONFIGJSON_TYPE,
        "data": {".dockerconfigjson": base64.b64encode(doc.encode()).decode()},
    }
    intent = tenant_intent(_body(), {"creds": secret}, OPNS)
    assert isinstance(intent, Frozen) and intent.reason == "CredentialsInvalid"
    assert "spec.registries[0].credentialsRef" in intent.message
    assert "too deeply" in intent.message


def test_any_failure_reading_a_tenant_is_that_tenants_frozen_intent() -> None:
    class Hostile(dict):  # type: ignore[type-arg]
        def get(self, *_: object) -> object:
            raise MemoryError("boom")

    intent = tenant_intent(_body(), {"creds": Hostile()}, OPNS)
    assert isinstance(intent, Frozen) and intent.reason == "CredentialsInvalid"
    assert "MemoryError" in intent.message and "boom" not in intent.message
    body = _body()
    body["metadata"]["generation"] = "not a number"
    intent = tenant_intent(body, {}, OPNS)
    assert isinstance(intent, Frozen) and intent.reason == "InvalidSpec"


def test_a_name_too_long_for_a_label_value_is_invalid() -> None:
    intent = tenant_intent(_body("x" * 64), {}, OPNS)
    assert isinstance(intent, Frozen) and intent.reason == "InvalidSpec"
    assert "metadata.name" in intent.message


def test_a_namespace_is_in_place_only_with_the_current_content_and_every_entry() -> None:
    copies = {"acme-pull": our_copy()}
    assert in_place(ACTIVE, copies, {"default": sa(pulls=("acme-pull",))})
    assert not in_place(ACTIVE, {}, {}), "no copy"
    old = {"acme-pull": our_copy(data_hash="sha256:old")}
    assert not in_place(ACTIVE, old, {}), "a rotation not written yet"
    assert not in_place(ACTIVE, copies, {"default": sa()}), "an entry missing"
    assert in_place(ACTIVE, copies, {"builder": sa("builder")}), "not a selected ServiceAccount"


def test_a_give_up_wiped_by_a_replace_is_not_written_again_when_held_off() -> None:
    wiped = sa()  # the whole ServiceAccount replaced: entry and both annotations gone
    lost = frozenset({("ServiceAccount", "default", "")})
    (op,) = plan(copies=[our_copy()], sas=[wiped], gave_up=lost).operations
    assert isinstance(op, PatchServiceAccount) and op.contest, "the first time: recorded"
    p = plan(copies=[our_copy()], sas=[wiped], gave_up=lost, held_off=lost)
    assert p.operations == () and p.outcome.reason == "EntryRemovedRepeatedly"
