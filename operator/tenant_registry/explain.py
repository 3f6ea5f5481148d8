"""`tenant-registry explain`: why a Pod can or cannot pull, in the kubelet's own terms.

- `explain IMAGE SERVER...`: which of these registry keys the kubelet would try for the
  image, most specific first, and why each other one is not tried (keyring.py).
- `explain IMAGE --namespace NS [--service-account SA]...`: the same, from the pull secrets
  those ServiceAccounts reference in the live cluster (their `.dockerconfigjson` keys; never
  a credential value).
- `explain namespace NS`: which TenantRegistries select the namespace and why, which do not
  and why, the state of each copy, which ServiceAccount entries are the operator's, and what
  the operator's planner would still do there or what blocks it.

It only reads (session.py), with the user's kubeconfig.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenant_registry import names
from tenant_registry.cluster import GONE, ApiError, Cluster
from tenant_registry.desired import Active, Frozen, Gone, PairInput, plan_pair, tenant_intent
from tenant_registry.imagerefs import ImageName, InvalidReference, parse_image_name
from tenant_registry.keyring import (
    BrokenPullSecret,
    Entry,
    Explanation,
    Keyring,
    UnusableKey,
    config_key,
    pull_secret_servers,
)
from tenant_registry.plan import Live, describe
from tenant_registry.registrykeys import InvalidKey, parse_key
from tenant_registry.selection import (
    service_account_selected,
    why_namespace_selected,
)
from tenant_registry.session import Parser, UsageError, add_cluster_arguments, connect, run
from tenant_registry.spec import InvalidInput, TenantSpec, parse_tenant
from tenant_registry.view import copy_record
from tenant_registry.view_types import (
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    blocker_info,
    is_copy,
    namespace_info,
    service_account_info,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
NO_MATCH = 1

# -- images -------------------------------------------------------------------------------


def _entry_text(entry: Entry, key: str) -> str:
    parts = []
    if entry.source:
        parts.append(entry.source)
    if entry.server != key:
        parts.append(f"server {entry.server}")
    return f" ({', '.join(parts)})" if parts else ""


def image_lines(image: str, name: ImageName, explanation: Explanation) -> list[str]:
    """The lookup, in words: keys tried in order (with the quirks they rely on), keys not
    tried and why, entries the kubelet ignores."""
    ref = name.reference
    what = f"digest {name.digest}" if name.digest else f"tag {name.tag}"
    if not ref.tag and not ref.digest:
        what += ", the default when none is given"
    lines = [f"image {image}: the kubelet looks up credentials for {name.repository} ({what})"]
    if explanation.hits:
        lines.append("keys the kubelet tries, most specific first:")
        n = 0
        for hit in explanation.hits:
            for entry in hit.entries:
                n += 1
                lines.append(f"  {n}. {hit.key}{_entry_text(entry, hit.key)}")
            lines += [f"     quirk: {q}" for q in hit.quirks]
            lines += [f"     note: {q}" for q in hit.notes]
    else:
        lines.append(f"no key matches: the kubelet pulls {name.repository} anonymously")
    if explanation.misses:
        lines.append("not tried:")
        for miss in explanation.misses:
            sources = "".join(_entry_text(e, miss.key) for e in miss.entries[:1])
            lines.append(f"  - {miss.key}{sources}: {miss.reason}")
    for ignored in explanation.ignored:
        lines.append(
            f"ignored by the kubelet: {ignored.entry.server!r}"
            f"{f' ({ignored.entry.source})' if ignored.entry.source else ''}: {ignored.reason}"
        )
    if explanation.hits:
        lines.append(
            "The kubelet offers these credentials in this order and stops at the first pull "
            "that succeeds; if every one fails, the pull fails (it does not retry anonymously)."
        )
    return lines


def parse_image_argument(image: str) -> ImageName:
    try:
        return parse_image_name(image)
    except InvalidReference as e:
        raise UsageError(
            f"IMAGE {image!r} is not an image reference the kubelet accepts ({e}); a Pod "
            "with it waits in InvalidImageName"
        ) from None


def explain_servers(image: str, servers: Sequence[str]) -> tuple[list[str], int]:
    """`explain IMAGE SERVER...`: no cluster needed."""
    name = parse_image_argument(image)
    keyring = Keyring()
    for server in servers:
        try:
            config_key(server)
        except UnusableKey as e:
            raise UsageError(
                f"SERVER {server!r} is not a key the kubelet can use: Go's URL parser rejects "
                f"it ({e}), so the kubelet ignores it"
            ) from None
    keyring.add(servers)
    explanation = keyring.explain(name.repository)
    lines = image_lines(image, name, explanation)
    for server in servers:
        try:
            parse_key(server)
        except InvalidKey as e:
            lines.append(f"note: a TenantRegistry cannot name {server!r}: {e}")
    return lines, 0 if explanation.hits else NO_MATCH


@dataclass(frozen=True)
class PullSecret:
    """What the kubelet makes of one imagePullSecrets entry."""

    name: str
    secret: dict[str, Any] | None  # None: not found

    def describe(self) -> tuple[str, list[str] | None, str]:
        """(state, servers or None, problem) without any credential value."""
        if self.secret is None:
            return (
                "not found: the kubelet skips it and posts the Event "
                "FailedToRetrieveImagePullSecret",
                None,
                "",
            )
        kind = self.secret.get("type") or "Opaque"
        try:
            servers = pull_secret_servers(kind, self.secret.get("data") or {})
        except BrokenPullSecret as e:
            return (
                f"{kind}, but the kubelet cannot decode it ({e}): every image pull of the "
                "Pod fails, whatever the other pull secrets hold",
                None,
                str(e),
            )
        if servers is None:
            return (
                f"type {kind}: the kubelet ignores it (it reads only "
                "kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg Secrets with "
                "their data key set)",
                None,
                "",
            )
        owner = ""
        if is_copy(self.secret):
            tenant = (self.secret["metadata"].get("labels") or {}).get(names.LABEL_TENANT, "")
            owner = f"; the operator's copy for TenantRegistry {tenant}"
        return f"{kind}{owner}: keys {', '.join(servers) or '(none)'}", servers, ""


def keyring_lines(
    image: str,
    name: ImageName,
    namespace: str,
    account: Mapping[str, Any],
    secrets: Mapping[str, dict[str, Any] | None],
) -> tuple[list[str], bool]:
    """One ServiceAccount's pull secrets, read as the kubelet builds a Pod's keyring."""
    sa = service_account_info(dict(account))
    listed = [n for n in sa.pull_secrets if n]
    lines = [
        f"ServiceAccount {namespace}/{sa.name}: imagePullSecrets "
        + (", ".join(listed) if listed else "(none)")
    ]
    keyring = Keyring()
    broken = False
    for secret_name in listed:
        pull = PullSecret(secret_name, secrets.get(secret_name))
        state, servers, problem = pull.describe()
        lines.append(f"  Secret {secret_name}: {state}")
        broken = broken or bool(problem)
        if servers is not None:
            keyring.add(servers, source=f"Secret {secret_name}")
    explanation = keyring.explain(name.repository)
    if broken:
        lines.append(
            "  the kubelet fails this Pod's pulls before it looks up any key: fix or remove "
            "the Secret above"
        )
    lines += ["  " + line for line in image_lines(image, name, explanation)]
    return lines, bool(explanation.hits) and not broken


def explain_in_namespace(
    cluster: Cluster, image: str, namespace: str, accounts: Sequence[str]
) -> tuple[list[str], int]:
    name = parse_image_argument(image)
    _check_namespace_name(namespace, "--namespace")
    if cluster.get_namespace(namespace) is None:
        raise UsageError(f"--namespace {namespace}: no such namespace")
    lines: list[str] = []
    all_found = True
    for sa_name in accounts:
        account = cluster.get_service_account(namespace, sa_name)
        if account is None:
            raise UsageError(
                f"--service-account {sa_name}: no ServiceAccount {sa_name} in {namespace}"
            )
        wanted = {(p or {}).get("name") for p in account.get("imagePullSecrets") or []}
        secrets = {n: cluster.get_secret(namespace, n) for n in wanted if n}
        more, found = keyring_lines(image, name, namespace, account, secrets)
        lines += more
        all_found = all_found and found
    lines.append(
        "A Pod gets its ServiceAccount's imagePullSecrets only if it lists none itself, and only "
        "when it is created: a Pod created before an entry was added keeps its old list. The "
        "node's own credentials (its config.json, credential provider plugins) come after "
        "these; this command cannot see them."
    )
    return lines, 0 if all_found else NO_MATCH


# -- namespaces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceFacts:
    """Everything `explain namespace` reads, as plain objects (the pure part's input)."""

    namespace: dict[str, Any]
    tenants: list[dict[str, Any]]
    credentials: dict[str, dict[str, Any]]
    copies: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    # Secrets in this namespace named like some tenant's copy, that are not copies.
    in_the_way: dict[str, dict[str, Any]]


def _copy_state(
    spec: TenantSpec,
    intent: Any,
    copies: Mapping[str, CopyInfo],
    in_the_way: Mapping[str, dict[str, Any]],
) -> str:
    name = spec.secret_name
    existing = copies.get(name)
    if existing is not None and existing.tenant != spec.name:
        return f"Secret {name} is the copy of TenantRegistry {existing.tenant}: OwnedByOtherTenant"
    if existing is not None:
        if not isinstance(intent, Active):
            return f"Secret {name} is its copy (content not compared: {intent_text(intent)})"
        want = intent.copy.content_hash
        problems = []
        if existing.data_hash != want:
            problems.append(
                f"its content ({existing.data_hash}) differs from the tenant's ({want})"
            )
        elif existing.annotated_hash != want:
            problems.append("its content-hash annotation is stale")
        if existing.secret_type != names.DOCKERCONFIGJSON_TYPE:
            problems.append(f"it has type {existing.secret_type}")
        if spec.uid and spec.uid not in existing.owner_uids:
            problems.append("it lacks the owner reference to the TenantRegistry")
        if problems:
            return f"Secret {name} is its copy, but {'; '.join(problems)}"
        return f"Secret {name} is its copy; the content hash matches the tenant's ({want})"
    other = in_the_way.get(name)
    if other is None:
        return f"Secret {name} is absent"
    kind = other.get("type") or "Opaque"
    text = f"Secret {name} exists and is not the operator's (type {kind}): "
    if spec.conflict_policy == "Skip":
        return text + "conflictPolicy Skip leaves it untouched (UnmanagedSecretExists)"
    meta = other.get("metadata") or {}
    consent = (meta.get("annotations") or {}).get(names.ANNOTATION_ADOPT)
    controlled = any(o.get("controller") for o in meta.get("ownerReferences") or [])
    if kind != names.DOCKERCONFIGJSON_TYPE:
        return text + f"only a {names.DOCKERCONFIGJSON_TYPE} Secret can be adopted"
    if controlled:
        return text + "another controller owns it, so it is never adopted"
    if consent != spec.name:
        return text + (
            f"conflictPolicy Adopt, but it is adopted only with the annotation "
            f"{names.ANNOTATION_ADOPT}={spec.name} (it has "
            f"{consent if consent is not None else 'none'}); the admission policy refuses "
            "the takeover"
        )
    return text + "conflictPolicy Adopt and its owner consented: the operator adopts it"


def intent_text(intent: Any) -> str:
    if isinstance(intent, Frozen):
        return f"{intent.reason}: {intent.message}" if intent.message else intent.reason
    if isinstance(intent, Gone):
        return "being deleted: the operator removes everything it wrote for it"
    return "active"


def namespace_lines(facts: NamespaceFacts, operator_namespace: str) -> list[str]:
    """`explain namespace`, from what was read: pure."""
    ns = namespace_info(facts.namespace)
    labels = ", ".join(f"{k}={v}" for k, v in sorted(ns.labels.items())) or "(none)"
    lines = [f"namespace {ns.name} (labels: {labels})"]
    if ns.terminating:
        lines.append(
            "  terminating: the operator skips it (it rejects creates and loses everything anyway)"
        )
    copies = {c.name: c for c in map(copy_record, facts.copies)}
    accounts = [service_account_info(a) for a in facts.accounts]
    live = Live(
        namespaces={ns.name: ns},
        accounts={ns.name: {a.name: a for a in accounts}},
        copies={ns.name: copies},
    )
    detailed: list[str] = []
    brief: list[str] = []  # tenants with nothing to say here but why not
    for body in sorted(facts.tenants, key=lambda b: str(b["metadata"]["name"])):
        tenant = str(body["metadata"]["name"])
        more = _tenant_lines(body, tenant, ns, copies, accounts, facts, live, operator_namespace)
        (brief if len(more) == 1 else detailed).extend(more)
    lines += detailed + brief
    lines += _account_lines(ns.name, accounts)
    if not facts.tenants:
        lines.append("no TenantRegistry exists")
    return lines


def _tenant_lines(
    body: dict[str, Any],
    tenant: str,
    ns: NamespaceInfo,
    copies: Mapping[str, CopyInfo],
    accounts: list[ServiceAccountInfo],
    facts: NamespaceFacts,
    live: Live,
    operator_namespace: str,
) -> list[str]:
    try:
        spec = parse_tenant(body, operator_namespace)
    except InvalidInput as e:
        return [
            f"TenantRegistry {tenant}: its spec is invalid, so the operator writes and removes "
            f"nothing for it: {e}"
        ]
    intent = tenant_intent(body, facts.credentials, operator_namespace)
    why = why_namespace_selected(spec.namespaces, ns.name, ns.labels, operator_namespace)
    selected = why.selected and not ns.terminating
    head = f"TenantRegistry {tenant}: {'selects' if selected else 'does not select'} {ns.name}"
    if not isinstance(intent, Active):
        head += f" ({intent_text(intent)})"
    lines = [head] + [f"  - {r}" for r in why.reasons]
    if why.selected and ns.terminating:
        lines.append("  - but the namespace is terminating")
    ours_elsewhere = [
        c for c in copies.values() if c.tenant == tenant and c.name != spec.secret_name
    ]
    in_the_way = facts.in_the_way.get(spec.secret_name)
    blocker = blocker_info(in_the_way) if in_the_way is not None else None
    pair = PairInput(tenant, ns, tuple(copies.values()), tuple(accounts), blocker=blocker)
    plan = plan_pair(intent, pair, operator_namespace)
    blocked = plan.outcome.state == "failed" and plan.outcome.subject_kind == "Secret"
    if selected:
        lines.append(f"  copy: {_copy_state(spec, intent, copies, facts.in_the_way)}")
        for sa in accounts:
            if service_account_selected(spec.service_accounts, sa.name, sa.labels):
                lines.append(
                    f"  ServiceAccount {sa.name} (selected): "
                    + _entry_state(sa, tenant, spec.secret_name, blocked)
                )
    for c in ours_elsewhere:
        lines.append(f"  leftover: Secret {c.name} is its copy under an old secretName")
    for op in plan.operations:
        lines.append(f"  the operator would: {describe(op, live)}")
    if plan.outcome.state == "failed":
        lines.append(f"  blocked: {plan.outcome.reason}: {plan.outcome.message}")
    elif selected and not plan.operations and isinstance(intent, Active):
        lines.append("  nothing left to do: the copy and entries are as the tenant wants")
    for failure in (body.get("status") or {}).get("failures") or []:
        if failure.get("namespace") == ns.name:
            lines.append(
                f"  status: listed as failed: {failure.get('reason')}: {failure.get('message')}"
            )
    if not why.selected and len(lines) == 1 + len(why.reasons):
        # Not selected and holding nothing here: one line, so many tenants stay readable.
        return [f"{head}: {'; '.join(why.reasons)}"]
    return lines


def _entry_state(sa: ServiceAccountInfo, tenant: str, entry: str, blocked: bool) -> str:
    if entry in sa.pull_secrets:
        if (tenant, entry) in sa.ours:
            return f"has the entry {entry}, added by the operator"
        others = sorted(t for t, s in sa.ours if s == entry and t != tenant)
        if others:
            return f"has an entry {entry}, added by the operator for TenantRegistry {others[0]}"
        return f"has the entry {entry}, the user's own (left alone, never claimed)"
    if (tenant, entry) in sa.contested:
        return f"has no entry {entry}: another writer kept removing it, the operator gave up"
    if blocked:
        return f"has no entry {entry}: none is added while the copy is blocked"
    return f"has no entry {entry} yet"


def _account_lines(namespace: str, accounts: list[ServiceAccountInfo]) -> list[str]:
    lines = [f"ServiceAccounts in {namespace}:"]
    for sa in sorted(accounts, key=lambda a: a.name):
        entries = ", ".join(n for n in sa.pull_secrets if n) or "(none)"
        text = f"  {sa.name}: imagePullSecrets {entries}"
        if sa.ours:
            text += "; the operator's: " + ", ".join(
                f"{s} (TenantRegistry {t})" for t, s in sa.ours
            )
        if sa.contested:
            text += "; given up as contested (another writer kept removing it): " + ", ".join(
                f"{s} (TenantRegistry {t})" for t, s in sa.contested
            )
        lines.append(text)
    if len(lines) == 1:
        lines.append(
            "  (none yet: kube-controller-manager creates default shortly after the namespace)"
        )
    return lines


def read_namespace_facts(
    cluster: Cluster, namespace: str, operator_namespace: str
) -> NamespaceFacts:
    _check_namespace_name(namespace, "NAMESPACE")
    obj = cluster.get_namespace(namespace)
    if obj is None:
        raise UsageError(f"NAMESPACE {namespace}: no such namespace")
    try:
        tenants = cluster.list_objects(names.PLURAL)[0]
    except ApiError as e:
        if e.kind != GONE:
            raise
        tenants = []  # no CRD: no TenantRegistry
    credentials = {
        s["metadata"]["name"]: s
        for s in cluster.list_objects("secrets", namespace=operator_namespace)[0]
    }
    copies = cluster.list_objects(
        "secrets", namespace=namespace, label_selector=names.COPY_SELECTOR
    )[0]
    accounts = cluster.list_service_accounts(namespace)
    copy_names = {c["metadata"]["name"] for c in copies}
    in_the_way: dict[str, dict[str, Any]] = {}
    for body in tenants:
        secret_name = (body.get("spec") or {}).get("secretName")
        if isinstance(secret_name, str) and secret_name and secret_name not in copy_names:
            secret = cluster.get_secret(namespace, secret_name)
            if secret is not None and not is_copy(secret):
                in_the_way[secret_name] = secret
    return NamespaceFacts(obj, tenants, credentials, copies, accounts, in_the_way)


def _check_namespace_name(name: str, what: str) -> None:
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise UsageError(f"{what} {name!r} is not a namespace name (a lowercase RFC 1123 label)")


# -- the command --------------------------------------------------------------------------


def build_parser(prog: str) -> Parser:
    parser = Parser(
        prog=prog,
        usage=(
            f"{prog} IMAGE (SERVER... | --namespace NS [--service-account SA]...)\n"
            f"       {prog} namespace NS"
        ),
        description=(
            "Which registry keys the kubelet would try for IMAGE, most specific first (given "
            "as SERVER..., or read from the pull secrets of a namespace's ServiceAccounts), or "
            "why the tenants do or do not serve a namespace. Reads the live cluster; writes "
            "nothing. Exit 0: a key matches (or the namespace was explained), 1: no key "
            "matches, 2: a bad argument or an unreadable cluster."
        ),
    )
    parser.add_argument("image", metavar="IMAGE", help="an image reference, or `namespace`")
    parser.add_argument("servers", metavar="SERVER", nargs="*", default=[], help="registry keys")
    parser.add_argument("-n", "--namespace", help="read the pull secrets of this namespace")
    parser.add_argument(
        "--service-account",
        action="append",
        metavar="SA",
        help="with --namespace: whose imagePullSecrets to read (default: default; repeatable)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=names.DEFAULT_OPERATOR_NAMESPACE,
        help="the operator's namespace, where the credential Secrets are",
    )
    add_cluster_arguments(parser)
    return parser


def main(argv: list[str], prog: str) -> int:
    def command(opened: list[Cluster]) -> int:
        args = build_parser(prog).parse_args(argv)
        if args.image == "namespace" and args.namespace is None:
            if len(args.servers) != 1:
                raise UsageError("namespace: give exactly one NAMESPACE")
            if args.service_account:
                raise UsageError("--service-account goes with IMAGE --namespace NS")
            cluster = connect(args.kubeconfig, args.context)
            opened.append(cluster)
            facts = read_namespace_facts(cluster, args.servers[0], args.operator_namespace)
            print("\n".join(namespace_lines(facts, args.operator_namespace)))
            return 0
        if args.namespace is not None and args.servers:
            raise UsageError(
                f"SERVER {args.servers[0]!r}: give either SERVER... or --namespace, not both"
            )
        if args.namespace is None:
            if args.service_account:
                raise UsageError("--service-account needs --namespace")
            if not args.servers:
                raise UsageError(
                    "give the registry keys to check (SERVER...) or --namespace NS to read them "
                    "from the cluster"
                )
            lines, code = explain_servers(args.image, args.servers)
        else:
            parse_image_argument(args.image)  # a bad IMAGE is named before the cluster is read
            cluster = connect(args.kubeconfig, args.context)
            opened.append(cluster)
            lines, code = explain_in_namespace(
                cluster, args.image, args.namespace, args.service_account or ["default"]
            )
        print("\n".join(lines))
        return code

    return run(prog, command)
