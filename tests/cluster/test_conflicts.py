"""Never clobber what is not ours: unmanaged Secrets, other tenants, other managers."""

from __future__ import annotations

import json
import time

import pykube
import pytest

from tenant_registry import names
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
ADOPT = names.ANNOTATION_ADOPT
DOCKERCONFIGJSON = names.DOCKERCONFIGJSON_TYPE


def test_unmanaged_secret_is_left_alone_under_skip_and_used_once_gone(
    k8s: Cluster, unique: str
) -> None:
    name = f"skip-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.secret(ns, f"{name}-pull", "Opaque", {"mine": "keep-me"})
    k8s.tenant_in(name, [ns], server="skip.example")
    wait_for(lambda: k8s.status(name).get("failedNamespaces") == 1, what="failed namespace")
    failure = k8s.status(name)["failures"][0]
    assert failure["namespace"] == ns and failure["reason"] == "UnmanagedSecretExists"
    assert k8s.condition(name, "Degraded")["status"] == "True"
    assert k8s.copy(ns, f"{name}-pull")["type"] == "Opaque"
    assert f"{name}-pull" not in k8s.pull_secrets(ns), "no entry for a Secret that is not ours"
    # The tenant sees why, in its own namespace, on the Secret in the way.
    event = wait_for(lambda: next(iter(k8s.namespace_events(ns)), None), what="tenant Event")
    assert event["reason"] == "UnmanagedSecretExists" and event["type"] == "Warning"
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "namespace": ns,
        "name": f"{name}-pull",
    }
    assert name in event["message"]

    k8s.cp.kubectl("delete", "secret", f"{name}-pull", "-n", ns)
    wait_for(
        lambda: (
            (k8s.copy(ns, f"{name}-pull") or {}).get("type") == "kubernetes.io/dockerconfigjson"
        ),
        what="our copy once the other one went",
    )
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")


def test_unmanaged_secret_is_taken_over_under_adopt(k8s: Cluster, unique: str) -> None:
    name = f"adopt-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    # The Secret's owner consents to the takeover by this tenant (names.ANNOTATION_ADOPT).
    k8s.secret(
        ns,
        f"{name}-pull",
        "kubernetes.io/dockerconfigjson",
        {".dockerconfigjson": '{"auths":{"old.example":{"auth":"eDp5"}}}'},
        annotations={ADOPT: name},
    )
    # Its owner consents (conflictPolicy Adopt takes nothing without it).
    k8s.cp.kubectl(
        "annotate", "secret", f"{name}-pull", "-n", ns, f"registry.tenancy.dev/adopt={name}"
    )
    k8s.secret(ns, f"{name}-other", "Opaque", {"k": "v"})
    # In a second namespace the same name holds something else entirely: never taken over,
    # consent or not.
    k8s.namespace(f"{name}-b")
    k8s.secret(
        f"{name}-b", f"{name}-pull", "Opaque", {"unrelated": "data"}, annotations={ADOPT: name}
    )
    k8s.tenant_in(name, [ns, f"{name}-b"], server="adopt.example", conflictPolicy="Adopt")
    wait_for(
        lambda: "adopt.example" in (k8s.dockerconfig(ns, f"{name}-pull") or {}).get("auths", {}),
        what="adopted copy with our content",
    )
    labels = k8s.copy(ns, f"{name}-pull")["metadata"]["labels"]
    assert labels["registry.tenancy.dev/tenant"] == name
    wait_for(
        lambda: any(e["reason"] == "Adopted" for e in k8s.events(name)), what="an Adopted Event"
    )
    assert k8s.copy(ns, f"{name}-other") is not None
    wait_for(lambda: k8s.status(name).get("failedNamespaces") == 1, what="b reported")
    assert "only a kubernetes.io/dockerconfigjson" in k8s.status(name)["failures"][0]["message"]
    assert k8s.copy(f"{name}-b", f"{name}-pull")["type"] == "Opaque"


def test_adopt_needs_consent_and_never_takes_a_secret_another_controller_owns(
    k8s: Cluster, unique: str
) -> None:
    """Without the owner's consent for this tenant, or when another controller owns it, a
    dockerconfigjson Secret stays exactly as it is (the admission policy denies the takeover
    even if the operator tried)."""
    name = f"consent-{unique}"
    old = '{"auths":{"old.example":{"auth":"eDp5"}}}'
    cases = {f"{name}-none": {}, f"{name}-other": {"annotations": {ADOPT: "someone-else"}}}
    for ns, meta in cases.items():
        k8s.namespace(ns)
        k8s.secret(ns, f"{name}-pull", DOCKERCONFIGJSON, {".dockerconfigjson": old}, **meta)
    controlled = f"{name}-controlled"
    k8s.namespace(controlled)
    owner = pykube.ConfigMap(k8s.api, {"metadata": {"name": "owner", "namespace": controlled}})
    owner.create()
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.obj["metadata"]["uid"],
        "controller": True,
    }
    k8s.secret(
        controlled,
        f"{name}-pull",
        DOCKERCONFIGJSON,
        {".dockerconfigjson": old},
        annotations={ADOPT: name},
        ownerReferences=[ref],
    )
    namespaces = [*cases, controlled]
    k8s.tenant_in(name, namespaces, server="adopt.example", conflictPolicy="Adopt")
    wait_for(lambda: k8s.status(name).get("failedNamespaces") == 3, what="all three reported")
    for ns in namespaces:
        secret = k8s.copy(ns, f"{name}-pull") or {}
        assert "labels" not in secret["metadata"], ns
        assert k8s.dockerconfig(ns, f"{name}-pull") == json.loads(old), ns
        assert f"{name}-pull" not in k8s.pull_secrets(ns), ns


def test_two_tenants_wanting_one_secret_name_report_and_never_flap(
    k8s: Cluster, unique: str
) -> None:
    ns = f"clash-{unique}"
    k8s.namespace(ns)
    for t in ("a", "b"):
        k8s.credentials(f"clash-{unique}-{t}", password=f"pw-{t}")
    k8s.tenant(
        f"clash-{unique}-a",
        secret_name="shared-pull",
        registries=[registry("a.example", f"clash-{unique}-a")],
        namespaces={"names": [ns]},
    )
    wait_for(lambda: k8s.copy(ns, "shared-pull") is not None, what="first tenant's copy")
    k8s.tenant(
        f"clash-{unique}-b",
        secret_name="shared-pull",
        registries=[registry("b.example", f"clash-{unique}-b")],
        namespaces={"names": [ns]},
        conflictPolicy="Adopt",
    )
    wait_for(
        lambda: k8s.status(f"clash-{unique}-b").get("failedNamespaces") == 1,
        what="second tenant reports the clash",
    )
    failure = k8s.status(f"clash-{unique}-b")["failures"][0]
    assert failure["reason"] == "OwnedByOtherTenant"
    assert f"clash-{unique}-a" in failure["message"]
    # The tenant that keeps the Secret is told too: its admin may be the one to change.
    wait_for(
        lambda: k8s.status(f"clash-{unique}-a").get("failedNamespaces") == 1,
        what="first tenant reports the clash",
    )
    winner = k8s.status(f"clash-{unique}-a")["failures"][0]
    assert winner["reason"] == "WantedByOtherTenant"
    assert f"clash-{unique}-b" in winner["message"]

    version = k8s.copy(ns, "shared-pull")["metadata"]["resourceVersion"]
    statuses = [k8s.status(f"clash-{unique}-{t}")["failures"] for t in ("a", "b")]
    time.sleep(3)  # an observation window: nothing may change during it
    copy = k8s.copy(ns, "shared-pull")
    assert copy["metadata"]["resourceVersion"] == version, "the copy never flaps"
    assert copy["metadata"]["labels"]["registry.tenancy.dev/tenant"] == f"clash-{unique}-a"
    assert k8s.pull_secrets(ns) == ["shared-pull"]
    assert [k8s.status(f"clash-{unique}-{t}")["failures"] for t in ("a", "b")] == statuses

    # Once the second tenant wants another name, the first is clean again.
    k8s.tenant(
        f"clash-{unique}-b",
        secret_name="b-pull",
        registries=[registry("b.example", f"clash-{unique}-b")],
        namespaces={"names": [ns]},
    )
    wait_for(
        lambda: k8s.condition(f"clash-{unique}-a", "Ready").get("status") == "True",
        what="first tenant Ready again",
    )
    wait_for(
        lambda: k8s.condition(f"clash-{unique}-b", "Ready").get("status") == "True",
        what="second tenant Ready",
    )


def test_another_manager_removing_our_entry_is_reported_not_fought(
    k8s: Cluster, unique: str
) -> None:
    name = f"fight-{unique}"
    ns = k8s.onboard_one(name, wait=False)
    restored = k8s.fight_entry(name, ns)
    assert 1 <= restored <= 3, f"re-added {restored} times, then stopped"
    wait_for(
        lambda: k8s.status(name).get("failures", [{}])[0].get("reason") == "EntryRemovedRepeatedly",
        what="reported in status",
    )
    wait_for(
        lambda: any(e["reason"] == "EntryRemovedRepeatedly" for e in k8s.events(name)),
        what="reported as an Event",
    )


def test_suspended_tenant_writes_and_removes_nothing(k8s: Cluster, unique: str) -> None:
    name = f"susp-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns, tenant=name)
    k8s.credentials(name, password="before")
    spec = {
        "registries": [registry("susp.example", name)],
        "namespaces": {"selector": {"matchLabels": {"tenant": name}}},
    }
    k8s.tenant(name, secret_name=f"{name}-pull", **spec)
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is not None, what="copy")
    k8s.tenant(name, secret_name=f"{name}-pull", suspend=True, **spec)
    wait_for(lambda: k8s.condition(name, "Ready").get("reason") == "Suspended", what="Suspended")
    k8s.settle()  # the Suspended Event lands after the condition
    mark = k8s.audit_mark()
    k8s.credentials(name, password="after")
    k8s.label_namespace(ns, tenant=None)
    k8s.namespace(f"{name}-b", tenant=name)
    time.sleep(2)
    assert k8s.operator_writes(mark) == [], "nothing written while suspended"
    assert k8s.copy(ns, f"{name}-pull") is not None
    assert k8s.copy(f"{name}-b", f"{name}-pull") is None

    k8s.tenant(name, secret_name=f"{name}-pull", **spec)  # resume
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="cleanup after resume")
    wait_for(lambda: k8s.copy(f"{name}-b", f"{name}-pull") is not None, what="copy in b")


def test_terminating_namespace_is_skipped_quietly(k8s: Cluster, unique: str) -> None:
    name = f"term-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns, tenant=name)
    k8s.credentials(name)
    # A ConfigMap with a finalizer keeps the namespace in Terminating.
    pykube.ConfigMap(
        k8s.api, {"metadata": {"name": "hold", "namespace": ns, "finalizers": ["example.dev/hold"]}}
    ).create()
    k8s.cp.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: (
            pykube.Namespace.objects(k8s.api).get(name=ns).obj["status"]["phase"] == "Terminating"
        ),
        what="namespace terminating",
    )
    mark = k8s.audit_mark()
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry("t.example", name)],
        namespaces={"selector": {"matchLabels": {"tenant": name}}},
    )
    wait_for(
        lambda: k8s.condition(name, "Ready").get("status") == "True",
        what="Ready: a terminating namespace is not counted",
    )
    time.sleep(2)
    writes = [w for w in k8s.operator_writes(mark) if w["objectRef"].get("namespace") == ns]
    assert writes == []
    assert k8s.status(name)["selectedNamespaces"] == 0
    cm = pykube.ConfigMap.objects(k8s.api, namespace=ns).get(name="hold")
    cm.patch({"metadata": {"finalizers": None}})


def test_deleting_a_tenant_with_a_terminating_namespace_does_not_hang(
    k8s: Cluster, unique: str
) -> None:
    name = f"hang-{unique}"
    k8s.namespace(f"{name}-a", tenant=name)
    k8s.namespace(f"{name}-b", tenant=name)
    k8s.credentials(name)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry("h.example", name)],
        namespaces={"selector": {"matchLabels": {"tenant": name}}},
    )
    wait_for(lambda: k8s.copy(f"{name}-b", f"{name}-pull") is not None, what="copy in b")
    pykube.ConfigMap(
        k8s.api,
        {
            "metadata": {
                "name": "hold",
                "namespace": f"{name}-b",
                "finalizers": ["example.dev/hold"],
            }
        },
    ).create()
    k8s.cp.kubectl("delete", "namespace", f"{name}-b", "--wait=false")
    wait_for(
        lambda: (
            pykube.Namespace.objects(k8s.api).get(name=f"{name}-b").obj["status"]["phase"]
            == "Terminating"
        ),
        what="b terminating",
    )
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="tenant gone despite b terminating")
    assert k8s.copy(f"{name}-a", f"{name}-pull") is None
    cm = pykube.ConfigMap.objects(k8s.api, namespace=f"{name}-b").get(name="hold")
    cm.patch({"metadata": {"finalizers": None}})
