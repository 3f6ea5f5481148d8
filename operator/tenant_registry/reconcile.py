"""The runtime: view + desired -> bounded writes -> status.

Every input (a watch event, a TenantRegistry change, a timer) only schedules work for
(tenant, namespace) pairs on a coalescing queue; workers plan each pair from the view (pure,
on the event loop) and run the planned writes in one bounded thread pool, so a thousand
namespaces proceed in parallel without flooding the API server. A pair is never worked on by
two workers at once; a stale view (409/422) re-reads that one object and plans again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from tenant_registry import metrics, names
from tenant_registry import status as status_mod
from tenant_registry.cluster import (
    CONFLICT,
    EXISTS,
    FORBIDDEN,
    GONE,
    INVALID,
    TERMINATING,
    TRANSIENT,
    ApiError,
    Cluster,
)
from tenant_registry.desired import (
    Active,
    CreateCopy,
    DeleteCopy,
    Frozen,
    Gone,
    Intent,
    Operation,
    Outcome,
    PairInput,
    PatchServiceAccount,
    UpdateCopy,
    copy_manifest,
    copy_patch,
    plan_pair,
    tenant_intent,
)
from tenant_registry.selection import namespace_selected
from tenant_registry.view import (
    CREDENTIALS,
    KINDS,
    View,
    Watcher,
    copy_record,
    namespace_of,
    watch_specs,
)
from tenant_registry.view_types import is_copy, service_account_info

log = logging.getLogger("tenant_registry")
T = TypeVar("T")
Key = tuple[str, str]  # (tenant, namespace)


@dataclass(frozen=True)
class Settings:
    operator_namespace: str = names.DEFAULT_OPERATOR_NAMESPACE
    concurrency: int = 16  # API requests in flight at once, for the whole operator
    resync_seconds: float = 300.0  # re-plan everything from the view (no reads)
    conflict_recheck_seconds: float = 30.0  # re-read Secrets that blocked a copy
    fight_limit: int = 3  # re-adds of a removed entry before giving up on that SA
    status_interval: float = 0.5
    max_attempts: int = 5


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


class Runtime:
    """Owns the view, the queue, the workers and the write pool for one operator process."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.view = View.empty()
        self.tenants: dict[str, dict[str, Any]] = {}  # name -> last seen object
        self.intents: dict[str, Intent] = {}
        self.outcomes: dict[str, dict[str, Outcome]] = defaultdict(dict)
        # (namespace, secret) -> type of a Secret in our way that we do not manage
        self.unmanaged: dict[tuple[str, str], str] = {}
        self.fights: dict[tuple[str, str, str], int] = defaultdict(int)  # (tenant, ns, sa)
        self.queue = WorkQueue()
        self.synced_kinds: set[str] = set()
        self.ready = asyncio.Event()
        self._status_dirty: set[str] = set()
        self._busy_since: dict[str, float] = {}
        self._retry_handles: dict[Key, asyncio.TimerHandle] = {}
        self._failed_runs: dict[Key, int] = {}  # consecutive failed reconciles, for backoff
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._watchers: list[Watcher] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="api"
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the watches, workers and timers; `ready` is set once every list arrived."""
        self._loop = asyncio.get_running_loop()
        metrics.QUEUE_DEPTH.set_function(lambda: len(self.queue))
        for spec in watch_specs(self.settings.operator_namespace):
            w = Watcher(self.cluster, spec, self._deliver_threadsafe)
            self._watchers.append(w)
            w.start()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"worker-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._tasks += [
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(
                self._every(self.settings.resync_seconds, self.resync), name="resync"
            ),
            asyncio.create_task(
                self._every(self.settings.conflict_recheck_seconds, self._recheck_unmanaged),
                name="recheck",
            ),
        ]

    async def stop(self) -> None:
        for w in self._watchers:
            w.stop()
        for t in self._tasks:
            t.cancel()
        for h in self._retry_handles.values():
            h.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def healthy(self, silence: float = 400.0) -> dict[str, Any]:
        """For the liveness probe: fails when a watch went silent (no event, bookmark or
        reconnect for longer than a stream's lifetime) or a worker died."""
        now = time.monotonic()
        silent = [w.spec.kind for w in self._watchers if now - w.last_seen > silence]
        dead = [t.get_name() for t in self._tasks if t.done()]
        if silent or dead:
            raise RuntimeError(f"silent watches: {silent}; stopped tasks: {dead}")
        return {"queue": len(self.queue), "ready": self.ready.is_set()}

    # -- inputs --------------------------------------------------------------------------
    def _deliver_threadsafe(self, kind: str, event_type: str, payload: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, kind, event_type, payload)

    def _deliver(self, kind: str, event_type: str, payload: Any) -> None:
        if event_type == "SNAPSHOT":
            self.view.replace(kind, payload)
            first = kind not in self.synced_kinds
            self.synced_kinds.add(kind)
            if first and self.synced_kinds >= set(KINDS):
                self.ready.set()
                log.info(
                    "view ready: %d namespaces, %d copies",
                    len(self.view.namespaces),
                    sum(len(c) for c in self.view.copies.values()),
                )
                self.resync()
            elif not first:
                self.resync()  # a relist may have missed anything: plan everything again
            if kind == CREDENTIALS:
                self._recompute_all_intents()
            return
        # The echo of our own write: the view took it from the write's response already.
        echo = event_type != "DELETED" and self.view.seen(kind, payload)
        self.view.apply(kind, event_type, payload)
        if echo or not self.ready.is_set():
            return
        if kind == CREDENTIALS:
            self._recompute_all_intents()
            return
        ns = namespace_of(kind, payload)
        if ns is not None:
            for tenant in self.intents:
                self.queue.add((tenant, ns))

    def tenant_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A TenantRegistry was added, changed or deleted (from Kopf's watch)."""
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.tenants.pop(name, None)
            self.intents.pop(name, None)
            self.outcomes.pop(name, None)
            metrics.forget_tenant(name)
            return
        self.tenants[name] = body
        self._recompute_intent(name)

    def _credential_objects(self) -> dict[str, dict[str, Any]]:
        return {n: s.as_object() for n, s in self.view.credentials.items()}

    def _recompute_all_intents(self) -> None:
        for name in list(self.tenants):
            self._recompute_intent(name)

    def _recompute_intent(self, name: str) -> None:
        if CREDENTIALS not in self.synced_kinds:
            return
        intent = tenant_intent(
            self.tenants[name], self._credential_objects(), self.settings.operator_namespace
        )
        if self.intents.get(name) == intent:
            self._status_dirty.add(name)
            return
        previous = self.intents.get(name)
        self.intents[name] = intent
        if not (
            isinstance(previous, Active)
            and isinstance(intent, Active)
            and previous.copy == intent.copy
        ):
            # New content or a new policy: give fought-over entries another chance.
            for key in [k for k in self.fights if k[0] == name]:
                del self.fights[key]
        if isinstance(intent, Frozen):
            log.warning(
                "tenant %s: %s: %s",
                name,
                intent.reason,
                intent.message,
                extra={"tenant": name, "reason": intent.reason},
            )
        self.schedule_tenant(name)
        self._status_dirty.add(name)

    def schedule_tenant(self, name: str) -> None:
        """Queue the tenant's namespaces: those it selects and those holding something of it.
        Work grows with the tenant, not with the cluster."""
        if not self.ready.is_set():
            return
        for ns in sorted(self._namespaces_of(name)):
            self.queue.add((name, ns))

    def _namespaces_of(self, tenant: str) -> set[str]:
        intent = self.intents.get(tenant)
        if isinstance(intent, Frozen):
            return set()  # writes nothing and removes nothing: no per-namespace work
        found = self._holdings(tenant)
        if isinstance(intent, Active):
            selection, own = intent.spec.namespaces, self.settings.operator_namespace
            found.update(
                ns.name
                for ns in self.view.namespaces.values()
                if namespace_selected(selection, ns.name, ns.labels, own)
            )
        return found

    def _holdings(self, tenant: str) -> set[str]:
        """Namespaces where the view shows a copy or a ServiceAccount entry of the tenant."""
        found = {
            ns
            for ns, copies in self.view.copies.items()
            if any(c.tenant == tenant for c in copies.values())
        }
        found.update(
            ns
            for ns, sas in self.view.service_accounts.items()
            if any(t == tenant for sa in sas.values() for t, _ in (*sa.ours, *sa.contested))
        )
        return found

    def resync(self) -> None:
        for name in list(self.intents):
            self.schedule_tenant(name)

    async def remove_tenant(self, name: str, body: dict[str, Any]) -> bool:
        """The TenantRegistry is being deleted: remove everything ours. True when done."""
        self.tenants[name] = body
        self.intents[name] = Gone()
        await self.ready.wait()
        self.schedule_tenant(name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.queue.pending(name) == 0:
                return not self._has_leftovers(name)
            await asyncio.sleep(0.1)
        return False

    def _has_leftovers(self, tenant: str) -> bool:
        """Copies or entries of the tenant outside terminating namespaces (those go anyway)."""
        namespaces = self.view.namespaces
        return any(
            ns in namespaces and not namespaces[ns].terminating for ns in self._holdings(tenant)
        )

    # -- the work ------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            started = time.monotonic()
            try:
                await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling %s/%s failed unexpectedly", *key)
                self._record(key, Outcome("failed", "InternalError", "see operator logs"))
                self._retry_later(key, 30)
            finally:
                self.queue.done(key)
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    def _pair_input(self, tenant: str, ns: str) -> PairInput:
        intent = self.intents.get(tenant)
        secret = intent.spec.secret_name if isinstance(intent, Active) else ""
        return PairInput(
            tenant=tenant,
            namespace=self.view.namespaces.get(ns),
            copies=tuple(self.view.copies.get(ns, {}).values()),
            service_accounts=tuple(self.view.service_accounts.get(ns, {}).values()),
            unmanaged_type=self.unmanaged.get((ns, secret), ""),
            gave_up=frozenset(
                sa
                for (t, n, sa), count in self.fights.items()
                if t == tenant and n == ns and count >= self.settings.fight_limit
            ),
        )

    async def _reconcile(self, key: Key) -> None:
        tenant, ns = key
        for attempt in range(self.settings.max_attempts):
            intent = self.intents.get(tenant)
            if intent is None:
                return
            plan = plan_pair(intent, self._pair_input(tenant, ns), self.settings.operator_namespace)
            if not plan.operations:
                self._record(key, plan.outcome)
                return
            # The whole plan runs in one pool thread, request after request, like a bare
            # client would; the loop only absorbs the results into the view afterwards.
            done, failure = await self._call(self._perform_all, plan.operations)
            for op, obj in done:
                self._absorb(op, obj)
                if isinstance(op, PatchServiceAccount) and op.restored:
                    self._count_fight(tenant, op)
            if done:
                _log_writes(tenant, ns, [_describe(op) for op, _ in done])
            if failure is not None:
                op, e = failure
                if e.kind == EXISTS and isinstance(op, CreateCopy):
                    await self._existing_in_the_way(tenant, op)
                    continue  # the view changed under the plan: plan again from it
                if e.kind in (CONFLICT, INVALID, GONE) and self._is_stale(e, op):
                    metrics.CONFLICTS.labels(_resource(op)).inc()
                    await self._refresh(op)
                    await asyncio.sleep(0.05 * attempt)
                    continue
                if e.kind == TERMINATING:
                    self._record(key, Outcome("skipped", "NamespaceTerminating", ""))
                    return
                reason = {FORBIDDEN: "Forbidden", TRANSIENT: "ApiUnavailable"}.get(
                    e.kind, "Rejected"
                )
                log.warning("%s %s/%s in %s: %s", type(op).__name__, tenant, _name(op), ns, e)
                self._record(key, Outcome("failed", reason, e.message))
                self._retry_later(key, 60 if e.kind == FORBIDDEN else 1)
                return
        self._record(
            key, Outcome("failed", "TooManyConflicts", "the objects kept changing; will try again")
        )
        self._retry_later(key, 5)

    @staticmethod
    def _is_stale(e: ApiError, op: Operation) -> bool:
        # 409 on a guarded merge patch/delete and 422 on a JSON Patch's failed `test` mean our
        # view was stale; a 422 on anything else is a real rejection.
        if e.kind == INVALID:
            return isinstance(op, PatchServiceAccount)
        return True

    def _record(self, key: Key, outcome: Outcome) -> None:
        tenant, ns = key
        if outcome.state != "failed":
            self._failed_runs.pop(key, None)
        previous = self.outcomes[tenant].get(ns)
        if outcome.state == "absent":
            self.outcomes[tenant].pop(ns, None)
        else:
            self.outcomes[tenant][ns] = outcome
        self._status_dirty.add(tenant)
        if (
            outcome.subject_kind
            and outcome != previous
            and not (previous is None and self._in_stored_status(tenant, ns, outcome.reason))
        ):
            # Tenants rarely may read the cluster-scoped TenantRegistry: tell them where they
            # look, once per new failure, on the object in their namespace it is about.
            self._background(self._tell_namespace(tenant, ns, outcome))

    def _in_stored_status(self, tenant: str, namespace: str, reason: str) -> bool:
        """Already reported before a restart? (The status lists up to 20 failures.)"""
        status = (self.tenants.get(tenant) or {}).get("status") or {}
        return any(
            f.get("namespace") == namespace and f.get("reason") == reason
            for f in status.get("failures") or []
        )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
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
        await self._call(
            lambda: self.cluster.post_event(
                namespace,
                involved,
                type_="Warning",
                reason=outcome.reason,
                message=f"TenantRegistry {tenant}: {outcome.message}",
            )
        )

    def _retry_later(self, key: Key, base: float) -> None:
        """Try the pair again after `base` seconds, doubling with every consecutive failed
        reconcile of that pair (up to 5 minutes); a success resets it."""
        assert self._loop is not None
        runs = self._failed_runs[key] = self._failed_runs.get(key, 0) + 1
        delay = min(300.0, base * 2 ** (runs - 1))
        old = self._retry_handles.pop(key, None)
        if old:
            old.cancel()
        self._retry_handles[key] = self._loop.call_later(delay, self.queue.add, key)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, fn, *args)

    def _counted(self, resource: str, verb: str, fn: Callable[..., T], *args: Any) -> T:
        """One write (in a pool thread), counted in the metrics by outcome."""
        try:
            result = fn(*args)
        except ApiError as e:
            metrics.WRITES.labels(resource, verb, e.kind).inc()
            raise
        metrics.WRITES.labels(resource, verb, "ok").inc()
        return result

    async def _write(self, resource: str, verb: str, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._counted, resource, verb, fn, *args)

    def _perform(self, op: Operation) -> dict[str, Any] | None:
        """Send one planned write (in a pool thread); the object written, None for a delete."""
        c, ns = self.cluster, op.namespace
        if isinstance(op, CreateCopy):
            return self._counted(
                "secrets", "create", c.create_secret, ns, copy_manifest(op.copy, ns)
            )
        if isinstance(op, UpdateCopy):
            if not op.recreate:
                return self._counted(
                    "secrets",
                    "patch",
                    c.merge_patch_secret,
                    ns,
                    op.copy.secret_name,
                    copy_patch(op.copy, op.resource_version),
                )
            self._counted(
                "secrets", "delete", c.delete_secret, ns, op.copy.secret_name, op.resource_version
            )
            return self._counted(
                "secrets", "create", c.create_secret, ns, copy_manifest(op.copy, ns)
            )
        if isinstance(op, DeleteCopy):
            self._counted("secrets", "delete", c.delete_secret, ns, op.name, op.resource_version)
            return None
        return self._counted(
            "serviceaccounts", "patch", c.json_patch_service_account, ns, op.name, list(op.patch)
        )

    def _perform_all(
        self, ops: tuple[Operation, ...]
    ) -> tuple[list[tuple[Operation, dict[str, Any] | None]], tuple[Operation, ApiError] | None]:
        """Run a plan's writes in order until one fails: what was done, and the failure."""
        done: list[tuple[Operation, dict[str, Any] | None]] = []
        for op in ops:
            try:
                done.append((op, self._perform(op)))
            except ApiError as e:
                return done, (op, e)
        return done, None

    def _absorb(self, op: Operation, obj: dict[str, Any] | None) -> None:
        """Put a write's result into the view (on the loop)."""
        if isinstance(op, CreateCopy | UpdateCopy):
            assert obj is not None
            self.view.put_copy(copy_record(obj))
        elif isinstance(op, DeleteCopy):
            self.view.drop_copy(op.namespace, op.name)
        else:
            assert obj is not None
            self.view.put_service_account(service_account_info(obj))

    def _count_fight(self, tenant: str, op: PatchServiceAccount) -> None:
        """Another writer removed our entry again. At the limit the planner stops re-adding;
        status (Degraded) and the tenant's namespace get the Event, on that transition."""
        self.fights[(tenant, op.namespace, op.name)] += 1

    async def _existing_in_the_way(self, tenant: str, op: CreateCopy) -> None:
        """Create found a Secret with our name: ours (not yet seen), or someone else's."""
        existing = await self._call(self.cluster.get_secret, op.namespace, op.copy.secret_name)
        if existing is None:
            raise ApiError(CONFLICT, 409, "the Secret went away meanwhile")
        if is_copy(existing):
            self.view.put_copy(copy_record(existing))
            return
        secret_type = existing.get("type") or "Opaque"
        if not op.adopt or secret_type != names.DOCKERCONFIGJSON_TYPE:
            self.unmanaged[(op.namespace, op.copy.secret_name)] = secret_type
            return
        meta = existing["metadata"]
        others = tuple(k for k in existing.get("data") or {} if k != names.DOCKERCONFIGJSON_KEY)
        owners = tuple(meta.get("ownerReferences") or ())
        obj = await self._write(
            "secrets",
            "patch",
            self.cluster.merge_patch_secret,
            op.namespace,
            op.copy.secret_name,
            copy_patch(op.copy, meta["resourceVersion"], others, owners),
        )
        self.unmanaged.pop((op.namespace, op.copy.secret_name), None)
        self.view.put_copy(copy_record(obj))
        await self._announce(
            tenant,
            "Normal",
            "Adopted",
            f"took over the unmanaged Secret {op.namespace}/"
            f"{op.copy.secret_name} (conflictPolicy: Adopt)",
        )

    async def _refresh(self, op: Operation) -> None:
        """Re-read the one object a write found stale, and put it into the view."""
        if isinstance(op, PatchServiceAccount):
            obj = await self._call(self.cluster.get_service_account, op.namespace, op.name)
            if obj is None:
                self.view.drop_service_account(op.namespace, op.name)
            else:
                self.view.put_service_account(service_account_info(obj))
            return
        ns, name = _target(op)
        secret = await self._call(self.cluster.get_secret, ns, name)
        if secret is not None and is_copy(secret):
            self.view.put_copy(copy_record(secret))
        else:
            self.view.drop_copy(ns, name)

    async def _recheck_unmanaged(self) -> None:
        """Secrets that blocked a copy are not watched (we watch only ours): re-read them."""
        for ns, name in list(self.unmanaged):
            try:
                secret = await self._call(self.cluster.get_secret, ns, name)
            except ApiError:
                continue
            if secret is None or is_copy(secret):
                self.unmanaged.pop((ns, name), None)
            elif (secret.get("type") or "Opaque") != self.unmanaged.get((ns, name)):
                self.unmanaged[(ns, name)] = secret.get("type") or "Opaque"
            else:
                continue
            for tenant in self.intents:
                self.queue.add((tenant, ns))

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            result = fn()
            if asyncio.iscoroutine(result):
                await result

    # -- status and Events ---------------------------------------------------------------
    def report(self, tenant: str) -> status_mod.Report | None:
        intent = self.intents.get(tenant)
        body = self.tenants.get(tenant)
        if intent is None or body is None or isinstance(intent, Gone):
            return None
        generation = int(body["metadata"].get("generation") or 0)
        if isinstance(intent, Frozen):
            return status_mod.Report(
                generation,
                "frozen",
                intent.reason,
                intent.message,
                credentials_resolved=intent.credentials_resolved,
                content_hash=(body.get("status") or {}).get("contentHash", "")
                if intent.reason == "Suspended"
                else "",
            )
        selected = synced = 0
        failures = []
        outcomes = self.outcomes.get(tenant, {})
        for ns in self.view.namespaces.values():
            if ns.terminating or not namespace_selected(
                intent.spec.namespaces, ns.name, ns.labels, self.settings.operator_namespace
            ):
                continue
            selected += 1
            outcome = outcomes.get(ns.name)
            if outcome is None:
                continue
            if outcome.state == "synced":
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
        )

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval)
            now = time.monotonic()
            for tenant in list(self._status_dirty):
                # While a tenant's pairs are queued, write progress only after 5 s of work:
                # a restart or a rotation drains first and then writes once (or not at all).
                if self.queue.pending(tenant):
                    if now - self._busy_since.setdefault(tenant, now) < 5:
                        continue
                    self._busy_since[tenant] = now
                else:
                    self._busy_since.pop(tenant, None)
                self._status_dirty.discard(tenant)
                try:
                    await self._flush_status(tenant)
                except ApiError as e:
                    log.warning("status of %s not written: %s", tenant, e)
                    self._status_dirty.add(tenant)

    async def _flush_status(self, tenant: str) -> None:
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
        await self._write(
            "tenantregistries", "patch", self.cluster.patch_tenant_status, tenant, new
        )
        body["status"] = {**(current or {}), **new}
        for a in status_mod.announcements(new, current):
            await self._announce(tenant, a.type, a.reason, a.message)

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

    async def _announce(self, tenant: str, type_: str, reason: str, message: str) -> None:
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
        await self._call(
            lambda: self.cluster.post_event(
                names.EVENTS_NAMESPACE,
                involved,
                type_=type_,
                reason=reason,
                message=message,
            )
        )


def _describe(op: Operation) -> str:
    verb = {CreateCopy: "create", UpdateCopy: "update", DeleteCopy: "delete"}.get(type(op), "patch")
    return f"{verb} {_resource(op)}/{_name(op)}"


def _log_writes(tenant: str, namespace: str, writes: list[str]) -> None:
    """One line per namespace reconciled with writes: what was written (never content)."""
    log.info(
        "tenant %s, namespace %s: %s",
        tenant,
        namespace,
        ", ".join(writes),
        extra={"action": "write", "tenant": tenant, "namespace": namespace, "writes": writes},
    )


def _target(op: Operation) -> tuple[str, str]:
    if isinstance(op, CreateCopy | UpdateCopy):
        return op.namespace, op.copy.secret_name
    if isinstance(op, DeleteCopy):
        return op.namespace, op.name
    return op.namespace, op.name


def _name(op: Operation) -> str:
    return _target(op)[1]


def _resource(op: Operation) -> str:
    return "serviceaccounts" if isinstance(op, PatchServiceAccount) else "secrets"
