"""The view's ordering rules with real API objects: events recorded from the real API server's
watches, delivered to a View in the interleaving that used to break it; and the periodic
re-list, exactly at the watch's version, against the real API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykube
import pytest

from tenant_registry import cluster as api
from tenant_registry.localcluster import ControlPlane
from tenant_registry.view import NAMESPACES, SERVICE_ACCOUNTS, View, key_of
from tenant_registry.view_types import namespace_info, service_account_info
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def client(control_plane: ControlPlane) -> Iterator[api.Cluster]:
    c = api.Cluster.connect(str(control_plane.kubeconfig))
    try:
        yield c
    finally:
        c.close()


def _events(client: api.Cluster, resource: str, since: str, ns: str) -> list[api.WatchEvent]:
    """Everything the watch tells from `since` about `ns` (a short stream, to its end)."""
    out = []
    for e in client.watch(resource, since, timeout=2):
        meta = e.object.get("metadata") or {}
        if e.type != "BOOKMARK" and ns in (meta.get("name"), meta.get("namespace")):
            out.append(e)
    return out


def _default_sa(k8s: Cluster, ns: str) -> dict[str, Any]:
    return wait_for(lambda: k8s.sa(ns), what=f"default ServiceAccount in {ns}", timeout=30)


def test_a_late_delete_of_an_old_namespace_keeps_the_new_namespaces_service_account(
    k8s: Cluster, client: api.Cluster, unique: str
) -> None:
    ns = f"order-{unique}"
    _, ns_since = client.list_objects("namespaces", chunk=1)
    _, sa_since = client.list_objects("serviceaccounts", chunk=1)
    k8s.namespace(ns)
    _default_sa(k8s, ns)
    k8s.cp.kubectl("delete", "namespace", ns, "--timeout=60s")
    k8s.namespace(ns)
    new_sa = _default_sa(k8s, ns)
    new_ns = pykube.Namespace.objects(k8s.api).get(name=ns).obj

    ns_events = _events(client, "namespaces", ns_since, ns)
    sa_events = _events(client, "serviceaccounts", sa_since, ns)
    assert [e.type for e in sa_events if e.type != "MODIFIED"] == ["ADDED", "DELETED", "ADDED"]
    assert "DELETED" in [e.type for e in ns_events]

    # The bad interleaving: the ServiceAccount watch is ahead, and delivers the new
    # namespace's default before the namespace watch delivers the old namespace's DELETED.
    view = View.empty()
    for e in sa_events:
        view.apply(SERVICE_ACCOUNTS, e.type, service_account_info(e.object))
    for e in ns_events:
        view.apply(NAMESPACES, e.type, namespace_info(e.object))

    held = view.held(SERVICE_ACCOUNTS, ns, "default")
    assert held is not None, "the new namespace's ServiceAccount is still known"
    assert held.resource_version == new_sa["metadata"]["resourceVersion"]
    assert view.namespaces[ns].uid == new_ns["metadata"]["uid"]


def test_a_re_list_at_the_watchs_version_repairs_and_counts_what_the_view_missed(
    k8s: Cluster, client: api.Cluster, unique: str
) -> None:
    ns = f"missed-{unique}"
    k8s.namespace(ns)
    k8s.service_account(ns, "kept")
    k8s.service_account(ns, "lost")
    _default_sa(k8s, ns)

    view = View.empty()
    records, since = client.list_objects("serviceaccounts", convert=service_account_info)
    view.merge_listed(SERVICE_ACCOUNTS, records)
    view.end_list(SERVICE_ACCOUNTS, int(since), {key_of(SERVICE_ACCOUNTS, r) for r in records})
    assert view.held(SERVICE_ACCOUNTS, ns, "lost") is not None

    pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="lost").delete()
    k8s.service_account(ns, "added")
    events = _events(client, "serviceaccounts", since, ns)
    for e in events:
        record = service_account_info(e.object)
        if e.type == "DELETED":
            view.bookmark(SERVICE_ACCOUNTS, int(record.resource_version))  # the event is lost
        else:
            view.apply(SERVICE_ACCOUNTS, e.type, record)
    assert view.held(SERVICE_ACCOUNTS, ns, "lost") is not None, "the view is wrong now"

    # The periodic re-list: exactly at the version the watch reached, two items a page.
    at = str(view.horizon(SERVICE_ACCOUNTS))
    changed: list[tuple[str, str]] = []
    listed: set[tuple[str, str]] = set()
    pages = 0
    for page, rv in client.list_pages(
        "serviceaccounts", chunk=2, convert=service_account_info, resource_version=at
    ):
        pages += 1
        assert rv == at
        listed.update(key_of(SERVICE_ACCOUNTS, r) for r in page)
        changed += view.merge_listed(SERVICE_ACCOUNTS, page)
    changed += view.end_list(SERVICE_ACCOUNTS, int(at), listed)

    assert pages > 1
    assert changed == [(ns, "lost")], "exactly what the view had wrong is repaired"
    assert view.held(SERVICE_ACCOUNTS, ns, "lost") is None
    assert view.held(SERVICE_ACCOUNTS, ns, "added") is not None
