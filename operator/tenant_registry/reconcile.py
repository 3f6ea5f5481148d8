"""The runtime: view + desired -> bounded writes -> status.

Every input (a watch event, a TenantRegistry change, a timer) only schedules work for
(tenant, namespace) pairs (scheduler.py); workers plan each pair from the view (pure, on the
event loop) and hand the planned writes to the one bounded pool (executor.py), so a thousand
namespaces proceed in parallel without flooding the API server. A pair is never worked on by
two workers at once; a stale view (409/422) re-reads that one object and plans again. What
happened is reported by reporter.py. This module wires them, and keeps what the planner needs
besides the view: the Secrets found in the way, and the fights with other writers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenant_registry import metrics, names
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
    SECRET,
    SERVICE_ACCOUNT,
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
    TakeOverSecret,
    UpdateCopy,
    fight_lost,
    plan_pair,
    tenant_intent,
)
from tenant_registry.executor import Executor, absorb
from tenant_registry.reporter import Reporter
from tenant_registry.scheduler import Key, Scheduler, WorkQueue
from tenant_registry.view import (
    COPIES,
    CREDENTIALS,
    KINDS,
    NAMESPACES,
    SERVICE_ACCOUNTS,
    ListEnd,
    View,
    Watcher,
    copy_record,
    namespace_of,
    version,
    watch_specs,
)
from tenant_registry.view_types import (
    Blocker,
    blocker_info,
    is_watched_copy,
    service_account_info,
)

log = logging.getLogger("tenant_registry")


@dataclass(frozen=True)
class Settings:
    operator_namespace: str = names.DEFAULT_OPERATOR_NAMESPACE
    concurrency: int = 16  # API requests in flight at once, for the whole operator
    resync_seconds: float = 300.0  # re-plan everything from the view (no reads)
    relist_seconds: float = 900.0  # authoritative re-list of the view (paginated), 0: never
    conflict_recheck_seconds: float = 30.0  # re-read Secrets that blocked a copy
    watch_timeout_seconds: int = 290  # a watch stream's lifetime: the API server ends it
    watch_silence_seconds: float = 400.0  # liveness fails when a watch is silent this long
    fight_limit: int = 3  # restores of what another writer undid, within the window...
    fight_window_seconds: float = 600.0  # ...before giving up on that object
    status_interval: float = 0.5
    max_attempts: int = 5


class FightLog:
    """When another writer undid our work, per (tenant, namespace) and (kind, name). Restores
    older than the window are forgotten: unrelated removals weeks apart are no fight."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._restores: dict[Key, dict[tuple[str, str], tuple[float, ...]]] = {}

    def restored(self, pair: Key, what: tuple[str, str]) -> None:
        now = self.clock()
        held = self._restores.setdefault(pair, {})
        recent = tuple(t for t in held.get(what, ()) if now - t < self.window)
        held[what] = (*recent, now)

    def clear(self, pair: Key, what: tuple[str, str]) -> None:
        held = self._restores.get(pair)
        if held is not None:
            held.pop(what, None)
            if not held:
                del self._restores[pair]

    def clear_tenant(self, tenant: str) -> None:
        for pair in [p for p in self._restores if p[0] == tenant]:
            del self._restores[pair]

    def clear_namespace(self, ns: str) -> None:
        for pair in [p for p in self._restores if p[1] == ns]:
            del self._restores[pair]

    def given_up(self, pair: Key) -> frozenset[tuple[str, str]]:
        held = self._restores.get(pair)
        if not held:
            return frozenset()
        now = self.clock()
        for what in [w for w, times in held.items() if all(now - t >= self.window for t in times)]:
            del held[what]  # a fight long over
        if not held:
            del self._restores[pair]
            return frozenset()
        return frozenset(
            what for what, times in held.items() if fight_lost(times, now, self.window, self.limit)
        )


class Runtime:
    """Owns the view, the queue, the workers and the write pool for one operator process."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.view = View.empty()
        self.tenants: dict[str, dict[str, Any]] = {}  # name -> last seen object
        self.intents: dict[str, Intent] = {}
        # (namespace, secret) -> a Secret in our way that the view does not show
        self.blockers: dict[tuple[str, str], Blocker] = {}
        self.fights = FightLog(settings.fight_limit, settings.fight_window_seconds)
        self.scheduler = Scheduler(self.view, self.intents, settings.operator_namespace)
        self.executor = Executor(cluster, settings.concurrency)
        self.reporter = Reporter(
            self.executor,
            self.view,
            self.tenants,
            self.intents,
            self.scheduler.pending,
            self.scheduler.tenant_index.selected_by,
            settings.operator_namespace,
            settings.status_interval,
        )
        self.synced_kinds: set[str] = set()
        self.ready = asyncio.Event()
        self._listing: dict[str, list[tuple[str, str]]] = {}  # changes of a list in progress
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queue(self) -> WorkQueue:
        return self.scheduler.queue

    @property
    def outcomes(self) -> dict[str, dict[str, Outcome]]:
        return self.reporter.outcomes

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the watches, workers and timers; `ready` is set once every list arrived."""
        self._loop = asyncio.get_running_loop()
        metrics.QUEUE_DEPTH.set_function(lambda: len(self.queue))
        metrics.init_kinds(KINDS)
        for spec in watch_specs(self.settings.operator_namespace):
            w = Watcher(
                self.cluster,
                spec,
                self._deliver_threadsafe,
                timeout=self.settings.watch_timeout_seconds,
                relist_seconds=self.settings.relist_seconds,
            )
            self._watchers.append(w)
            w.start()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"worker-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._tasks += [
            asyncio.create_task(self.reporter.loop(), name="status"),
            asyncio.create_task(_measure_loop_lag(), name="loop-lag"),
            asyncio.create_task(
                self._every(self.settings.resync_seconds, self.resync), name="resync"
            ),
            asyncio.create_task(
                self._every(self.settings.conflict_recheck_seconds, self._recheck_blockers),
                name="recheck",
            ),
        ]

    async def stop(self) -> None:
        for w in self._watchers:
            w.stop()
        for t in self._tasks:
            t.cancel()
        self.scheduler.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.reporter.stop()
        self.executor.shutdown()

    def healthy(self) -> dict[str, Any]:
        """For the liveness probe: fails when a watch went silent (no event, bookmark or
        reconnect for `watch_silence_seconds`, longer than a stream's lifetime) or a worker
        died."""
        silence = self.settings.watch_silence_seconds
        now = time.monotonic()
        silent = [w.spec.kind for w in self._watchers if now - w.last_seen > silence]
        dead = [t.get_name() for t in self._tasks if t.done()]
        if silent or dead:
            raise RuntimeError(f"silent watches: {silent}; stopped tasks: {dead}")
        return {"queue": len(self.queue), "ready": self.ready.is_set()}

    # -- inputs: the view ------------------------------------------------------------------
    def _deliver_threadsafe(self, kind: str, event_type: str, payload: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, kind, event_type, payload)

    def _deliver(self, kind: str, event_type: str, payload: Any) -> None:
        if event_type == "BOOKMARK":
            self.view.bookmark(kind, payload)
        elif event_type == "LIST_PAGE":
            changed = self.view.merge_listed(kind, payload)
            if kind == NAMESPACES:
                for _, name in changed:
                    self.scheduler.namespace_changed(name)
            self._listing.setdefault(kind, []).extend(changed)
        elif event_type == "LIST_END":
            self._list_done(kind, payload)
        else:
            self._watch_event(kind, event_type, payload)

    def _watch_event(self, kind: str, event_type: str, record: Any) -> None:
        before = self.view.namespaces.get(record.name) if kind == NAMESPACES else None
        if not self.view.apply(kind, event_type, record):
            return  # the echo of what the view holds (our own write), or older
        if kind == NAMESPACES:
            self.scheduler.namespace_changed(record.name)
        if before is not None:
            after = self.view.namespaces.get(record.name)
            if after is None or (before.uid and after.uid != before.uid):
                self._forget_namespace(record.name)
        if not self.ready.is_set():
            return
        if kind == CREDENTIALS:
            # Only the tenants that name this Secret: one password changed for hundreds of
            # tenants is evaluated once per tenant, not once per tenant per Secret.
            self._recompute_all_intents(record.name)
            return
        ns = namespace_of(kind, record)
        if ns is not None:
            self.scheduler.schedule_namespace(ns)

    def _list_done(self, kind: str, end: ListEnd) -> None:
        changed = self._listing.pop(kind, [])
        changed += self.view.end_list(kind, end.resource_version, end.listed)
        first = kind not in self.synced_kinds
        self.synced_kinds.add(kind)
        if end.periodic:
            metrics.RELISTS.labels(kind).inc()
            if changed:
                # The list is of exactly the version the watch had reached: every difference
                # is something the view got wrong.
                metrics.REPAIRS.labels(kind).inc(len(changed))
                log.warning(
                    "re-list of %s repaired %d records the view had wrong",
                    kind,
                    len(changed),
                    extra={"action": "repair", "kind": kind, "count": len(changed)},
                )
        if kind == NAMESPACES:
            for _, name in changed:
                self.scheduler.namespace_changed(name)
                if name not in self.view.namespaces:
                    self._forget_namespace(name)
        if kind == CREDENTIALS and (first or changed):
            self._recompute_all_intents()
        if not self.ready.is_set():
            if self.synced_kinds >= set(KINDS):
                self.ready.set()
                self.scheduler.ready = True
                log.info(
                    "view ready: %d namespaces, %d copies",
                    len(self.view.namespaces),
                    sum(len(c) for c in self.view.copies.values()),
                )
                self.resync()
        elif not end.periodic:
            self.resync()  # listed after a failed watch: anything may have been missed
        elif kind != CREDENTIALS:
            for ns in {k[0] or k[1] for k in changed}:
                self.scheduler.schedule_namespace(ns)

    def _forget_namespace(self, ns: str) -> None:
        """A namespace went (or was replaced by a new one of that name): what was known about
        pairs there was about the old one."""
        for key in [k for k in self.blockers if k[0] == ns]:
            del self.blockers[key]
        self.fights.clear_namespace(ns)
        self.reporter.forget_namespace(ns)
        self.scheduler.forget_namespace(ns)

    # -- inputs: tenants -------------------------------------------------------------------
    def tenant_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A TenantRegistry was added, changed or deleted (from Kopf's watch)."""
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.tenants.pop(name, None)
            self.scheduler.index(name, self.intents.pop(name, None), None)
            self.reporter.forget_tenant(name)
            self.fights.clear_tenant(name)
            metrics.forget_tenant(name)
            return
        previous = self.tenants.get(name)
        self.tenants[name] = body
        if previous is not None and name in self.intents and _same_input(previous, body):
            # The echo of our own status patch (or of Kopf's finalizer): the intent cannot
            # have changed; the status is compared again (someone may have edited it).
            self.reporter.mark_dirty(name)
            return
        self._recompute_intent(name)

    def _credential_objects(self) -> dict[str, dict[str, Any]]:
        return {n: s.as_object() for n, s in self.view.credentials.items()}

    def _recompute_all_intents(self, credentials: str | None = None) -> None:
        """Every tenant's intent again; with `credentials`, those of the tenants naming that
        Secret (or whose spec cannot tell)."""
        objects = self._credential_objects()
        for name in list(self.tenants):
            if credentials is not None and not _may_use(self.tenants[name], credentials):
                continue
            try:
                self._recompute_intent(name, objects)
            except Exception:  # one tenant's trouble must not stop the others
                log.exception("tenant %s: evaluating it failed", name)
                self._set_intent(
                    name,
                    Frozen("InvalidSpec", "the operator could not evaluate it; see its log"),
                )

    def _recompute_intent(
        self, name: str, credentials: dict[str, dict[str, Any]] | None = None
    ) -> None:
        if CREDENTIALS not in self.synced_kinds:
            return
        intent = tenant_intent(
            self.tenants[name],
            self._credential_objects() if credentials is None else credentials,
            self.settings.operator_namespace,
        )
        if self.intents.get(name) == intent:
            self.reporter.mark_dirty(name)
            return
        self._set_intent(name, intent)

    def _set_intent(self, name: str, intent: Intent) -> None:
        previous = self.intents.get(name)
        if previous == intent:
            return
        self.intents[name] = intent
        self.scheduler.index(name, previous, intent)
        if not (
            isinstance(previous, Active)
            and isinstance(intent, Active)
            and previous.copy == intent.copy
        ):
            # New content or a new policy: give fought-over objects another chance.
            self.fights.clear_tenant(name)
        if isinstance(intent, Frozen):
            log.warning(
                "tenant %s: %s: %s",
                name,
                intent.reason,
                intent.message,
                extra={"tenant": name, "reason": intent.reason},
            )
        self.scheduler.schedule_tenant(name)
        self.reporter.mark_dirty(name)

    def schedule_tenant(self, name: str) -> None:
        self.scheduler.schedule_tenant(name)

    def resync(self) -> None:
        metrics.RESYNCS.inc()
        self.scheduler.resync()

    async def remove_tenant(self, name: str, body: dict[str, Any]) -> bool:
        """The TenantRegistry is being deleted: remove everything ours. True when done."""
        self.tenants[name] = body
        self._set_intent(name, Gone())
        await self.ready.wait()
        self.scheduler.schedule_tenant(name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.scheduler.pending(name) == 0:
                return not self._has_leftovers(name)
            await asyncio.sleep(0.1)
        return False

    def _has_leftovers(self, tenant: str) -> bool:
        """Copies or entries of the tenant outside terminating namespaces (those go anyway)."""
        namespaces = self.view.namespaces
        return any(
            ns in namespaces and not namespaces[ns].terminating
            for ns in self.scheduler.holdings(tenant)
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
                self.scheduler.retry_later(key, 30)
            finally:
                self.queue.done(key)
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            # A pair with nothing to write never awaits, and the queue's get() does not wait
            # while it holds keys: yield, or a resync's thousands of pairs hold the loop.
            await asyncio.sleep(0)

    def _pair_input(self, tenant: str, ns: str) -> PairInput:
        intent = self.intents.get(tenant)
        secret = intent.spec.secret_name if isinstance(intent, Active) else ""
        return PairInput(
            tenant=tenant,
            namespace=self.view.namespaces.get(ns),
            copies=tuple(self.view.copies.get(ns, {}).values()),
            service_accounts=tuple(self.view.service_accounts.get(ns, {}).values()),
            blocker=self.blockers.get((ns, secret)) if secret else None,
            gave_up=self.fights.given_up((tenant, ns)),
            rivals=self.scheduler.rivals(tenant, ns),
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
            done, failure = await self.executor.run(plan.operations)
            for op, obj in done:
                absorb(self.view, op, obj)
                self._written(tenant, op)
            if done:
                _log_writes(tenant, ns, [_describe(op) for op, _ in done])
            if failure is not None and not await self._recover(key, *failure):
                return
            if failure is not None:
                await asyncio.sleep(0.05 * attempt)
        self._record(
            key, Outcome("failed", "TooManyConflicts", "the objects kept changing; will try again")
        )
        self.scheduler.retry_later(key, 5)

    def _written(self, tenant: str, op: Operation) -> None:
        """Book-keeping after one successful write."""
        pair = (tenant, op.namespace)
        if isinstance(op, PatchServiceAccount) and op.restored:
            self.fights.restored(pair, (SERVICE_ACCOUNT, op.name))
        elif isinstance(op, PatchServiceAccount) and op.contest:
            # Recorded on the ServiceAccount now: the annotation is the state from here on,
            # so deleting it lets the operator try again.
            self.fights.clear(pair, (SERVICE_ACCOUNT, op.name))
        elif isinstance(op, UpdateCopy) and op.restored:
            self.fights.restored(pair, (SECRET, op.copy.secret_name))
        elif isinstance(op, TakeOverSecret):
            self.blockers.pop((op.namespace, op.copy.secret_name), None)
            if op.adopted:
                self.reporter.background(
                    self.reporter.announce(
                        tenant,
                        "Normal",
                        "Adopted",
                        f"took over the Secret {op.namespace}/{op.copy.secret_name} "
                        "(conflictPolicy: Adopt, with its owner's consent)",
                    )
                )

    async def _recover(self, key: Key, op: Operation, e: ApiError) -> bool:
        """A write failed. True: the view was corrected, plan again at once. False: the
        outcome is recorded (and a retry scheduled where one can help)."""
        if isinstance(op, CreateCopy) and e.kind == EXISTS:
            # A Secret the view does not show holds the name: read it, then plan with it.
            read_error = await self._read_in_the_way(op.namespace, op.copy.secret_name, "exists")
            if read_error is None:
                return True
            e = read_error
        elif isinstance(op, TakeOverSecret) and e.kind in (CONFLICT, GONE):
            metrics.CONFLICTS.labels("secrets").inc()
            read_error = await self._read_in_the_way(op.namespace, op.copy.secret_name, "conflict")
            if read_error is None:
                return True
            e = read_error
        elif isinstance(op, TakeOverSecret):
            # Rejected: read the Secret afresh before the next try.
            self.blockers.pop((op.namespace, op.copy.secret_name), None)
        elif e.kind in (CONFLICT, INVALID, GONE) and _is_stale(e, op):
            metrics.CONFLICTS.labels(_resource(op)).inc()
            read_error = await self._refresh(op)
            if read_error is None:
                return True
            e = read_error
        if e.kind == TERMINATING:
            self._record(key, Outcome("skipped", "NamespaceTerminating", ""))
            return False
        reason = {FORBIDDEN: "Forbidden", TRANSIENT: "ApiUnavailable"}.get(e.kind, "Rejected")
        tenant, ns = key
        log.warning("%s %s/%s in %s: %s", type(op).__name__, tenant, _name(op), ns, e)
        self._record(key, Outcome("failed", reason, e.message))
        # Forbidden right after an API server (re)start may be its authorizer still loading:
        # retry soon, then back off (doubling, up to 5 minutes) if it stays forbidden.
        self.scheduler.retry_later(key, 5 if e.kind == FORBIDDEN else 1)
        return False

    def _record(self, key: Key, outcome: Outcome) -> None:
        if outcome.state != "failed":
            self.scheduler.succeeded(key)
        self.reporter.record(key, outcome)

    async def _read_in_the_way(self, ns: str, name: str, reason: str) -> ApiError | None:
        """Read the Secret holding a copy's name that the view does not show: into the view
        if the copies watch shows it (so it will also go from there), else a Blocker."""
        try:
            obj = await self.executor.read_secret(ns, name, reason)
        except ApiError as e:
            return e
        self._take_in(ns, name, obj)
        return None

    def _take_in(self, ns: str, name: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.blockers.pop((ns, name), None)
        elif is_watched_copy(obj):
            self.blockers.pop((ns, name), None)
            self.view.absorb(COPIES, copy_record(obj))
        else:
            self.blockers[(ns, name)] = blocker_info(obj)

    async def _refresh(self, op: Operation) -> ApiError | None:
        """Re-read the one object a write found stale, into the view."""
        ns, name = _target(op)
        try:
            if isinstance(op, PatchServiceAccount):
                held = self.view.held(SERVICE_ACCOUNTS, ns, name)
                sa = await self.executor.read_service_account(ns, name, "conflict")
                if sa is not None:
                    self.view.absorb(SERVICE_ACCOUNTS, service_account_info(sa))
                elif held is not None:
                    self.view.absorb_deleted(SERVICE_ACCOUNTS, ns, name, version(held))
                return None
            held = self.view.held(COPIES, ns, name)
            secret = await self.executor.read_secret(ns, name, "conflict")
        except ApiError as e:
            return e
        if secret is not None and is_watched_copy(secret):
            self.view.absorb(COPIES, copy_record(secret))
        elif held is not None:
            # Gone, or no longer a copy (its labels were removed): not ours to hold any more.
            self.view.absorb_deleted(COPIES, ns, name, version(held))
        return None

    async def _recheck_blockers(self) -> None:
        """Secrets in our way are not watched (we watch only ours): re-read those some tenant
        still wants; forget the rest."""
        for (ns, name), blocker in list(self.blockers.items()):
            wanting = self.scheduler.wanting(ns, name)
            if not wanting:
                self.blockers.pop((ns, name), None)
                continue
            try:
                obj = await self.executor.read_secret(ns, name, "recheck")
            except ApiError:
                continue
            if obj is not None and not is_watched_copy(obj) and blocker_info(obj) == blocker:
                continue
            self._take_in(ns, name, obj)
            for tenant in wanting:
                self.queue.add((tenant, ns))

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            result = fn()
            if asyncio.iscoroutine(result):
                await result


async def _measure_loop_lag(tick: float = 0.05, window: float = 10.0) -> None:
    """How late a timer fires is how long something held the event loop: the largest lag of
    every tick is observed (tenant_registry_loop_lag_seconds), and the largest of the last
    `window` seconds kept at hand (tenant_registry_loop_lag_max_seconds)."""
    recent: collections.deque[tuple[float, float]] = collections.deque()
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        now = time.monotonic()
        lag = max(0.0, now - before - tick)
        metrics.LOOP_LAG.observe(lag)
        recent.append((now, lag))
        while recent[0][0] < now - window:
            recent.popleft()
        metrics.LOOP_LAG_MAX.set(max(lag for _, lag in recent))


def _same_input(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two versions of a TenantRegistry ask for the same: what tenant_intent reads
    (metadata's name, uid, generation, deletionTimestamp, and the spec) is equal."""
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return a.get("spec") == b.get("spec") and all(
        ma.get(k) == mb.get(k) for k in ("name", "uid", "generation", "deletionTimestamp")
    )


def _may_use(body: dict[str, Any], secret: str) -> bool:
    """Whether the TenantRegistry names the credentials Secret `secret` (True when its spec
    is too broken to tell: evaluating it again is harmless)."""
    try:
        return any(r["credentialsRef"]["name"] == secret for r in body["spec"]["registries"])
    except Exception:
        return True


def _is_stale(e: ApiError, op: Operation) -> bool:
    # 409 on a guarded merge patch/delete and 422 on a JSON Patch's failed `test` mean our
    # view was stale; a 422 on anything else is a real rejection.
    if e.kind == INVALID:
        return isinstance(op, PatchServiceAccount)
    return True


def _describe(op: Operation) -> str:
    verb = {
        CreateCopy: "create",
        UpdateCopy: "update",
        TakeOverSecret: "adopt",
        DeleteCopy: "delete",
    }.get(type(op), "patch")
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
    if isinstance(op, CreateCopy | UpdateCopy | TakeOverSecret):
        return op.namespace, op.copy.secret_name
    return op.namespace, op.name


def _name(op: Operation) -> str:
    return _target(op)[1]


def _resource(op: Operation) -> str:
    return "serviceaccounts" if isinstance(op, PatchServiceAccount) else "secrets"
