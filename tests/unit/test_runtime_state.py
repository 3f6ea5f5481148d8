"""Runtime state without a cluster: the view's version guard and echo detection, and the
backoff of a pair's retries."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from tenant_registry.desired import Outcome
from tenant_registry.reconcile import Runtime, Settings
from tenant_registry.view import COPIES, NAMESPACES, SERVICE_ACCOUNTS, View
from tenant_registry.view_types import CopyInfo, ServiceAccountInfo, is_copy


def sa(rv: str) -> ServiceAccountInfo:
    return ServiceAccountInfo("ns", "default", rv)


def test_older_versions_never_replace_newer_ones() -> None:
    view = View.empty()
    view.put_service_account(sa("10"))
    view.put_service_account(sa("9"))  # a late watch event
    assert view.held(SERVICE_ACCOUNTS, "ns", "default").resource_version == "10"
    view.put_service_account(sa("11"))
    assert view.held(SERVICE_ACCOUNTS, "ns", "default").resource_version == "11"


def test_echo_of_our_own_write_is_recognised() -> None:
    view = View.empty()
    copy = CopyInfo("ns", "pull", "5", "acme", "kubernetes.io/dockerconfigjson", "h", "h")
    view.put_copy(copy)
    assert view.seen(COPIES, copy)
    assert not view.seen(COPIES, CopyInfo("ns", "pull", "6", "acme", "t", "h", "h"))
    assert not view.seen(NAMESPACES, copy)


def test_is_copy_reads_the_managed_by_label() -> None:
    label = {"app.kubernetes.io/managed-by": "tenant-registry-operator"}
    assert is_copy({"metadata": {"labels": label}})
    assert not is_copy({"metadata": {}})
    assert not is_copy(None)


def test_retries_back_off_per_pair_and_reset_on_success() -> None:
    async def scenario() -> list[float]:
        rt = Runtime(cluster=SimpleNamespace(), settings=Settings())  # type: ignore[arg-type]
        rt._loop = asyncio.get_running_loop()
        key = ("acme", "ns")
        delays = []
        for _ in range(4):
            now = rt._loop.time()
            rt._retry_later(key, 1)
            delays.append(round(rt._retry_handles[key].when() - now))
        rt._record(key, Outcome("synced"))
        now = rt._loop.time()
        rt._retry_later(key, 1)
        delays.append(round(rt._retry_handles[key].when() - now))
        for handle in rt._retry_handles.values():
            handle.cancel()
        return delays

    assert asyncio.run(scenario()) == [1, 2, 4, 8, 1]
