"""A view that cannot stay wrong: what users do to namespaces and copies ends in the right state,
and the periodic re-list runs without writing anything.

The view's own tests run against an operator with the periodic re-list off (`without_relist`):
the session's operator re-lists every 5 s, which would repair whatever the view got wrong and
hide the bug. Only the last test is about the re-list itself."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pykube
import pytest

from tenant_registry.localcluster.harness import OperatorProcess
from tests.cluster.conftest import OPERATOR_ARGS, RunningOperator
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def without_relist(operator: RunningOperator, unique: str) -> Iterator[None]:
    """The session's operator replaced, for one test, by one whose view is never re-listed."""
    operator.stop()
    own = OperatorProcess(operator.cp, *OPERATOR_ARGS, "--relist=0", log_name=f"no-relist-{unique}")
    try:
        own.start()
        yield
    finally:
        own.stop()
        operator.start()


def test_namespace_deleted_and_created_again_is_onboarded_again(
    k8s: Cluster, unique: str, without_relist: None
) -> None:
    name = f"reborn-{unique}"
    ns = f"{name}-a"
    k8s.onboard(name, [ns])
    k8s.cp.kubectl("delete", "namespace", ns, "--timeout=60s")  # waits until it is gone
    k8s.namespace(ns, tenant=name)
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="entry in the new namespace")
    assert k8s.copy(ns, f"{name}-pull") is not None
    wait_for(
        lambda: (
            k8s.condition(name, "Ready").get("status") == "True"
            and k8s.status(name).get("syncedNamespaces") == 1
        ),
        what="Ready with the new namespace synced",
    )


def test_copy_deleted_as_soon_as_it_is_created_is_created_again(
    k8s: Cluster, unique: str, without_relist: None
) -> None:
    """Another client deletes the copy the moment it appears (often before the operator has
    stored its own create's result): the operator must not believe it still exists."""
    name = f"blink-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    deleted: list[str] = []

    def deleter() -> None:
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(k8s.cp.kubeconfig)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            obj = pykube.Secret.objects(api, namespace=ns).get_or_none(name=f"{name}-pull")
            if obj is not None:
                obj.delete()
                deleted.append(obj.obj["metadata"]["uid"])
                return
            time.sleep(0.002)

    thread = threading.Thread(target=deleter)
    thread.start()
    k8s.credentials(name)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[
            {"server": f"{name}.example", "credentialsRef": {"name": name}, "verify": False}
        ],
        namespaces={"names": [ns]},
    )
    thread.join(timeout=40)
    assert deleted, "the copy was created and deleted once"
    wait_for(
        lambda: (
            (k8s.copy(ns, f"{name}-pull") or {}).get("metadata", {}).get("uid")
            not in (None, deleted[0])
        ),
        what="a new copy",
    )
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")


def test_copy_whose_tenant_label_was_stripped_is_repaired_not_called_another_tenants(
    k8s: Cluster, unique: str, without_relist: None
) -> None:
    name = f"strip-{unique}"
    ns = k8s.onboard_one(name)
    secret = pykube.Secret.objects(k8s.api, namespace=ns).get(name=f"{name}-pull")
    secret.patch({"metadata": {"labels": {"registry.tenancy.dev/tenant": None}}})
    wait_for(
        lambda: (
            ((k8s.copy(ns, f"{name}-pull") or {}).get("metadata", {}).get("labels", {})).get(
                "registry.tenancy.dev/tenant"
            )
            == name
        ),
        what="the tenant label restored",
    )
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")
    assert not k8s.status(name).get("failures")

    # Stripped again and then deleted by the user: simply created again.
    secret = pykube.Secret.objects(k8s.api, namespace=ns).get(name=f"{name}-pull")
    secret.patch({"metadata": {"labels": {"registry.tenancy.dev/tenant": None}}})
    k8s.cp.kubectl("delete", "secret", f"{name}-pull", "-n", ns)
    wait_for(
        lambda: (
            ((k8s.copy(ns, f"{name}-pull") or {}).get("metadata", {}).get("labels", {})).get(
                "registry.tenancy.dev/tenant"
            )
            == name
        ),
        what="a new copy",
    )
    time.sleep(1)
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready again")
    assert not k8s.status(name).get("failures")


def _counter(text: str, family: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(family + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_view_is_relisted_periodically_and_repairs_are_counted_without_writes(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"relist-{unique}"
    k8s.onboard(name, [f"{name}-a", f"{name}-b"])
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")
    k8s.settle()
    before = operator.process.metrics()
    mark = k8s.audit_mark()
    for kind in ("namespaces", "serviceaccounts", "copies", "credentials"):
        first = _counter(before, "tenant_registry_relists_total", kind=kind)
        wait_for(
            lambda kind=kind, first=first: (
                _counter(operator.process.metrics(), "tenant_registry_relists_total", kind=kind)
                >= first + 1
            ),
            what=f"a re-list of {kind}",
            timeout=30,
        )
    text = operator.process.metrics()
    assert re.search(r"^tenant_registry_relist_repairs_total\{", text, re.M), "repairs counted"
    assert _counter(text, "tenant_registry_relist_repairs_total") == 0, "nothing to repair"
    assert k8s.operator_writes(mark) == [], "a re-list of a right view writes nothing"
