"""The checks of credentials against registries, as the runtime runs them: one check per
distinct target at a time (tenants sharing credentials share it), a bound on how many run at
once, the latest result kept per target, re-checks on demand (the periodic timer).

The decisions are verification.py's; the HTTP is registryclient.py's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable

from tenant_registry import metrics, registryclient
from tenant_registry.spec import CaRef
from tenant_registry.verification import CheckRequest, CheckResult, Target

log = logging.getLogger("tenant_registry")

CaReader = Callable[[CaRef], Awaitable[str]]  # the PEM of a caRef; raises LookupError


class Verifier:
    def __init__(
        self,
        read_ca: CaReader,
        on_result: Callable[[str], None],
        *,
        seconds: float,
        concurrency: int = 4,
    ) -> None:
        self.read_ca = read_ca
        self.on_result = on_result  # called with the fingerprint of a finished check
        self.seconds = seconds
        self.results: dict[str, CheckResult] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(concurrency)

    def result(self, target: Target) -> CheckResult | None:
        """The latest result for `target`; None (and a check started) if it was never checked."""
        fp = target.fingerprint
        found = self.results.get(fp)
        if found is None:
            self.start(target)
        return found

    def start(self, target: Target) -> None:
        fp = target.fingerprint
        if fp not in self._running:
            task = asyncio.create_task(self._check(target), name="credential-check")
            self._running[fp] = task

            def done(_: asyncio.Task[None]) -> None:
                self._running.pop(fp, None)

            task.add_done_callback(done)

    def recheck(self, targets: Iterable[Target]) -> None:
        """Check again (the previous result stands until the new one is in)."""
        for target in targets:
            self.start(target)

    def keep_only(self, fingerprints: set[str]) -> None:
        """Forget results nobody uses any more (old passwords)."""
        for fp in [fp for fp in self.results if fp not in fingerprints]:
            del self.results[fp]

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, target: Target) -> None:
        async with self._limit:
            try:
                ca_pem = await self.read_ca(target.ca) if target.ca is not None else ""
            except LookupError as e:
                result = CheckResult("CANotFound", str(e))
            else:
                request = CheckRequest(target.server, target.credentials, target.probe, ca_pem)
                result = await registryclient.check(request, seconds=self.seconds)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = CheckResult(result.reason, result.message, now)
        metrics.CREDENTIAL_CHECKS.labels(result.reason).inc()
        previous = self.results.get(target.fingerprint)
        if previous is None or previous.reason != result.reason:
            log.info(
                "credential check of %s: %s",
                target.server,
                result.reason,
                extra={"action": "verify", "server": target.server, "reason": result.reason},
            )
        self.results[target.fingerprint] = result
        self.on_result(target.fingerprint)
