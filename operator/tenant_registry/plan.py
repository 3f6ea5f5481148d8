"""`tenant-registry plan -f FILE`: what applying TenantRegistries would add, change, remove.

The operator's own planner decides (desired.tenant_intent, desired.plan_pair), over records
built the way the operator builds them (view_types, view.copy_record) from one read of the
live cluster: namespaces, ServiceAccounts, the operator's copies (its label selector) and
the credential Secrets of its namespace. What the file itself holds besides TenantRegistries
counts as applied too: Namespaces (new ones get a `default` ServiceAccount, as the
controller manager will create it), ServiceAccounts, and credential Secrets in the operator's
namespace. Nothing is written.
"""

from __future__ import annotations

import base64
import copy as copy_mod
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tenant_registry import names
from tenant_registry.cluster import GONE, ApiError, Cluster
from tenant_registry.desired import (
    Active,
    CreateCopy,
    DeleteCopy,
    Frozen,
    Intent,
    Operation,
    Outcome,
    PairInput,
    PatchServiceAccount,
    TakeOverSecret,
    UpdateCopy,
    plan_pair,
    tenant_intent,
)
from tenant_registry.selection import namespace_selected, why_namespace_selected
from tenant_registry.session import (
    Parser,
    UsageError,
    add_cluster_arguments,
    connect,
    run,
)
from tenant_registry.spec import InvalidInput, TenantSpec, parse_tenant
from tenant_registry.view import copy_record
from tenant_registry.view_types import (
    Blocker,
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    blocker_info,
    namespace_info,
    service_account_info,
)

# -- what exists --------------------------------------------------------------------------


@dataclass
class Live:
    """The cluster as the planner sees it (records, no secret values but the credentials,
    which only the intent reads)."""

    namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)
    accounts: dict[str, dict[str, ServiceAccountInfo]] = field(default_factory=dict)
    copies: dict[str, dict[str, CopyInfo]] = field(default_factory=dict)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Secret name -> namespace -> type, of Secrets that are not copies (in a copy's way).
    # secretName -> namespace -> the Secret holding that name that is not a copy.
    unmanaged: dict[str, dict[str, Blocker]] = field(default_factory=dict)
    # Namespaces and ServiceAccounts that only the file creates.
    created: set[tuple[str, str]] = field(default_factory=set)
    # The namespaces as they are, before the file's are applied.
    current_namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)

    def add_account(self, sa: ServiceAccountInfo) -> None:
        self.accounts.setdefault(sa.namespace, {})[sa.name] = sa

    def add_copy(self, c: CopyInfo) -> None:
        self.copies.setdefault(c.namespace, {})[c.name] = c


def read_live(cluster: Cluster, operator_namespace: str) -> Live:
    live = Live()
    for ns in cluster.list_objects("namespaces", convert=namespace_info)[0]:
        live.namespaces[ns.name] = ns
    for sa in cluster.list_objects("serviceaccounts", convert=service_account_info)[0]:
        live.add_account(sa)
    for c in cluster.list_objects(
        "secrets", label_selector=names.COPY_SELECTOR, convert=copy_record
    )[0]:
        live.add_copy(c)
    for secret in cluster.list_objects("secrets", namespace=operator_namespace)[0]:
        live.credentials[secret["metadata"]["name"]] = secret
    try:
        tenants = cluster.list_objects(names.PLURAL)[0]
    except ApiError as e:
        if e.kind != GONE:
            raise
        tenants = []  # no CRD yet: no TenantRegistry exists
    for body in tenants:
        live.tenants[body["metadata"]["name"]] = body
    return live


def read_unmanaged(cluster: Cluster, live: Live, secret_names: Iterable[str]) -> None:
    """The Secrets named like a tenant's copy that are not copies: one list per name."""
    for name in set(secret_names):
        found = live.unmanaged.setdefault(name, {})
        for secret in cluster.list_secrets_named(name):
            ns = secret["metadata"]["namespace"]
            if name not in live.copies.get(ns, {}):  # the copies' list did not show it
                found[ns] = blocker_info(secret)


# -- what the file holds ------------------------------------------------------------------


@dataclass
class Manifests:
    tenants: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_manifests(path: str, text: str, operator_namespace: str) -> Manifests:
    """The documents of a YAML (or JSON) file; UsageError naming the file and document."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"-f {path}: not valid YAML{where}: {problem}") from None
    out = Manifests()
    items: list[tuple[int, Any]] = []
    for i, doc in enumerate(docs, 1):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items += [(i, item) for item in doc.get("items") or []]
        else:
            items.append((i, doc))
    for i, doc in items:
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            raise UsageError(f"-f {path}: document {i} is not a Kubernetes object")
        kind, api = doc["kind"], doc.get("apiVersion")
        raw_meta = doc.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        name = meta.get("name")
        label = f"{kind} {name or '(no name)'}"
        if kind == names.KIND and api == names.API_VERSION:
            if not isinstance(name, str) or not name:
                raise UsageError(
                    f"-f {path}: document {i}: the TenantRegistry has no metadata.name"
                )
            out.tenants.append(doc)
        elif kind == names.KIND:
            raise UsageError(f"-f {path}: document {i}: apiVersion must be {names.API_VERSION}")
        elif kind == "Namespace" and api == "v1" and isinstance(name, str):
            out.namespaces.append(doc)
        elif kind == "ServiceAccount" and api == "v1" and isinstance(name, str):
            if meta.get("namespace"):
                out.accounts.append(doc)
            else:
                out.ignored.append(f"{label} (no metadata.namespace)")
        elif kind == "Secret" and api == "v1" and meta.get("namespace") == operator_namespace:
            out.secrets.append(doc)
        else:
            out.ignored.append(label)
    if not out.tenants:
        raise UsageError(f"-f {path}: holds no TenantRegistry ({names.API_VERSION})")
    return out


def _secret_as_stored(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret manifest as the API server stores it: stringData merged into data."""
    data = dict(doc.get("data") or {})
    for k, v in (doc.get("stringData") or {}).items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    return {"type": doc.get("type") or "Opaque", "metadata": doc.get("metadata"), "data": data}


def apply_manifests(live: Live, manifests: Manifests) -> None:
    """The cluster as it would be once the file's other objects are applied."""
    live.current_namespaces = dict(live.namespaces)
    for doc in manifests.namespaces:
        name = doc["metadata"]["name"]
        labels = dict(doc["metadata"].get("labels") or {})
        existing = live.namespaces.get(name)
        if existing is None:
            live.namespaces[name] = NamespaceInfo(name, labels)
            live.created.add((name, ""))
            if "default" not in live.accounts.get(name, {}):
                live.add_account(ServiceAccountInfo(name, "default", ""))
                live.created.add((name, "default"))
        else:  # apply adds and changes the labels it names
            live.namespaces[name] = NamespaceInfo(
                name, {**existing.labels, **labels}, existing.terminating
            )
    for doc in manifests.accounts:
        meta = doc["metadata"]
        if meta["name"] not in live.accounts.get(meta["namespace"], {}):
            live.add_account(service_account_info({**doc, "metadata": {**meta}}))
            live.created.add((meta["namespace"], meta["name"]))
    for doc in manifests.secrets:
        live.credentials[doc["metadata"]["name"]] = _secret_as_stored(doc)


# -- the plan -----------------------------------------------------------------------------


@dataclass
class NamespacePlan:
    namespace: str
    operations: tuple[Operation, ...]
    outcome: Outcome


@dataclass
class TenantPlan:
    name: str
    exists: bool
    intent: Intent
    spec: TenantSpec | None
    before: set[str]
    after: set[str]
    namespaces: list[NamespacePlan]

    @property
    def failed(self) -> list[NamespacePlan]:
        return [p for p in self.namespaces if p.outcome.state == "failed"]


def _selected(
    spec: TenantSpec | None, namespaces: Mapping[str, NamespaceInfo], operator_namespace: str
) -> set[str]:
    if spec is None:
        return set()
    return {
        ns.name
        for ns in namespaces.values()
        if not ns.terminating
        and namespace_selected(spec.namespaces, ns.name, ns.labels, operator_namespace)
    }


def _spec_or_none(body: Mapping[str, Any] | None, operator_namespace: str) -> TenantSpec | None:
    if body is None:
        return None
    try:
        return parse_tenant(body, operator_namespace)
    except InvalidInput:
        return None


def holdings(live: Live, tenant: str) -> set[str]:
    """Namespaces where the tenant has a copy or a recorded entry."""
    held = {
        ns for ns, copies in live.copies.items() if any(c.tenant == tenant for c in copies.values())
    }
    for ns, accounts in live.accounts.items():
        if any(t == tenant for sa in accounts.values() for t, _ in (*sa.ours, *sa.contested)):
            held.add(ns)
    return held


def plan_tenant(body: Mapping[str, Any], live: Live, operator_namespace: str) -> TenantPlan:
    """One TenantRegistry of the file, planned namespace by namespace by the operator's
    planner against `live` (as the file would leave it)."""
    name = str(body["metadata"]["name"])
    current = live.tenants.get(name)
    wanted = copy_mod.deepcopy(dict(body))
    meta = dict(wanted.get("metadata") or {})
    meta.pop("deletionTimestamp", None)
    if current is not None:  # apply keeps the object's identity: copies stay its own
        meta["uid"] = current["metadata"].get("uid", "")
        meta["generation"] = int(current["metadata"].get("generation") or 0) + 1
    wanted["metadata"] = meta
    intent = tenant_intent(wanted, live.credentials, operator_namespace)
    spec = intent.spec if isinstance(intent, Active) else _spec_or_none(wanted, operator_namespace)
    before = (
        _selected(
            _spec_or_none(current, operator_namespace),
            live.current_namespaces or live.namespaces,
            operator_namespace,
        )
        if current is not None
        else set()
    )
    after = (
        _selected(spec, live.namespaces, operator_namespace)
        if not isinstance(intent, Frozen)
        else before
    )
    plans = []
    secret_name = spec.secret_name if spec is not None else ""
    for ns in sorted(before | after | holdings(live, name)):
        pair = PairInput(
            name,
            live.namespaces.get(ns),
            tuple(live.copies.get(ns, {}).values()),
            tuple(live.accounts.get(ns, {}).values()),
            blocker=live.unmanaged.get(secret_name, {}).get(ns),
        )
        p = plan_pair(intent, pair, operator_namespace)
        plans.append(NamespacePlan(ns, p.operations, p.outcome))
    return TenantPlan(name, current is not None, intent, spec, before, after, plans)


# -- words --------------------------------------------------------------------------------


def _patch_parts(op: PatchServiceAccount, sa: ServiceAccountInfo | None) -> list[str]:
    parts = []
    for p in op.patch:
        path = str(p.get("path", ""))
        if p["op"] == "add" and path == "/imagePullSecrets":
            parts += [f"add imagePullSecrets entry {v['name']}" for v in p["value"]]
        elif p["op"] == "add" and path == "/imagePullSecrets/-":
            parts.append(f"add imagePullSecrets entry {p['value']['name']}")
        elif p["op"] == "remove" and path.startswith("/imagePullSecrets/"):
            index = int(path.rsplit("/", 1)[1])
            entry = (
                sa.pull_secrets[index] if sa is not None and index < len(sa.pull_secrets) else "?"
            )
            parts.append(f"remove imagePullSecrets entry {entry}")
    if not parts and any(
        names.ANNOTATION_SA_CONTESTED.replace("/", "~1") in str(p.get("path")) for p in op.patch
    ):
        parts.append(f"update its {names.ANNOTATION_SA_CONTESTED} record")
    if not parts:
        parts.append(f"update its {names.ANNOTATION_SA_ENTRIES} record")
    if op.restored:
        parts.append("(restores an entry another writer removed)")
    return parts


def describe(op: Operation, live: Live) -> str:
    """One line for a planned write, in the admin's words (never content)."""
    if isinstance(op, CreateCopy):
        return (
            f"create Secret {op.namespace}/{op.copy.secret_name} (content {op.copy.content_hash})"
        )
    if isinstance(op, TakeOverSecret):
        if op.adopted:
            return (
                f"adopt Secret {op.namespace}/{op.copy.secret_name} (its owner consented): "
                f"labels, owner reference, content {op.copy.content_hash}"
            )
        return (
            f"repair Secret {op.namespace}/{op.copy.secret_name}: the tenant label a user "
            "removed from the operator's copy"
        )
    if isinstance(op, UpdateCopy):
        old = live.copies.get(op.namespace, {}).get(op.copy.secret_name)
        why = []
        if old is not None and old.data_hash != op.copy.content_hash:
            why.append(f"content {old.data_hash} -> {op.copy.content_hash}")
        elif old is not None and old.annotated_hash != op.copy.content_hash:
            why.append("its content-hash annotation")
        if old is not None and op.copy.tenant_uid not in old.owner_uids:
            why.append("owner reference")
        how = " (delete and re-create: its type differs)" if op.recreate else ""
        return (
            f"update Secret {op.namespace}/{op.copy.secret_name}: {', '.join(why) or 'labels'}{how}"
        )
    if isinstance(op, DeleteCopy):
        return f"delete Secret {op.namespace}/{op.name}"
    sa = live.accounts.get(op.namespace, {}).get(op.name)
    when = (
        " (once kube-controller-manager creates it)"
        if (op.namespace, op.name) in live.created and op.name == "default"
        else ""
    )
    return f"patch ServiceAccount {op.namespace}/{op.name}{when}: " + "; ".join(
        _patch_parts(op, sa)
    )


def _sign(op: Operation) -> str:
    """+ adds, - removes, ~ changes."""
    if isinstance(op, CreateCopy):
        return "+"
    if isinstance(op, DeleteCopy):
        return "-"
    if isinstance(op, UpdateCopy | TakeOverSecret):
        return "~"
    parts = _patch_parts(op, None)
    if any(p.startswith("add ") for p in parts):
        return "+"
    return "-" if any(p.startswith("remove ") for p in parts) else "~"


def _counts(plan: TenantPlan) -> str:
    ops = [op for p in plan.namespaces for op in p.operations]
    entries_added = entries_removed = 0
    for op in ops:
        if isinstance(op, PatchServiceAccount):
            parts = _patch_parts(op, None)
            entries_added += sum(part.startswith("add ") for part in parts)
            entries_removed += sum(part.startswith("remove ") for part in parts)
    return (
        f"copies: {sum(isinstance(o, CreateCopy) for o in ops)} to create, "
        f"{sum(isinstance(o, UpdateCopy) for o in ops)} to update, "
        f"{sum(isinstance(o, DeleteCopy) for o in ops)} to delete; "
        f"entries: {entries_added} to add, {entries_removed} to remove; "
        f"namespaces that would fail: {len(plan.failed)}"
    )


def plan_lines(plan: TenantPlan, live: Live, operator_namespace: str) -> list[str]:
    verb = "changes the existing" if plan.exists else "creates the"
    lines = [f"TenantRegistry {plan.name} (applying it {verb} TenantRegistry)"]
    if isinstance(plan.intent, Frozen):
        lines.append(
            f"  the operator would write nothing and remove nothing for it: "
            f"{plan.intent.reason}: {plan.intent.message}"
        )
        if plan.spec is not None:
            selects = sorted(_selected(plan.spec, live.namespaces, operator_namespace))
            shown = ", ".join(selects[:20]) + (", ..." if len(selects) > 20 else "")
            lines.append(f"  its spec selects {len(selects)} namespace(s): {shown or '(none)'}")
        return lines
    added, removed = sorted(plan.after - plan.before), sorted(plan.before - plan.after)
    lines.append(
        f"  namespaces: {len(plan.before)} selected now, {len(plan.after)} after"
        + (f"; +{len(added)}" if added else "")
        + (f", -{len(removed)}" if removed else "")
    )
    for ns in added:
        info = live.namespaces[ns]
        assert plan.spec is not None
        why = why_namespace_selected(plan.spec.namespaces, ns, info.labels, operator_namespace)
        new = " (created by this file)" if (ns, "") in live.created else ""
        lines.append(f"    + {ns}{new}: {'; '.join(why.reasons)}")
    for ns in removed:
        gone = live.namespaces.get(ns)
        if gone is None or plan.spec is None:
            lines.append(f"    - {ns}: no longer selected")
            continue
        why = why_namespace_selected(plan.spec.namespaces, ns, gone.labels, operator_namespace)
        lines.append(f"    - {ns}: no longer selected: {'; '.join(why.reasons)}")
    unchanged = 0
    for p in plan.namespaces:
        if not p.operations and p.outcome.state != "failed":
            unchanged += 1
            continue
        lines.append(f"  {p.namespace}:")
        for op in p.operations:
            lines.append(f"    {_sign(op)} {describe(op, live)}")
        if p.outcome.state == "failed":
            lines.append(f"    ! would fail: {p.outcome.reason}: {p.outcome.message}")
    if unchanged:
        lines.append(f"  {unchanged} namespace(s) already as wanted: nothing to write there")
    lines.append(f"  summary: {_counts(plan)}")
    return lines


# -- the command --------------------------------------------------------------------------


def build_parser(prog: str) -> Parser:
    parser = Parser(
        prog=prog,
        description="What applying a TenantRegistry file would add, change and remove, "
        "planned by the operator's own planner from the live cluster. Writes nothing.",
    )
    parser.add_argument("-f", "--filename", required=True, help="YAML or JSON file; - for stdin")
    parser.add_argument(
        "--operator-namespace",
        default=names.DEFAULT_OPERATOR_NAMESPACE,
        help="where the credential Secrets are (default tenant-registry-system)",
    )
    add_cluster_arguments(parser)
    return parser


def main(argv: list[str], prog: str) -> int:
    def command(opened: list[Cluster]) -> int:
        args = build_parser(prog).parse_args(argv)
        text = _read_file(args.filename)
        manifests = read_manifests(args.filename, text, args.operator_namespace)
        cluster = connect(args.kubeconfig, args.context)
        opened.append(cluster)
        live = read_live(cluster, args.operator_namespace)
        secret_names = []
        for body in manifests.tenants:
            spec = (body.get("spec") or {}) if isinstance(body.get("spec"), dict) else {}
            if isinstance(spec.get("secretName"), str) and spec["secretName"]:
                secret_names.append(spec["secretName"])
        read_unmanaged(cluster, live, secret_names)
        apply_manifests(live, manifests)
        code = 0
        out: list[str] = []
        for body in manifests.tenants:
            plan = plan_tenant(body, live, args.operator_namespace)
            out += plan_lines(plan, live, args.operator_namespace)
            if plan.failed or (
                isinstance(plan.intent, Frozen) and plan.intent.reason != "Suspended"
            ):
                code = 1
        for label in manifests.ignored:
            out.append(
                f"not planned: {label} (the plan covers TenantRegistries, Namespaces, "
                f"ServiceAccounts and credential Secrets in {args.operator_namespace})"
            )
        out.append("dry run: nothing was written")
        print("\n".join(out))
        return code

    return run(prog, command)


def _read_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"-f {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"-f {path}: cannot read it: {e}") from None
