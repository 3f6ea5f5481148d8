"""Prometheus metrics: what an admin graphs and alerts on."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

NAMESPACES = Gauge(
    "tenant_registry_namespaces", "Namespaces per tenant and state", ["tenant", "state"]
)
WRITES = Counter(
    "tenant_registry_writes_total", "API writes by resource, verb and outcome",
    ["resource", "verb", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "tenant_registry_reconcile_seconds", "Time to reconcile one tenant x namespace pair",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONFLICTS = Counter(
    "tenant_registry_conflicts_total", "Optimistic-concurrency conflicts retried", ["resource"]
)
LAST_SYNC = Gauge(
    "tenant_registry_last_sync_timestamp_seconds",
    "When a tenant last had every selected namespace synced", ["tenant"],
)


def serve(port: int) -> None:
    start_http_server(port)


def forget_tenant(tenant: str) -> None:
    for state in ("selected", "synced", "failed"):
        NAMESPACES.remove(tenant, state) if (tenant, state) in _labels(NAMESPACES) else None
    if (tenant,) in _labels(LAST_SYNC):
        LAST_SYNC.remove(tenant)


def _labels(metric: Gauge) -> set[tuple[str, ...]]:
    return set(metric._metrics.keys())
