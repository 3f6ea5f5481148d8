"""What the operator knows of one cluster object: small frozen records, no secret values.

The view (view.py) keeps these in memory, fed by watches; the pure planner reads them. Slotted
records and interned names: 10,000 namespaces and 20,000 ServiceAccounts stay small.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from tenant_registry import names


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    terminating: bool = False
    # A namespace deleted and created again under the same name is another object (new uid).
    uid: str = ""
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class ServiceAccountInfo:
    namespace: str
    name: str
    resource_version: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    pull_secrets: tuple[str, ...] = ()
    # (tenant, secret name) pairs this operator added, from the SA's own annotation.
    ours: tuple[tuple[str, str], ...] = ()
    # (tenant, secret name) entries we gave up re-adding: another writer keeps removing them.
    contested: tuple[tuple[str, str], ...] = ()
    has_annotations: bool = False
    has_pull_secrets: bool = False
    uid: str = ""  # a ServiceAccount deleted and created again is another object


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """A Secret carrying our managed-by label (so: one we created or adopted)."""

    namespace: str
    name: str
    resource_version: str
    tenant: str
    secret_type: str
    data_hash: str  # hash of the actual .dockerconfigjson bytes, not the annotation's claim
    annotated_hash: str
    owner_uids: tuple[str, ...] = ()  # of TenantRegistry owners
    # ownerReferences others put on the Secret (kept on every write: a merge patch replaces
    # the list whole). Almost always empty.
    foreign_owners: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    # names.ANNOTATION_DELETE_AFTER as written: set on a copy under a previous secretName.
    delete_after: str = ""


@dataclass(frozen=True, slots=True)
class Blocker:
    """A Secret under a copy's name that the copies watch does not show (not labelled as a
    copy): what the planner needs to decide whether the operator may take it over."""

    namespace: str
    name: str
    resource_version: str
    secret_type: str
    immutable: bool = False
    consent: str = ""  # the TenantRegistry its owner named in registry.tenancy.dev/adopt
    controller: str = ""  # "Kind/name" of an ownerReference with controller: true
    # Carries our managed-by label but no tenant label: a copy whose tenant label was stripped.
    managed_by_us: bool = False
    owner_uids: tuple[str, ...] = ()  # of TenantRegistry owners
    other_data_keys: tuple[str, ...] = ()
    foreign_owners: tuple[dict[str, Any], ...] = field(default=(), hash=False)


def is_copy(obj: dict[str, Any] | None) -> bool:
    """Does this Secret carry our managed-by label, i.e. is it a copy (ours or adopted)?"""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE)


def is_watched_copy(obj: dict[str, Any] | None) -> bool:
    """Would the copies watch (names.COPY_SELECTOR) show this Secret? Only then may a record of
    it enter the view: nothing else would ever update or remove that record."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return is_copy(obj) and names.LABEL_TENANT in labels


def _is_tenant_owner(ref: dict[str, Any]) -> bool:
    return bool(ref.get("kind") == names.KIND and ref.get("apiVersion") == names.API_VERSION)


def _owners(meta: dict[str, Any]) -> tuple[tuple[str, ...], tuple[dict[str, Any], ...]]:
    """(uids of TenantRegistry owners, every other ownerReference as it is)."""
    refs = [r for r in meta.get("ownerReferences") or () if isinstance(r, dict)]
    ours = tuple(str(r.get("uid", "")) for r in refs if _is_tenant_owner(r))
    return ours, tuple(dict(r) for r in refs if not _is_tenant_owner(r))


def parse_entries_annotation(value: str | None) -> tuple[tuple[str, str], ...]:
    """`tenant/secret,tenant/secret` -> pairs; junk items are ignored."""
    out = []
    for item in (value or "").split(","):
        tenant, sep, secret = item.strip().partition("/")
        if sep and tenant and secret:
            out.append((tenant, secret))
    return tuple(sorted(set(out)))


def format_entries_annotation(pairs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{t}/{s}" for t, s in sorted(set(pairs)))


def _labels(meta: dict[str, Any]) -> dict[str, str]:
    """Labels with interned keys and values: the same few keys (and often values) repeat on
    thousands of objects."""
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in (meta.get("labels") or {}).items()}


def namespace_info(obj: dict[str, Any]) -> NamespaceInfo:
    meta = obj.get("metadata") or {}
    return NamespaceInfo(
        name=sys.intern(meta["name"]),
        labels=_labels(meta),
        terminating=bool(meta.get("deletionTimestamp"))
        or (obj.get("status") or {}).get("phase") == "Terminating",
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def service_account_info(obj: dict[str, Any]) -> ServiceAccountInfo:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations")
    pulls = obj.get("imagePullSecrets")
    return ServiceAccountInfo(
        namespace=sys.intern(meta["namespace"]),
        name=sys.intern(meta["name"]),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=_labels(meta),
        pull_secrets=tuple(str((p or {}).get("name") or "") for p in pulls or ()),
        ours=parse_entries_annotation((annotations or {}).get(names.ANNOTATION_SA_ENTRIES)),
        contested=parse_entries_annotation((annotations or {}).get(names.ANNOTATION_SA_CONTESTED)),
        has_annotations=annotations is not None,
        has_pull_secrets=pulls is not None,
        uid=str(meta.get("uid", "")),
    )


def copy_info(obj: dict[str, Any], data_hash: str) -> CopyInfo:
    meta = obj.get("metadata") or {}
    annotated = str((meta.get("annotations") or {}).get(names.ANNOTATION_CONTENT_HASH, ""))
    owner_uids, foreign = _owners(meta)
    return CopyInfo(
        namespace=sys.intern(meta["namespace"]),
        name=sys.intern(meta["name"]),
        resource_version=str(meta.get("resourceVersion", "")),
        tenant=sys.intern((meta.get("labels") or {}).get(names.LABEL_TENANT, "")),
        secret_type=obj.get("type") or "Opaque",
        data_hash=data_hash,
        # Almost always the same text: one string, not two.
        annotated_hash=data_hash if annotated == data_hash else annotated,
        owner_uids=owner_uids,
        foreign_owners=foreign,
        delete_after=str((meta.get("annotations") or {}).get(names.ANNOTATION_DELETE_AFTER, "")),
    )


def blocker_info(obj: dict[str, Any]) -> Blocker:
    meta = obj.get("metadata") or {}
    owner_uids, foreign = _owners(meta)
    controller = next(
        (f"{r.get('kind', '')}/{r.get('name', '')}" for r in foreign if r.get("controller")), ""
    )
    return Blocker(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=str(meta.get("resourceVersion", "")),
        secret_type=obj.get("type") or "Opaque",
        immutable=bool(obj.get("immutable")),
        consent=str((meta.get("annotations") or {}).get(names.ANNOTATION_ADOPT, "")),
        controller=controller,
        managed_by_us=is_copy(obj),
        owner_uids=owner_uids,
        other_data_keys=tuple(
            sorted(k for k in obj.get("data") or {} if k != names.DOCKERCONFIGJSON_KEY)
        ),
        foreign_owners=foreign,
    )
