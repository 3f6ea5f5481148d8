"""Which (tenant, namespace) pairs to work on, and when.

The coalescing work queue, the retry backoff of a pair that failed, and the lookups from a
tenant to the namespaces it concerns and from a Secret name in a namespace to the tenants that
want it. Reads the view and the intents; performs no I/O.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from tenant_registry.desired import Active, Frozen, Intent, owns
from tenant_registry.selection import namespace_selected
from tenant_registry.view import View

Key = tuple[str, str]  # (tenant, namespace)


class WorkQueue:
    """An ordered set of keys: adding a queued key is a no-op; a key being worked on is
    queued again once, after its worker is done."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self.per_tenant: dict[str, int] = defaultdict(int)

    def add(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self.per_tenant[key[0]] += 1
            self._queue.put_nowait(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        self.per_tenant[key[0]] -= 1
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def pending(self, tenant: str) -> int:
        return self.per_tenant.get(tenant, 0)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active)


class Scheduler:
    """Schedules pairs on the queue once the view is complete (`ready`), and retries failed
    pairs with a backoff that doubles per consecutive failure and resets on success."""

    def __init__(self, view: View, intents: dict[str, Intent], operator_namespace: str) -> None:
        self.view = view
        self.intents = intents
        self.operator_namespace = operator_namespace
        self.queue = WorkQueue()
        self.ready = False
        self._by_secret: dict[str, set[str]] = defaultdict(set)  # secretName -> Active tenants
        # namespace -> secretName -> the tenants wanting it there (asked on every plan)
        self._wanting: dict[str, dict[str, list[str]]] = {}
        self._retry_handles: dict[Key, asyncio.TimerHandle] = {}
        self._failed_runs: dict[Key, int] = {}  # consecutive failed reconciles, for backoff

    # -- what to queue -------------------------------------------------------------------
    def schedule_tenant(self, name: str) -> None:
        """Queue the tenant's namespaces: those it selects and those holding something of it.
        Work grows with the tenant, not with the cluster."""
        if not self.ready:
            return
        for ns in sorted(self.namespaces_of(name)):
            self.queue.add((name, ns))

    def schedule_namespace(self, ns: str) -> None:
        if not self.ready:
            return
        for tenant in self.intents:
            self.queue.add((tenant, ns))

    def resync(self) -> None:
        for name in list(self.intents):
            self.schedule_tenant(name)

    def namespaces_of(self, tenant: str) -> set[str]:
        intent = self.intents.get(tenant)
        if isinstance(intent, Frozen):
            return set()  # writes nothing and removes nothing: no per-namespace work
        found = self.holdings(tenant)
        if isinstance(intent, Active):
            found.update(self.selected_by(intent))
        return found

    def selected_by(self, intent: Active) -> set[str]:
        selection, own = intent.spec.namespaces, self.operator_namespace
        return {
            ns.name
            for ns in self.view.namespaces.values()
            if namespace_selected(selection, ns.name, ns.labels, own)
        }

    def holdings(self, tenant: str) -> set[str]:
        """Namespaces where the view shows a copy or a ServiceAccount entry of the tenant."""
        intent = self.intents.get(tenant)
        uid = intent.spec.uid if isinstance(intent, Active) else getattr(intent, "uid", None)
        found = {
            ns
            for ns, copies in self.view.copies.items()
            if any(owns(tenant, uid or None, c) for c in copies.values())
        }
        found.update(
            ns
            for ns, sas in self.view.service_accounts.items()
            if any(t == tenant for sa in sas.values() for t, _ in (*sa.ours, *sa.contested))
        )
        return found

    # -- who wants a Secret name -----------------------------------------------------------
    def index(self, name: str, old: Intent | None, new: Intent | None) -> None:
        """Keep the secretName index in step with a tenant's intent; when what the tenant
        wants where changed, queue the other tenants wanting the same name there (they may
        have gained or lost a rival)."""
        if isinstance(old, Active):
            self._by_secret[old.spec.secret_name].discard(name)
        if isinstance(new, Active):
            self._by_secret[new.spec.secret_name].add(name)
        before = (old.spec.secret_name, old.spec.namespaces) if isinstance(old, Active) else None
        after = (new.spec.secret_name, new.spec.namespaces) if isinstance(new, Active) else None
        if before == after:
            return
        self._wanting.clear()
        if not self.ready:
            return
        where: set[str] = set()
        others: set[str] = set()
        for intent in (old, new):
            if isinstance(intent, Active):
                where |= self.selected_by(intent)
                others |= self._by_secret.get(intent.spec.secret_name, set())
        for tenant in sorted(others - {name}):
            for ns in sorted(where):
                self.queue.add((tenant, ns))

    def namespace_changed(self, ns: str) -> None:
        self._wanting.pop(ns, None)

    def wanting(self, ns: str, secret_name: str) -> list[str]:
        """Active tenants that select `ns` and want a copy named `secret_name` there."""
        cached = self._wanting.get(ns, {}).get(secret_name)
        if cached is not None:
            return cached
        info = self.view.namespaces.get(ns)
        if info is None:
            return []
        out = []
        for tenant in sorted(self._by_secret.get(secret_name, ())):
            intent = self.intents.get(tenant)
            if isinstance(intent, Active) and namespace_selected(
                intent.spec.namespaces, ns, info.labels, self.operator_namespace
            ):
                out.append(tenant)
        self._wanting.setdefault(ns, {})[secret_name] = out
        return out

    def rivals(self, tenant: str, ns: str) -> tuple[str, ...]:
        intent = self.intents.get(tenant)
        if not isinstance(intent, Active):
            return ()
        return tuple(t for t in self.wanting(ns, intent.spec.secret_name) if t != tenant)

    # -- retries ---------------------------------------------------------------------------
    def retry_later(self, key: Key, base: float) -> None:
        """Try the pair again after `base` seconds, doubling with every consecutive failed
        reconcile of that pair (up to 5 minutes); a success resets it."""
        runs = self._failed_runs[key] = self._failed_runs.get(key, 0) + 1
        delay = min(300.0, base * 2 ** (runs - 1))
        old = self._retry_handles.pop(key, None)
        if old:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._retry_handles[key] = loop.call_later(delay, self.queue.add, key)

    def retry_at(self, key: Key) -> float | None:
        """When the pair's retry is due (loop time), if one is set."""
        handle = self._retry_handles.get(key)
        return handle.when() if handle else None

    def succeeded(self, key: Key) -> None:
        self._failed_runs.pop(key, None)

    def forget_namespace(self, ns: str) -> None:
        self._wanting.pop(ns, None)
        for key in [k for k in self._retry_handles if k[1] == ns]:
            self._retry_handles.pop(key).cancel()
        for key in [k for k in self._failed_runs if k[1] == ns]:
            del self._failed_runs[key]

    def forget_tenant(self, tenant: str) -> None:
        """The tenant is gone: its retries and backoff counts go with it."""
        for key in [k for k in self._retry_handles if k[0] == tenant]:
            self._retry_handles.pop(key).cancel()
        for key in [k for k in self._failed_runs if k[0] == tenant]:
            del self._failed_runs[key]

    def cancel(self) -> None:
        for handle in self._retry_handles.values():
            handle.cancel()
        self._retry_handles.clear()
