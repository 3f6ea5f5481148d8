"""The pull-readiness audit against the real control plane.

There is no kubelet here: the tests create Pods (unscheduled) and write their `status` as the
kubelet v1.37 does (pkg/kubelet/images/image_manager.go: ErrImagePull carries the runtime's
error; ImagePullBackOff wraps the last one as `Back-off pulling image "IMAGE": ErrImagePull:
...`), and post the kubelet's FailedToRetrieveImagePullSecret Event (pkg/kubelet/kubelet.go).
The runtime's texts are containerd's (remotes/docker: `unexpected status from HEAD request to
URL: 401 Unauthorized`; `pull access denied, ... authorization failed`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pykube
import pytest

from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
RPC = "rpc error: code = Unknown desc = "


def unauthorized(image: str, host: str, path: str, tag: str) -> str:
    return (
        f'{RPC}failed to pull and unpack image "{image}": failed to resolve reference '
        f'"{image}": unexpected status from HEAD request to https://{host}/v2/{path}/manifests/'
        f"{tag}: 401 Unauthorized"
    )


def back_off(image: str, last_error: str) -> str:
    return f'Back-off pulling image "{image}": ErrImagePull: {last_error}'


def not_found(image: str) -> str:
    return (
        f'{RPC}failed to pull and unpack image "{image}": failed to resolve reference '
        f'"{image}": {image}: not found'
    )


def missing_secrets_message(*names: str) -> str:
    return (
        f"Unable to retrieve some image pull secrets ({', '.join(names)}); attempting to pull "
        "the image may not succeed."
    )


def new_namespace(k8s: Cluster, name: str) -> str:
    k8s.namespace(name)
    wait_for(lambda: k8s.sa(name) is not None, what=f"default ServiceAccount in {name}")
    return name


def create_pod(k8s: Cluster, ns: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
    pod = pykube.Pod(
        k8s.api,
        {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": image}], **spec},
        },
    )
    pod.create()
    return dict(pod.obj)


def kubelet_status(k8s: Cluster, ns: str, pod: str, image: str, reason: str, message: str) -> None:
    """What the kubelet writes for a container that cannot start because of its image."""
    status = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "app",
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ],
        }
    }
    k8s.cp.kubectl(
        "patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip


def kubelet_event(k8s: Cluster, pod: dict[str, Any], reason: str, message: str) -> None:
    """An Event as the kubelet's recorder posts it about a Pod."""
    meta = pod["metadata"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pykube.Event(
        k8s.api,
        {
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet", "host": "node-1"},
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        },
    ).create()


def audit_status(k8s: Cluster, tenant: str) -> dict[str, Any]:
    """status.audit without the lists' digests (audit.digest: checked in the unit tests)."""
    stored = k8s.status(tenant).get("audit") or {}
    return {
        name: {k: v for k, v in listed.items() if k != "digest"} for name, listed in stored.items()
    }


def operator_events(k8s: Cluster, ns: str) -> list[tuple[str, str]]:
    return sorted((e["reason"], e["involvedObject"]["name"]) for e in k8s.namespace_events(ns))


def listing(*items: dict[str, Any]) -> dict[str, Any]:
    return {"count": len(items), "omitted": 0, "items": list(items)}


def test_audit_reports_what_the_kubelet_reports(k8s: Cluster) -> None:
    """Given Pods created before their tenant existed, failing as the kubelet reports it,
    when the tenant is applied, then its status lists exactly those findings, and each earns
    one Event on its Pod."""
    ns = new_namespace(k8s, "audit-find")
    host = "audit-find.example"
    web, api, other = f"{host}/team/web:v1", f"{host}/team/api:v2", f"{host}/team/other:v3"
    web_error = unauthorized(web, host, "team/web", "v1")
    api_error = back_off(api, unauthorized(api, host, "team/api", "v2"))
    create_pod(k8s, ns, "web", web)
    create_pod(k8s, ns, "api", api)
    gone = create_pod(k8s, ns, "gone", other, imagePullSecrets=[{"name": "regcred"}])
    create_pod(k8s, ns, "hub", "nginx")
    kubelet_status(k8s, ns, "web", web, "ErrImagePull", web_error)
    kubelet_status(k8s, ns, "api", api, "ImagePullBackOff", api_error)
    kubelet_status(k8s, ns, "gone", other, "ErrImagePull", not_found(other))  # not auth
    kubelet_event(k8s, gone, "FailedToRetrieveImagePullSecret", missing_secrets_message("regcred"))

    k8s.tenant_in("audit-find", [ns], server=host)
    hint = (
        "ServiceAccount default has audit-find-pull but the Pod lacks it: the Pod was created "
        "before the entry (admission copies entries only at creation); recreate the Pod"
    )
    expected = {
        "pullFailures": listing(
            {
                "namespace": ns, "pod": "api", "container": "app", "image": api,
                "cause": "401 Unauthorized", "hint": hint,
            },
            {
                "namespace": ns, "pod": "web", "container": "app", "image": web,
                "cause": "401 Unauthorized", "hint": hint,
            },
        ),
        "missingPullSecrets": listing({"namespace": ns, "pod": "gone", "secrets": ["regcred"]}),
        "uncoveredImages": listing({"namespace": ns, "image": "nginx"}),
        "floatingTags": listing(
            {
                "namespace": ns, "image": "nginx", "tag": "untagged",
                "pullPolicy": "Always", "defaultPullPolicy": "Always",
            }
        ),
        "invalidImages": listing(),
    }  # fmt: skip
    wait_for(lambda: audit_status(k8s, "audit-find") == expected, what="the audit in status")
    events = [
        ("FloatingImageTag", "hub"),
        ("ImageNotCovered", "hub"),
        ("PullSecretMissing", "gone"),
        ("PullUnauthorized", "api"),
        ("PullUnauthorized", "web"),
    ]
    wait_for(lambda: operator_events(k8s, ns) == events, what="one Event per finding")
    by_pod = {e["involvedObject"]["name"]: e for e in k8s.namespace_events(ns)}
    assert by_pod["web"]["type"] == "Warning"
    assert "401 Unauthorized" in by_pod["web"]["message"]
    assert hint in by_pod["web"]["message"]

    # A transition back: the Pod that could not pull is replaced by one with the entry.
    pykube.Pod.objects(k8s.api, namespace=ns).get(name="web").delete()
    create_pod(k8s, ns, "web", web)
    assert "audit-find-pull" in [
        s["name"]
        for s in pykube.Pod.objects(k8s.api, namespace=ns)
        .get(name="web")
        .obj["spec"]["imagePullSecrets"]
    ]
    wait_for(
        lambda: audit_status(k8s, "audit-find")["pullFailures"]["count"] == 1,
        what="the replaced Pod no longer reported",
    )
    assert operator_events(k8s, ns) == events  # nothing new to announce


def test_restart_stuck_pod_of_a_replicaset(k8s: Cluster) -> None:
    """Given a ReplicaSet's Pod stuck in ImagePullBackOff since before the tenant existed, and
    a Pod of nobody's in the same state, when a tenant with restartStuckPods is applied, then
    the ReplicaSet's Pod is deleted (one Event), its replacement has the entry, and the other
    Pod stays."""
    ns = new_namespace(k8s, "audit-restart")
    host = "audit-restart.example"
    image = f"{host}/team/web:v1"
    stuck = back_off(image, unauthorized(image, host, "team/web", "v1"))
    rs = pykube.ReplicaSet(
        k8s.api,
        {
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        },
    )
    rs.create()
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": rs.obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }

    def replicate() -> dict[str, Any]:
        """What the ReplicaSet controller does (these tests run no such controller): a Pod
        from the template, owned by the ReplicaSet."""
        pod = pykube.Pod(
            k8s.api,
            {
                "metadata": {
                    "generateName": "web-",
                    "namespace": ns,
                    "labels": {"app": "web"},
                    "ownerReferences": [owner],
                },
                "spec": rs.obj["spec"]["template"]["spec"],
            },
        )
        pod.create()
        return dict(pod.obj)

    def rs_pods() -> list[dict[str, Any]]:
        return [p.obj for p in pykube.Pod.objects(k8s.api, namespace=ns).filter(selector="app=web")]

    first = replicate()
    assert not first["spec"].get("imagePullSecrets")
    kubelet_status(k8s, ns, first["metadata"]["name"], image, "ImagePullBackOff", stuck)
    create_pod(k8s, ns, "naked", image)
    kubelet_status(k8s, ns, "naked", image, "ImagePullBackOff", stuck)

    k8s.tenant_in("audit-restart", [ns], server=host, restartStuckPods=True)

    wait_for(
        lambda: not any(p["metadata"]["uid"] == first["metadata"]["uid"] for p in rs_pods()),
        what="the stuck Pod deleted",
        timeout=40,
    )
    new = replicate()  # the ReplicaSet's answer: admission copies the entry in now
    assert [s["name"] for s in new["spec"]["imagePullSecrets"]] == ["audit-restart-pull"]
    restarts = wait_for(
        lambda: [e for e in k8s.namespace_events(ns) if e["reason"] == "RestartedStuckPod"],
        what="the restart's Event",
    )
    assert [(e["involvedObject"]["name"], e["involvedObject"].get("uid")) for e in restarts] == [
        (first["metadata"]["name"], first["metadata"]["uid"])
    ]
    assert "ServiceAccount default now has audit-restart-pull" in restarts[0]["message"]
    # the Pod nobody owns stays, and is still reported
    assert pykube.Pod.objects(k8s.api, namespace=ns).get_or_none(name="naked") is not None
    wait_for(
        lambda: (
            [i["pod"] for i in audit_status(k8s, "audit-restart")["pullFailures"]["items"]]
            == ["naked"]
        ),
        what="only the naked Pod reported",
    )
    assert len([e for e in k8s.namespace_events(ns) if e["reason"] == "RestartedStuckPod"]) == 1


def replica_set(k8s: Cluster, ns: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
    """A ReplicaSet (no controller runs here) and an ownerReference to it."""
    rs = pykube.ReplicaSet(k8s.api, {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image}], **spec}}},
    })  # fmt: skip
    rs.create()
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": rs.obj["metadata"]["uid"], "controller": True}  # fmt: skip


def owned_pod(
    k8s: Cluster, ns: str, name: str, image: str, owner: dict[str, Any], **meta: Any
) -> dict[str, Any]:
    pod = pykube.Pod(k8s.api, {
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner], **meta},
        "spec": {"containers": [{"name": "app", "image": image}],
                 **({"imagePullSecrets": [{"name": "own"}]} if name.startswith("own") else {})},
    })  # fmt: skip
    pod.create()
    return dict(pod.obj)


def restarted(k8s: Cluster, ns: str) -> list[str]:
    return sorted(
        e["involvedObject"]["name"]
        for e in k8s.namespace_events(ns)
        if e["reason"] == "RestartedStuckPod"
    )


def test_restart_spares_own_pull_secrets_terminating_pods_and_other_namespaces(
    k8s: Cluster,
) -> None:
    """Given, stuck on a pull since before the tenant existed: a ReplicaSet's Pod naming its
    own imagePullSecrets, one being deleted (a finalizer holds it) whose status keeps flipping
    between ErrImagePull and ImagePullBackOff, one in a namespace the tenant does not select,
    and a real candidate; then only the candidate is deleted, once, and the Pod naming its own
    gets the hint to add the entry."""
    ns, other = new_namespace(k8s, "audit-spare"), new_namespace(k8s, "audit-spare-other")
    host = "audit-spare.example"
    image = f"{host}/team/web:v1"
    error = unauthorized(image, host, "team/web", "v1")
    stuck = back_off(image, error)
    owner = replica_set(k8s, ns, "web", image)
    other_owner = replica_set(k8s, other, "web", image)
    own = owned_pod(k8s, ns, "own", image, owner)
    assert [s["name"] for s in own["spec"]["imagePullSecrets"]] == ["own"]
    owned_pod(k8s, ns, "held", image, owner, finalizers=["example.com/hold"])
    owned_pod(k8s, ns, "candidate", image, owner)
    unselected = owned_pod(k8s, other, "stuck", image, other_owner)
    for where, name in ((ns, "own"), (ns, "held"), (ns, "candidate"), (other, "stuck")):
        kubelet_status(k8s, where, name, image, "ImagePullBackOff", stuck)
    pykube.Pod.objects(k8s.api, namespace=ns).get(name="held").delete()
    try:
        k8s.tenant_in("audit-spare", [ns], server=host, restartStuckPods=True)
        wait_for(
            lambda: pykube.Pod.objects(k8s.api, namespace=ns).get_or_none(name="candidate") is None,
            what="the candidate deleted",
            timeout=40,
        )
        for _ in range(2):  # the kubelet goes on with the held Pod's back-off
            kubelet_status(k8s, ns, "held", image, "ErrImagePull", error)
            time.sleep(2)
            kubelet_status(k8s, ns, "held", image, "ImagePullBackOff", stuck)
            time.sleep(2)
        assert restarted(k8s, ns) == ["candidate"]
        assert restarted(k8s, other) == []
        left = pykube.Pod.objects(k8s.api, namespace=other).get(name="stuck")
        assert left.obj["metadata"]["uid"] == unselected["metadata"]["uid"]
        assert pykube.Pod.objects(k8s.api, namespace=ns).get(name="own").exists()
        items = audit_status(k8s, "audit-spare")["pullFailures"]["items"]
        hints = {i["pod"]: i["hint"] for i in items}
        assert hints["own"].startswith("the Pod names imagePullSecrets of its own (own)"), hints
    finally:
        pod = pykube.Pod.objects(k8s.api, namespace=ns).get_or_none(name="held")
        if pod is not None:
            pod.patch({"metadata": {"finalizers": None}})


def test_stuck_pods_cost_no_writes_at_steady_state_nor_after_a_restart(
    k8s: Cluster, operator: RunningOperator
) -> None:
    """Given a tenant whose Pods are stuck (the kubelet flips them between ErrImagePull and
    ImagePullBackOff) and more uncovered images than status lists, once the audit is written,
    then neither the back-off cycle nor a restart of the operator writes anything (no status,
    no Event), and suspending the tenant removes its audit."""
    ns = new_namespace(k8s, "audit-quiet")
    host = "audit-quiet.example"
    image = f"{host}/team/web:v1"
    error = unauthorized(image, host, "team/web", "v1")
    for i in range(3):
        create_pod(k8s, ns, f"stuck-{i}", image)
        kubelet_status(k8s, ns, f"stuck-{i}", image, "ErrImagePull", error)
    for i in range(22):
        create_pod(k8s, ns, f"public-{i:02}", f"ghcr.io/acme/tool-{i:02}:1")
    create_pod(k8s, ns, "bad", "Bad Image!!")
    k8s.tenant_in("audit-quiet", [ns], server=host)
    wait_for(
        lambda: (
            (audit_status(k8s, "audit-quiet").get("uncoveredImages") or {}).get("count") == 22
            and audit_status(k8s, "audit-quiet")["pullFailures"]["count"] == 3
        ),
        what="the audit written",
    )
    invalid = audit_status(k8s, "audit-quiet")["invalidImages"]
    assert [i["image"] for i in invalid["items"]] == ["Bad Image!!"]
    # 26 findings, 20 Events: at most 20 per tenant per pass; the rest are in status only
    wait_for(lambda: len(operator_events(k8s, ns)) == 20, what="20 Events")
    k8s.settle()  # the last status write and Events have landed; nothing more to announce
    events = operator_events(k8s, ns)
    assert len(events) == 20, events

    mark = k8s.audit_mark()
    for i in range(3):
        kubelet_status(k8s, ns, f"stuck-{i}", image, "ImagePullBackOff", back_off(image, error))
    time.sleep(3)
    for i in range(3):
        kubelet_status(k8s, ns, f"stuck-{i}", image, "ErrImagePull", error)
    time.sleep(3)
    writes = k8s.operator_writes(mark)
    assert writes == [], f"back-off cycle wrote: {[(w['verb'], w['objectRef']) for w in writes]}"

    mark = k8s.audit_mark()
    operator.stop()
    operator.start()
    time.sleep(6)
    writes = k8s.operator_writes(mark)
    assert writes == [], f"restart wrote: {[(w['verb'], w['objectRef']) for w in writes]}"
    assert operator_events(k8s, ns) == events

    k8s.cp.kubectl("patch", "treg", "audit-quiet", "--type=merge", "-p",
                   json.dumps({"spec": {"suspend": True}}))  # fmt: skip
    wait_for(lambda: "audit" not in k8s.status("audit-quiet"), what="the audit removed")
