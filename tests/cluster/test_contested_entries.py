"""Another manager keeps removing our ServiceAccount entry: the operator gives up, holds no
claim on it any more, and tries again when an admin deletes the record."""

from __future__ import annotations

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
    restored = 0
    for _ in range(10):
        wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="entry present")
        sa = pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="default")
        sa.patch({"imagePullSecrets": None})
        try:
            wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="re-add", timeout=3)
            restored += 1
        except AssertionError:
            break
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
