"""What the view does not show, or showed wrong, when a write fails: the Secrets in the way
of a copy (not watched: the copies watch shows only ours), read on AlreadyExists or a failed
take-over, kept as Blockers for the planner and re-read now and then while some tenant still
wants their name; and after a 409/422 the one object the write found stale, re-read into the
view. Decides what a failed write's outcome is; the runtime records it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tenant_registry import metrics
from tenant_registry.cluster import (
    CONFLICT,
    EXISTS,
    FORBIDDEN,
    GONE,
    INVALID,
    TERMINATING,
    TRANSIENT,
    ApiError,
)
from tenant_registry.desired import (
    CreateCopy,
    Operation,
    Outcome,
    PatchServiceAccount,
    TakeOverSecret,
    written_object,
    written_resource,
)
from tenant_registry.executor import Executor
from tenant_registry.scheduler import Key, Scheduler
from tenant_registry.view import COPIES, SERVICE_ACCOUNTS, View, copy_record, version
from tenant_registry.view_types import (
    Blocker,
    blocker_info,
    is_watched_copy,
    service_account_info,
)

log = logging.getLogger("tenant_registry")

Failed = tuple[Outcome, float | None]  # the outcome to record, the retry's delay (None: none)

# A Secret in the way found unchanged is read again at twice the previous interval, up to this.
RECHECK_MAX_SECONDS = 300.0


class Recovery:
    """The Secrets in the way, and the re-reads after a failed write."""

    def __init__(
        self, view: View, executor: Executor, scheduler: Scheduler, recheck_seconds: float = 30.0
    ) -> None:
        self._view, self._executor, self._scheduler = view, executor, scheduler
        # (namespace, secret) -> a Secret in our way that the view does not show
        self.blockers: dict[tuple[str, str], Blocker] = {}
        self._period = recheck_seconds  # between rechecks (loop)
        # (namespace, secret) -> the Blocker last found unchanged, when to read it again, the
        # interval that gave; valid only while `blockers` holds that same Blocker
        self._quiet: dict[tuple[str, str], tuple[Blocker, float, float]] = {}

    def blocker(self, ns: str, name: str) -> Blocker | None:
        return self.blockers.get((ns, name))

    def forget(self, ns: str, name: str) -> None:
        """No longer in the way (taken over)."""
        self.blockers.pop((ns, name), None)

    def forget_namespace(self, ns: str) -> None:
        """The namespace went, or another of that name came: its Secrets are not known."""
        for key in [k for k in self.blockers if k[0] == ns]:
            del self.blockers[key]

    async def recover(self, key: Key, op: Operation, e: ApiError) -> Failed | None:
        """A write failed. None: the view was corrected, plan again at once. Else the
        outcome to record, and in how many seconds to retry (None: not before an event)."""
        if isinstance(op, CreateCopy) and e.kind == EXISTS:
            # A Secret the view does not show holds the name: read it, then plan with it.
            read_error = await self._read_in_the_way(op.namespace, op.copy.secret_name, "exists")
            if read_error is None:
                return None
            e = read_error
        elif isinstance(op, TakeOverSecret) and e.kind in (CONFLICT, GONE):
            metrics.CONFLICTS.labels("secrets").inc()
            read_error = await self._read_in_the_way(op.namespace, op.copy.secret_name, "conflict")
            if read_error is None:
                return None
            e = read_error
        elif isinstance(op, TakeOverSecret):
            # Rejected: read the Secret afresh before the next try.
            self.blockers.pop((op.namespace, op.copy.secret_name), None)
        elif e.kind in (CONFLICT, INVALID, GONE) and _is_stale(e, op):
            metrics.CONFLICTS.labels(written_resource(op)).inc()
            read_error = await self._refresh(op)
            if read_error is None:
                return None
            e = read_error
        if e.kind == TERMINATING:
            return Outcome("skipped", "NamespaceTerminating", ""), None
        reason = {FORBIDDEN: "Forbidden", TRANSIENT: "ApiUnavailable"}.get(e.kind, "Rejected")
        tenant, ns = key
        name = written_object(op)[1]
        log.warning("%s %s/%s in %s: %s", type(op).__name__, tenant, name, ns, e)
        # Forbidden right after an API server (re)start may be its authorizer still loading:
        # retry soon, then back off (doubling, up to 5 minutes) if it stays forbidden.
        return Outcome("failed", reason, e.message), 5 if e.kind == FORBIDDEN else 1

    async def _read_in_the_way(self, ns: str, name: str, reason: str) -> ApiError | None:
        """Read the Secret holding a copy's name that the view does not show: into the view
        if the copies watch shows it (so it will also go from there), else a Blocker."""
        try:
            obj = await self._executor.read_secret(ns, name, reason)
        except ApiError as e:
            return e
        self._take_in(ns, name, obj)
        return None

    def _take_in(self, ns: str, name: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.blockers.pop((ns, name), None)
        elif is_watched_copy(obj):
            self.blockers.pop((ns, name), None)
            self._view.absorb(COPIES, copy_record(obj))
        else:
            self.blockers[(ns, name)] = blocker_info(obj)

    async def _refresh(self, op: Operation) -> ApiError | None:
        """Re-read the one object a write found stale, into the view."""
        ns, name = written_object(op)
        try:
            if isinstance(op, PatchServiceAccount):
                held = self._view.held(SERVICE_ACCOUNTS, ns, name)
                sa = await self._executor.read_service_account(ns, name, "conflict")
                if sa is not None:
                    self._view.absorb(SERVICE_ACCOUNTS, service_account_info(sa))
                elif held is not None:
                    self._view.absorb_deleted(SERVICE_ACCOUNTS, ns, name, version(held))
                return None
            held = self._view.held(COPIES, ns, name)
            secret = await self._executor.read_secret(ns, name, "conflict")
        except ApiError as e:
            return e
        if secret is not None and is_watched_copy(secret):
            self._view.absorb(COPIES, copy_record(secret))
        elif held is not None:
            # Gone, or no longer a copy (its labels were removed): not ours to hold any more.
            self._view.absorb_deleted(COPIES, ns, name, version(held))
        return None

    async def loop(self) -> None:
        """recheck() every period."""
        while True:
            await asyncio.sleep(self._period)
            await self.recheck()

    async def recheck(self, now: float | None = None) -> None:
        """Secrets in our way are not watched (we watch only ours): re-read those some tenant
        still wants; forget the rest. One found unchanged is read again after twice the
        interval before (from two periods, up to RECHECK_MAX_SECONDS): a Secret that stays in
        the way costs a read every few minutes, not one every period."""
        now = time.monotonic() if now is None else now
        for (ns, name), blocker in list(self.blockers.items()):
            key = (ns, name)
            wanting = self._scheduler.wanting(ns, name)
            if not wanting:
                self.blockers.pop(key, None)
                continue
            quiet = self._quiet.get(key)
            if quiet is not None and quiet[0] != blocker:
                quiet = None  # found anew since: read it at the next period as any new one
            if quiet is not None and now + self._period / 2 < quiet[1]:
                continue
            try:
                obj = await self._executor.read_secret(ns, name, "recheck")
            except ApiError:
                continue
            if obj is not None and not is_watched_copy(obj) and blocker_info(obj) == blocker:
                before = quiet[2] if quiet is not None else self._period
                interval = min(2 * before, max(RECHECK_MAX_SECONDS, self._period))
                self._quiet[key] = (blocker, now + interval, interval)
                continue
            self._quiet.pop(key, None)
            self._take_in(ns, name, obj)
            for tenant in wanting:
                self._scheduler.queue.add((tenant, ns))
        for key in [k for k in self._quiet if k not in self.blockers]:
            del self._quiet[key]


def _is_stale(e: ApiError, op: Operation) -> bool:
    # 409 on a guarded merge patch/delete and 422 on a JSON Patch's failed `test` mean our
    # view was stale; a 422 on anything else is a real rejection.
    if e.kind == INVALID:
        return isinstance(op, PatchServiceAccount)
    return True
