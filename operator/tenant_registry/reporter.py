"""What tenants are told: per-namespace outcomes, the status written when it changes, Events on
transitions (about the TenantRegistry, and in a tenant's namespace on what blocks it), metrics.

The pure decisions (the status dict, whether it differs, which transitions earn an Event) are
in status.py; this room gathers the report from the view and the outcomes, and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

from tenant_registry import metrics, names
from tenant_registry import status as status_mod
from tenant_registry.cluster import ApiError
from tenant_registry.desired import Active, Frozen, Gone, Intent, Outcome, in_place, owns
from tenant_registry.executor import Executor
from tenant_registry.verification import UNVERIFIED, VERIFYING, Verdict
from tenant_registry.view import View

log = logging.getLogger("tenant_registry")
Key = tuple[str, str]  # (tenant, namespace)


class Reporter:
    def __init__(
        self,
        executor: Executor,
        view: View,
        tenants: dict[str, dict[str, Any]],
        intents: dict[str, Intent],
        pending: Callable[[str], int],
        selected: Callable[[str], set[str]],
        operator_namespace: str,
        interval: float,
        verdicts: dict[str, Verdict] | None = None,
    ) -> None:
        self.executor = executor
        self.view = view
        self.tenants = tenants  # name -> last seen object
        self.intents = intents
        self.pending = pending  # pairs of a tenant queued or being worked on
        self.selected = selected  # the namespaces a tenant selects (the scheduler's index)
        self.operator_namespace = operator_namespace
        self.interval = interval
        self.verdicts = {} if verdicts is None else verdicts  # credential verification
        self.outcomes: dict[str, dict[str, Outcome]] = defaultdict(dict)
        self._dirty: set[str] = set()
        self._news: set[str] = set()  # tenants with outcomes recorded since their last flush
        self._busy_since: dict[str, float] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()

    def mark_dirty(self, tenant: str) -> None:
        self._dirty.add(tenant)

    def record(self, key: Key, outcome: Outcome) -> None:
        tenant, ns = key
        previous = self.outcomes[tenant].get(ns)
        if outcome.state == "absent":
            self.outcomes[tenant].pop(ns, None)
        else:
            self.outcomes[tenant][ns] = outcome
        self._dirty.add(tenant)
        self._news.add(tenant)
        if (
            outcome.subject_kind
            and outcome != previous
            and not (previous is None and self._in_stored_status(tenant, ns, outcome.reason))
        ):
            # Tenants rarely may read the cluster-scoped TenantRegistry: tell them where they
            # look, once per new failure, on the object in their namespace it is about.
            self.background(self._tell_namespace(tenant, ns, outcome))

    def forget_tenant(self, tenant: str) -> None:
        self.outcomes.pop(tenant, None)
        self._dirty.discard(tenant)
        self._news.discard(tenant)
        self._busy_since.pop(tenant, None)

    def forget_namespace(self, ns: str) -> None:
        for tenant, outcomes in self.outcomes.items():
            if outcomes.pop(ns, None) is not None:
                self._dirty.add(tenant)

    def _in_stored_status(self, tenant: str, namespace: str, reason: str) -> bool:
        """Already reported before a restart? (The status lists up to 20 failures.)"""
        status = (self.tenants.get(tenant) or {}).get("status") or {}
        return any(
            f.get("namespace") == namespace and f.get("reason") == reason
            for f in status.get("failures") or []
        )

    async def stop(self) -> None:
        """Cancel Events still being posted (they are reports, not state)."""
        tasks = list(self._side_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _tell_namespace(self, tenant: str, namespace: str, outcome: Outcome) -> None:
        involved = {
            "apiVersion": "v1",
            "kind": outcome.subject_kind,
            "namespace": namespace,
            "name": outcome.subject_name,
        }
        await self.executor.post_event(
            namespace,
            involved,
            "Warning",
            outcome.reason,
            f"TenantRegistry {tenant}: {outcome.message}",
        )

    # -- status ----------------------------------------------------------------------------
    def report(self, tenant: str) -> status_mod.Report | None:
        intent = self.intents.get(tenant)
        body = self.tenants.get(tenant)
        if intent is None or body is None or isinstance(intent, Gone):
            return None
        generation = int(body["metadata"].get("generation") or 0)
        verdict = self.verdicts.get(tenant)
        if isinstance(intent, Frozen):
            return status_mod.Report(
                generation,
                "frozen",
                intent.reason,
                intent.message,
                credentials_resolved=intent.credentials_resolved,
                # What the copies hold while nothing is written (they are not removed either).
                content_hash=(body.get("status") or {}).get("contentHash", "")
                if intent.reason in ("Suspended", VERIFYING, UNVERIFIED)
                else "",
                verification=verdict,
            )
        assert isinstance(intent, Active)
        selected = synced = 0
        failures = []
        retiring: dict[str, list[str]] = {}  # a previous secretName -> its copies' delete-after
        outcomes = self.outcomes.get(tenant, {})
        for name in self.selected(tenant):
            ns = self.view.namespaces.get(name)
            if ns is None or ns.terminating:
                continue
            selected += 1
            for c in self.view.copies.get(name, {}).values():
                retired = c.delete_after and c.name != intent.spec.secret_name
                if retired and owns(tenant, intent.spec.uid, c):
                    retiring.setdefault(c.name, []).append(c.delete_after)
            outcome = outcomes.get(name)
            if outcome is None:
                continue
            if outcome.state == "synced":
                # Only what the view observes: after a rotation the outcome planned for the old
                # content must not count the namespace as holding the new one.
                if in_place(
                    intent,
                    self.view.copies.get(ns.name, {}),
                    self.view.service_accounts.get(ns.name, {}),
                ):
                    synced += 1
            elif outcome.state == "failed":
                failures.append(status_mod.Failure(ns.name, outcome.reason, outcome.message))
        return status_mod.Report(
            generation,
            "active",
            content_hash=intent.copy.content_hash,
            selected=selected,
            synced=synced,
            failures=tuple(failures),
            verification=verdict,
            retiring=tuple(
                status_mod.Retiring(name, len(times), max(times))
                for name, times in sorted(retiring.items())
            ),
        )

    async def loop(self, at_once: int = 4) -> None:
        """Every `interval`, the status of the tenants whose report may have changed: a few
        at once (hundreds of tenants done together are not written one after another), never
        more (the pairs' writes share the pool)."""
        while True:
            await asyncio.sleep(self.interval)
            due = self._due(time.monotonic())
            for i in range(0, len(due), at_once):
                await asyncio.gather(*(self._flush_or_retry(t) for t in due[i : i + at_once]))

    def _due(self, now: float) -> list[str]:
        due = []
        for tenant in sorted(self._dirty):
            # While a tenant's pairs are queued, write progress only after 5 s of work, and
            # only if some pair was done meanwhile: a restart or a rotation drains first and
            # then writes once (or not at all); a tenant waiting behind others in the queue
            # is not written "0 synced" first.
            if self.pending(tenant):
                busy = now - self._busy_since.setdefault(tenant, now)
                if busy < 5 or tenant not in self._news:
                    continue
                self._busy_since[tenant] = now
            else:
                self._busy_since.pop(tenant, None)
            self._dirty.discard(tenant)
            self._news.discard(tenant)
            due.append(tenant)
        return due

    async def _flush_or_retry(self, tenant: str) -> None:
        try:
            await self.flush(tenant)
        except ApiError as e:
            log.warning("status of %s not written: %s", tenant, e)
            self._dirty.add(tenant)

    async def flush(self, tenant: str) -> None:
        report = self.report(tenant)
        body = self.tenants.get(tenant)
        if report is None or body is None:
            return
        current = body.get("status")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = status_mod.build_status(report, current, now)
        self._export_metrics(tenant, report, new)
        if not status_mod.differs(new, current):
            return
        await self.executor.write(
            "tenantregistries",
            "patch",
            self.executor.cluster.patch_tenant_status,
            tenant,
            new,
        )
        body["status"] = {**(current or {}), **new}
        for a in status_mod.announcements(new, current):
            await self.announce(tenant, a.type, a.reason, a.message)

    def _export_metrics(
        self, tenant: str, report: status_mod.Report, status: dict[str, Any]
    ) -> None:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        metrics.TENANT_READY.labels(tenant).set(1 if ready else 0)
        metrics.NAMESPACES.labels(tenant, "selected").set(report.selected)
        metrics.NAMESPACES.labels(tenant, "synced").set(report.synced)
        metrics.NAMESPACES.labels(tenant, "failed").set(len(report.failures))
        if report.state == "active" and report.synced == report.selected:
            metrics.LAST_SYNC.labels(tenant).set_to_current_time()
        verdict = report.verification
        if verdict is not None and verdict.status in ("True", "False"):
            metrics.CREDENTIALS_VALID.labels(tenant).set(1 if verdict.status == "True" else 0)
        else:
            with contextlib.suppress(KeyError):
                metrics.CREDENTIALS_VALID.remove(tenant)

    async def announce(self, tenant: str, type_: str, reason: str, message: str) -> None:
        body = self.tenants.get(tenant) or {"metadata": {"name": tenant}}
        involved = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "name": tenant,
            "uid": body["metadata"].get("uid", ""),
        }
        log.info(
            "event %s %s for %s: %s",
            type_,
            reason,
            tenant,
            message,
            extra={"action": "event", "tenant": tenant, "reason": reason},
        )
        await self.executor.post_event(names.EVENTS_NAMESPACE, involved, type_, reason, message)
