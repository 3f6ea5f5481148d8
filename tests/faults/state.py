"""What a clean run leaves, stated as checks: every copy and entry exactly once, no user entry
lost or reordered, no orphan copy, no duplicate entry. Returns the differences, not a bool, so
a failing test says what differs."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pykube

from tenant_registry import dockerconfig, names
from tenant_registry.view_types import parse_entries_annotation
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for


@dataclass(frozen=True)
class Expected:
    tenant: str
    secret: str
    server: str
    password: str
    selected: frozenset[str]  # namespaces that must hold the copy and the entries
    universe: frozenset[str]  # every namespace the test made (the rest must hold nothing)
    service_accounts: frozenset[str] = frozenset({"default"})
    # (namespace, ServiceAccount) -> the user's entries, in order (ours excluded)
    user_entries: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def differences(k8s: Cluster, want: Expected) -> list[str]:
    found: list[str] = []
    copies: dict[str, list[dict[str, Any]]] = {}
    for s in pykube.Secret.objects(k8s.api, namespace=pykube.all).filter(
        selector={names.LABEL_TENANT: want.tenant}
    ):
        copies.setdefault(s.namespace, []).append(s.obj)
    for ns in sorted(set(copies) - want.universe):
        found.append(f"{ns}: orphan copy outside the test's namespaces")
    for ns in sorted(want.universe):
        held = copies.get(ns, [])
        if ns not in want.selected:
            found += [f"{ns}: orphan copy {c['metadata']['name']}" for c in held]
            continue
        if [c["metadata"]["name"] for c in held] != [want.secret]:
            found.append(f"{ns}: copies {[c['metadata']['name'] for c in held]}")
            continue
        found += _copy_differences(ns, held[0], want)
    for ns in sorted(want.universe):
        for sa in pykube.ServiceAccount.objects(k8s.api, namespace=ns):
            found += _entry_differences(ns, sa.obj, want)
    return found


def _copy_differences(ns: str, copy: dict[str, Any], want: Expected) -> list[str]:
    raw = base64.b64decode(copy.get("data", {})[names.DOCKERCONFIGJSON_KEY])
    auths = json.loads(raw).get("auths") or {}
    out = []
    if (auths.get(want.server) or {}).get("password") != want.password:
        out.append(f"{ns}: copy does not hold the current credentials")
    annotations = copy["metadata"].get("annotations") or {}
    if annotations.get(names.ANNOTATION_CONTENT_HASH) != dockerconfig.content_hash(raw):
        out.append(f"{ns}: copy's content-hash annotation does not match its data")
    if copy.get("type") != names.DOCKERCONFIGJSON_TYPE:
        out.append(f"{ns}: copy has type {copy.get('type')}")
    return out


def _entry_differences(ns: str, sa: dict[str, Any], want: Expected) -> list[str]:
    meta = sa["metadata"]
    name = meta["name"]
    pulls = [p.get("name", "") for p in sa.get("imagePullSecrets") or []]
    wanted = ns in want.selected and name in want.service_accounts
    out = []
    ours = pulls.count(want.secret)
    if ours != (1 if wanted else 0):
        out.append(f"{ns}/{name}: our entry {ours} times (want {int(wanted)}): {pulls}")
    others = [p for p in pulls if p != want.secret]
    user = want.user_entries.get((ns, name), [])
    if others != user:
        out.append(f"{ns}/{name}: user entries {others}, want {user} (in this order)")
    annotations = meta.get("annotations") or {}
    claims = parse_entries_annotation(annotations.get(names.ANNOTATION_SA_ENTRIES))
    if ((want.tenant, want.secret) in claims) != wanted:
        out.append(f"{ns}/{name}: added-pull-secrets claims {claims}")
    if [c for c in claims if c != (want.tenant, want.secret) and c[0] == want.tenant]:
        out.append(f"{ns}/{name}: stale claims {claims}")
    return out


def converge(k8s: Cluster, want: Expected, what: str, timeout: float = 90) -> float:
    """Wait until the cluster holds exactly `want`; the seconds it took. A timeout names the
    first differences."""
    started = time.monotonic()
    last: list[str] = []

    def done() -> bool:
        nonlocal last
        last = differences(k8s, want)
        return not last

    try:
        wait_for(done, what=what, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{what}: {len(last)} differences, e.g. {last[:10]}") from None
    return round(time.monotonic() - started, 1)
