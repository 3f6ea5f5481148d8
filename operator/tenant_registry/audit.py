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

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tenant_registry.imagerefs import InvalidReference, parse_image_name, parse_normalized_named
from tenant_registry.keyring import Keyring
from tenant_registry.view_types import ServiceAccountInfo

ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF = "ErrImagePull", "ImagePullBackOff"
PULL_WAITING = (ERR_IMAGE_PULL, IMAGE_PULL_BACK_OFF)
MISSING_SECRET_REASON = "FailedToRetrieveImagePullSecret"  # noqa: S105 (an Event reason)
MAX_ITEMS = 20  # per list in status; `count` says how many there are in all
# Status and Event texts are cut to these (a Pod's image is any string the API server took,
# up to the Pod's size: unbounded, it would make status.audit too large to write).
MAX_IMAGE = 512  # a valid reference: name <= 255, tag <= 128, digest ~ 100
MAX_TEXT = 400  # hints and parse errors
MAX_SECRETS = 10  # names per missingPullSecrets item
# Controllers that make a new Pod when one of theirs is deleted (the opt-in restart deletes
# only Pods these own; a ConfigMap or an unknown custom resource as `controller` promises
# nothing).
RESTARTABLE_OWNERS = frozenset(
    {
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
    }
)

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
    owner_api_version: str = ""  # of the controller ownerReference
    owner_uid: str = ""
    deleting: bool = False  # metadata.deletionTimestamp is set


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
    owner = next(
        (o for o in meta.get("ownerReferences") or [] if o.get("controller") is True), None
    )
    controller = f"{owner.get('kind', '')}/{owner.get('name', '')}" if owner else ""
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
        owner_api_version=str(owner.get("apiVersion", "")) if owner else "",
        owner_uid=str(owner.get("uid", "")) if owner else "",
        deleting=bool(meta.get("deletionTimestamp")),
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


def cut(text: str, limit: int) -> str:
    """`text`, or its first characters and "..." to make `limit` in all."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid_reason(image: str) -> str:
    """Why the kubelet cannot parse `image` (it fails the container with InvalidImageName),
    or "" when it can."""
    try:
        parse_normalized_named(image)  # what parse_image_name runs (without the image again)
    except InvalidReference as e:
        return cut(str(e) or "invalid reference format", MAX_TEXT)
    return ""


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
    reason: str  # ErrImagePull | ImagePullBackOff (in Events only: it flips every back-off)
    cause: str  # the AUTH_MARKERS entry found
    hint: str


@dataclass(frozen=True, order=True)
class MissingSecrets:
    namespace: str
    pod: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, order=True)
class ImageUse:
    """An image used in a namespace: uncovered, invalid, or with a floating tag."""

    namespace: str
    image: str
    pods: int
    first_pod: str  # the Pod an Event is about
    pull_policy: str = ""  # floating tags: the policy the Pods have (first one's)
    tag: str = ""  # floating tags: latest | untagged
    error: str = ""  # invalid images: the parse error


@dataclass(frozen=True)
class Findings:
    pods: int
    pull_failures: tuple[PullFailure, ...]
    missing_secrets: tuple[MissingSecrets, ...]
    uncovered: tuple[ImageUse, ...]
    floating: tuple[ImageUse, ...]
    invalid: tuple[ImageUse, ...] = ()


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
    own = own_pull_secrets(pod, sa)
    if own:
        return (
            f"the Pod names imagePullSecrets of its own ({', '.join(own[:3])}), so admission "
            f"copied none from ServiceAccount {pod.service_account}: add {entry} to the Pod's "
            "(its template's) imagePullSecrets"
        )
    if sa is not None and entry in sa.pull_secrets:
        return (
            f"ServiceAccount {pod.service_account} has {entry} but the Pod lacks it: the Pod "
            "was created before the entry (admission copies entries only at creation); "
            "recreate the Pod"
        )
    return f"ServiceAccount {pod.service_account} lacks {entry}: the tenant does not select it"


def own_pull_secrets(pod: PodRecord, sa: ServiceAccountInfo | None) -> tuple[str, ...]:
    """The Pod's imagePullSecrets its ServiceAccount does not list. Admission copies the
    ServiceAccount's entries into a Pod only when the Pod names none: a Pod naming others
    named them itself, and a new one from the same template gets no entry either."""
    has = set(sa.pull_secrets) if sa is not None else set()
    return tuple(s for s in pod.pull_secrets if s not in has)


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
                        cut(_hint(pod, c.image, tenant, keyring, accounts), MAX_TEXT),
                    )
                )
    live = {p.uid: p for p in ordered}
    missing: dict[tuple[str, str], set[str]] = {}
    for e in events:
        about = live.get(e.pod_uid)
        if about is not None and about.name == e.pod and e.secrets:
            missing.setdefault((about.namespace, about.name), set()).update(e.secrets)
    uncovered, floating, invalid = [], [], []
    for image, users in sorted(uses.items()):
        ns = users[0][0].namespace
        names = sorted({p.name for p, _ in users})
        error = invalid_reason(image)
        if error:
            invalid.append(ImageUse(ns, image, len(names), names[0], error=error))
            continue
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
        invalid=tuple(invalid),
    )


def combine(parts: Iterable[Findings]) -> Findings:
    parts = list(parts)
    return Findings(
        pods=sum(p.pods for p in parts),
        pull_failures=tuple(sorted(f for p in parts for f in p.pull_failures)),
        missing_secrets=tuple(sorted(f for p in parts for f in p.missing_secrets)),
        uncovered=tuple(sorted(f for p in parts for f in p.uncovered)),
        floating=tuple(sorted(f for p in parts for f in p.floating)),
        invalid=tuple(sorted(f for p in parts for f in p.invalid)),
    )


# -- status --------------------------------------------------------------------------------
# The lists of status.audit, each with the key that identifies one of its findings across
# audits (a new key is a transition: it earns an Event).
LISTS = ("pullFailures", "missingPullSecrets", "uncoveredImages", "floatingTags", "invalidImages")
Key = tuple[str, ...]
F = TypeVar("F")  # a kind of finding


def list_keys(findings: Findings) -> dict[str, list[Key]]:
    return {
        "pullFailures": [("pull", f.namespace, f.pod, f.container) for f in findings.pull_failures],
        "missingPullSecrets": [
            ("secret", m.namespace, m.pod, *m.secrets) for m in findings.missing_secrets
        ],
        "uncoveredImages": [("uncovered", u.namespace, u.image) for u in findings.uncovered],
        "floatingTags": [("floating", u.namespace, u.image) for u in findings.floating],
        "invalidImages": [("invalid", u.namespace, u.image) for u in findings.invalid],
    }


def digest(keys: Iterable[Key]) -> str:
    """A short digest of a whole list's keys (listed or not): after a restart, a list whose
    digest is unchanged is known in full, so findings beyond the listed ones are not announced
    again."""
    text = "\n".join(sorted("\x1f".join(k) for k in keys))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bounded(items: list[dict[str, Any]], keys: list[Key]) -> dict[str, Any]:
    shown = items[:MAX_ITEMS]
    return {
        "count": len(items),
        "omitted": len(items) - len(shown),
        "digest": digest(keys),
        "items": shown,
    }


def audit_status(findings: Findings) -> dict[str, Any]:
    """`status.audit`: counts of everything, at most MAX_ITEMS items per list, every text cut
    to a bound. Only what stays while a finding stays: no Pod counts (they change with every
    scale-up), no waiting reason or kubelet message (they change with every back-off, and
    the message can carry URLs with signed query strings into a cluster-scoped object)."""
    keys = list_keys(findings)
    return {
        "pullFailures": _bounded(
            [
                {
                    "namespace": f.namespace,
                    "pod": f.pod,
                    "container": f.container,
                    "image": cut(f.image, MAX_IMAGE),
                    "cause": f.cause,
                    "hint": f.hint,
                }
                for f in findings.pull_failures
            ],
            keys["pullFailures"],
        ),
        "missingPullSecrets": _bounded(
            [
                {"namespace": m.namespace, "pod": m.pod, "secrets": list(m.secrets[:MAX_SECRETS])}
                for m in findings.missing_secrets
            ],
            keys["missingPullSecrets"],
        ),
        "uncoveredImages": _bounded(
            [
                {"namespace": u.namespace, "image": cut(u.image, MAX_IMAGE)}
                for u in findings.uncovered
            ],
            keys["uncoveredImages"],
        ),
        "floatingTags": _bounded(
            [
                {
                    "namespace": u.namespace,
                    "image": cut(u.image, MAX_IMAGE),
                    "tag": u.tag,
                    "pullPolicy": u.pull_policy,
                    "defaultPullPolicy": default_pull_policy(u.image),
                }
                for u in findings.floating
            ],
            keys["floatingTags"],
        ),
        "invalidImages": _bounded(
            [
                {"namespace": u.namespace, "image": cut(u.image, MAX_IMAGE), "error": u.error}
                for u in findings.invalid
            ],
            keys["invalidImages"],
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


def finding_keys(findings: Findings) -> frozenset[Key]:
    """What identifies each finding across audits (a new key is a transition)."""
    return frozenset(k for keys in list_keys(findings).values() for k in keys)


def stored_keys(
    audit: Mapping[str, Any] | None, findings: Findings | None = None
) -> frozenset[Key]:
    """The keys of the findings a stored `status.audit` knew (so a restarted operator does not
    announce them again): those it lists, and, with the current `findings`, every key of a
    list whose stored digest is the digest of its current keys (nothing in it changed)."""
    if not audit:
        return frozenset()

    def items(name: str) -> list[Mapping[str, Any]]:
        return list((audit.get(name) or {}).get("items") or [])

    keys: set[Key] = set()
    keys.update(
        ("pull", str(i.get("namespace")), str(i.get("pod")), str(i.get("container")))
        for i in items("pullFailures")
    )
    keys.update(
        ("secret", str(i.get("namespace")), str(i.get("pod")), *map(str, i.get("secrets") or []))
        for i in items("missingPullSecrets")
    )
    for name, kind in (
        ("uncoveredImages", "uncovered"),
        ("floatingTags", "floating"),
        ("invalidImages", "invalid"),
    ):
        keys.update((kind, str(i.get("namespace")), str(i.get("image"))) for i in items(name))
    if findings is not None:
        for name, current in list_keys(findings).items():
            if (audit.get(name) or {}).get("digest") == digest(current):
                keys.update(current)
    return frozenset(keys)


def notices(tenant: str, findings: Findings, known: frozenset[Key]) -> list[Notice]:
    """One Event per finding not in `known`: quiet while nothing changes."""
    prefix = f"TenantRegistry {tenant}: "
    keys = list_keys(findings)
    return [
        *_unknown(findings.pull_failures, keys["pullFailures"], known, prefix, _pull_notice),
        *_unknown(
            findings.missing_secrets, keys["missingPullSecrets"], known, prefix, _secrets_notice
        ),
        *_unknown(findings.uncovered, keys["uncoveredImages"], known, prefix, _uncovered_notice),
        *_unknown(findings.floating, keys["floatingTags"], known, prefix, _floating_notice),
        *_unknown(findings.invalid, keys["invalidImages"], known, prefix, _invalid_notice),
    ]


def _unknown(
    found: Iterable[F],
    keys: Iterable[Key],
    known: frozenset[Key],
    prefix: str,
    notice: Callable[[str, F], Notice],
) -> list[Notice]:
    """The notices of the findings (in `found`, their keys in `keys`) not in `known`."""
    return [notice(prefix, f) for f, key in zip(found, keys, strict=True) if key not in known]


def _pull_notice(prefix: str, f: PullFailure) -> Notice:
    return Notice(
        f.namespace,
        f.pod,
        "Warning",
        "PullUnauthorized",
        f"{prefix}container {f.container} cannot pull {cut(f.image, MAX_IMAGE)} "
        f"({f.reason}, {f.cause}): {f.hint}",
    )


def _secrets_notice(prefix: str, m: MissingSecrets) -> Notice:
    shown = ", ".join(m.secrets[:MAX_SECRETS])
    more = f" and {len(m.secrets) - MAX_SECRETS} more" if len(m.secrets) > MAX_SECRETS else ""
    return Notice(
        m.namespace,
        m.pod,
        "Warning",
        "PullSecretMissing",
        f"{prefix}the kubelet could not retrieve the image pull secret(s) "
        f"{shown}{more} this Pod names",
    )


def _uncovered_notice(prefix: str, u: ImageUse) -> Notice:
    return Notice(
        u.namespace,
        u.first_pod,
        "Normal",
        "ImageNotCovered",
        f"{prefix}no registry of this tenant covers {cut(u.image, MAX_IMAGE)} "
        f"({u.pods} Pod(s)); the kubelet pulls it with other credentials or none",
    )


def _floating_notice(prefix: str, u: ImageUse) -> Notice:
    return Notice(
        u.namespace,
        u.first_pod,
        "Normal",
        "FloatingImageTag",
        f"{prefix}{cut(u.image, MAX_IMAGE)} is {u.tag} ({u.pods} Pod(s)), pull policy "
        f"{u.pull_policy or '?'} (the API server's default for it: "
        f"{default_pull_policy(u.image)}); with Always every container start "
        "pulls, so it needs working credentials every time",
    )


def _invalid_notice(prefix: str, u: ImageUse) -> Notice:
    return Notice(
        u.namespace,
        u.first_pod,
        "Warning",
        "InvalidImageReference",
        f"{prefix}{cut(u.image, MAX_IMAGE)} is not a valid image reference "
        f"({u.error}; {u.pods} Pod(s)): the kubelet fails it with InvalidImageName",
    )


# -- the opt-in restart ------------------------------------------------------------------------
def restart_candidates(
    tenant: TenantKeys,
    keyring: Keyring,
    pods: Iterable[PodRecord],
    accounts: Mapping[str, ServiceAccountInfo],
) -> list[PodRecord]:
    """Pods to delete so that their controller makes new ones that get the entry: not being
    deleted already, owned by a controller that makes a new Pod (RESTARTABLE_OWNERS), a
    container in ImagePullBackOff for an authentication cause on an image the tenant covers,
    their ServiceAccount has the tenant's entry now and the Pod lacks it, and every entry the
    Pod has is its ServiceAccount's (so admission filled them in and will fill in the new
    Pod's, entry included; a Pod naming its own gets none)."""
    entry = tenant.secret_name
    out = []
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if pod.deleting or entry in pod.pull_secrets:
            continue
        kind = pod.controller.partition("/")[0]
        if (pod.owner_api_version, kind) not in RESTARTABLE_OWNERS:
            continue
        sa = accounts.get(pod.service_account)
        if sa is None or entry not in sa.pull_secrets or own_pull_secrets(pod, sa):
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
