"""audit.py: the pull-readiness findings from Pods, the kubelet's Events and a tenant's keys."""

from __future__ import annotations

from typing import Any

import pytest

from tenant_registry import audit
from tenant_registry.audit import (
    PodRecord,
    RestartBudget,
    TenantKeys,
    audit_namespace,
    audit_status,
    notices,
    pod_record,
    restart_candidates,
    secret_event_record,
    stored_keys,
    tenant_keyring,
)
from tenant_registry.view_types import ServiceAccountInfo

IMAGE = "registry.acme.io/web/app:v1"
# The runtime's errors as containerd 1.6 words them, behind the gRPC status the kubelet prints.
RPC = "rpc error: code = Unknown desc = "
UNAUTHORIZED = (
    f'{RPC}failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": '
    "unexpected status from HEAD request to https://registry.acme.io/v2/web/app/manifests/v1: "
    "401 Unauthorized"
)
HUB_DENIED = (
    f'{RPC}failed to pull and unpack image "docker.io/library/nginz:latest": failed to resolve '
    'reference "docker.io/library/nginz:latest": pull access denied, repository does not exist '
    "or may require authorization: server message: insufficient_scope: authorization failed"
)
NOT_FOUND = (
    f'{RPC}failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": '
    f"{IMAGE}: not found"
)
# image_manager.go: the back-off message wraps the last pull error ("ErrImagePull: ...").
BACK_OFF = f'Back-off pulling image "{IMAGE}": ErrImagePull: {UNAUTHORIZED}'
# kubelet.go's FailedToRetrieveImagePullSecret message.
MISSING = (
    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed."
)
TENANT = TenantKeys("acme", "acme-pull", ("registry.acme.io",))
KEYRING = tenant_keyring(TENANT.servers)


def pod(
    name: str = "web",
    image: str = IMAGE,
    reason: str = "",
    message: str = "",
    *,
    owner: bool = True,
    secrets: tuple[str, ...] = (),
    sa: str = "default",
    policy: str = "IfNotPresent",
    uid: str = "",
    owner_kind: tuple[str, str] = ("apps/v1", "ReplicaSet"),
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "uid": uid or f"uid-{name}"}
    if owner:
        api, kind = owner_kind
        meta["ownerReferences"] = [
            {"apiVersion": api, "kind": kind, "name": "web-1", "uid": "rs-1", "controller": True}
        ]
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {}
    if reason:
        status["containerStatuses"] = [
            {"name": "app", "state": {"waiting": {"reason": reason, "message": message}}}
        ]
    return {
        "metadata": meta,
        "spec": {
            "serviceAccountName": sa,
            "imagePullSecrets": [{"name": s} for s in secrets],
            "containers": [{"name": "app", "image": image, "imagePullPolicy": policy}],
        },
        "status": status,
    }


def account(*pull_secrets: str, name: str = "default") -> dict[str, ServiceAccountInfo]:
    return {name: ServiceAccountInfo("ns", name, "1", pull_secrets=pull_secrets)}


def run(*pods: dict[str, Any], events: tuple[dict[str, Any], ...] = (), sa: Any = None) -> Any:
    return audit_namespace(
        TENANT,
        KEYRING,
        [pod_record(p) for p in pods],
        [secret_event_record(e) for e in events],
        account() if sa is None else sa,
    )


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (UNAUTHORIZED, "401 Unauthorized"),
        (BACK_OFF, "401 Unauthorized"),
        (HUB_DENIED, "authorization failed"),
        (f"{RPC}failed to pull and unpack image: 403 Forbidden", "403 Forbidden"),
        (NOT_FOUND, ""),
        (f'Back-off pulling image "{IMAGE}"', ""),  # a kubelet restarted: no last error
        ("", ""),
    ],
)
def test_auth_cause(message: str, cause: str) -> None:
    assert audit.auth_cause(message) == cause


@pytest.mark.parametrize(
    ("image", "policy", "floating"),
    [
        ("nginx", "Always", "untagged"),
        ("nginx:latest", "Always", "latest"),
        ("registry.acme.io:5000/web/app", "Always", "untagged"),
        ("nginx:1.27", "IfNotPresent", ""),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent", ""),
        ("nginx:latest@sha256:" + "a" * 64, "Always", ""),  # pinned, but the default is Always
        ("Bad Image!!", "IfNotPresent", ""),
    ],
)
def test_pull_policy_defaults_and_floating_tags(image: str, policy: str, floating: str) -> None:
    assert audit.default_pull_policy(image) == policy
    assert audit.floating_tag(image) == floating


@pytest.mark.parametrize(
    ("image", "covered"),
    [
        (IMAGE, "registry.acme.io"),
        ("registry.acme.io/other:1", "registry.acme.io"),
        ("registry.acme.io:5000/web/app:v1", None),  # another port: another registry
        ("docker.io/library/nginx:1", None),
        ("nginx", None),
        ("Bad Image!!", None),
    ],
)
def test_coverage_is_the_kubelets_lookup(image: str, covered: str | None) -> None:
    assert audit.covering_key(KEYRING, image) == covered


def test_path_prefix_quirk_counts_as_covered() -> None:
    keyring = tenant_keyring(["registry.acme.io/team"])
    assert audit.covering_key(keyring, "registry.acme.io/team-x/app:1") == "registry.acme.io/team"


def test_missing_secret_message() -> None:
    assert audit.missing_secret_names(MISSING.format("a, b-c")) == ("a", "b-c")
    assert audit.missing_secret_names("something else") is None


def test_pod_record_keeps_what_the_audit_needs() -> None:
    rec = pod_record(pod(reason="ErrImagePull", message=UNAUTHORIZED, secrets=("x",), sa="bot"))
    assert rec == PodRecord(
        "ns",
        "web",
        "uid-web",
        "",
        "ReplicaSet/web-1",
        "bot",
        ("x",),
        (audit.ContainerRecord("app", IMAGE, "IfNotPresent", "ErrImagePull", UNAUTHORIZED),),
        "apps/v1",
        "rs-1",
        False,
    )
    assert pod_record(pod(owner=False)).controller == ""
    assert pod_record(pod(deleting=True)).deleting


def test_pull_failures_only_with_an_authentication_cause() -> None:
    found = run(
        pod("a", reason="ErrImagePull", message=UNAUTHORIZED),
        pod("b", reason="ImagePullBackOff", message=BACK_OFF),
        pod("c", reason="ErrImagePull", message=NOT_FOUND),
        pod("d", reason="ContainerCreating"),
    )
    assert [(f.pod, f.reason, f.cause) for f in found.pull_failures] == [
        ("a", "ErrImagePull", "401 Unauthorized"),
        ("b", "ImagePullBackOff", "401 Unauthorized"),
    ]
    assert found.pods == 4


@pytest.mark.parametrize(
    ("secrets", "sa", "image", "hint"),
    [
        ((), ("acme-pull",), IMAGE, "ServiceAccount default has acme-pull but the Pod lacks it"),
        (("acme-pull",), ("acme-pull",), IMAGE, "the Pod has acme-pull; the registry refused"),
        ((), (), IMAGE, "ServiceAccount default lacks acme-pull"),
        ((), ("acme-pull",), "ghcr.io/x/y:1", "no registry of this tenant covers this image"),
        # a Pod naming its own: admission copied nothing, a new one would lack it too
        (("own",), ("acme-pull",), IMAGE, "the Pod names imagePullSecrets of its own (own)"),
        (("own",), (), IMAGE, "the Pod names imagePullSecrets of its own (own)"),
        # ...but entries its ServiceAccount had at the Pod's creation are the SA's
        (("users",), ("users", "acme-pull"), IMAGE, "ServiceAccount default has acme-pull"),
    ],
)
def test_hints(secrets: tuple[str, ...], sa: tuple[str, ...], image: str, hint: str) -> None:
    found = run(
        pod(image=image, reason="ErrImagePull", message=UNAUTHORIZED, secrets=secrets),
        sa=account(*sa),
    )
    assert found.pull_failures[0].hint.startswith(hint)


def event(pod_name: str, uid: str, message: str, reason: str = audit.MISSING_SECRET_REASON) -> Any:
    return {
        "metadata": {"namespace": "ns", "name": f"{pod_name}.1"},
        "involvedObject": {"kind": "Pod", "name": pod_name, "uid": uid, "namespace": "ns"},
        "reason": reason,
        "message": message,
    }


MISSING = (
    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed."
)


def test_missing_pull_secrets_of_live_pods_only() -> None:
    found = run(
        pod("a"),
        pod("b"),
        events=(
            event("a", "uid-a", MISSING.format("regcred")),
            event("a", "uid-a", MISSING.format("other, regcred")),
            event("b", "old-uid", MISSING.format("gone")),  # an earlier Pod of that name
            event("c", "uid-c", MISSING.format("gone")),  # no such Pod
        ),
    )
    assert [(m.pod, m.secrets) for m in found.missing_secrets] == [("a", ("other", "regcred"))]


def test_uncovered_and_floating_images() -> None:
    found = run(
        pod("a"),
        pod("b", image="nginx", policy="Always"),
        pod("c", image="nginx", policy="Always"),
        pod("d", image="registry.acme.io/web/app"),
    )
    assert [(u.image, u.pods, u.first_pod) for u in found.uncovered] == [("nginx", 2, "b")]
    assert [(u.image, u.tag, u.pull_policy) for u in found.floating] == [
        ("nginx", "untagged", "Always"),
        ("registry.acme.io/web/app", "untagged", "IfNotPresent"),
    ]


def test_status_is_bounded_and_says_how_many_were_cut() -> None:
    pods = [
        pod(f"p{i:02}", reason="ErrImagePull", message=UNAUTHORIZED + "x" * 500) for i in range(25)
    ]
    status = audit_status(run(*pods))
    failures = status["pullFailures"]
    assert (failures["count"], failures["omitted"], len(failures["items"])) == (25, 5, 20)
    assert status["floatingTags"] == {
        "count": 0,
        "omitted": 0,
        "digest": audit.digest([]),
        "items": [],
    }


def test_status_carries_no_kubelet_message() -> None:
    """The kubelet's text goes nowhere cluster-scoped: it names URLs (a redirected blob
    fetch's presigned query string) and flips with every back-off."""
    signed = UNAUTHORIZED.replace("manifests/v1", "blobs/x?X-Amz-Signature=secret")
    status = audit_status(run(pod(reason="ErrImagePull", message=signed)))
    assert "X-Amz" not in repr(status)
    assert set(status["pullFailures"]["items"][0]) == {
        "namespace", "pod", "container", "image", "cause", "hint",
    }  # fmt: skip


def test_status_is_the_same_across_the_kubelets_back_off_cycle() -> None:
    err = audit_status(run(pod(reason="ErrImagePull", message=UNAUTHORIZED)))
    back = audit_status(run(pod(reason="ImagePullBackOff", message=BACK_OFF)))
    assert err == back


def test_huge_and_invalid_images_are_bounded_and_reported_as_invalid() -> None:
    huge = "registry.acme.io/" + "a" * 90_000 + ":v1"
    found = run(
        pod("a", image=huge),
        pod("b", image="Bad Image!!"),
        pod("c", image="registry.acme.io/X:v1"),
        pod("d", image="registry.acme.io/ok:v1"),
    )
    assert found.uncovered == () and found.floating == ()
    assert [(u.first_pod, u.error) for u in sorted(found.invalid, key=lambda u: u.first_pod)] == [
        ("a", "repository name must not be more than 255 characters"),
        ("b", "invalid reference format: repository name (library/Bad Image!!) must be lowercase"),
        ("c", "invalid reference format: repository name (X) must be lowercase"),
    ]
    status = audit_status(found)
    assert status["invalidImages"]["count"] == 3
    assert max(len(i["image"]) for i in status["invalidImages"]["items"]) == audit.MAX_IMAGE
    assert len(repr(status)) < 3000
    assert [n.reason for n in notices("acme", found, frozenset())] == ["InvalidImageReference"] * 3
    assert max(len(n.message) for n in notices("acme", found, frozenset())) < 1000


def test_notices_on_transitions_only() -> None:
    found = run(pod("a", reason="ErrImagePull", message=UNAUTHORIZED), pod("b", image="nginx"))
    first = notices("acme", found, frozenset())
    assert [(n.pod, n.reason) for n in first] == [
        ("a", "PullUnauthorized"),
        ("b", "ImageNotCovered"),
        ("b", "FloatingImageTag"),
    ]
    assert notices("acme", found, audit.finding_keys(found)) == []
    # ...also after a restart, from what the stored status lists
    assert notices("acme", found, stored_keys(audit_status(found))) == []

    # ErrImagePull -> ImagePullBackOff is the same failure
    again = run(pod("a", reason="ImagePullBackOff", message=BACK_OFF), pod("b", image="nginx"))
    assert notices("acme", again, audit.finding_keys(found)) == []


def test_no_announcement_again_after_a_restart_beyond_the_listed_items() -> None:
    found = run(*[pod(f"p{i:02}", image=f"ghcr.io/x/{i}:1") for i in range(25)])
    stored = audit_status(found)
    assert stored["uncoveredImages"]["omitted"] == 5
    assert notices("acme", found, stored_keys(stored, found)) == []
    # one more: only it is announced (the digest no longer matches, the 20 listed are known)
    more = run(*[pod(f"p{i:02}", image=f"ghcr.io/x/{i}:1") for i in range(26)])
    assert len(notices("acme", more, stored_keys(stored, more))) == 6


@pytest.mark.parametrize(
    ("kwargs", "sa", "restart"),
    [
        ({}, ("acme-pull",), True),
        ({"owner": False}, ("acme-pull",), False),  # nobody would make it again
        ({}, (), False),  # the SA lacks the entry: a new Pod would fail the same way
        ({"secrets": ("acme-pull",)}, ("acme-pull",), False),  # has it: credentials refused
        ({"reason": "ErrImagePull", "message": UNAUTHORIZED}, ("acme-pull",), False),
        ({"message": f'Back-off pulling image "{IMAGE}"'}, ("acme-pull",), False),  # cause unknown
        ({"image": "ghcr.io/x/y:1"}, ("acme-pull",), False),  # the tenant does not cover it
        ({"deleting": True}, ("acme-pull",), False),  # being deleted already
        ({"secrets": ("own",)}, ("acme-pull",), False),  # its own: a new one lacks it too
        ({"secrets": ("users",)}, ("users", "acme-pull"), True),  # the SA's, copied in
        ({"owner_kind": ("apps/v1", "StatefulSet")}, ("acme-pull",), True),
        ({"owner_kind": ("apps/v1", "DaemonSet")}, ("acme-pull",), True),
        ({"owner_kind": ("batch/v1", "Job")}, ("acme-pull",), True),
        ({"owner_kind": ("v1", "ConfigMap")}, ("acme-pull",), False),  # makes no new Pod
        ({"owner_kind": ("example.com/v1", "ReplicaSet")}, ("acme-pull",), False),
    ],
)
def test_restart_candidates(kwargs: dict[str, Any], sa: tuple[str, ...], restart: bool) -> None:
    args: dict[str, Any] = {"reason": "ImagePullBackOff", "message": BACK_OFF, **kwargs}
    if "image" in kwargs:
        args["message"] = BACK_OFF.replace(IMAGE, kwargs["image"])
    rec = pod_record(pod(**args))
    assert (restart_candidates(TENANT, KEYRING, [rec], account(*sa)) == [rec]) is restart


def test_restart_budget() -> None:
    budget = RestartBudget(2)
    assert [budget.take(0), budget.take(0), budget.take(1)] == [True, True, False]
    assert budget.take(31)  # one token back per 30 s
    assert not budget.take(31)
    assert not RestartBudget(0).take(0)


def test_the_pod_admission_policy_knows_the_same_authentication_causes() -> None:
    """deploy/admission-policy.yaml lets the operator delete only a Pod whose waiting message
    names one of audit.AUTH_MARKERS (lower-cased there: it compares with lowerAscii())."""
    import pathlib

    import yaml

    path = pathlib.Path(__file__).parents[2] / "deploy" / "admission-policy.yaml"
    policy = next(
        d
        for d in yaml.safe_load_all(path.read_text())
        if d
        and d["metadata"]["name"] == "tenant-registry-operator-pods"
        and d["kind"] == "ValidatingAdmissionPolicy"
    )
    expr = next(v for v in policy["spec"]["variables"] if v["name"] == "authMarkers")["expression"]
    listed = [m.strip().strip("'") for m in expr.strip().strip("[]").split(",")]
    assert listed == [m.lower() for m in audit.AUTH_MARKERS]
    assert all(" " in m for m in listed)
