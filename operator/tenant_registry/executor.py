"""Performs planned writes and the few single-object reads, in one bounded thread pool.

A pair's writes run back to back in one pool thread, request after request, like a bare client
would; the event loop only puts the results into the view afterwards (`absorb`), under the
view's ordering rules. Every write is counted in the metrics by outcome, every read outside the
watches by why it was made. Request bodies never reach a log line or an exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from tenant_registry import metrics
from tenant_registry.cluster import ApiError, Cluster
from tenant_registry.desired import (
    CreateCopy,
    DeleteCopy,
    Operation,
    PatchServiceAccount,
    TakeOverSecret,
    UpdateCopy,
    copy_manifest,
    copy_patch,
)
from tenant_registry.view import COPIES, SERVICE_ACCOUNTS, View, as_version, copy_record
from tenant_registry.view_types import service_account_info

T = TypeVar("T")
Done = list[tuple[Operation, dict[str, Any] | None]]
Failure = tuple[Operation, ApiError] | None


class Executor:
    """The operator's one pool of API requests in flight (`concurrency` at most)."""

    def __init__(self, cluster: Cluster, concurrency: int) -> None:
        self.cluster = cluster
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="api"
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _counted(self, resource: str, verb: str, fn: Callable[..., T], *args: Any) -> T:
        """One write (in a pool thread), counted in the metrics by outcome."""
        try:
            result = fn(*args)
        except ApiError as e:
            metrics.WRITES.labels(resource, verb, e.kind).inc()
            raise
        metrics.WRITES.labels(resource, verb, "ok").inc()
        return result

    async def write(self, resource: str, verb: str, fn: Callable[..., T], *args: Any) -> T:
        return await self.call(self._counted, resource, verb, fn, *args)

    # -- a plan's writes ---------------------------------------------------------------------
    def _perform(self, op: Operation) -> dict[str, Any] | None:
        """Send one planned write (in a pool thread); the object written, None for a delete."""
        c, ns = self.cluster, op.namespace
        if isinstance(op, CreateCopy):
            return self._counted(
                "secrets", "create", c.create_secret, ns, copy_manifest(op.copy, ns)
            )
        if isinstance(op, UpdateCopy):
            if not op.recreate:
                patch = copy_patch(
                    op.copy,
                    op.resource_version,
                    other_owners=op.other_owners,
                    delete_after=op.delete_after,
                )
                return self._counted(
                    "secrets", "patch", c.merge_patch_secret, ns, op.copy.secret_name, patch
                )
            self._counted(
                "secrets", "delete", c.delete_secret, ns, op.copy.secret_name, op.resource_version
            )
            manifest = copy_manifest(op.copy, ns, op.other_owners)
            return self._counted("secrets", "create", c.create_secret, ns, manifest)
        if isinstance(op, TakeOverSecret):
            patch = copy_patch(op.copy, op.resource_version, op.other_data_keys, op.other_owners)
            return self._counted(
                "secrets", "patch", c.merge_patch_secret, ns, op.copy.secret_name, patch
            )
        if isinstance(op, DeleteCopy):
            self._counted("secrets", "delete", c.delete_secret, ns, op.name, op.resource_version)
            return None
        return self._counted(
            "serviceaccounts", "patch", c.json_patch_service_account, ns, op.name, list(op.patch)
        )

    def _perform_all(self, ops: tuple[Operation, ...]) -> tuple[Done, Failure]:
        """Run a plan's writes in order until one fails: what was done, and the failure. A
        failure stops the rest, so what a plan puts after a write never runs without it."""
        done: Done = []
        for op in ops:
            try:
                done.append((op, self._perform(op)))
            except ApiError as e:
                return done, (op, e)
        return done, None

    async def run(self, ops: tuple[Operation, ...]) -> tuple[Done, Failure]:
        return await self.call(self._perform_all, ops)

    # -- reads -------------------------------------------------------------------------------
    async def read_secret(self, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
        metrics.READS.labels("secrets", reason).inc()
        return await self.call(self.cluster.get_secret, namespace, name)

    async def read_config_map(
        self, namespace: str, name: str, reason: str
    ) -> dict[str, Any] | None:
        metrics.READS.labels("configmaps", reason).inc()
        return await self.call(self.cluster.get_config_map, namespace, name)

    async def read_service_account(
        self, namespace: str, name: str, reason: str
    ) -> dict[str, Any] | None:
        metrics.READS.labels("serviceaccounts", reason).inc()
        return await self.call(self.cluster.get_service_account, namespace, name)

    async def read_namespace(self, name: str, reason: str) -> dict[str, Any] | None:
        metrics.READS.labels("namespaces", reason).inc()
        return await self.call(self.cluster.get_namespace, name)

    async def post_event(
        self, namespace: str, involved: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        await self.write(
            "events",
            "create",
            lambda: self.cluster.post_event(
                namespace, involved, type_=type_, reason=reason, message=message
            ),
        )


def absorb(view: View, op: Operation, obj: dict[str, Any] | None) -> None:
    """Put a write's result into the view (on the loop)."""
    if isinstance(op, DeleteCopy):
        view.absorb_deleted(COPIES, op.namespace, op.name, as_version(op.resource_version))
        return
    assert obj is not None
    if isinstance(op, PatchServiceAccount):
        view.absorb(SERVICE_ACCOUNTS, service_account_info(obj))
        return
    if isinstance(op, UpdateCopy) and op.recreate:
        old = as_version(op.resource_version)
        view.absorb_deleted(COPIES, op.namespace, op.copy.secret_name, old)
    view.absorb(COPIES, copy_record(obj))
