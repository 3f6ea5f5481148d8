"""Another manager keeps removing our ServiceAccount entry: the operator gives up, holds no
claim on it any more, and tries again when an admin deletes the record."""

from __future__ import annotations

import json
import time

import pykube
import pytest

from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

CONTESTED = "registry.tenancy.dev/contested-pull-secrets"
ADDED = "registry.tenancy.dev/added-pull-secrets"


def _annotations(k8s: Cluster, ns: str) -> dict[str, str]:
    return dict(((k8s.sa(ns) or {}).get("metadata") or {}).get("annotations") or {})


def _fight_until_given_up(k8s: Cluster, name: str, ns: str) -> int:
    """Remove the entry every time the operator restores it, until it stops."""
    restored = k8s.fight_entry(name, ns)
    wait_for(lambda: CONTESTED in _annotations(k8s, ns), what="the give-up recorded")
    return restored


def test_giving_up_releases_the_claim_and_deleting_the_record_lets_it_try_again(
    k8s: Cluster, unique: str
) -> None:
    name = f"truce-{unique}"
    ns = k8s.onboard_one(name, wait=False)
    restored = _fight_until_given_up(k8s, name, ns)
    assert 1 <= restored <= 3
    annotations = _annotations(k8s, ns)
    assert annotations[CONTESTED] == f"{name}/{name}-pull"
    assert f"{name}/{name}-pull" not in annotations.get(ADDED, ""), "no claim on what it left"
    wait_for(
        lambda: k8s.status(name).get("failures", [{}])[0].get("reason") == "EntryRemovedRepeatedly",
        what="reported in status",
    )

    # The README's recovery: delete the record, and the operator adds the entry again.
    k8s.cp.kubectl("annotate", "serviceaccount", "default", "-n", ns, f"{CONTESTED}-")
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="entry added again")
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready again")
    time.sleep(2)
    annotations = _annotations(k8s, ns)
    assert CONTESTED not in annotations, "the in-memory counter did not write it back"
    assert f"{name}/{name}-pull" in annotations.get(ADDED, "")
    assert f"{name}-pull" in k8s.pull_secrets(ns)


def test_an_entry_the_other_manager_adds_after_the_give_up_survives_cleanup(
    k8s: Cluster, unique: str
) -> None:
    name = f"theirs-{unique}"
    ns = k8s.onboard_one(name, wait=False)
    _fight_until_given_up(k8s, name, ns)
    # The other manager now adds that name itself: its entry, not ours.
    sa = pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="default")
    sa.patch({"imagePullSecrets": [{"name": "their-own"}, {"name": f"{name}-pull"}]})
    k8s.delete_tenant(name)
    wait_for(lambda: k8s.tenant_obj(name) is None, what="tenant gone")
    assert k8s.pull_secrets(ns) == ["their-own", f"{name}-pull"], "cleanup removed only ours"
    annotations = _annotations(k8s, ns)
    assert CONTESTED not in annotations and ADDED not in annotations


def test_a_manager_replacing_the_whole_service_account_is_a_bounded_fight(
    k8s: Cluster, unique: str
) -> None:
    """Another manager PUTs the ServiceAccount it wants (its own entries, no annotations of
    ours) every time it differs: restores are counted all the same, and the record of giving
    up being wiped does not start the fight over and over."""
    name = f"put-{unique}"
    ns = k8s.onboard_one(name)
    re_adds = 0
    for _ in range(14):
        sa = k8s.sa(ns) or {}
        sa["imagePullSecrets"] = [{"name": "managers-own"}]
        sa["metadata"]["annotations"] = {}
        # A PUT of the whole object (pykube's update() is a strategic merge patch).
        k8s.cp.kubectl("replace", "-f", "-", input=json.dumps(sa))
        if k8s.entry_back(name, ns):
            re_adds += 1
    # The first fight: 3 restores, then the give-up recorded; wiped by the next PUT, one more
    # fight (the entry added afresh and 3 restores); then held off for the fight window.
    assert re_adds <= 7, f"re-added {re_adds} times"
    assert not k8s.entry_back(name, ns)
    assert k8s.pull_secrets(ns) == ["managers-own"]
    wait_for(
        lambda: k8s.status(name).get("failures", [{}])[0].get("reason") == "EntryRemovedRepeatedly",
        what="reported in status",
    )
    # Held off: the record to delete is gone, and deleting it would not help; status says so.
    wait_for(
        lambda: "holds off" in k8s.status(name).get("failures", [{}])[0].get("message", ""),
        what="the hold-off reported as such",
    )
    assert CONTESTED not in k8s.status(name)["failures"][0]["message"]


def test_a_writer_putting_back_old_content_and_annotation_is_a_bounded_fight(
    k8s: Cluster, unique: str
) -> None:
    name = f"oldc-{unique}"
    ns = k8s.onboard_one(name)
    old = (k8s.copy(ns, f"{name}-pull") or {})["data"]
    old_hash = (k8s.copy(ns, f"{name}-pull") or {})["metadata"]["annotations"][
        "registry.tenancy.dev/content-hash"
    ]
    k8s.credentials(name, password="rotated-pw")
    wait_for(lambda: "rotated-pw" in str(k8s.dockerconfig(ns, f"{name}-pull")), what="rotated")
    rewrites = 0
    for _ in range(8):
        secret = pykube.Secret.objects(k8s.api, namespace=ns).get(name=f"{name}-pull")
        secret.patch(
            {
                "data": old,
                "metadata": {"annotations": {"registry.tenancy.dev/content-hash": old_hash}},
            }
        )
        try:
            wait_for(
                lambda: "rotated-pw" in str(k8s.dockerconfig(ns, f"{name}-pull")),
                what="rewritten",
                timeout=3,
            )
            rewrites += 1
        except AssertionError:
            pass
    assert 1 <= rewrites <= 3, f"rewrote {rewrites} times"
    wait_for(
        lambda: (
            k8s.status(name).get("failures", [{}])[0].get("reason") == "CopyRewrittenRepeatedly"
        ),
        what="reported in status",
    )
