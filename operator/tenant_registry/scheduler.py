"""Which (tenant, namespace) pairs to work on, and when.

The coalescing work queue, the retry backoff of a pair that failed, and the lookups from a
tenant to the namespaces it concerns and from a Secret name in a namespace to the tenants that
want it. Reads the view and the intents; performs no I/O.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from tenant_registry.desired import Active, Frozen, Intent, owns
from tenant_registry.index import TenantIndex
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
        self.tenant_index = TenantIndex(view, operator_namespace)
        view.on_change = self.tenant_index.view_changed
        self._by_secret: dict[str, set[str]] = defaultdict(set)  # secretName -> Active tenants
        self._secret_of: dict[str, str] = {}  # Active tenant -> its secretName
        self._retry_handles: dict[Key, asyncio.TimerHandle] = {}
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False
        self._resync_waiting: set[str] = set()
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
        """Queue the pairs of `ns` with the tenants that select it or hold something there."""
        if not self.ready:
            return
        for tenant in sorted(self.tenant_index.tenants_in(ns)):
            intent = self.intents.get(tenant)
            if intent is not None and not isinstance(intent, Frozen):
                self.queue.add((tenant, ns))

    def resync(self) -> None:
        """Queue every tenant's namespaces: in a task that yields to the loop every few
        hundred pairs, so that a resync of 10,000 pairs never holds the loop for long. A
        resync asked for while one runs runs again after it."""
        if not self.ready:
            return
        self._resync_waiting = set(self.intents)  # pending from now, not from the task's start
        if self._resync is not None and not self._resync.done():
            self._resync_again = True
            return
        self._resync = asyncio.get_running_loop().create_task(self._resync_in_chunks())

    async def _resync_in_chunks(self, chunk: int = 200) -> None:
        self._resync_again = True
        try:
            while self._resync_again:
                self._resync_again = False
                queued = 0
                for name in list(self.intents):
                    for ns in sorted(self.namespaces_of(name)):
                        self.queue.add((name, ns))
                        queued += 1
                        if queued % chunk == 0:
                            await asyncio.sleep(0)
                    self._resync_waiting.discard(name)
        finally:
            self._resync_waiting = set()

    def pending(self, tenant: str) -> int:
        """Pairs of the tenant queued or being worked on. Before the view is complete, and
        while a resync has not reached the tenant yet, it counts as pending: its status would
        report what is not planned yet."""
        if not self.ready:
            return 1
        return self.queue.pending(tenant) + (1 if tenant in self._resync_waiting else 0)

    def namespaces_of(self, tenant: str) -> set[str]:
        intent = self.intents.get(tenant)
        if isinstance(intent, Frozen):
            return set()  # writes nothing and removes nothing: no per-namespace work
        found = self.holdings(tenant)
        if isinstance(intent, Active):
            found.update(self.selected_by(intent))
        return found

    def selected_by(self, intent: Active) -> set[str]:
        return set(self.tenant_index.selected_by(intent.spec.name))

    def holdings(self, tenant: str) -> set[str]:
        """Namespaces where the view shows a copy or a ServiceAccount entry of the tenant."""
        intent = self.intents.get(tenant)
        uid = intent.spec.uid if isinstance(intent, Active) else getattr(intent, "uid", None)
        copies, sas = self.view.copies, self.view.service_accounts
        # The index knows the namespaces with a copy labelled as the tenant's or an entry of
        # it; a copy is the tenant's only with its ownerReference too (uid known).
        return {
            ns
            for ns in self.tenant_index.holdings(tenant)
            if any(owns(tenant, uid or None, c) for c in copies.get(ns, {}).values())
            or any(
                t == tenant for sa in sas.get(ns, {}).values() for t, _ in (*sa.ours, *sa.contested)
            )
        }

    # -- who wants a Secret name -----------------------------------------------------------
    def index(self, name: str, old: Intent | None, new: Intent | None) -> None:
        """Keep the secretName index in step with a tenant's intent; when what the tenant
        wants where changed, queue the other tenants wanting the same name there (they may
        have gained or lost a rival)."""
        where = set(self.tenant_index.selected_by(name))  # what the old intent selected
        if isinstance(old, Active):
            self._by_secret[old.spec.secret_name].discard(name)
            if not self._by_secret[old.spec.secret_name]:
                del self._by_secret[old.spec.secret_name]
            self._secret_of.pop(name, None)
        if isinstance(new, Active):
            self._by_secret[new.spec.secret_name].add(name)
            self._secret_of[name] = new.spec.secret_name
        self.tenant_index.set_selection(
            name, new.spec.namespaces if isinstance(new, Active) else None
        )
        before = (old.spec.secret_name, old.spec.namespaces) if isinstance(old, Active) else None
        after = (new.spec.secret_name, new.spec.namespaces) if isinstance(new, Active) else None
        if before == after or not self.ready:
            return
        where |= self.tenant_index.selected_by(name)
        secrets = {i.spec.secret_name for i in (old, new) if isinstance(i, Active)}
        # Only the tenants that select those namespaces and want one of those names there:
        # hundreds of tenants sharing a secretName elsewhere have gained no rival.
        for ns in sorted(where):
            for secret in sorted(secrets):
                for tenant in self.wanting(ns, secret):
                    if tenant != name:
                        self.queue.add((tenant, ns))

    def namespace_changed(self, ns: str) -> None:
        """The index follows the view by itself (View.on_change): nothing to invalidate."""

    def wanting(self, ns: str, secret_name: str) -> list[str]:
        """Active tenants that select `ns` and want a copy named `secret_name` there."""
        return sorted(
            t
            for t in self.tenant_index.selecting.get(ns, ())
            if self._secret_of.get(t) == secret_name
        )

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
        if self._resync is not None:
            self._resync.cancel()
        for handle in self._retry_handles.values():
            handle.cancel()
        self._retry_handles.clear()
