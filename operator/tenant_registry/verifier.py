"""The checks of credentials against registries, as the runtime runs them: one check per
distinct target at a time (tenants sharing credentials share it), a bound on how many run at
once, the latest result kept per target, re-checks on demand (the periodic timer) and retries
of failures with backoff.

Which result a tenant may use (review 14, finding 5): only one of a check that started after
the tenant's registry last changed to what it checks now, so a result is never carried over
from an earlier time the same credentials were in the spec (a revert to since-revoked
credentials gets a fresh check); and none older than twice the re-check interval. Results
and retries nobody uses are dropped as soon as the last tenant using them changes.

Order (finding 10): a check for a change (new credentials, a new tenant, a retry) goes
before the periodic pass's, which never delays it by more than the checks already running.

The decisions are verification.py's; the HTTP is registryclient.py's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from tenant_registry import metrics, registryclient
from tenant_registry.spec import CaRef
from tenant_registry.verification import CheckRequest, CheckResult, Target

log = logging.getLogger("tenant_registry")

CaReader = Callable[[CaRef], Awaitable[str]]  # the PEM of a caRef; raises LookupError

CHANGE, PERIODIC = 0, 1  # check priorities: lower first
RETRY_FIRST_SECONDS = 10.0  # a failed check is retried after 10 s, 20 s, 40 s, ...
RETRY_MAX_SECONDS = 600.0  # ... at most the re-check interval (this, with no interval)


class _Slots:
    """A semaphore that grants waiters by priority, then in arrival order."""

    def __init__(self, n: int) -> None:
        self.free = n
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted as it was cancelled: pass the slot on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class Verifier:
    def __init__(
        self,
        read_ca: CaReader,
        on_result: Callable[[str], None],
        *,
        seconds: float,
        interval: float = 0.0,
        concurrency: int = 4,
    ) -> None:
        self.read_ca = read_ca
        self.on_result = on_result  # called with the fingerprint of a finished check
        self.seconds = seconds
        self.interval = interval  # the periodic re-check's, 0: none
        self.results: dict[str, CheckResult] = {}
        self._started: dict[str, float] = {}  # fingerprint -> when its result's check started
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = _Slots(concurrency)
        # Who checks what: tenant -> server -> (fingerprint, since when); the targets in use.
        self._uses: dict[str, dict[str, tuple[str, float]]] = {}
        self._targets: dict[str, Target] = {}
        self._users: dict[str, set[str]] = {}
        self._failures: dict[str, int] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}

    # -- what tenants check ------------------------------------------------------------------
    def use(self, tenant: str, targets: Iterable[Target]) -> None:
        """`tenant` checks `targets` now: a registry whose target changed starts afresh."""
        now = time.monotonic()
        before = self._uses.get(tenant, {})
        after: dict[str, tuple[str, float]] = {}
        for t in targets:
            fp = t.fingerprint
            old = before.get(t.server)
            after[t.server] = old if old is not None and old[0] == fp else (fp, now)
            self._targets[fp] = t
            self._users.setdefault(fp, set()).add(tenant)
        self._uses[tenant] = after
        kept = {fp for fp, _ in after.values()}
        for fp, _ in before.values():
            if fp not in kept:
                self._drop_user(fp, tenant)

    def forget(self, tenant: str) -> None:
        for fp, _ in self._uses.pop(tenant, {}).values():
            self._drop_user(fp, tenant)

    def _drop_user(self, fp: str, tenant: str) -> None:
        users = self._users.get(fp)
        if users is None:
            return
        users.discard(tenant)
        if users:
            return
        del self._users[fp]
        self._targets.pop(fp, None)
        self.results.pop(fp, None)
        self._started.pop(fp, None)
        self._failures.pop(fp, None)
        handle = self._retries.pop(fp, None)
        if handle is not None:
            handle.cancel()

    def result(self, tenant: str, target: Target) -> CheckResult | None:
        """The result `tenant` may use for `target` (after `use`); None, and a check started,
        if there is none yet."""
        fp = target.fingerprint
        found = self.results.get(fp)
        since = self._uses.get(tenant, {}).get(target.server, (fp, 0.0))[1]
        started = self._started.get(fp, -1.0)
        stale = found is not None and (
            started < since
            or (self.interval > 0 and time.monotonic() - started > 2 * self.interval)
        )
        if found is None or stale:
            self.start(target, CHANGE)
            return None
        return found

    # -- checks ----------------------------------------------------------------------------
    def start(self, target: Target, priority: int = CHANGE) -> None:
        fp = target.fingerprint
        if fp not in self._running:
            task = asyncio.create_task(self._check(target, priority), name="credential-check")
            self._running[fp] = task

            def done(_: asyncio.Task[None]) -> None:
                self._running.pop(fp, None)

            task.add_done_callback(done)

    def recheck_all(self) -> None:
        """The periodic pass: every target some tenant checks, once, after changes' checks
        (the previous result stands until the new one is in)."""
        for target in list(self._targets.values()):
            self.start(target, PERIODIC)

    async def stop(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _retry_later(self, fp: str) -> None:
        n = self._failures[fp] = self._failures.get(fp, 0) + 1
        cap = self.interval if self.interval > 0 else RETRY_MAX_SECONDS
        delay = min(cap, RETRY_FIRST_SECONDS * 2 ** min(n - 1, 16))
        old = self._retries.pop(fp, None)
        if old is not None:
            old.cancel()

        def retry() -> None:
            self._retries.pop(fp, None)
            target = self._targets.get(fp)
            if target is not None:
                self.start(target, CHANGE)

        self._retries[fp] = asyncio.get_running_loop().call_later(delay, retry)

    async def _check(self, target: Target, priority: int) -> None:
        await self._slots.acquire(priority)
        started = time.monotonic()
        try:
            try:
                ca_pem = await self.read_ca(target.ca) if target.ca is not None else ""
            except LookupError as e:
                result = CheckResult("CANotFound", str(e))
            else:
                request = CheckRequest(target.server, target.credentials, target.probe, ca_pem)
                result = await registryclient.check(request, seconds=self.seconds)
        finally:
            self._slots.release()
        fp = target.fingerprint
        if fp not in self._targets:
            return  # nobody checks it any more
        result = CheckResult(result.reason, result.message, time.time())
        metrics.CREDENTIAL_CHECKS.labels(result.reason).inc()
        previous = self.results.get(fp)
        if previous is None or previous.reason != result.reason:
            log.info(
                "credential check of %s: %s",
                target.server,
                result.reason,
                extra={"action": "verify", "server": target.server, "reason": result.reason},
            )
        self.results[fp] = result
        self._started[fp] = started
        if result.ok:
            self._failures.pop(fp, None)
            handle = self._retries.pop(fp, None)
            if handle is not None:
                handle.cancel()
        else:
            self._retry_later(fp)
        self.on_result(fp)
