"""Quiet at steady state: no write that changes nothing, none on restart, no Kopf
bookkeeping on objects the operator does not own."""

from __future__ import annotations

import time

import pykube
import pytest

from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def _converged(k8s: Cluster, name: str, namespaces: list[str]) -> None:
    for ns in namespaces:
        wait_for(lambda ns=ns: f"{name}-pull" in k8s.pull_secrets(ns), what=f"entry in {ns}")
    wait_for(
        lambda: (
            k8s.condition(name, "Ready").get("status") == "True"
            and k8s.status(name).get("syncedNamespaces") == len(namespaces)
        ),
        what="Ready",
    )


def test_onboarding_costs_one_secret_write_and_one_write_per_service_account(
    k8s: Cluster, unique: str
) -> None:
    name = f"eco-{unique}"
    namespaces = [f"{name}-{i}" for i in range(10)]
    mark = k8s.audit_mark()
    k8s.onboard(name, namespaces)
    _converged(k8s, name, namespaces)
    time.sleep(1)
    writes = k8s.operator_writes(mark)
    per_ns = [w for w in writes if w["objectRef"].get("namespace") in namespaces]
    secrets = [w for w in per_ns if w["objectRef"]["resource"] == "secrets"]
    sas = [w for w in per_ns if w["objectRef"]["resource"] == "serviceaccounts"]
    assert len(secrets) == len(namespaces) and {w["verb"] for w in secrets} == {"create"}
    assert len(sas) == len(namespaces) and {w["verb"] for w in sas} == {"patch"}


def test_steady_state_and_restart_make_zero_writes(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"idle-{unique}"
    namespaces = [f"{name}-{i}" for i in range(5)]
    k8s.onboard(name, namespaces)
    _converged(k8s, name, namespaces)
    k8s.settle()  # let Events and the last status write land

    mark = k8s.audit_mark()
    time.sleep(3)
    assert k8s.operator_writes(mark) == [], "no writes at steady state"

    mark = k8s.audit_mark()
    shutdown = operator.stop()
    assert shutdown < 10, f"SIGTERM took {shutdown:.1f}s"
    operator.start()
    time.sleep(4)
    writes = k8s.operator_writes(mark)
    assert writes == [], f"restart wrote: {[(w['verb'], w['objectRef']) for w in writes]}"
    # And it is live again: a new namespace is onboarded by the new process.
    k8s.namespace(f"{name}-new", tenant=name)
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(f"{name}-new"), what="after restart")


def test_no_kopf_bookkeeping_on_tenant_objects(k8s: Cluster, unique: str) -> None:
    name = f"clean-{unique}"
    ns = k8s.onboard_one(name)
    objects = [
        pykube.Namespace.objects(k8s.api).get(name=ns).obj,
        k8s.copy(ns, f"{name}-pull"),
        k8s.sa(ns),
    ]
    for obj in objects:
        meta = obj["metadata"]
        keys = list((meta.get("annotations") or {}).keys())
        assert not [k for k in keys if "kopf" in k or "last-handled" in k], keys
        assert not meta.get("finalizers")


def test_changes_made_while_the_operator_was_down_are_repaired_on_start(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    """Level-triggered: a restart re-derives everything from the cluster, nothing from memory."""
    name = f"down-{unique}"
    ns = k8s.onboard_one(name)
    k8s.namespace(f"{name}-b")
    operator.stop()
    try:
        k8s.cp.kubectl("delete", "secret", f"{name}-pull", "-n", ns)
        sa = pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="default")
        sa.patch({"imagePullSecrets": [{"name": "users-own"}]})
        k8s.credentials(name, password="rotated-while-down")
        k8s.tenant(
            name,
            secret_name=f"{name}-pull",
            registries=[registry(f"{name}.example", name)],
            namespaces={"names": [ns, f"{name}-b"]},
        )
    finally:
        operator.start()
    for where in (ns, f"{name}-b"):
        wait_for(
            lambda where=where: (
                (k8s.dockerconfig(where, f"{name}-pull") or {})
                .get("auths", {})
                .get(f"{name}.example", {})
                .get("password")
                == "rotated-while-down"
            ),
            what=f"current copy in {where}",
        )
        wait_for(
            lambda where=where: f"{name}-pull" in k8s.pull_secrets(where), what=f"entry in {where}"
        )
    assert k8s.pull_secrets(ns) == ["users-own", f"{name}-pull"]
