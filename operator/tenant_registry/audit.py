"""The pull-readiness audit: what keeps a tenant's Pods from pulling, found before users do.

Pure: given a tenant's Pods (small records, see `pod_record`), the kubelet's
`FailedToRetrieveImagePullSecret` Events, the namespace's ServiceAccounts and the tenant's
registry keys, it returns the findings (bounded for status), the transitions that earn an
Event, and which Pods the opt-in restart may delete. The kubelet's own texts are the input:
- a container waiting in `ErrImagePull` carries the runtime's error (`rpc error: code = ...
  desc = failed to pull and unpack image ...: 401 Unauthorized`); in `ImagePullBackOff` the
  kubelet (1.32+) wraps the last one: `Back-off pulling image "IMAGE": ErrImagePull: ...`
  (pkg/kubelet/images/image_manager.go);
- `FailedToRetrieveImagePullSecret`: "Unable to retrieve some image pull secrets (a, b);
  attempting to pull the image may not succeed." (pkg/kubelet/kubelet.go).
Coverage is the kubelet's own lookup (keyring.py) against the tenant's `registries[].server`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_registry.imagerefs import InvalidReference, parse_image_name
from tenant_registry.keyring import Keyring
from tenant_registry.view_types import ServiceAccountInfo

ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF = "ErrImagePull", "ImagePullBackOff"
PULL_WAITING = (ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF)
MISSING_SECRET_REASON = "FailedToRetrieveImagePullSecret"  # noqa: S105 (an Event reason)
MAX_ITEMS = 20  # per list in status; `count` says how many there are in all
MAX_MESSAGE = 300

# What registries and runtimes say when credentials are missing or refused (containerd's
# resolver and docker's distribution errors; the HTTP status as Go prints it).
AUTH_MARKERS = (
    "401 Unauthorized",
    "403 Forbidden",
    "authorization failed",
    "failed to authorize",
    "pull access denied",
    "authentication required",
    "no basic auth credentials",
    "requested access to the resource is denied",
)
_MISSING_SECRETS = re.compile(
    r"^Unable to retrieve some image pull secrets \((?P<names>.*)\); "
    r"attempting to pull the image may not succeed\.$"
)


# -- records (from API objects; what the audit keeps per Pod) -----------------------------
@dataclass(frozen=True)
class ContainerRecord:
    name: str
    image: str
    pull_policy: str  # as stored: the API server defaults it when a Pod is created
    waiting_reason: str = ""
    waiting_message: str = ""


@dataclass(frozen=True)
class PodRecord:
    namespace: str
    name: str
    uid: str
    resource_version: str
    controller: str  # "ReplicaSet/web-5d8f" when an ownerReference has controller: true
    service_account: str
    pull_secrets: tuple[str, ...]
    containers: tuple[ContainerRecord, ...]


@dataclass(frozen=True)
class SecretEventRecord:
    """A kubelet `FailedToRetrieveImagePullSecret` Event about a Pod."""

    namespace: str
    name: str
    resource_version: str
    pod: str
    pod_uid: str
    secrets: tuple[str, ...]


def pod_record(obj: Mapping[str, Any]) -> PodRecord:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    controller = next(
        (
            f"{o.get('kind', '')}/{o.get('name', '')}"
            for o in meta.get("ownerReferences") or []
            if o.get("controller") is True
        ),
        "",
    )
    waiting: dict[str, tuple[str, str]] = {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        w = (cs.get("state") or {}).get("waiting") or {}
        if w:
            waiting[str(cs.get("name", ""))] = (str(w.get("reason", "")), str(w.get("message", "")))
    containers = tuple(
        ContainerRecord(
            str(c.get("name", "")),
            str(c.get("image", "")),
            str(c.get("imagePullPolicy", "")),
            *waiting.get(str(c.get("name", "")), ("", "")),
        )
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    )
    return PodRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        controller=controller,
        service_account=str(spec.get("serviceAccountName") or "default"),
        pull_secrets=tuple(
            str(s.get("name", "")) for s in spec.get("imagePullSecrets") or [] if s.get("name")
        ),
        containers=containers,
    )


def missing_secret_names(message: str) -> tuple[str, ...] | None:
    """The Secret names in the kubelet's FailedToRetrieveImagePullSecret message."""
    m = _MISSING_SECRETS.match(message)
    if m is None:
        return None
    return tuple(n for n in m.group("names").split(", ") if n)


def secret_event_record(obj: Mapping[str, Any]) -> SecretEventRecord:
    meta = obj.get("metadata") or {}
    involved = obj.get("involvedObject") or {}
    secrets = None
    if obj.get("reason") == MISSING_SECRET_REASON and involved.get("kind") == "Pod":
        secrets = missing_secret_names(str(obj.get("message", "")))
    return SecretEventRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        pod=str(involved.get("name", "")) if secrets is not None else "",
        pod_uid=str(involved.get("uid", "")),
        secrets=secrets or (),
    )


# -- pure decisions ------------------------------------------------------------------------
def auth_cause(message: str) -> str:
    """The authentication failure a pull error message names, or "" if it names none."""
    lowered = message.lower()
    return next((m for m in AUTH_MARKERS if m.lower() in lowered), "")


def default_pull_policy(image: str) -> str:
    """The API server's default (SetDefaults_Container): Always when the tag is `latest`,
    given or implied (no tag and no digest), else IfNotPresent."""
    try:
        tag = parse_image_name(image).tag
    except InvalidReference:
        tag = ""
    return "Always" if tag == "latest" else "IfNotPresent"


def floating_tag(image: str) -> str:
    """`latest` or `untagged` for an image that names no fixed version, else ""."""
    try:
        name = parse_image_name(image)
    except InvalidReference:
        return ""
    if name.digest:
        return ""
    if not name.reference.tag:
        return "untagged"
    return "latest" if name.tag == "latest" else ""


def tenant_keyring(servers: Iterable[str]) -> Keyring:
    keyring = Keyring()
    keyring.add(servers)
    return keyring


def covering_key(keyring: Keyring, image: str) -> str | None:
    """The tenant's key the kubelet would try first for `image`; None if none (or the image
    cannot be parsed: the kubelet would not pull it at all)."""
    try:
        repository = parse_image_name(image).repository
    except InvalidReference:
        return None
    hits = keyring.lookup(repository)
    return hits[0].key if hits else None


@dataclass(frozen=True, order=True)
class PullFailure:
    namespace: str
    pod: str
    container: str
    image: str
    reason: str  # ErrImagePull | ImagePullBackOff
    cause: str  # the AUTH_MARKERS entry found
    message: str
    hint: str


@dataclass(frozen=True, order=True)
class MissingSecrets:
    namespace: str
    pod: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, order=True)
class ImageUse:
    """An image used in a namespace: uncovered, or with a floating tag."""

    namespace: str
    image: str
    pods: int
    first_pod: str  # the Pod an Event is about
    pull_policy: str = ""  # floating tags: the policy the Pods have (first one's)
    tag: str = ""  # floating tags: latest | untagged


@dataclass(frozen=True)
class Findings:
    pods: int
    pull_failures: tuple[PullFailure, ...]
    missing_secrets: tuple[MissingSecrets, ...]
    uncovered: tuple[ImageUse, ...]
    floating: tuple[ImageUse, ...]


@dataclass(frozen=True)
class TenantKeys:
    """What the audit needs of a tenant."""

    name: str
    secret_name: str  # the copy's name, i.e. the entry the operator adds
    servers: tuple[str, ...]


def _hint(
    pod: PodRecord,
    image: str,
    tenant: TenantKeys,
    keyring: Keyring,
    accounts: Mapping[str, ServiceAccountInfo],
) -> str:
    """What an admin should look at next, from what the operator knows."""
    key = covering_key(keyring, image)
    if key is None:
        return "no registry of this tenant covers this image"
    entry = tenant.secret_name
    if entry in pod.pull_secrets:
        return f"the Pod has {entry}; the registry refused the tenant's credentials for {key}"
    sa = accounts.get(pod.service_account)
    if sa is not None and entry in sa.pull_secrets:
        return (
            f"ServiceAccount {pod.service_account} has {entry} but the Pod lacks it: the Pod "
            "was created before the entry (admission copies entries only at creation); "
            "recreate the Pod"
        )
    return f"ServiceAccount {pod.service_account} lacks {entry}: the tenant does not select it"


def audit_namespace(
    tenant: TenantKeys,
    keyring: Keyring,
    pods: Iterable[PodRecord],
    events: Iterable[SecretEventRecord],
    accounts: Mapping[str, ServiceAccountInfo],
) -> Findings:
    """The findings of one tenant in one namespace."""
    ordered = sorted(pods, key=lambda p: p.name)
    failures: list[PullFailure] = []
    uses: dict[str, list[tuple[PodRecord, ContainerRecord]]] = {}
    for pod in ordered:
        for c in pod.containers:
            uses.setdefault(c.image, []).append((pod, c))
            if c.waiting_reason not in PULL_WAITING:
                continue
            cause = auth_cause(c.waiting_message)
            if cause:
                failures.append(
                    PullFailure(
                        pod.namespace,
                        pod.name,
                        c.name,
                        c.image,
                        c.waiting_reason,
                        cause,
                        c.waiting_message[:MAX_MESSAGE],
                        _hint(pod, c.image, tenant, keyring, accounts),
                    )
                )
    live = {p.uid: p for p in ordered}
    missing: dict[tuple[str, str], set[str]] = {}
    for e in events:
        about = live.get(e.pod_uid)
        if about is not None and about.name == e.pod and e.secrets:
            missing.setdefault((about.namespace, about.name), set()).update(e.secrets)
    uncovered, floating = [], []
    for image, users in sorted(uses.items()):
        ns = users[0][0].namespace
        names = sorted({p.name for p, _ in users})
        if covering_key(keyring, image) is None:
            uncovered.append(ImageUse(ns, image, len(names), names[0]))
        tag = floating_tag(image)
        if tag:
            policy = users[0][1].pull_policy
            floating.append(ImageUse(ns, image, len(names), names[0], policy, tag))
    return Findings(
        pods=len(ordered),
        pull_failures=tuple(failures),
        missing_secrets=tuple(
            MissingSecrets(ns, pod, tuple(sorted(s))) for (ns, pod), s in sorted(missing.items())
        ),
        uncovered=tuple(uncovered),
        floating=tuple(floating),
    )


def combine(parts: Iterable[Findings]) -> Findings:
    parts = list(parts)
    return Findings(
        pods=sum(p.pods for p in parts),
        pull_failures=tuple(sorted(f for p in parts for f in p.pull_failures)),
        missing_secrets=tuple(sorted(f for p in parts for f in p.missing_secrets)),
        uncovered=tuple(sorted(f for p in parts for f in p.uncovered)),
        floating=tuple(sorted(f for p in parts for f in p.floating)),
    )


# -- status --------------------------------------------------------------------------------
def _bounded(items: list[dict[str, Any]]) -> dict[str, Any]:
    shown = items[:MAX_ITEMS]
    return {"count": len(items), "omitted": len(items) - len(shown), "items": shown}


def audit_status(findings: Findings) -> dict[str, Any]:
    """`status.audit`: counts of everything, at most MAX_ITEMS items per list. No Pod counts
    (they change with every scale-up: the status changes only when a finding does)."""
    return {
        "pullFailures": _bounded(
            [
                {
                    "namespace": f.namespace,
                    "pod": f.pod,
                    "container": f.container,
                    "image": f.image,
                    "reason": f.reason,
                    "cause": f.cause,
                    "message": f.message,
                    "hint": f.hint,
                }
                for f in findings.pull_failures
            ]
        ),
        "missingPullSecrets": _bounded(
            [
                {"namespace": m.namespace, "pod": m.pod, "secrets": list(m.secrets)}
                for m in findings.missing_secrets
            ]
        ),
        "uncoveredImages": _bounded(
            [{"namespace": u.namespace, "image": u.image} for u in findings.uncovered]
        ),
        "floatingTags": _bounded(
            [
                {
                    "namespace": u.namespace,
                    "image": u.image,
                    "tag": u.tag,
                    "pullPolicy": u.pull_policy,
                    "defaultPullPolicy": default_pull_policy(u.image),
                }
                for u in findings.floating
            ]
        ),
    }


# -- transitions -> Events -------------------------------------------------------------------
@dataclass(frozen=True)
class Notice:
    """An Event about a Pod in a tenant namespace."""

    namespace: str
    pod: str
    type: str  # Normal | Warning
    reason: str
    message: str


def finding_keys(findings: Findings) -> frozenset[tuple[str, ...]]:
    """What identifies each finding across audits (a new key is a transition)."""
    keys: set[tuple[str, ...]] = set()
    keys.update(("pull", f.namespace, f.pod, f.container) for f in findings.pull_failures)
    keys.update(("secret", m.namespace, m.pod, *m.secrets) for m in findings.missing_secrets)
    keys.update(("uncovered", u.namespace, u.image) for u in findings.uncovered)
    keys.update(("floating", u.namespace, u.image) for u in findings.floating)
    return frozenset(keys)


def stored_keys(audit: Mapping[str, Any] | None) -> frozenset[tuple[str, ...]]:
    """The keys of the findings a stored `status.audit` lists (so a restarted operator does
    not announce them again)."""
    if not audit:
        return frozenset()

    def items(name: str) -> list[Mapping[str, Any]]:
        return list((audit.get(name) or {}).get("items") or [])

    keys: set[tuple[str, ...]] = set()
    keys.update(
        ("pull", str(i.get("namespace")), str(i.get("pod")), str(i.get("container")))
        for i in items("pullFailures")
    )
    keys.update(
        ("secret", str(i.get("namespace")), str(i.get("pod")), *map(str, i.get("secrets") or []))
        for i in items("missingPullSecrets")
    )
    keys.update(
        ("uncovered", str(i.get("namespace")), str(i.get("image")))
        for i in items("uncoveredImages")
    )
    keys.update(
        ("floating", str(i.get("namespace")), str(i.get("image"))) for i in items("floatingTags")
    )
    return frozenset(keys)


def notices(tenant: str, findings: Findings, known: frozenset[tuple[str, ...]]) -> list[Notice]:
    """One Event per finding not in `known`: quiet while nothing changes."""
    out: list[Notice] = []
    prefix = f"TenantRegistry {tenant}: "
    for f in findings.pull_failures:
        if ("pull", f.namespace, f.pod, f.container) not in known:
            out.append(
                Notice(
                    f.namespace,
                    f.pod,
                    "Warning",
                    "PullUnauthorized",
                    f"{prefix}container {f.container} cannot pull {f.image} ({f.reason}, "
                    f"{f.cause}): {f.hint}",
                )
            )
    for m in findings.missing_secrets:
        if ("secret", m.namespace, m.pod, *m.secrets) not in known:
            out.append(
                Notice(
                    m.namespace,
                    m.pod,
                    "Warning",
                    "PullSecretMissing",
                    f"{prefix}the kubelet could not retrieve the image pull secret(s) "
                    f"{', '.join(m.secrets)} this Pod names",
                )
            )
    for u in findings.uncovered:
        if ("uncovered", u.namespace, u.image) not in known:
            out.append(
                Notice(
                    u.namespace,
                    u.first_pod,
                    "Normal",
                    "ImageNotCovered",
                    f"{prefix}no registry of this tenant covers {u.image} ({u.pods} Pod(s)); "
                    "the kubelet pulls it with other credentials or none",
                )
            )
    for u in findings.floating:
        if ("floating", u.namespace, u.image) not in known:
            out.append(
                Notice(
                    u.namespace,
                    u.first_pod,
                    "Normal",
                    "FloatingImageTag",
                    f"{prefix}{u.image} is {u.tag} ({u.pods} Pod(s)), pull policy "
                    f"{u.pull_policy or '?'} (the API server's default for it: "
                    f"{default_pull_policy(u.image)}); with Always every container start "
                    "pulls, so it needs working credentials every time",
                )
            )
    return out


# -- the opt-in restart ------------------------------------------------------------------------
def restart_candidates(
    tenant: TenantKeys,
    keyring: Keyring,
    pods: Iterable[PodRecord],
    accounts: Mapping[str, ServiceAccountInfo],
) -> list[PodRecord]:
    """Pods to delete so that their controller makes new ones that get the entry: owned by a
    controller, a container in ImagePullBackOff for an authentication cause on an image the
    tenant covers, their ServiceAccount has the tenant's entry now and the Pod lacks it (a
    Pod's imagePullSecrets are copied from its ServiceAccount only at creation)."""
    entry = tenant.secret_name
    out = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if not pod.controller or entry in pod.pull_secrets:
            continue
        sa = accounts.get(pod.service_account)
        if sa is None or entry not in sa.pull_secrets:
            continue
        if any(
            c.waiting_reason == IMAGE_PULL_BACK_OFF
            and auth_cause(c.waiting_message)
            and covering_key(keyring, c.image) is not None
            for c in pod.containers
        ):
            out.append(pod)
    return out


class RestartBudget:
    """At most `per_minute` restarts in any 60 s, for the whole operator (a token bucket)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(0, per_minute))
        self.tokens = self.capacity
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.capacity / 60)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
