"""What an admin watches: Prometheus metrics, structured logs, the health endpoint."""

from __future__ import annotations

import json

import pytest

from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_metrics_report_namespaces_writes_latency_and_last_sync(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"metrics-{unique}"
    k8s.onboard_one(name)
    wait_for(
        lambda: (
            f'tenant_registry_namespaces{{state="synced",tenant="{name}"}} 1.0'
            in operator.process.metrics()
        ),
        what="synced gauge",
    )
    text = operator.process.metrics()
    for family in (
        'tenant_registry_writes_total{outcome="ok",resource="secrets",verb="create"}',
        'tenant_registry_writes_total{outcome="ok",resource="serviceaccounts",verb="patch"}',
        "tenant_registry_reconcile_seconds_bucket",
        f'tenant_registry_last_sync_timestamp_seconds{{tenant="{name}"}}',
        "tenant_registry_conflicts_total",
        f'tenant_registry_tenant_ready{{tenant="{name}"}} 1.0',
        "tenant_registry_queue_depth",
        "tenant_registry_leader 1.0",
        'tenant_registry_build_info{identity="tenant-registry-operator-0",version="',
    ):
        assert family in text, family


def test_logs_are_json_with_one_line_per_namespace_written(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"logs-{unique}"
    k8s.onboard_one(name)

    def mine() -> list[dict[str, object]]:
        records = []
        for line in operator.log_text().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
            else:
                assert line.startswith("127.0.0.1") or not line.strip(), line
        return [r for r in records if r.get("tenant") == name and r.get("action") == "write"]

    def writes() -> set[str]:
        return {w for r in mine() for w in r["writes"]}  # type: ignore[attr-defined]

    # The line is written once the namespace's writes are done, which can be just after the
    # ServiceAccount's entry is visible to onboard_one.
    expected = {f"create secrets/{name}-pull", "patch serviceaccounts/default"}
    wait_for(lambda: expected <= writes(), what="the namespace's write lines")
    assert all(r["namespace"] == f"{name}-a" for r in mine())


def test_probes_say_leading_and_synced(operator: RunningOperator) -> None:
    assert operator.process.probe("/livez")[0] == 200
    code, body = operator.process.probe("/readyz")
    assert (code, body["role"], body["why"]) == (200, "leading", "leading: view synced")
    assert operator.process.probe("/nonsense")[0] == 404
