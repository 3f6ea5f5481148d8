"""Scheduling a tenant queues the namespaces it selects or holds something in, no others."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tenant_registry.desired import Frozen, Gone
from tenant_registry.reconcile import Runtime, Settings
from tenant_registry.view import COPIES, NAMESPACES, SERVICE_ACCOUNTS
from tenant_registry.view_types import CopyInfo, NamespaceInfo, ServiceAccountInfo
from tests.unit.samples import ACTIVE


def runtime(intent: object) -> Runtime:
    rt = Runtime(cluster=SimpleNamespace(), settings=Settings())  # type: ignore[arg-type]
    for name in ("acme-web", "acme-db", "other", "left", "kube-system", "has-entry", "orphan"):
        rt.view.apply(NAMESPACES, "ADDED", NamespaceInfo(name))
    dcj = "kubernetes.io/dockerconfigjson"
    for copy in (
        CopyInfo("left", "acme-pull", "1", "acme", dcj, "h", "h", ("uid-1",)),
        # A user's Secret wearing the copy's labels, without an ownerReference nor the
        # operator's content-hash annotation: not acme's; nor one another controller owns.
        CopyInfo("other", "mine", "1", "acme", dcj, "h", ""),
        CopyInfo(
            "other",
            "controlled",
            "1",
            "acme",
            dcj,
            "h",
            "h",
            (),
            ({"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "controller": True},),
        ),
        # A copy the garbage collector orphaned (kubectl delete --cascade=orphan): acme's.
        CopyInfo("orphan", "acme-pull", "1", "acme", dcj, "h", "h"),
    ):
        rt.view.apply(COPIES, "ADDED", copy)
    rt.view.apply(
        SERVICE_ACCOUNTS,
        "ADDED",
        ServiceAccountInfo("has-entry", "default", "1", ours=(("acme", "acme-pull"),)),
    )
    rt.view.apply(
        SERVICE_ACCOUNTS,
        "ADDED",
        ServiceAccountInfo("other", "default", "1", ours=(("beta", "beta-pull"),)),
    )
    rt.intents["acme"] = intent  # type: ignore[assignment]
    rt.scheduler.index("acme", None, intent)  # type: ignore[arg-type]
    rt.scheduler.ready = True
    return rt


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        (ACTIVE, {"acme-web", "acme-db", "left", "has-entry", "orphan"}),
        (Gone("uid-1"), {"left", "has-entry", "orphan"}),
        (Frozen("Suspended"), set()),
    ],
)
def test_schedule_tenant_queues_only_its_namespaces(intent: object, expected: set[str]) -> None:
    rt = runtime(intent)
    rt.schedule_tenant("acme")
    assert {ns for _, ns in rt.queue._queued} == expected
    assert rt.queue.pending("acme") == len(expected)


def test_rivals_are_the_other_active_tenants_wanting_the_name_there() -> None:
    from dataclasses import replace

    from tenant_registry.desired import Active

    rt = runtime(ACTIVE)
    beta = Active(replace(ACTIVE.spec, name="beta"), ACTIVE.copy)
    other_name = Active(replace(ACTIVE.spec, name="gamma", secret_name="g-pull"), ACTIVE.copy)
    for name, intent in (("acme", ACTIVE), ("beta", beta), ("gamma", other_name)):
        rt.intents[name] = intent
        rt.scheduler.index(name, None, intent)
    assert rt.scheduler.rivals("acme", "acme-web") == ("beta",)
    assert rt.scheduler.rivals("beta", "acme-web") == ("acme",)
    assert rt.scheduler.rivals("acme", "other") == ()
    assert rt.scheduler.wanting("acme-web", "acme-pull") == ["acme", "beta"]
    # beta renames: acme loses its rival and is queued there to report that.
    rt.queue._queued.clear()
    renamed = Active(replace(beta.spec, secret_name="b-pull"), beta.copy)
    rt.intents["beta"] = renamed
    rt.scheduler.index("beta", beta, renamed)
    assert rt.scheduler.rivals("acme", "acme-web") == ()
    assert ("acme", "acme-web") in rt.queue._queued
