"""Leftovers of TenantRegistries deleted while no operator ran (a finalizer removed by force,
or the CRD gone and back): the tenants that entries recorded on ServiceAccounts, or orphaned
copies, name but no TenantRegistry of that name exists. Looked for against a complete list of
TenantRegistries, after the view is in, then every re-list (or resync) period; such a tenant
is given the intent Gone (the runtime removes what is ours, as for a deletion), and forgotten
once nothing names it any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tenant_registry import metrics, names
from tenant_registry.cluster import Cluster
from tenant_registry.desired import Intent, orphaned
from tenant_registry.executor import Executor
from tenant_registry.view import View

log = logging.getLogger("tenant_registry")


class Leftovers:
    """The tenants without a TenantRegistry whose entries and copies are being released."""

    def __init__(
        self,
        cluster: Cluster,
        executor: Executor,
        view: View,
        tenants: dict[str, dict[str, Any]],
        intents: dict[str, Intent],
        ready: asyncio.Event,
        *,
        every: float,
        pending: Callable[[str], int],
        retire: Callable[[str], None],
        forget: Callable[[str], None],
    ) -> None:
        self._cluster, self._executor, self._view = cluster, executor, view
        self._tenants, self._intents, self._ready = tenants, intents, ready
        self._every = every
        # pending: pairs of the tenant still queued; retire: give the tenant the intent Gone;
        # forget: drop what the runtime knows of the tenant.
        self._pending, self._retire, self._forget = pending, retire, forget
        # Tenants named in ServiceAccount annotations (or orphaned copies) whose
        # TenantRegistry is gone: their entries are being released.
        self._orphans: set[str] = set()

    async def loop(self) -> None:
        """Look once the view is ready, then every `every` seconds."""
        await self._ready.wait()
        while True:
            try:
                await self.release()
            except Exception as e:  # tried again next round; the task must not die
                log.warning("looking for leftovers of deleted TenantRegistries failed: %s", e)
            await asyncio.sleep(self._every)

    def _claimed(self) -> set[str]:
        """Tenants that entries on ServiceAccounts, or orphaned copies, name: the garbage
        collector removes neither (an orphaned copy has no ownerReference to go by)."""
        return {
            t
            for sas in self._view.service_accounts.values()
            for sa in sas.values()
            for t, _ in (*sa.ours, *sa.contested)
        } | {
            c.tenant
            for copies in self._view.copies.values()
            for c in copies.values()
            if orphaned(c)
        }

    async def release(self) -> None:
        """A TenantRegistry deleted while no operator ran (its finalizer removed by force, or
        the CRD gone and back) leaves entries recorded on ServiceAccounts; its copies name its
        uid in an ownerReference, so the garbage collector removes those (copies orphaned by
        `--cascade=orphan` have none: they are released here too). Entries are released
        only against a complete list of TenantRegistries, taken after the view is in (Kopf's
        watch gives no "all listed" signal), and never for a tenant Kopf has told of: the
        operator adds entries only for those, so a tenant created after the list is safe."""
        listed, _ = await self._executor.call(
            lambda: self._cluster.list_objects(
                names.PLURAL, chunk=500, convert=lambda o: str(o["metadata"]["name"])
            )
        )
        metrics.READS.labels(names.PLURAL, "leftovers").inc()
        claimed = self._claimed()
        for name in sorted(claimed - set(listed) - set(self._tenants) - set(self._intents)):
            log.warning(
                "tenant %s: no TenantRegistry of that name exists; releasing its entries",
                name,
                extra={"action": "leftovers", "tenant": name},
            )
            self._orphans.add(name)
            self._retire(name)
        for name in sorted(self._orphans):
            if name in self._tenants:
                self._orphans.discard(name)  # one of that name again: Kopf's intent holds
            elif name not in claimed and self._pending(name) == 0:
                self._orphans.discard(name)
                self._forget(name)
