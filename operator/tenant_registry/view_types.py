"""What the operator knows of one cluster object: small frozen records, no secret values.

The view (view.py) keeps these in memory, fed by watches; the pure planner reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenant_registry import names


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    terminating: bool = False


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class CopyInfo:
    """A Secret carrying our managed-by label (so: one we created or adopted)."""

    namespace: str
    name: str
    resource_version: str
    tenant: str
    secret_type: str
    data_hash: str  # hash of the actual .dockerconfigjson bytes, not the annotation's claim
    annotated_hash: str
    owner_uids: tuple[str, ...] = ()


def is_copy(obj: dict[str, Any] | None) -> bool:
    """Does this Secret carry our managed-by label, i.e. is it a copy (ours or adopted)?"""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE)


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


def namespace_info(obj: dict[str, Any]) -> NamespaceInfo:
    meta = obj.get("metadata") or {}
    return NamespaceInfo(
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        terminating=bool(meta.get("deletionTimestamp"))
        or (obj.get("status") or {}).get("phase") == "Terminating",
    )


def service_account_info(obj: dict[str, Any]) -> ServiceAccountInfo:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations")
    pulls = obj.get("imagePullSecrets")
    return ServiceAccountInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=str(meta.get("resourceVersion", "")),
        labels=dict(meta.get("labels") or {}),
        pull_secrets=tuple(str((p or {}).get("name") or "") for p in pulls or ()),
        ours=parse_entries_annotation((annotations or {}).get(names.ANNOTATION_SA_ENTRIES)),
        contested=parse_entries_annotation((annotations or {}).get(names.ANNOTATION_SA_CONTESTED)),
        has_annotations=annotations is not None,
        has_pull_secrets=pulls is not None,
    )


def copy_info(obj: dict[str, Any], data_hash: str) -> CopyInfo:
    meta = obj.get("metadata") or {}
    return CopyInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=str(meta.get("resourceVersion", "")),
        tenant=(meta.get("labels") or {}).get(names.LABEL_TENANT, ""),
        secret_type=obj.get("type") or "Opaque",
        data_hash=data_hash,
        annotated_hash=(meta.get("annotations") or {}).get(names.ANNOTATION_CONTENT_HASH, ""),
        owner_uids=tuple(str(o.get("uid", "")) for o in meta.get("ownerReferences") or ()),
    )
