"""`tenant-registry uninstall`: remove what the operator wrote, when the operator cannot.

For an admin whose operator is gone first (`kubectl delete -k deploy/` ran before the
TenantRegistries were deleted, or its Pod crashloops). Run with the admin's credentials, it
finds every copy (the operator's own label selector), every ServiceAccount entry and
annotation the operator recorded (`added-pull-secrets`, `contested-pull-secrets`), and plans
their removal with the operator's own planner (`plan_pair` with a `Gone` intent), so it
removes exactly what the operator would on deletion, with the same guarded writes. Then it
releases the TenantRegistries' finalizer, so `kubectl delete -k crds/` completes. It writes
nothing else. Without `--yes` it only prints what it would do. With `--yes` it refuses while an
operator may still run: its Deployment wants replicas, or its leader-election Lease is held
and was renewed within its duration (by the API server's clock).

Adopted Secrets (the owner's consent, `registry.tenancy.dev/adopt`, still on them) are copies
like the others and are deleted too, as on a TenantRegistry's deletion; their lines say so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from tenant_registry import names
from tenant_registry.cluster import CONFLICT, GONE, INVALID, ApiError, Cluster
from tenant_registry.desired import (
    DeleteCopy,
    Gone,
    Operation,
    PairInput,
    PatchServiceAccount,
    plan_pair,
)
from tenant_registry.view_types import (
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    copy_info,
    is_copy,
    namespace_info,
    parse_entries_annotation,
    service_account_info,
)

MAX_ATTEMPTS = 5  # re-plans of one pair after a stale view (409/422), as the operator does
LEASE_NAME = names.COMPONENT  # the Lease `tenant-registry run` takes (its --lease-name default)


def command(args: argparse.Namespace) -> int:
    try:
        cluster = Cluster.connect(args.kubeconfig, pool_size=args.concurrency + 2)
    except Exception as e:  # a missing or broken kubeconfig: one line, no stack trace
        print(f"tenant-registry: cannot load cluster credentials: {e}", file=sys.stderr)
        return 2
    try:
        return uninstall(
            cluster, operator_namespace=args.namespace, apply=args.yes, workers=args.concurrency
        )
    except ApiError as e:
        print(f"tenant-registry uninstall: {e}", file=sys.stderr)
        return 1
    finally:
        cluster.close()


@dataclass
class _Result:
    lines: list[str] = field(default_factory=list)
    writes: int = 0
    failed: set[str] = field(default_factory=set)  # tenants whose leftovers remain
    skipped: int = 0  # terminating namespaces: the namespace controller removes everything


def uninstall(cluster: Cluster, *, operator_namespace: str, apply: bool, workers: int = 8) -> int:
    """Print (and with `apply`, do) every removal; 0 when nothing of the operator is left."""
    running = _running_operator(cluster, operator_namespace)
    if running and apply:
        print(
            f"tenant-registry uninstall: {'; '.join(running)}: it would restore what this "
            "removes. Run `kubectl delete -k deploy/` (or scale it to 0), stop any other "
            "replica, and run again once its Lease has expired. Nothing was written.",
            file=sys.stderr,
        )
        return 1
    for reason in running:
        print(f"note: {reason}: `--yes` refuses until it is gone")

    namespaces, copies, accounts, adopted = _read(cluster)
    total = _Result()
    work = sorted(set(copies) | set(accounts))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(
            lambda ns: _clear_namespace(
                cluster,
                namespaces.get(ns),
                ns,
                copies.get(ns, {}),
                accounts.get(ns, {}),
                operator_namespace,
                apply,
                adopted,
            ),
            work,
        )
        for r in results:
            for line in r.lines:
                print(line, flush=True)
            total.writes += r.writes
            total.failed |= r.failed
            total.skipped += r.skipped

    finalizers = _release_finalizers(cluster, total.failed, apply)
    for line in finalizers.lines:
        print(line, flush=True)
    total.writes += finalizers.writes
    total.failed |= finalizers.failed

    if apply and not total.failed:
        # Say "nothing is left" only when a fresh read shows it.
        namespaces, copies, accounts, _ = _read(cluster)
        left = [
            f"{ns}: {kind}"
            for ns, kind in [(ns, "copies") for ns in copies]
            + [(ns, "ServiceAccount entries or annotations") for ns in accounts]
            if ns in namespaces and not namespaces[ns].terminating
        ]
        if left:
            print("error: still there: " + ", ".join(sorted(left)), file=sys.stderr)
            return 1
    if total.skipped:
        print(
            f"skipped {total.skipped} terminating namespace(s): "
            "the namespace controller deletes their Secrets and ServiceAccounts"
        )
    if total.failed:
        print(
            "not removed for TenantRegistry "
            + ", ".join(sorted(t or "(no tenant label)" for t in total.failed))
            + ": see the errors above; run again",
            file=sys.stderr,
        )
        return 1
    if not apply:
        print(
            "dry run: nothing was written; run again with --yes to do the above"
            if total.writes
            else "nothing to remove: no copies, entries, annotations or finalizers of the operator"
        )
        return 0
    print(
        f"done: {total.writes} write(s); nothing of the operator is left"
        if total.writes
        else "nothing to remove: no copies, entries, annotations or finalizers of the operator"
    )
    return 0


def _read(
    cluster: Cluster,
) -> tuple[
    dict[str, NamespaceInfo],
    dict[str, dict[str, CopyInfo]],
    dict[str, dict[str, ServiceAccountInfo]],
    frozenset[tuple[str, str]],
]:
    """Namespaces; our copies (the operator's own selector); ServiceAccounts carrying our
    annotations, by namespace and name; the copies that were adopted (namespace, name)."""
    namespaces = {
        ns.name: ns for ns in cluster.list_objects("namespaces", convert=namespace_info)[0]
    }
    copies: dict[str, dict[str, CopyInfo]] = {}
    adopted: set[tuple[str, str]] = set()
    for c, consent in cluster.list_objects(
        "secrets",
        label_selector=names.COPY_SELECTOR,
        convert=lambda o: (copy_info(o, ""), _consent(o)),
    )[0]:
        copies.setdefault(c.namespace, {})[c.name] = c
        if consent:
            adopted.add((c.namespace, c.name))
    accounts: dict[str, dict[str, ServiceAccountInfo]] = {}
    for sa in cluster.list_objects("serviceaccounts", convert=service_account_info)[0]:
        if sa.ours or sa.contested:
            accounts.setdefault(sa.namespace, {})[sa.name] = sa
    return namespaces, copies, accounts, frozenset(adopted)


def _consent(obj: dict[str, Any]) -> str:
    """The owner's consent to adoption, which stays on an adopted copy (the operator may not
    change it): who it was given to, or ""."""
    return str(
        ((obj.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_ADOPT, "")
    )


def _running_operator(cluster: Cluster, namespace: str) -> list[str]:
    """Why an operator may still be running, one line each: its Deployment still wants
    replicas; its leader-election Lease is held and fresh (any replica: also one outside the
    Deployment, or whose Deployment was deleted while its Pod still runs)."""
    reasons = []
    for d in cluster.list_deployments(namespace, names.OPERATOR_SELECTOR):
        replicas = (d.get("spec") or {}).get("replicas", 1)
        if replicas:
            name = d["metadata"]["name"]
            reasons.append(
                f"the operator's Deployment {namespace}/{name} still wants {replicas} replica(s)"
            )
            break
    lease, server_time = cluster.get_lease_at_server_time(namespace, LEASE_NAME)
    held = lease_in_use(lease, server_time or dt.datetime.now(dt.UTC))
    if held:
        reasons.append(f"the leader-election Lease {namespace}/{LEASE_NAME} {held}")
    return reasons


def lease_in_use(lease: dict[str, Any] | None, now: dt.datetime) -> str:
    """How a Lease shows a live holder ("is held by X, renewed 3 s ago, within its 10 s"), or
    "" when it has none: no Lease, no holder (released), or not renewed within its
    leaseDurationSeconds. `now` is the API server's time. A held Lease without a renewTime
    counts as live: nothing says it is not."""
    spec = (lease or {}).get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    if not holder:
        return ""
    duration = float(spec.get("leaseDurationSeconds") or 0)
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    try:
        renewed = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return f"is held by {holder} (no renewTime)"
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=dt.UTC)
    age = (now - renewed).total_seconds()
    # The Date header counts whole seconds: one more second of doubt, in the holder's favour.
    if age >= duration + 1:
        return ""
    return f"is held by {holder}, renewed {max(age, 0):.0f} s ago, within its {duration:.0f} s"


def _clear_namespace(
    cluster: Cluster,
    ns: NamespaceInfo | None,
    name: str,
    copies: dict[str, CopyInfo],
    accounts: dict[str, ServiceAccountInfo],
    operator_namespace: str,
    apply: bool,
    adopted: frozenset[tuple[str, str]] = frozenset(),
) -> _Result:
    """Remove every tenant's copies and entries in one namespace, tenant after tenant, each
    planned from what the previous writes left (their responses are the new records)."""
    result = _Result()
    copies, accounts = dict(copies), dict(accounts)
    tenants = {c.tenant for c in copies.values()}
    tenants |= {t for sa in accounts.values() for t, _ in (*sa.ours, *sa.contested)}
    for tenant in sorted(tenants):
        for _ in range(MAX_ATTEMPTS):
            pair = PairInput(tenant, ns, tuple(copies.values()), tuple(accounts.values()))
            plan = plan_pair(Gone(), pair, operator_namespace)
            if plan.outcome.reason == "NamespaceTerminating":
                result.skipped = 1
                break
            if not plan.operations:
                break
            if not apply:
                for op in plan.operations:
                    result.lines.append(describe(op, accounts, "would ", adopted))
                    result.writes += 1
                    _as_if_done(op, copies, accounts)  # so the next tenant's plan is real
                continue
            if _perform(cluster, tenant, plan.operations, copies, accounts, result, adopted):
                break
        else:
            result.failed.add(tenant)
            result.lines.append(
                f"error: namespace {name}, tenant {tenant}: the objects kept changing"
            )
    return result


def _perform(
    cluster: Cluster,
    tenant: str,
    ops: tuple[Operation, ...],
    copies: dict[str, CopyInfo],
    accounts: dict[str, ServiceAccountInfo],
    result: _Result,
    adopted: frozenset[tuple[str, str]],
) -> bool:
    """Run a plan's writes in order; False when one found the view stale (plan again)."""
    for op in ops:
        line = describe(op, accounts, "", adopted)
        try:
            if isinstance(op, DeleteCopy):
                # Guarded by resourceVersion: a copy changed meanwhile answers 409.
                cluster.delete_secret(op.namespace, op.name, op.resource_version)
                copies.pop(op.name, None)
            elif isinstance(op, PatchServiceAccount):
                obj = cluster.json_patch_service_account(op.namespace, op.name, list(op.patch))
                accounts[op.name] = service_account_info(obj)
            else:  # the Gone plan only deletes copies and patches ServiceAccounts
                raise AssertionError(f"unexpected operation {op!r}")
        except ApiError as e:
            if _is_stale(e, op):
                _refresh(cluster, op, copies, accounts)
                return False
            result.failed.add(tenant)
            result.lines.append(f"error: {line}: {e}")
            return True
        result.lines.append(line)
        result.writes += 1
    return True


def _is_stale(e: ApiError, op: Operation) -> bool:
    # As the operator: 409 on a guarded delete, 422 from a JSON Patch's failed `test`, 404 on
    # a ServiceAccount deleted meanwhile; a 422 on anything else is a real rejection.
    if e.kind == INVALID:
        return isinstance(op, PatchServiceAccount)
    return e.kind in (CONFLICT, GONE)


def _refresh(
    cluster: Cluster,
    op: Operation,
    copies: dict[str, CopyInfo],
    accounts: dict[str, ServiceAccountInfo],
) -> None:
    """Re-read the one object a write found stale."""
    if isinstance(op, PatchServiceAccount):
        obj = cluster.get_service_account(op.namespace, op.name)
        if obj is None:
            accounts.pop(op.name, None)
        else:
            accounts[op.name] = service_account_info(obj)
        return
    assert isinstance(op, DeleteCopy)
    secret = cluster.get_secret(op.namespace, op.name)
    if secret is not None and is_copy(secret):
        copies[op.name] = copy_info(secret, "")
    else:
        copies.pop(op.name, None)  # gone, or no longer ours: not ours to delete


def _as_if_done(
    op: Operation, copies: dict[str, CopyInfo], accounts: dict[str, ServiceAccountInfo]
) -> None:
    """For a dry run: the records as the write would leave them (the Gone plan removes
    entries by index and removes or rewrites our two annotations; nothing else)."""
    if isinstance(op, DeleteCopy):
        copies.pop(op.name, None)
        return
    assert isinstance(op, PatchServiceAccount)
    sa = accounts[op.name]
    removed = {
        int(str(p["path"]).rsplit("/", 1)[1])
        for p in op.patch
        if p["op"] == "remove" and str(p["path"]).startswith("/imagePullSecrets/")
    }
    records = {names.ANNOTATION_SA_ENTRIES: sa.ours, names.ANNOTATION_SA_CONTESTED: sa.contested}
    for p in op.patch:
        key = _annotation_key(str(p["path"]))
        if key in records:
            records[key] = parse_entries_annotation(p.get("value")) if p["op"] == "add" else ()
        elif str(p["path"]) == "/metadata/annotations" and p["op"] == "add":
            records.update({k: parse_entries_annotation(v) for k, v in p["value"].items()})
    accounts[op.name] = replace(
        sa,
        pull_secrets=tuple(n for i, n in enumerate(sa.pull_secrets) if i not in removed),
        ours=records[names.ANNOTATION_SA_ENTRIES],
        contested=records[names.ANNOTATION_SA_CONTESTED],
    )


def _annotation_key(path: str) -> str:
    """`/metadata/annotations/a~1b` -> `a/b` (JSON Pointer escapes); "" for other paths."""
    prefix = "/metadata/annotations/"
    if not path.startswith(prefix):
        return ""
    return path.removeprefix(prefix).replace("~1", "/").replace("~0", "~")


def describe(
    op: Operation,
    accounts: dict[str, ServiceAccountInfo],
    prefix: str,
    adopted: frozenset[tuple[str, str]] = frozenset(),
) -> str:
    """One line for a planned write, in the admin's words (never content)."""
    if isinstance(op, DeleteCopy):
        line = f"{prefix}delete secret {op.namespace}/{op.name}"
        if (op.namespace, op.name) in adopted:
            line += " (adopted: its owner's Secret before; Pods that name it lose it)"
        return line
    assert isinstance(op, PatchServiceAccount)
    sa = accounts.get(op.name)
    parts = []
    for p in op.patch:
        path = str(p.get("path", ""))
        if p["op"] == "remove" and path.startswith("/imagePullSecrets/") and sa is not None:
            index = int(path.rsplit("/", 1)[1])
            parts.append(f"remove imagePullSecrets entry {sa.pull_secrets[index]}")
        elif p["op"] == "remove" and _annotation_key(path):
            parts.append(f"remove annotation {_annotation_key(path)}")
        elif p["op"] == "add" and _annotation_key(path):
            parts.append(f"set annotation {_annotation_key(path)}={p.get('value')}")
    return f"{prefix}patch serviceaccount {op.namespace}/{op.name}: " + "; ".join(parts)


def _release_finalizers(cluster: Cluster, keep: set[str], apply: bool) -> _Result:
    """Remove our finalizer from every TenantRegistry whose leftovers are gone (a tenant that
    failed keeps it: the cleanup is not done). Kopf's annotations stay: the objects go with
    the CRD."""
    result = _Result()
    try:
        tenants: list[dict[str, Any]] = cluster.list_objects(names.PLURAL)[0]
    except ApiError as e:
        if e.kind == GONE:  # the CRD is gone already: no TenantRegistry, no finalizer
            return result
        raise
    for body in sorted(tenants, key=lambda b: str(b["metadata"]["name"])):
        name = str(body["metadata"]["name"])
        if name in keep:
            continue
        line = f"remove finalizer {names.FINALIZER} from tenantregistry {name}"
        for _ in range(MAX_ATTEMPTS):
            finalizers = list((body.get("metadata") or {}).get("finalizers") or [])
            if names.FINALIZER not in finalizers:
                break
            if not apply:
                result.lines.append("would " + line)
                result.writes += 1
                break
            # finalizers is a list: remove our item by index, guarded by resourceVersion.
            patch = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": body["metadata"]["resourceVersion"],
                },
                {
                    "op": "remove",
                    "path": f"/metadata/finalizers/{finalizers.index(names.FINALIZER)}",
                },
            ]
            try:
                cluster.json_patch_tenant(name, patch)
            except ApiError as e:
                if e.kind in (INVALID, CONFLICT):  # changed meanwhile: re-read, try again
                    fresh = cluster.get_tenant(name)
                    if fresh is None:
                        break
                    body = fresh
                    continue
                if e.kind == GONE:
                    break
                result.failed.add(name)
                result.lines.append(f"error: {line}: {e}")
                break
            result.lines.append(line)
            result.writes += 1
            break
        else:
            result.failed.add(name)
            result.lines.append(f"error: {line}: it kept changing")
    return result
