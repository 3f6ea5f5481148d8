"""What a tenant wants in one namespace, and the writes that get there from what exists.

Pure: `plan_pair` takes the tenant's intent and the view's records for one namespace and
returns the operations to run plus the namespace's outcome. Running the returned operations
and planning again yields no operations (level-triggered, idempotent).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field, replace
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
    Blocker,
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


def copy_manifest(
    copy: DesiredCopy, namespace: str, other_owners: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
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
            "ownerReferences": [*other_owners, owner_reference(copy)],
        },
        "data": {names.DOCKERCONFIGJSON_KEY: base64.b64encode(copy.content.reveal()).decode()},
    }


def copy_patch(
    copy: DesiredCopy,
    resource_version: str,
    other_data_keys: tuple[str, ...] = (),
    other_owners: tuple[dict[str, Any], ...] = (),
    delete_after: str = "",
) -> dict[str, Any]:
    """A merge patch bringing an existing Secret to the desired copy, guarded by its version.
    A merge patch replaces lists whole: the ownerReferences others put there are repeated.
    `delete_after`: set on a copy under a previous secretName; "" removes it (current name)."""
    data: dict[str, Any] = {k: None for k in other_data_keys}
    data[names.DOCKERCONFIGJSON_KEY] = base64.b64encode(copy.content.reveal()).decode()
    return {
        "metadata": {
            "resourceVersion": resource_version,  # a stale version gets 409, not an overwrite
            "labels": copy_labels(copy.tenant),
            "annotations": {
                names.ANNOTATION_CONTENT_HASH: copy.content_hash,
                names.ANNOTATION_DELETE_AFTER: delete_after or None,
            },
            "ownerReferences": [*other_owners, owner_reference(copy)],
        },
        "data": data,
    }


# -- operations --------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateCopy:
    """Create the copy. AlreadyExists means a Secret the view does not show holds the name:
    the runtime reads it, and the planner decides with that `Blocker`."""

    namespace: str
    copy: DesiredCopy


@dataclass(frozen=True)
class UpdateCopy:
    namespace: str
    resource_version: str
    copy: DesiredCopy
    recreate: bool = False  # the type differs; Secret.type is immutable, so delete and create
    other_owners: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    restored: bool = False  # undoes another writer's change to content we had written
    # A copy under a previous secretName: when it may go (names.ANNOTATION_DELETE_AFTER).
    delete_after: str = ""


@dataclass(frozen=True)
class TakeOverSecret:
    """Patch a Secret the view does not show into our copy: adopt one whose owner consents
    (conflictPolicy Adopt), or repair our own copy whose tenant label was stripped."""

    namespace: str
    resource_version: str
    copy: DesiredCopy
    other_data_keys: tuple[str, ...] = ()
    other_owners: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    adopted: bool = True  # False: it was ours already (no Adopted Event)


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
    contest: bool = False  # records that we gave up on an entry (and releases its claim)
    uid: str = ""  # the ServiceAccount's: what a fight over its entry is counted on
    added: bool = False  # adds the tenant's entry
    released: bool = False  # removes (or stops claiming) an entry of the tenant


Operation = CreateCopy | UpdateCopy | TakeOverSecret | DeleteCopy | PatchServiceAccount


def written_object(op: Operation) -> tuple[str, str]:
    """The (namespace, name) of the object an operation writes."""
    if isinstance(op, CreateCopy | UpdateCopy | TakeOverSecret):
        return op.namespace, op.copy.secret_name
    return op.namespace, op.name


def written_resource(op: Operation) -> str:
    """The API resource an operation writes."""
    return "serviceaccounts" if isinstance(op, PatchServiceAccount) else "secrets"


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
    # Plan again at this time (epoch seconds): a copy under a previous name is due to go.
    wake_at: float | None = None


# -- intents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    spec: TenantSpec
    copy: DesiredCopy
    # (server, credentials) as read now, for the checks against the registries; the copy's
    # content hash already tells them apart.
    credentials: tuple[tuple[str, Credentials], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Frozen:
    """Invalid input or suspended: write nothing, delete nothing."""

    # "InvalidSpec" | "CredentialsInvalid" | "Suspended" | verification's "Verifying" and
    # "CredentialsUnverified"
    reason: str
    message: str = ""
    credentials_resolved: bool = False


@dataclass(frozen=True)
class Gone:
    """Deleted (or finalizing): remove everything ours."""

    uid: str = ""  # the TenantRegistry's, which its copies' ownerReferences name


Intent = Active | Frozen | Gone

SERVICE_ACCOUNT, SECRET = "ServiceAccount", "Secret"  # kinds of what a fight is over


@dataclass(frozen=True)
class PairInput:
    tenant: str
    namespace: NamespaceInfo | None
    copies: tuple[CopyInfo, ...]
    service_accounts: tuple[ServiceAccountInfo, ...]
    # A Secret known to hold the copy's name that the view does not show.
    blocker: Blocker | None = None
    # fight_key()s of objects another writer keeps changing back: stop restoring them.
    gave_up: frozenset[tuple[str, str, str]] = frozenset()
    # ...of those given up on twice within the fight window: the record of giving up is not
    # written again when another writer wipes it (replacing the whole ServiceAccount).
    held_off: frozenset[tuple[str, str, str]] = frozenset()
    # Other tenants that select this namespace and want the same secretName.
    rivals: tuple[str, ...] = ()
    # The TenantRegistry's uid: a copy is the tenant's only with an ownerReference to it (a
    # label anyone can put on their own Secret). None: the label decides (uninstall, which
    # removes every copy of every tenant, gone ones included, on an admin's request).
    tenant_uid: str | None = None
    # The wall clock (epoch seconds) and --rename-grace: how long a copy under a previous
    # secretName stays after the entries moved to the new one (0: it goes at once).
    now: float = 0.0
    rename_grace: float = 0.0


def format_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> float | None:
    """An RFC 3339 UTC time as format_time() writes it; None if it is not one."""
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def fight_key(kind: str, name: str, uid: str = "") -> tuple[str, str, str]:
    """What a fight is counted on: a copy by its name in the namespace, a ServiceAccount by
    name and uid (one created again is another object; one replaced whole by a PUT is not)."""
    return (kind, name, uid if kind == SERVICE_ACCOUNT else "")


def fight_lost(restores: tuple[float, ...], now: float, window: float, limit: int) -> bool:
    """Has another writer undone our work `limit` times within the last `window` seconds?
    Removals weeks apart are unrelated, not a fight."""
    return sum(1 for t in restores if now - t < window) >= limit


def in_place(
    intent: Active,
    copies: dict[str, CopyInfo],
    service_accounts: dict[str, ServiceAccountInfo],
) -> bool:
    """Does what the view observes in one namespace hold the tenant's current content: its
    copy with the wanted bytes, and the entry on every selected ServiceAccount (except those
    another writer contests, which are reported as failures)? Status counts a namespace as
    synced only then, never on the strength of an outcome planned for older content."""
    spec, want = intent.spec, intent.copy
    c = copies.get(spec.secret_name)
    if (
        c is None
        or c.data_hash != want.content_hash
        or c.annotated_hash != want.content_hash
        or c.tenant != spec.name
        or (spec.uid and spec.uid not in c.owner_uids)
    ):
        return False
    entry = (spec.name, spec.secret_name)
    return all(
        spec.secret_name in sa.pull_secrets or entry in sa.contested
        for sa in service_accounts.values()
        if service_account_selected(spec.service_accounts, sa.name, sa.labels)
    )


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


def orphaned(c: CopyInfo) -> bool:
    """A copy the garbage collector (or someone) stripped of its TenantRegistry
    ownerReference: the copy's labels, the content-hash annotation only the operator writes,
    no ownerReference to any TenantRegistry and none with `controller: true`. `kubectl delete
    treg --cascade=orphan` leaves exactly that. A user can forge it only on a Secret of their
    own (it then gets the tenant's credentials, which its namespace gets anyway, or is
    deleted): the admission policy's rules for the operator's UPDATE and DELETE match."""
    return (
        bool(c.tenant and c.annotated_hash)
        and not c.owner_uids
        and not any(o.get("kind") == names.KIND or o.get("controller") for o in c.foreign_owners)
    )


def owns(tenant: str, tenant_uid: str | None, c: CopyInfo) -> bool:
    """Is the copy that tenant's? Its tenant label and (uid known) an ownerReference to it, or
    no TenantRegistry ownerReference at all (orphaned): a TenantRegistry deleted with
    `--cascade=orphan` takes those along, and one created again under that name re-owns them."""
    return c.tenant == tenant and (tenant_uid is None or tenant_uid in c.owner_uids or orphaned(c))


def _ours(pair: PairInput) -> list[CopyInfo]:
    return [c for c in pair.copies if owns(pair.tenant, pair.tenant_uid, c)]


def _remove_all(pair: PairInput) -> list[Operation]:
    ops: list[Operation] = [
        DeleteCopy(c.namespace, c.name, c.resource_version) for c in _ours(pair)
    ]
    for sa in pair.service_accounts:
        release = {p for p in sa.ours if p[0] == pair.tenant}
        forget = {p for p in sa.contested if p[0] == pair.tenant}
        if release or forget:
            ops.append(_sa_patch(sa, release=release, forget=forget))
    return ops


def _failure(reason: str, message: str, kind: str, name: str) -> Outcome:
    return Outcome("failed", reason, message, kind, name)


def _plan_copy(spec: TenantSpec, want: DesiredCopy, pair: PairInput) -> list[Operation | Outcome]:
    """The write (or the failure) for the copy under the current secretName."""
    name = spec.secret_name
    existing = next((c for c in pair.copies if c.name == name), None)
    if existing is not None:
        # (An empty tenant label, with the ownerReference, is ours too: it is repaired.)
        owned = existing.tenant in (spec.name, "") and (
            spec.uid in existing.owner_uids or orphaned(existing)
        )
        if existing.tenant and existing.tenant != spec.name:
            return [
                _failure(
                    "OwnedByOtherTenant",
                    f"Secret {name} is managed by TenantRegistry {existing.tenant}",
                    SECRET,
                    name,
                )
            ]
        if not owned:
            return [
                _failure(
                    "UnmanagedSecretExists",
                    f"Secret {name} carries the operator's labels but no ownerReference to "
                    f"TenantRegistry {spec.name} (nor is it a copy orphaned of one), so it is "
                    "not the operator's; remove its labels or delete it",
                    SECRET,
                    name,
                )
            ]
        stale = (
            existing.data_hash != want.content_hash
            or existing.annotated_hash != want.content_hash
            or existing.secret_type != names.DOCKERCONFIGJSON_TYPE
            or existing.tenant != spec.name
            or spec.uid not in existing.owner_uids
            or existing.delete_after != ""  # named again before it went: current, not leaving
        )
        if not stale:
            return []
        # Our annotation names the content we want: we wrote it, someone changed it since.
        # (Whether it is a fight, the runtime counts from its own writes: another writer may
        # also put the old annotation back.)
        restored = existing.annotated_hash == want.content_hash
        if fight_key(SECRET, name) in pair.gave_up:
            return [
                _failure(
                    "CopyRewrittenRepeatedly",
                    f"Secret {name}: another writer keeps changing it; the operator stopped "
                    "restoring it for now",
                    SECRET,
                    name,
                )
            ]
        return [
            UpdateCopy(
                existing.namespace,
                existing.resource_version,
                want,
                recreate=existing.secret_type != names.DOCKERCONFIGJSON_TYPE,
                other_owners=existing.foreign_owners,
                restored=restored,
            )
        ]
    blocker = pair.blocker
    assert pair.namespace is not None
    if blocker is None:
        return [CreateCopy(pair.namespace.name, want)]
    refusal = _refuse_take_over(spec, blocker)
    if refusal:
        return [_failure("UnmanagedSecretExists", refusal, SECRET, name)]
    return [
        TakeOverSecret(
            blocker.namespace,
            blocker.resource_version,
            want,
            blocker.other_data_keys,
            blocker.foreign_owners,
            adopted=not _our_stripped_copy(spec, blocker),
        )
    ]


def _our_stripped_copy(spec: TenantSpec, blocker: Blocker) -> bool:
    return blocker.managed_by_us and spec.uid in blocker.owner_uids


def _refuse_take_over(spec: TenantSpec, b: Blocker) -> str:
    """Why the Secret in the way must be left alone ("" if the operator may take it)."""
    if b.secret_type != names.DOCKERCONFIGJSON_TYPE:
        # Secret.type is immutable: taking it would mean deleting someone's other data.
        return (
            f"Secret {b.name} exists with type {b.secret_type}; only a "
            f"{names.DOCKERCONFIGJSON_TYPE} Secret can be adopted"
        )
    if b.immutable:
        return (
            f"Secret {b.name} exists and is immutable, so it cannot be adopted; delete it "
            "to let the operator create its copy"
        )
    if _our_stripped_copy(spec, b):
        return ""  # our own copy, its tenant label stripped: repair it
    if spec.conflict_policy == "Skip":
        return (
            f"Secret {b.name} exists and is not managed by the operator "
            "(conflictPolicy: Skip leaves it untouched)"
        )
    if b.controller:
        return (
            f"Secret {b.name} is controlled by {b.controller}; the operator never adopts a "
            "Secret another controller owns"
        )
    if b.consent != spec.name:
        return (
            f"Secret {b.name} exists and is not managed by the operator; to let "
            f"TenantRegistry {spec.name} adopt it, annotate it: "
            f"{names.ANNOTATION_ADOPT}={spec.name}"
        )
    return ""


def _converge(intent: Active, pair: PairInput) -> PairPlan:
    spec, want = intent.spec, intent.copy
    failures: list[Outcome] = []
    copy_ops: list[Operation] = []
    for item in _plan_copy(spec, want, pair):
        if isinstance(item, Outcome):
            failures.append(item)
        else:
            copy_ops.append(item)
    # Blocked: nothing of the current name may be added; what an old name gave stays in place.
    copy_ok = not any(f.reason in _BLOCKING for f in failures)
    old_copies = [c for c in _ours(pair) if c.name != spec.secret_name]
    if not copy_ok and old_copies:
        # First, so that status (which cuts a message at 300 characters) still says it.
        kept = ", ".join(sorted(c.name for c in old_copies))
        failures = [
            replace(
                f,
                message=f"secretName {spec.secret_name} is blocked, so the previous Secret "
                f"{kept} and its ServiceAccount entries stay in use (kept current): {f.message}",
            )
            for f in failures
        ]
    if copy_ok and pair.rivals:
        failures.append(
            _failure(
                "WantedByOtherTenant",
                f"Secret {spec.secret_name} is also wanted by TenantRegistry "
                f"{', '.join(pair.rivals)} (the same secretName in this namespace); this "
                "tenant keeps it",
                SECRET,
                spec.secret_name,
            )
        )

    sa_ops: list[Operation] = []
    entry = (spec.name, spec.secret_name)
    for sa in pair.service_accounts:
        ours_here = {p for p in sa.ours if p[0] == spec.name}
        contested_here = {p for p in sa.contested if p[0] == spec.name}
        wanted = service_account_selected(spec.service_accounts, sa.name, sa.labels)
        release: set[tuple[str, str]] = set()
        forget: set[tuple[str, str]] = set()
        add = None
        contest = None
        if copy_ok:
            # Make before break: old names' entries go in the patch that adds the new one,
            # which runs only after the new copy exists; old copies go after all patches.
            release |= {p for p in ours_here if p[1] != spec.secret_name}
            forget |= {p for p in contested_here if p[1] != spec.secret_name}
        if not wanted:
            release |= ours_here & {entry}
            forget |= contested_here & {entry}
        elif copy_ok and spec.secret_name not in sa.pull_secrets:
            fight = fight_key(SERVICE_ACCOUNT, sa.name, sa.uid)
            if entry in sa.contested or fight in pair.gave_up:
                # Recorded on the SA itself, so a restart does not start the fight again; the
                # claim goes in the same write, as the entry is not ours to remove any more.
                # Wiped again soon after (a PUT of the whole ServiceAccount): not rewritten.
                if entry in ours_here or (entry not in sa.contested and fight not in pair.held_off):
                    contest = entry
                if fight in pair.held_off:
                    # Deleting the annotation would not help: it was wiped already, or will be.
                    why = (
                        f"ServiceAccount {sa.name}: another writer keeps removing "
                        f"imagePullSecrets entry {spec.secret_name} and wiping the operator's "
                        "record of it (replacing the whole ServiceAccount); the operator "
                        "holds off, neither re-adding it nor recording it, until the fight "
                        "window (10 minutes) since it first gave up has passed"
                    )
                else:
                    why = (
                        f"ServiceAccount {sa.name}: another writer keeps removing "
                        f"imagePullSecrets entry {spec.secret_name}; the operator stopped "
                        f"re-adding it (delete its annotation {names.ANNOTATION_SA_CONTESTED} "
                        "to try again)"
                    )
                failures.append(_failure("EntryRemovedRepeatedly", why, SERVICE_ACCOUNT, sa.name))
            else:
                add = spec.secret_name
        if add or release or forget or contest:
            sa_ops.append(
                _sa_patch(
                    sa,
                    add=add,
                    release=release,
                    forget=forget,
                    tenant=spec.name,
                    restored=add is not None and entry in ours_here,
                    contest=contest,
                )
            )

    ops: list[Operation] = [*copy_ops, *sa_ops]
    wake_at: float | None = None
    for c in old_copies:
        # After the patches that moved the entries (a plan's writes stop at the first failure).
        stale = c.data_hash != want.content_hash or c.annotated_hash != want.content_hash
        until = parse_time(c.delete_after)
        if copy_ok and (pair.rename_grace <= 0 or (until is not None and pair.now >= until)):
            ops.append(DeleteCopy(c.namespace, c.name, c.resource_version))
            continue
        if copy_ok and until is None:
            # The entries moved: Pods admitted with the old name may still be starting; keep
            # the copy for the grace, its end written on it (a restart keeps the promise).
            until = pair.now + pair.rename_grace
            stale, stamp = True, format_time(until)
        else:
            # Still in use while the new name is blocked, or within its grace: keep it current.
            stamp = c.delete_after
        if copy_ok and until is not None:
            wake_at = until if wake_at is None else min(wake_at, until)
        if stale:
            ops.append(
                UpdateCopy(
                    c.namespace,
                    c.resource_version,
                    replace(want, secret_name=c.name),
                    other_owners=c.foreign_owners,
                    delete_after=stamp,
                )
            )
    outcome = failures[0] if failures else SYNCED
    return PairPlan(tuple(ops), outcome, wake_at)


# Failures that keep the current secretName's copy from being ours.
_BLOCKING = ("OwnedByOtherTenant", "UnmanagedSecretExists")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _sa_patch(
    sa: ServiceAccountInfo,
    *,
    add: str | None = None,
    release: set[tuple[str, str]],
    forget: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
    tenant: str = "",
    restored: bool = False,
    contest: tuple[str, str] | None = None,
) -> PatchServiceAccount:
    """`release`: our claims to give up, removing their entries; `forget`: records of given-up
    entries to drop (their entries are not ours); `contest`: record giving up on an entry and
    release its claim, leaving the list alone (the entry is not there)."""
    # imagePullSecrets is an atomic list: merge and strategic merge patches replace it whole,
    # so entries are added and removed by index in a JSON Patch guarded by resourceVersion.
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": sa.resource_version}
    ]
    ours = set(sa.ours) - release
    contested = set(sa.contested) - forget
    if contest is not None:
        ours.discard(contest)
        contested.add(contest)
    # Remove our one entry per released name (the last), never the user's; by index, highest
    # first. A name still claimed by another tenant keeps its entry.
    gone = {name for _, name in release} - {name for _, name in ours}
    last = {name: i for i, name in enumerate(sa.pull_secrets)}
    indices = sorted((last[name] for name in gone if name in last), reverse=True)
    ops += [{"op": "remove", "path": f"/imagePullSecrets/{i}"} for i in indices]
    if add is not None:
        if sa.has_pull_secrets:
            ops.append({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": add}})
        else:
            ops.append({"op": "add", "path": "/imagePullSecrets", "value": [{"name": add}]})
        ours.add((tenant, add))
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
    return PatchServiceAccount(
        sa.namespace,
        sa.name,
        tuple(ops),
        restored=restored,
        contest=contest is not None,
        uid=sa.uid,
        added=add is not None,
        released=bool(release),
    )


def tenant_intent(
    body: dict[str, Any],
    credential_secrets: dict[str, dict[str, Any]],
    operator_namespace: str,
) -> Intent:
    """What a TenantRegistry object asks for, given the credential Secrets that exist. Any
    failure to read the input is this tenant's InvalidSpec or CredentialsInvalid: whatever a
    user puts in a spec or a Secret, it must not stop the operator for other tenants."""

    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return Gone(str(body["metadata"].get("uid", "")))
    try:
        spec = parse_tenant(body, operator_namespace)
    except InvalidInput as e:
        return Frozen("InvalidSpec", str(e))
    except Exception as e:  # anything else a hostile object can make the parser raise
        return Frozen("InvalidSpec", f"spec: could not be read ({type(e).__name__})")
    creds = []
    for i, r in enumerate(spec.registries):
        path = f"spec.registries[{i}]"
        ref = r.credentials_ref
        try:
            creds.append((r.server, parse_credentials(credential_secrets.get(ref.name), r, path)))
        except InvalidInput as e:
            return Frozen("CredentialsInvalid", str(e))
        except Exception as e:  # never the exception's text: it may quote the Secret
            return Frozen(
                "CredentialsInvalid",
                f"{path}.credentialsRef: Secret {ref.namespace}/{ref.name} could not be read "
                f"({type(e).__name__})",
            )
    try:
        copy = desired_copy(spec, creds)
    except InvalidInput as e:
        return Frozen("CredentialsInvalid", str(e))
    except Exception as e:
        return Frozen(
            "CredentialsInvalid",
            f"spec.registries: the Secret content could not be built ({type(e).__name__})",
        )
    if spec.suspend:
        return Frozen(
            "Suspended",
            "spec.suspend is true: nothing is written or removed",
            credentials_resolved=True,
        )
    return Active(spec, copy, tuple(creds))
