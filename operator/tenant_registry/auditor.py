"""The audit at work: watches Pods and the kubelet's pull-secret Events (podview.py), runs the
pure audit (audit.py) per tenant, writes `status.audit` when a finding changes, posts an Event
in the tenant namespace per new finding, exports the per-tenant metrics, and, for tenants with
`spec.restartStuckPods`, deletes controller-owned Pods stuck on a pull their ServiceAccount's
new entry would fix, at a bounded rate, with an Event per restart.

Work follows changes: a (tenant, namespace) is audited again only when its Pods, Events,
ServiceAccounts or the tenant's intent changed; the rest is taken from the last audit.

Start-up: once the view is ready the scope (the namespaces some Active tenant selects) is
known; only then do the watches start, so their first lists keep exactly that scope, and the
first pass waits for both lists (a pass on a half-listed store would drop findings and write
them back). A namespace entering scope later is listed on its own, Pods and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from tenant_registry import audit, metrics
from tenant_registry.audit import Findings, PodRecord, TenantKeys
from tenant_registry.cluster import ApiError, Cluster
from tenant_registry.desired import Active, Intent
from tenant_registry.executor import Executor
from tenant_registry.keyring import Keyring
from tenant_registry.podview import EVENT_SELECTOR, PODS, PULL_SECRET_EVENTS, Store
from tenant_registry.view import ListEnd, View, Watcher, WatchSpec

log = logging.getLogger("tenant_registry")
MAX_EVENTS_PER_PASS = 20  # per tenant: a burst of findings does not flood the namespace
MAX_WRITE_BACKOFF = 300.0  # seconds between tries of a status.audit write that keeps failing
# More namespaces than this entering scope at once, and at least a quarter of the cluster's (a
# tenant onboarding hundreds, the first pass after a start): one list of all Pods and one of all
# pull-secret Events, kept for those namespaces, not two requests per namespace.
BULK_LIST_MIN = 20
NOTHING_FOUND = audit.audit_status(audit.Findings(0, (), (), (), ()))


class Auditor:
    def __init__(
        self,
        cluster: Cluster,
        executor: Executor,
        view: View,
        intents: dict[str, Intent],
        tenants: dict[str, dict[str, Any]],
        selected_by: Callable[[Active], set[str]],
        *,
        interval: float,
        restarts_per_minute: int,
        watch_timeout: int,
        relist_seconds: float,
    ) -> None:
        self.cluster, self.executor, self.view = cluster, executor, view
        self.intents, self.tenants, self.selected_by = intents, tenants, selected_by
        self.interval = interval
        self.budget = audit.RestartBudget(restarts_per_minute)
        self.pods = Store(scope=set())
        self.events = Store(scope=set())
        self.watchers = [
            Watcher(
                cluster,
                WatchSpec(PODS, "pods", audit.pod_record),
                self._deliver_threadsafe,
                timeout=watch_timeout,
                relist_seconds=relist_seconds,
            ),
            Watcher(
                cluster,
                WatchSpec(
                    PULL_SECRET_EVENTS,
                    "events",
                    audit.secret_event_record,
                    field_selector=EVENT_SELECTOR,
                ),
                self._deliver_threadsafe,
                timeout=watch_timeout,
                relist_seconds=relist_seconds,
            ),
        ]
        self._generation: dict[str, int] = {}  # namespace -> changes of its Pods and Events
        self._listed: dict[str, dict[tuple[str, str], None]] = {}  # keys of a list in progress
        # tenant -> namespace -> (fingerprint, findings): per tenant, so that a pass costs what
        # the tenant has, not what every tenant has
        self._cache: dict[str, dict[str, tuple[Any, Findings]]] = {}
        self._keyrings: dict[str, tuple[tuple[str, ...], Keyring]] = {}
        self._written: dict[str, dict[str, Any] | None] = {}  # tenant -> status.audit last written
        self._known: dict[str, frozenset[tuple[str, ...]]] = {}  # tenant -> announced keys
        # Pod uid -> resourceVersion a delete was tried at ("" once one succeeded: never again)
        self._attempted: dict[str, str] = {}
        # controller uid -> its Pods' uids when one was restarted: a Pod of it not among them
        # that is a candidate again means the restart did not bring the entry (a template
        # naming imagePullSecrets): that controller's Pods are restarted no more
        self._restarted: dict[str, set[str]] = {}
        self._futile: set[str] = set()
        self._failing: dict[str, tuple[float, int]] = {}  # tenant -> (retry after, failures)
        self._synced: set[str] = set()  # watch kinds whose first list ended
        self.listed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- inputs ---------------------------------------------------------------------------
    def start(self) -> None:
        """Only captures the loop: the watches start in `loop`, once the scope is known."""
        self._loop = asyncio.get_running_loop()

    def _start_watches(self) -> None:
        scope = self._scope(self._active())
        self.pods.set_scope(scope)
        self.events.set_scope(scope)
        for w in self.watchers:
            w.last_seen = time.monotonic()
            w.start()

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()

    def _deliver_threadsafe(self, kind: str, event_type: str, payload: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, kind, event_type, payload)

    def _store(self, kind: str) -> Store:
        return self.pods if kind == PODS else self.events

    def _changed(self, namespaces: set[str]) -> None:
        for ns in namespaces:
            self._generation[ns] = self._generation.get(ns, 0) + 1

    def _deliver(self, kind: str, event_type: str, payload: Any) -> None:
        store = self._store(kind)
        if event_type == "BOOKMARK":
            return
        if event_type == "LIST_PAGE":
            self._changed(store.merge_listed(payload))
        elif event_type == "LIST_END":
            end: ListEnd = payload
            self._changed(store.end_list(end.resource_version, end.listed))
            self._synced.add(kind)
            if self._synced >= {PODS, PULL_SECRET_EVENTS}:
                self.listed.set()
        elif store.apply(event_type, payload):
            self._changed({payload.namespace})

    def forget_tenant(self, tenant: str) -> None:
        self._cache.pop(tenant, None)
        self._keyrings.pop(tenant, None)
        self._written.pop(tenant, None)
        self._known.pop(tenant, None)
        self._failing.pop(tenant, None)

    # -- the loop -------------------------------------------------------------------------
    async def loop(self, ready: asyncio.Event) -> None:
        await ready.wait()
        self._start_watches()
        await self.listed.wait()
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the audit is a report: never stop the operator for it
                log.exception("audit pass failed")
            await asyncio.sleep(self.interval)

    def _active(self) -> dict[str, Active]:
        return {n: i for n, i in self.intents.items() if isinstance(i, Active)}

    def _scope(self, active: dict[str, Active]) -> set[str]:
        selected = [self.selected_by(intent) for intent in active.values()]
        return set().union(*selected) if selected else set()

    async def run_once(self) -> None:
        active = self._active()
        selected = {name: self.selected_by(intent) for name, intent in active.items()}
        scope = set().union(*selected.values()) if selected else set()
        entered, _ = self.pods.set_scope(scope)
        self.events.set_scope(scope)
        if _bulk(len(entered), len(self.view.namespaces)):
            await self._list_entered(entered, None)
        else:
            for ns in sorted(entered):
                await self._list_entered({ns}, ns)
        self._changed(entered)
        for name, intent in sorted(active.items()):
            if name in self.tenants:
                await self._audit_tenant(name, intent, selected[name])
                await asyncio.sleep(0)  # a pass over 1,000 tenants does not hold the loop
        for name in sorted(set(self.tenants) - set(active)):
            await self._clear(name)

    async def _list_entered(self, entered: set[str], namespace: str | None) -> None:
        """Namespaces that entered scope: their Pods and pull-secret Events, listed (the
        watches dropped them while out of scope): in `namespace` alone, or from one list of
        all of them (page by page, keeping only those of `entered`)."""

        def listed(kind: str, convert: Callable[[dict[str, Any]], Any], **kw: Any) -> Any:
            kept: dict[str, list[Any]] = {ns: [] for ns in entered}
            rv = ""
            for page, page_rv in self.cluster.list_pages(
                kind, namespace=namespace, convert=convert, **kw
            ):
                rv = page_rv  # every page of one list is of the same version
                for r in page:
                    if r.namespace in kept:
                        kept[r.namespace].append(r)
            return kept, rv

        metrics.READS.labels("pods", "audit").inc()
        metrics.READS.labels("events", "audit").inc()
        try:
            pods, pods_rv = await self.executor.call(listed, "pods", audit.pod_record)
            events, events_rv = await self.executor.call(
                lambda: listed("events", audit.secret_event_record, field_selector=EVENT_SELECTOR)
            )
        except ApiError as e:
            where = namespace or f"{len(entered)} namespaces"
            log.warning("audit: listing the Pods and Events of %s failed: %s", where, e)
            self.pods.scope = (self.pods.scope or set()) - entered  # entered again next pass
            return
        for ns in sorted(entered):
            self.pods.merge_namespace(ns, pods[ns], _version(pods_rv))
            self.events.merge_namespace(ns, events[ns], _version(events_rv))

    async def _clear(self, name: str) -> None:
        """A tenant that is not Active (suspended, invalid): its audit is not kept up, so it is
        removed from status and metrics rather than left frozen at old values."""
        stored = ((self.tenants.get(name) or {}).get("status") or {}).get("audit")
        if self._written.get(name, stored) is None:
            return
        self.forget_tenant(name)
        metrics.forget_audit(name)
        if not await self._write_status(name, None):
            self._written.pop(name, None)  # tried again next pass

    def _keyring(self, tenant: str, intent: Active) -> Keyring:
        servers = tuple(r.server for r in intent.spec.registries)
        held = self._keyrings.get(tenant)
        if held is None or held[0] != servers:
            held = self._keyrings[tenant] = (servers, audit.tenant_keyring(servers))
        return held[1]

    def _findings(self, tenant: TenantKeys, keyring: Keyring, intent: Active, ns: str) -> Findings:
        accounts = self.view.service_accounts.get(ns, {})
        fingerprint = (
            self._generation.get(ns, 0),
            tuple(sorted((n, sa.resource_version) for n, sa in accounts.items())),
            intent,
        )
        held = self._cache.setdefault(tenant.name, {})
        cached = held.get(ns)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        found = audit.audit_namespace(
            tenant, keyring, self.pods.in_namespace(ns), self.events.in_namespace(ns), accounts
        )
        held[ns] = (fingerprint, found)
        return found

    async def _audit_tenant(self, name: str, intent: Active, namespaces: set[str]) -> None:
        keys = TenantKeys(
            name, intent.spec.secret_name, tuple(r.server for r in intent.spec.registries)
        )
        keyring = self._keyring(name, intent)
        held = self._cache.get(name, {})
        for ns in [n for n in held if n not in namespaces]:
            del held[ns]
        findings = audit.combine(
            self._findings(keys, keyring, intent, ns) for ns in sorted(namespaces)
        )
        self._export(name, findings)
        status = audit.audit_status(findings)
        stored = ((self.tenants.get(name) or {}).get("status") or {}).get("audit")
        if name not in self._known:
            self._known[name] = audit.stored_keys(stored, findings)
        # Nothing stored is as good as nothing found: a tenant with no finding costs no write.
        written = self._written.get(name, stored if stored is not None else NOTHING_FOUND)
        if status != written and not await self._write_status(name, status):
            return  # announced with the status, when it is written
        for notice in audit.notices(name, findings, self._known[name])[:MAX_EVENTS_PER_PASS]:
            await self._post(
                notice.namespace, notice.pod, notice.type, notice.reason, notice.message
            )
        self._known[name] = audit.finding_keys(findings)
        if intent.spec.restart_stuck_pods:
            await self._restart(keys, keyring, namespaces)

    async def _write_status(self, name: str, status: dict[str, Any] | None) -> bool:
        """Write status.audit (None removes it). A write that fails is tried again after a
        back-off that doubles up to MAX_WRITE_BACKOFF, not every pass."""
        now = time.monotonic()
        after, failures = self._failing.get(name, (0.0, 0))
        if now < after:
            return False
        try:
            await self.executor.write(
                "tenantregistries",
                "patch",
                self.cluster.patch_tenant_status,
                name,
                {"audit": status},
            )
        except ApiError as e:
            failures += 1
            wait = min(MAX_WRITE_BACKOFF, self.interval * 2**failures)
            self._failing[name] = (now + wait, failures)
            log.warning("audit status of %s not written (next try in %.0fs): %s", name, wait, e)
            return False
        self._failing.pop(name, None)
        self._written[name] = status
        body = self.tenants.get(name)
        if body is not None:
            body.setdefault("status", {})["audit"] = status
        return True

    def _export(self, tenant: str, findings: Findings) -> None:
        metrics.AUDIT_PODS.labels(tenant).set(findings.pods)
        counts = (
            len(findings.pull_failures),
            len(findings.missing_secrets),
            len(findings.uncovered),
            len(findings.floating),
            len(findings.invalid),
        )
        for kind, n in zip(metrics.AUDIT_KINDS, counts, strict=True):
            metrics.AUDIT_FINDINGS.labels(tenant, kind).set(n)

    async def _post(
        self, ns: str, pod: str, type_: str, reason: str, message: str, uid: str = ""
    ) -> None:
        held = self.pods.records.get(ns, {}).get(pod)
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod}
        uid = uid or (held.uid if held is not None else "")
        if uid:
            involved["uid"] = uid
        await self.executor.post_event(ns, involved, type_, reason, message)

    # -- the opt-in restart ---------------------------------------------------------------
    async def _restart(self, tenant: TenantKeys, keyring: Keyring, namespaces: set[str]) -> None:
        live = [p for ns in namespaces for p in self.pods.in_namespace(ns)]
        uids, owners = {p.uid for p in live}, {p.owner_uid for p in live}
        for uid in [u for u in self._attempted if u not in uids]:
            del self._attempted[uid]
        for owner in [o for o in self._restarted if o not in owners]:
            del self._restarted[owner]
        self._futile &= owners
        for ns in sorted(namespaces):
            accounts = self.view.service_accounts.get(ns, {})
            pods = self.pods.in_namespace(ns)
            for pod in audit.restart_candidates(tenant, keyring, pods, accounts):
                if pod.uid in self._attempted and self._attempted[pod.uid] in (
                    "",
                    pod.resource_version,
                ):
                    continue  # deleted already, or tried at this version
                if pod.owner_uid in self._futile:
                    continue
                seen = self._restarted.get(pod.owner_uid)
                if seen is not None and pod.uid not in seen:
                    await self._give_up(tenant, pod)
                    continue
                if not self.budget.take(time.monotonic()):
                    return  # the rest wait for the next pass
                self._attempted[pod.uid] = pod.resource_version
                if await self._delete(tenant, pod):
                    self._attempted[pod.uid] = ""
                    self._restarted.setdefault(pod.owner_uid, set()).update(
                        p.uid for p in pods if p.owner_uid == pod.owner_uid
                    )

    async def _give_up(self, tenant: TenantKeys, pod: PodRecord) -> None:
        """A Pod its controller made after a restart lacks the entry again: restarting its
        Pods does not help (once per controller, while the operator runs)."""
        self._futile.add(pod.owner_uid)
        log.warning(
            "audit: not restarting Pods of %s/%s again: its new Pod %s lacks %s too",
            pod.namespace,
            pod.controller,
            pod.name,
            tenant.secret_name,
            extra={"action": "restart", "tenant": tenant.name, "namespace": pod.namespace},
        )
        await self._post_about_restart(
            pod,
            "Warning",
            "RestartNotHelping",
            f"TenantRegistry {tenant.name}: not restarting Pods of {pod.controller} again: "
            f"this Pod, made after the last restart, lacks {tenant.secret_name} too "
            "(its template names imagePullSecrets, or admission did not copy the "
            "ServiceAccount's); add the entry to the template",
        )

    async def _delete(self, tenant: TenantKeys, pod: PodRecord) -> bool:
        try:
            await self.executor.write(
                "pods",
                "delete",
                self.cluster.delete_pod,
                pod.namespace,
                pod.name,
                pod.uid,
                pod.resource_version,
            )
        except ApiError as e:
            metrics.AUDIT_RESTARTS.labels(tenant.name, e.kind).inc()
            log.warning("audit: restarting Pod %s/%s failed: %s", pod.namespace, pod.name, e)
            return False
        metrics.AUDIT_RESTARTS.labels(tenant.name, "ok").inc()
        log.info(
            "audit: deleted Pod %s/%s (%s) stuck in ImagePullBackOff",
            pod.namespace,
            pod.name,
            pod.controller,
            extra={"action": "restart", "tenant": tenant.name, "namespace": pod.namespace},
        )
        await self._post_about_restart(
            pod,
            "Normal",
            "RestartedStuckPod",
            f"TenantRegistry {tenant.name}: deleted this Pod, stuck in ImagePullBackOff: "
            f"its ServiceAccount {pod.service_account} now has {tenant.secret_name}, which "
            f"the Pod lacks (entries are copied only at creation); {pod.controller} "
            "should make a new one (spec.restartStuckPods)",
        )
        return True

    async def _post_about_restart(
        self, pod: PodRecord, type_: str, reason: str, message: str
    ) -> None:
        """An Event on the Pod a restart decision is about, by its uid (it may be gone
        already); one that cannot be posted is not retried: the log line says the same."""
        with contextlib.suppress(ApiError):
            await self._post(pod.namespace, pod.name, type_, reason, message, uid=pod.uid)


def _bulk(entered: int, namespaces: int) -> bool:
    """List the namespaces that entered scope together (BULK_LIST_MIN)?"""
    return entered > BULK_LIST_MIN and entered * 4 >= namespaces


def _version(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        return -1
