"""What a tenant wants in one namespace, and the writes that get there from what exists.

Pure: `plan_pair` takes the tenant's intent and the view's records for one namespace and
returns the operations to run plus the namespace's outcome. Running the returned operations
and planning again yields no operations (level-triggered, idempotent).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from tenant_registry import dockerconfig, names
from tenant_registry.selection import namespace_selected, service_account_selected
from tenant_registry.spec import (
    Credentials,
    FieldError,
    InvalidInput,
    TenantSpec,
    parse_credentials,
    parse_tenant,
)
from tenant_registry.view_types import (
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    format_entries_annotation,
)


class Content:
    """The generated .dockerconfigjson bytes; never shown by repr/str."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def reveal(self) -> bytes:
        return self._data

    def __repr__(self) -> str:
        return f"<content {len(self._data)} bytes>"

    __str__ = __repr__


@dataclass(frozen=True)
class DesiredCopy:
    tenant: str
    tenant_uid: str
    secret_name: str
    content: Content = field(compare=False)
    content_hash: str


def desired_copy(spec: TenantSpec, credentials: list[tuple[str, Credentials]]) -> DesiredCopy:
    """Build the tenant's Secret content; too large for a Secret is a spec error."""
    data = dockerconfig.build(credentials)
    if len(data) > names.SECRET_MAX_BYTES:
        raise InvalidInput(
            [
                FieldError(
                    "spec.registries",
                    f"the generated Secret would hold {len(data)} bytes, over the 1 MiB limit",
                )
            ]
        )
    return DesiredCopy(
        tenant=spec.name,
        tenant_uid=spec.uid,
        secret_name=spec.secret_name,
        content=Content(data),
        content_hash=dockerconfig.content_hash(data),
    )


def owner_reference(copy: DesiredCopy) -> dict[str, Any]:
    # No blockOwnerDeletion: it would need update rights on the owner's finalizers.
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": copy.tenant,
        "uid": copy.tenant_uid,
    }


def copy_labels(tenant: str) -> dict[str, str]:
    return {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, names.LABEL_TENANT: tenant}


def copy_manifest(copy: DesiredCopy, namespace: str) -> dict[str, Any]:
    """The full Secret to create in a tenant namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": names.DOCKERCONFIGJSON_TYPE,
        "metadata": {
            "name": copy.secret_name,
            "namespace": namespace,
            "labels": copy_labels(copy.tenant),
            "annotations": {names.ANNOTATION_CONTENT_HASH: copy.content_hash},
            "ownerReferences": [owner_reference(copy)],
        },
        "data": {names.DOCKERCONFIGJSON_KEY: base64.b64encode(copy.content.reveal()).decode()},
    }


def copy_patch(
    copy: DesiredCopy,
    resource_version: str,
    other_data_keys: tuple[str, ...] = (),
    other_owners: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """A merge patch bringing an existing Secret to the desired copy, guarded by its version."""
    data: dict[str, Any] = {k: None for k in other_data_keys}
    data[names.DOCKERCONFIGJSON_KEY] = base64.b64encode(copy.content.reveal()).decode()
    return {
        "metadata": {
            "resourceVersion": resource_version,  # a stale version gets 409, not an overwrite
            "labels": copy_labels(copy.tenant),
            "annotations": {names.ANNOTATION_CONTENT_HASH: copy.content_hash},
            "ownerReferences": [*other_owners, owner_reference(copy)],
        },
        "data": data,
    }


# -- operations --------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateCopy:
    namespace: str
    copy: DesiredCopy
    adopt: bool  # on AlreadyExists of an unmanaged Secret: take it over (conflictPolicy Adopt)


@dataclass(frozen=True)
class UpdateCopy:
    namespace: str
    resource_version: str
    copy: DesiredCopy
    recreate: bool  # the type differs; Secret.type is immutable, so delete and create


@dataclass(frozen=True)
class DeleteCopy:
    namespace: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class PatchServiceAccount:
    """One guarded JSON Patch adding and/or removing our imagePullSecrets entries."""

    namespace: str
    name: str
    patch: tuple[dict[str, Any], ...]
    restored: bool = False  # re-adds an entry of ours that someone removed


Operation = CreateCopy | UpdateCopy | DeleteCopy | PatchServiceAccount


@dataclass(frozen=True)
class Outcome:
    state: str  # "synced" | "failed" | "skipped" | "absent"
    reason: str = ""
    message: str = ""
    # The tenant-namespace object a failure is about ("Secret", name), for an Event there.
    subject_kind: str = ""
    subject_name: str = ""


SYNCED = Outcome("synced")
ABSENT = Outcome("absent")


@dataclass(frozen=True)
class PairPlan:
    operations: tuple[Operation, ...]
    outcome: Outcome


# -- intents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    spec: TenantSpec
    copy: DesiredCopy


@dataclass(frozen=True)
class Frozen:
    """Invalid input or suspended: write nothing, delete nothing."""

    reason: str  # "InvalidSpec" | "CredentialsInvalid" | "Suspended"
    message: str = ""
    credentials_resolved: bool = False


@dataclass(frozen=True)
class Gone:
    """Deleted (or finalizing): remove everything ours."""


Intent = Active | Frozen | Gone


@dataclass(frozen=True)
class PairInput:
    tenant: str
    namespace: NamespaceInfo | None
    copies: tuple[CopyInfo, ...]
    service_accounts: tuple[ServiceAccountInfo, ...]
    # The type of an unmanaged Secret known to hold our name ("" if none is known).
    unmanaged_type: str = ""
    gave_up: frozenset[str] = frozenset()  # SAs where another writer keeps removing our entry


def plan_pair(intent: Intent, pair: PairInput, operator_namespace: str) -> PairPlan:
    """The writes that bring one (tenant, namespace) pair to what the tenant wants."""
    if isinstance(intent, Frozen):
        return PairPlan((), Outcome("skipped", intent.reason, intent.message))
    ns = pair.namespace
    if ns is not None and ns.terminating:
        # A terminating namespace rejects creates and is about to lose everything anyway.
        return PairPlan((), Outcome("skipped", "NamespaceTerminating", ""))
    selected = (
        isinstance(intent, Active)
        and ns is not None
        and namespace_selected(intent.spec.namespaces, ns.name, ns.labels, operator_namespace)
    )
    if not isinstance(intent, Active) or not selected:
        return PairPlan(tuple(_remove_all(pair)), ABSENT)
    return _converge(intent, pair)


def _ours(pair: PairInput) -> list[CopyInfo]:
    return [c for c in pair.copies if c.tenant == pair.tenant]


def _remove_all(pair: PairInput) -> list[Operation]:
    ops: list[Operation] = [
        DeleteCopy(c.namespace, c.name, c.resource_version) for c in _ours(pair)
    ]
    for sa in pair.service_accounts:
        drop = {p for p in (*sa.ours, *sa.contested) if p[0] == pair.tenant}
        if drop:
            ops.append(_sa_patch(sa, add=None, drop=drop))
    return ops


def _converge(intent: Active, pair: PairInput) -> PairPlan:
    spec, want = intent.spec, intent.copy
    ops: list[Operation] = []
    failures: list[Outcome] = []

    # Our copies under an old secretName go (the name was changed in the spec).
    for c in _ours(pair):
        if c.name != spec.secret_name:
            ops.append(DeleteCopy(c.namespace, c.name, c.resource_version))

    existing = next((c for c in pair.copies if c.name == spec.secret_name), None)
    copy_ok = True
    if existing is not None and existing.tenant != spec.name:
        copy_ok = False
        failures.append(
            Outcome(
                "failed",
                "OwnedByOtherTenant",
                f"Secret {spec.secret_name} is managed by TenantRegistry {existing.tenant}",
                "Secret",
                spec.secret_name,
            )
        )
    elif existing is not None:
        if (
            existing.data_hash != want.content_hash
            or existing.annotated_hash != want.content_hash
            or existing.secret_type != names.DOCKERCONFIGJSON_TYPE
            or spec.uid not in existing.owner_uids
        ):
            ops.append(
                UpdateCopy(
                    existing.namespace,
                    existing.resource_version,
                    want,
                    recreate=existing.secret_type != names.DOCKERCONFIGJSON_TYPE,
                )
            )
    elif pair.unmanaged_type and spec.conflict_policy == "Skip":
        copy_ok = False
        failures.append(
            Outcome(
                "failed",
                "UnmanagedSecretExists",
                f"Secret {spec.secret_name} exists and is not managed by the operator "
                "(conflictPolicy: Skip leaves it untouched)",
                "Secret",
                spec.secret_name,
            )
        )
    elif pair.unmanaged_type and pair.unmanaged_type != names.DOCKERCONFIGJSON_TYPE:
        # Secret.type is immutable: adopting would mean deleting someone's other data.
        copy_ok = False
        failures.append(
            Outcome(
                "failed",
                "UnmanagedSecretExists",
                f"Secret {spec.secret_name} exists with type {pair.unmanaged_type}; only a "
                f"{names.DOCKERCONFIGJSON_TYPE} Secret can be adopted",
                "Secret",
                spec.secret_name,
            )
        )
    else:
        assert pair.namespace is not None
        ops.append(CreateCopy(pair.namespace.name, want, adopt=spec.conflict_policy == "Adopt"))

    for sa in pair.service_accounts:
        ours_here = {p for p in sa.ours if p[0] == spec.name}
        stale = {p for p in ours_here if p[1] != spec.secret_name}
        wanted = service_account_selected(spec.service_accounts, sa.name, sa.labels)
        add = None
        entry = (spec.name, spec.secret_name)
        contest = None
        if wanted and copy_ok and spec.secret_name not in sa.pull_secrets:
            if entry in sa.contested or sa.name in pair.gave_up:
                # Recorded on the SA itself, so a restart does not start the fight again.
                contest = None if entry in sa.contested else entry
                failures.append(
                    Outcome(
                        "failed",
                        "EntryRemovedRepeatedly",
                        f"ServiceAccount {sa.name}: another writer keeps removing imagePullSecrets "
                        f"entry {spec.secret_name}; the operator stopped re-adding it",
                        "ServiceAccount",
                        sa.name,
                    )
                )
            else:
                add = spec.secret_name
        if not wanted:
            stale |= {p for p in ours_here if p[1] == spec.secret_name}
        if add or stale or contest:
            restored = add is not None and (spec.name, add) in sa.ours
            ops.append(
                _sa_patch(
                    sa, add=add, drop=stale, tenant=spec.name, restored=restored, contest=contest
                )
            )

    outcome = failures[0] if failures else SYNCED
    return PairPlan(tuple(ops), outcome)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _sa_patch(
    sa: ServiceAccountInfo,
    *,
    add: str | None,
    drop: set[tuple[str, str]],
    tenant: str = "",
    restored: bool = False,
    contest: tuple[str, str] | None = None,
) -> PatchServiceAccount:
    # imagePullSecrets is an atomic list: merge and strategic merge patches replace it whole,
    # so entries are added and removed by index in a JSON Patch guarded by resourceVersion.
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": sa.resource_version}
    ]
    drop_names = {name for _, name in drop}
    still_claimed = {name for t, name in sa.ours if (t, name) not in drop}
    # Remove our one entry per name (the last), never the user's; by index, highest first.
    last = {name: i for i, name in enumerate(sa.pull_secrets)}
    indices = sorted(
        (last[name] for name in drop_names - still_claimed if name in last), reverse=True
    )
    ops += [{"op": "remove", "path": f"/imagePullSecrets/{i}"} for i in indices]
    ours = set(sa.ours) - drop
    if add is not None:
        if sa.has_pull_secrets:
            ops.append({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": add}})
        else:
            ops.append({"op": "add", "path": "/imagePullSecrets", "value": [{"name": add}]})
        ours.add((tenant, add))
    contested = (set(sa.contested) - drop) | ({contest} if contest else set())
    has_annotations = sa.has_annotations
    for key, before, after in (
        (names.ANNOTATION_SA_ENTRIES, set(sa.ours), ours),
        (names.ANNOTATION_SA_CONTESTED, set(sa.contested), contested),
    ):
        if before == after:
            continue
        value = format_entries_annotation(tuple(after))
        if not value:
            ops.append({"op": "remove", "path": f"/metadata/annotations/{_escape(key)}"})
        elif has_annotations:
            ops.append(
                {"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value}
            )
        else:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {key: value}})
            has_annotations = True
    return PatchServiceAccount(sa.namespace, sa.name, tuple(ops), restored=restored)


def tenant_intent(
    body: dict[str, Any],
    credential_secrets: dict[str, dict[str, Any]],
    operator_namespace: str,
) -> Intent:
    """What a TenantRegistry object asks for, given the credential Secrets that exist."""

    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Gone()
    try:
        spec = parse_tenant(body, operator_namespace)
    except InvalidInput as e:
        return Frozen("InvalidSpec", str(e))
    try:
        creds = [
            (
                r.server,
                parse_credentials(
                    credential_secrets.get(r.credentials_ref.name), r, f"spec.registries[{i}]"
                ),
            )
            for i, r in enumerate(spec.registries)
        ]
        copy = desired_copy(spec, creds)
    except InvalidInput as e:
        return Frozen("CredentialsInvalid", str(e))
    if spec.suspend:
        return Frozen(
            "Suspended",
            "spec.suspend is true: nothing is written or removed",
            credentials_resolved=True,
        )
    return Active(spec, copy)
