"""Prometheus metrics: what an admin graphs and alerts on."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

BUILD_INFO = Info("tenant_registry_build", "The operator's version and this replica's identity")
LEADER = Gauge("tenant_registry_leader", "1 while this replica holds the Lease and may write")
WRITES_PAUSED = Gauge(
    "tenant_registry_writes_paused",
    "1 while the leader's Lease is not renewed (an API outage): every write is refused",
)
QUEUE_DEPTH = Gauge(
    "tenant_registry_queue_depth", "Tenant x namespace pairs queued or being worked on"
)
TENANT_READY = Gauge(
    "tenant_registry_tenant_ready", "1 when the tenant's Ready condition is True", ["tenant"]
)

NAMESPACES = Gauge(
    "tenant_registry_namespaces", "Namespaces per tenant and state", ["tenant", "state"]
)
WRITES = Counter(
    "tenant_registry_writes_total",
    "API writes by resource, verb and outcome",
    ["resource", "verb", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "tenant_registry_reconcile_seconds",
    "Time to reconcile one tenant x namespace pair",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONFLICTS = Counter(
    "tenant_registry_conflicts_total", "Optimistic-concurrency conflicts retried", ["resource"]
)
RELISTS = Counter(
    "tenant_registry_relists_total",
    "Periodic authoritative re-lists of the in-memory view, by kind",
    ["kind"],
)
REPAIRS = Counter(
    "tenant_registry_relist_repairs_total",
    "Records the periodic re-list found wrong in the in-memory view and repaired, by kind "
    "(anything above 0 means the view had diverged from the cluster)",
    ["kind"],
)
READS = Counter(
    "tenant_registry_reads_total",
    "Read requests outside the watches (a list counts once), by resource and why",
    ["resource", "reason"],
)
LOOP_LAG = Histogram(
    "tenant_registry_loop_lag_seconds",
    "How late a 50 ms timer on the event loop fired: how long something held the loop (the "
    "probes, watches and writes all wait on it)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_LAG_MAX = Gauge(
    "tenant_registry_loop_lag_max_seconds", "The event loop's largest lag of the last 10 s"
)
RESYNCS = Counter(
    "tenant_registry_resyncs_total", "Full re-plans from the in-memory view (--resync)"
)
CREDENTIAL_CHECKS = Counter(
    "tenant_registry_credential_checks_total",
    "Checks of credentials against their registries, by result (Verified, Unauthorized, "
    "Unreachable, TLSError, ...)",
    ["result"],
)
CREDENTIALS_VALID = Gauge(
    "tenant_registry_credentials_valid",
    "1 when every checked registry of the tenant accepted its credentials, 0 when one refused "
    "them or could not be checked (absent while a first check runs or verify is false)",
    ["tenant"],
)
CREDENTIALS_CHECKED = Gauge(
    "tenant_registry_credentials_checked_timestamp_seconds",
    "When the latest check of a tenant's credentials against its registries ended (status "
    "changes only when CredentialsValid does)",
    ["tenant"],
)
LAST_SYNC = Gauge(
    "tenant_registry_last_sync_timestamp_seconds",
    "When a tenant last had every selected namespace synced",
    ["tenant"],
)
AUDIT_FINDINGS = Gauge(
    "tenant_registry_audit_findings",
    "The pull-readiness audit's findings per tenant, by kind (pull_failures: containers "
    "waiting on a pull refused for authentication; missing_pull_secrets: Pods the kubelet "
    "could not get a pull secret for; uncovered_images: images no registry of the tenant "
    "covers; floating_tags: latest or untagged images; invalid_images: image references the "
    "kubelet cannot parse), per namespace and image or Pod",
    ["tenant", "kind"],
)
AUDIT_PODS = Gauge(
    "tenant_registry_audit_pods", "Pods the audit looked at in the tenant's namespaces", ["tenant"]
)
AUDIT_RESTARTS = Counter(
    "tenant_registry_audit_pod_restarts_total",
    "Pods deleted by the opt-in restart (spec.restartStuckPods), by outcome",
    ["tenant", "outcome"],
)
AUDIT_KINDS = (
    "pull_failures",
    "missing_pull_secrets",
    "uncovered_images",
    "floating_tags",
    "invalid_images",
)


def init_kinds(kinds: tuple[str, ...]) -> None:
    """Series that exist (at 0) before the first event, so alerts can use them."""
    for kind in kinds:
        RELISTS.labels(kind)
        REPAIRS.labels(kind)


def serve(port: int) -> None:
    start_http_server(port)


def forget_tenant(tenant: str) -> None:
    """A deleted tenant's series disappear instead of freezing at their last value."""
    for state in ("selected", "synced", "failed"):
        with contextlib.suppress(KeyError):
            NAMESPACES.remove(tenant, state)
    for gauge in (LAST_SYNC, TENANT_READY, CREDENTIALS_VALID, CREDENTIALS_CHECKED):
        with contextlib.suppress(KeyError):
            gauge.remove(tenant)
    forget_audit(tenant)


def forget_audit(tenant: str) -> None:
    """The audit's series of a tenant it no longer audits (deleted, or not Active)."""
    with contextlib.suppress(KeyError):
        AUDIT_PODS.remove(tenant)
    for kind in AUDIT_KINDS:
        with contextlib.suppress(KeyError):
            AUDIT_FINDINGS.remove(tenant, kind)
