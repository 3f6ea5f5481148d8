"""The runtime: view + desired -> bounded writes -> status.

Every input (a watch event, a TenantRegistry change, a timer) only schedules work for
(tenant, namespace) pairs (scheduler.py); workers plan each pair from the view (pure, on the
event loop) and hand the planned writes to the one bounded pool (executor.py), so a thousand
namespaces proceed in parallel without flooding the API server. A pair is never worked on by
two workers at once; a stale view (409/422) re-reads that one object and plans again.

This module wires the rooms: the lifecycle, the inputs (the view's watches, TenantRegistries
from Kopf), the workers and the reconcile of one pair. The rest is elsewhere:
- reporter.py: what happened, to status, Events and metrics;
- recovery.py: the Secrets in the way, and the re-reads after a failed write;
- fights.py: the fights with other writers, and when to give up;
- credentialchecks.py: what of a tenant's credentials may be distributed;
- leftovers.py: the leftovers of TenantRegistries deleted while no operator ran;
- auditor.py: the pull-readiness audit (its own watches and passes; started and stopped here).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_registry import metrics, names
from tenant_registry.auditor import Auditor
from tenant_registry.cluster import ApiError, Cluster
from tenant_registry.credentialchecks import CredentialChecks
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
    TakeOverSecret,
    UpdateCopy,
    plan_pair,
    tenant_intent,
    written_object,
    written_resource,
)
from tenant_registry.executor import Executor, absorb
from tenant_registry.fights import FightLog
from tenant_registry.leftovers import Leftovers
from tenant_registry.recovery import Recovery
from tenant_registry.reporter import Reporter
from tenant_registry.scheduler import Key, Scheduler, WorkQueue
from tenant_registry.verification import Verdict
from tenant_registry.view import (
    CREDENTIALS,
    KINDS,
    NAMESPACES,
    ListEnd,
    View,
    Watcher,
    namespace_of,
    version,
    watch_specs,
)
from tenant_registry.view_types import CopyInfo, NamespaceInfo, namespace_info

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
    audit_interval: float = 2.0  # the pull-readiness audit's pass (auditor.py), at most this often
    restarts_per_minute: int = 6  # spec.restartStuckPods: Pod deletions, for the whole operator
    verify_interval_seconds: float = 600.0  # re-check credentials against registries, 0: never
    verify_timeout_seconds: float = 10.0  # one check, all its requests
    # A copy under a previous secretName stays this long after the entries moved (Pods
    # admitted with the old name may still be starting); 0: deleted at once.
    rename_grace_seconds: float = 600.0


class Runtime:
    """Owns the view, the queue, the workers and the write pool for one operator process."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.view = View.empty()
        self.tenants: dict[str, dict[str, Any]] = {}  # name -> last seen object
        self.intents: dict[str, Intent] = {}
        self.fights = FightLog(settings.fight_limit, settings.fight_window_seconds)
        self.scheduler = Scheduler(self.view, self.intents, settings.operator_namespace)
        self.executor = Executor(cluster, settings.concurrency)
        self.recovery = Recovery(
            self.view, self.executor, self.scheduler, settings.conflict_recheck_seconds
        )
        self.ready = asyncio.Event()
        verdicts: dict[str, Verdict] = {}  # credentialchecks.py's; the reporter reads them
        self.reporter = Reporter(
            self.executor,
            self.view,
            self.tenants,
            self.intents,
            self.scheduler.pending,
            self.scheduler.tenant_index.selected_by,
            settings.operator_namespace,
            settings.status_interval,
            verdicts,
        )
        self.checks = CredentialChecks(
            self.view,
            self.tenants,
            self.executor,
            self.ready,
            verdicts,
            recompute=self._recompute_intent,
            background=self.reporter.background,
            operator_namespace=settings.operator_namespace,
            timeout=settings.verify_timeout_seconds,
            interval=settings.verify_interval_seconds,
        )
        self.auditor = Auditor(
            cluster,
            self.executor,
            self.view,
            self.intents,
            self.tenants,
            self.scheduler.selected_by,
            interval=settings.audit_interval,
            restarts_per_minute=settings.restarts_per_minute,
            watch_timeout=settings.watch_timeout_seconds,
            relist_seconds=settings.relist_seconds,
        )
        self.synced_kinds: set[str] = set()
        self._listing: dict[str, list[tuple[str, str]]] = {}  # changes of a list in progress
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # (tenant, namespace) -> the timer that plans the pair again when a copy under a
        # previous secretName is due to go (desired.PairPlan.wake_at).
        self._wakes: dict[Key, asyncio.TimerHandle] = {}
        self.leftovers = Leftovers(
            cluster,
            self.executor,
            self.view,
            self.tenants,
            self.intents,
            self.ready,
            every=settings.relist_seconds or settings.resync_seconds,
            pending=lambda name: self.queue.pending(name),
            retire=lambda name: self._set_intent(name, Gone()),
            forget=self._forget_tenant,
        )

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
        self.auditor.start()
        self._watchers += self.auditor.watchers  # stopped and probed with the others
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"worker-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._tasks += [
            asyncio.create_task(self._report_when_ready(), name="status"),
            asyncio.create_task(self.auditor.loop(self.ready), name="audit"),
            asyncio.create_task(_measure_loop_lag(), name="loop-lag"),
            asyncio.create_task(
                self._every(self.settings.resync_seconds, self.resync), name="resync"
            ),
            asyncio.create_task(self.recovery.loop(), name="recheck"),
            asyncio.create_task(self.leftovers.loop(), name="orphans"),
        ]
        if self.settings.verify_interval_seconds > 0:
            self._tasks.append(
                asyncio.create_task(
                    self._every(self.settings.verify_interval_seconds, self.checks.recheck_all),
                    name="verify",
                )
            )

    async def _report_when_ready(self) -> None:
        """No status before the initial lists are in: a half-filled view would count wrong."""
        await self.ready.wait()
        await self.reporter.loop()

    async def stop(self) -> None:
        for w in self._watchers:
            w.stop()
        for t in self._tasks:
            t.cancel()
        self.scheduler.cancel()
        for handle in self._wakes.values():
            handle.cancel()
        self._wakes.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.checks.stop()
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
            before = (
                {r.name: self.view.namespaces.get(r.name) for r in payload}
                if kind == NAMESPACES
                else {}
            )
            changed = self.view.merge_listed(kind, payload)
            if kind == NAMESPACES:
                for _, name in changed:
                    self.scheduler.namespace_changed(name)
                    old, new = before.get(name), self.view.namespaces.get(name)
                    if old is not None and new is not None and old.uid != new.uid:
                        self._forget_namespace(name)  # another namespace of that name now
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
                for name in self.checks.to_read_back():
                    if name in self.tenants:
                        self._recompute_intent(name)  # now the copies can be read back
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
        self.recovery.forget_namespace(ns)
        self.fights.clear_namespace(ns)
        self.reporter.forget_namespace(ns)
        self.scheduler.forget_namespace(ns)

    # -- inputs: tenants -------------------------------------------------------------------
    def tenant_event(self, event_type: str, body: dict[str, Any]) -> None:
        """A TenantRegistry was added, changed or deleted (from Kopf's watch)."""
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.tenants.pop(name, None)
            self._forget_tenant(name)
            return
        previous = self.tenants.get(name)
        self.tenants[name] = body
        if previous is not None and name in self.intents and _same_input(previous, body):
            # The echo of our own status patch (or of Kopf's finalizer): the intent cannot
            # have changed; the status is compared again (someone may have edited it).
            self.reporter.mark_dirty(name)
            return
        self._recompute_intent(name)

    def _forget_tenant(self, name: str) -> None:
        """Everything held of a tenant gone (deleted, or a leftover released): its intent and
        index, queued pairs, outcomes, fights, audit, credential checks and metric series."""
        self.scheduler.index(name, self.intents.pop(name, None), None)
        self.scheduler.forget_tenant(name)
        self.reporter.forget_tenant(name)
        self.fights.clear_tenant(name)
        self.auditor.forget_tenant(name)
        self.checks.forget(name)
        metrics.forget_tenant(name)

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
        if isinstance(intent, Active):
            intent = self.checks.verified(name, intent)
        else:
            self.checks.not_checked(name)
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
        _freeze_long_lived()
        self.scheduler.resync()

    async def remove_tenant(self, name: str, body: dict[str, Any]) -> bool:
        """The TenantRegistry is being deleted: remove everything ours. True when done."""
        self.tenants[name] = body
        self._set_intent(name, Gone(str(body["metadata"].get("uid", ""))))
        await self.ready.wait()
        self.scheduler.schedule_tenant(name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.scheduler.pending(name) == 0:
                return not self._holds_anything(name)
            await asyncio.sleep(0.1)
        return False

    def _holds_anything(self, tenant: str) -> bool:
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
            blocker=self.recovery.blocker(ns, secret) if secret else None,
            gave_up=self.fights.given_up((tenant, ns)),
            held_off=self.fights.held_off((tenant, ns)),
            rivals=self.scheduler.rivals(tenant, ns),
            tenant_uid=str(((self.tenants.get(tenant) or {}).get("metadata") or {}).get("uid", "")),
            now=time.time(),
            rename_grace=self.settings.rename_grace_seconds,
        )

    async def _reconcile(self, key: Key) -> None:
        tenant, ns = key
        verified = False
        for attempt in range(self.settings.max_attempts):
            intent = self.intents.get(tenant)
            if intent is None:
                return
            plan = plan_pair(intent, self._pair_input(tenant, ns), self.settings.operator_namespace)
            if not plan.operations:
                self._record(key, plan.outcome)
                self._wake_at(key, plan.wake_at)
                return
            held = self.view.copies.get(ns, {})
            if not verified and any(_gives(op, held) for op in plan.operations):
                # Credentials go into this namespace only as the API reports it now, never as
                # a lagging namespace watch last told (deleted, created again, relabelled).
                verified = True
                try:
                    if await self._namespace_moved(ns):
                        continue
                except ApiError as e:
                    await self._recover(key, plan.operations[0], e)
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

    def _wake_at(self, key: Key, when: float | None) -> None:
        """Plan the pair again at `when` (wall clock), replacing an earlier timer."""
        old = self._wakes.pop(key, None)
        if old is not None:
            old.cancel()
        if when is None:
            return
        delay = max(0.0, when - time.time()) + 0.5  # the stamp has whole seconds
        self._wakes[key] = asyncio.get_running_loop().call_later(delay, self._woken, key)

    def _woken(self, key: Key) -> None:
        self._wakes.pop(key, None)
        self.queue.add(key)

    def _written(self, tenant: str, op: Operation) -> None:
        """Book-keeping after one successful write."""
        self.fights.written((tenant, op.namespace), op)
        if isinstance(op, TakeOverSecret):
            self.recovery.forget(op.namespace, op.copy.secret_name)
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
        failed = await self.recovery.recover(key, op, e)
        if failed is None:
            return True
        outcome, retry = failed
        self._record(key, outcome)
        if retry is not None:
            self.scheduler.retry_later(key, retry)
        return False

    async def _namespace_moved(self, ns: str) -> bool:
        """Read the namespace; True if the view's record of it was stale (corrected now, by the
        view's rules: a watch event that arrived meanwhile and is newer stays)."""
        held = self.view.namespaces.get(ns)
        obj = await self.executor.read_namespace(ns, "verify")
        if obj is None:
            if held is not None:
                self.view.absorb_deleted(NAMESPACES, "", ns, version(held))
        else:
            fresh = namespace_info(obj)
            if held is not None and _same_namespace(held, fresh):
                return False
            self.view.absorb(NAMESPACES, fresh)
        now = self.view.namespaces.get(ns)
        self.scheduler.namespace_changed(ns)
        if held is not None and (now is None or now.uid != held.uid):
            self._forget_namespace(ns)
        return True

    def _record(self, key: Key, outcome: Outcome) -> None:
        if outcome.state != "failed":
            self.scheduler.succeeded(key)
        self.reporter.record(key, outcome)

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


def _freeze_long_lived() -> None:
    """What is alive at a resync (the view's records, the tenants, the imported modules)
    mostly lives on: move it out of the cyclic collector's sight (gc.freeze), so a full
    collection scans only what changed since. At 10,000 namespaces one such collection held
    the event loop 0.3-1 s. Young garbage is collected first, so that no dead cycle is frozen
    (refcounting still frees frozen objects; only a cycle among them would stay)."""
    gc.collect(1)
    gc.freeze()
    # And what glibc holds free since the last burst (write results, list pages) goes back.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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


def _same_namespace(a: NamespaceInfo, b: NamespaceInfo) -> bool:
    return (a.uid, a.labels, a.terminating) == (b.uid, b.labels, b.terminating)


def _gives(op: Operation, copies: Mapping[str, CopyInfo]) -> bool:
    """Does this write put credentials into a namespace (a copy, new content in one: a
    rotation, or an entry naming one)? A copy's annotation or ownerReference repaired, with
    the content it holds, is not."""
    if isinstance(op, CreateCopy | TakeOverSecret):
        return True
    if isinstance(op, UpdateCopy):
        held = copies.get(op.copy.secret_name)
        return op.recreate or held is None or held.data_hash != op.copy.content_hash
    return isinstance(op, PatchServiceAccount) and any(
        p["op"] == "add" and str(p["path"]).startswith("/imagePullSecrets") for p in op.patch
    )


def _describe(op: Operation) -> str:
    verb = {
        CreateCopy: "create",
        UpdateCopy: "update",
        TakeOverSecret: "adopt",
        DeleteCopy: "delete",
    }.get(type(op), "patch")
    return f"{verb} {written_resource(op)}/{written_object(op)[1]}"


def _log_writes(tenant: str, namespace: str, writes: list[str]) -> None:
    """One line per namespace reconciled with writes: what was written (never content)."""
    log.info(
        "tenant %s, namespace %s: %s",
        tenant,
        namespace,
        ", ".join(writes),
        extra={"action": "write", "tenant": tenant, "namespace": namespace, "writes": writes},
    )
