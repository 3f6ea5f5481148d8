"""Credential verification at work, for the runtime: per tenant, the verdict status shows,
the entry last verified per registry, and the checks it uses; after a restart, the content
last verified read back from a copy that holds it; the CA a registry's caRef names.

The decisions are verification.py's; the checks are run by verifier.py. The runtime asks
`verified` for what of an Active tenant's intent may be distributed, and is called back
(`recompute`) when a check finished or the content last verified was read back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tenant_registry import dockerconfig, metrics, names, verification
from tenant_registry.cluster import ApiError
from tenant_registry.desired import Active, Intent
from tenant_registry.executor import Executor
from tenant_registry.spec import CaRef, Credentials, Redacted
from tenant_registry.verification import Target, Verdict
from tenant_registry.verifier import Verifier
from tenant_registry.view import View

log = logging.getLogger("tenant_registry")


class CredentialChecks:
    """What the checks of each tenant's credentials found, and what it may distribute."""

    def __init__(
        self,
        view: View,
        tenants: dict[str, dict[str, Any]],
        executor: Executor,
        ready: asyncio.Event,
        verdicts: dict[str, Verdict],
        *,
        recompute: Callable[[str], None],
        background: Callable[[Coroutine[Any, Any, None]], None],
        operator_namespace: str,
        timeout: float,
        interval: float,
    ) -> None:
        self._view, self._tenants, self._executor, self._ready = view, tenants, executor, ready
        self._recompute, self._background = recompute, background
        self._operator_namespace = operator_namespace
        # Per tenant: the verdict, which status shows (shared with the reporter).
        self.verdicts = verdicts
        # The entry last verified per registry, per tenant; absent: not known yet (after a
        # restart, until read back from a copy); {}: none.
        self.last_good: dict[str, verification.LastGood] = {}
        self._loading_last_good: set[str] = set()
        # Per tenant: the checks (registry targets) it uses now.
        self._targets: dict[str, tuple[Target, ...]] = {}
        self.verifier = Verifier(
            self._read_ca, self._check_done, seconds=timeout, interval=interval
        )

    async def stop(self) -> None:
        await self.verifier.stop()

    def to_read_back(self) -> list[str]:
        """Tenants whose content last verified is to be read back from a copy (after a
        restart): once the view is complete, their intents are evaluated again."""
        return [name for name, v in self.verdicts.items() if v.load_last_good]

    def verified(self, name: str, candidate: Active) -> Intent:
        """What of `candidate` may be distributed, by the checks against its registries."""
        checks = verification.targets(candidate, self._ca_version)
        self._targets[name] = checks
        self.verifier.use(name, checks)
        results = {t.fingerprint: self.verifier.result(name, t) for t in checks}
        status = self._tenants[name].get("status") or {}
        servers = status.get("verifiedRegistries")
        stored = verification.Stored(
            str(status.get("verifiedContentHash") or ""),
            tuple(str(s) for s in servers) if isinstance(servers, list) else None,
        )
        intent, verdict = verification.decide(
            candidate, checks, results, self.last_good.get(name), stored
        )
        if verdict.last_good is not None:
            self.last_good[name] = dict(verdict.last_good)
        if verdict.checked_at:
            # The check's time is a metric, not status: a periodic check writes nothing.
            metrics.CREDENTIALS_CHECKED.labels(name).set(verdict.checked_at)
        # Read back only from a complete view: before the copies are listed, "no copy holds
        # it" would be a guess (it is retried once the view is ready: to_read_back).
        if verdict.load_last_good and self._ready.is_set() and name not in self._loading_last_good:
            self._loading_last_good.add(name)
            self._background(self._load_last_good(name, verdict.load_last_good))
        self.verdicts[name] = verdict
        return intent

    def _check_done(self, fingerprint: str) -> None:
        for name, checks in list(self._targets.items()):
            if name in self._tenants and any(t.fingerprint == fingerprint for t in checks):
                try:
                    self._recompute(name)
                except Exception:  # one tenant's trouble must not stop the others
                    log.exception("tenant %s: evaluating it failed", name)

    def recheck_all(self) -> None:
        """The periodic re-check: every registry some tenant checks, once."""
        self.verifier.recheck_all()

    def not_checked(self, name: str) -> None:
        """The tenant's intent is not Active (nothing to distribute, nothing to check); what
        was last verified is kept."""
        self.verdicts.pop(name, None)
        self._targets.pop(name, None)
        self.verifier.forget(name)

    def forget(self, name: str) -> None:
        """The TenantRegistry is gone: what was last verified goes too."""
        self.not_checked(name)
        self.last_good.pop(name, None)

    async def _load_last_good(self, name: str, content_hash: str) -> None:
        """After a restart the content last verified is known by its hash (status): read it
        back from a copy that holds it (the view is complete: copies are listed), and take
        from it the entries of the registries status names as verified."""
        holders = [
            c
            for copies in self._view.copies.values()
            for c in copies.values()
            if c.tenant == name and c.data_hash == content_hash == c.annotated_hash
        ]
        found: dict[str, Credentials] | None = None
        try:
            for c in holders[:3]:
                obj = await self._executor.read_secret(c.namespace, c.name, "last-verified")
                raw = ((obj or {}).get("data") or {}).get(names.DOCKERCONFIGJSON_KEY, "")
                try:
                    data = base64.b64decode(str(raw), validate=True)
                except binascii.Error:
                    continue
                if dockerconfig.content_hash(data) == content_hash:
                    found = _entries(data)
                    break
        except ApiError as e:
            log.warning("tenant %s: reading the content last verified failed: %s", name, e)
            await asyncio.sleep(5)
        else:
            if name in self._tenants:
                status = self._tenants[name].get("status") or {}
                servers = status.get("verifiedRegistries")
                if found is not None and isinstance(servers, list):
                    found = {s: e for s, e in found.items() if s in servers}
                # None found: no copy holds it (any more); no entry is known, as before any.
                self.last_good[name] = found or {}
        finally:
            self._loading_last_good.discard(name)
        if name in self._tenants:
            self._recompute(name)

    def _ca_version(self, ca: CaRef) -> str:
        """What a caRef's Secret holds now (the view watches Secrets here), as a hash: a CA
        Secret that appears or changes makes a new check. A ConfigMap (no watch: the operator
        may only `get` ConfigMaps) is read at each check, periodic or a failure's retry."""
        if ca.kind != "Secret":
            return ""
        value = (self._secret_data(ca.name) or {}).get(ca.key)
        return "absent" if value is None else hashlib.sha256(str(value).encode()).hexdigest()

    def _secret_data(self, name: str) -> dict[str, Any] | None:
        """The data of a Secret in the operator's namespace, as the view holds it (None: no
        such Secret)."""
        record = self._view.credentials.get(name)
        if record is None:
            return None
        return dict((record.as_object() or {}).get("data") or {})

    async def _read_ca(self, ca: CaRef) -> str:
        """The PEM a registry's caRef names, in the operator's namespace."""
        ns = self._operator_namespace
        where = f"{ca.kind} {ns}/{ca.name}"
        if ca.kind == "Secret":
            data = self._secret_data(ca.name)
            if data is None:
                raise LookupError(f"{where} not found")
            try:
                raw = base64.b64decode(str(data[ca.key]), validate=True).decode()
            except KeyError:
                raise LookupError(f"{where} has no key {ca.key!r}") from None
            except (binascii.Error, UnicodeDecodeError):
                raise LookupError(f"{where} key {ca.key!r} is not base64 text") from None
            return raw
        try:
            obj = await self._executor.read_config_map(ns, ca.name, "ca")
        except ApiError as e:
            raise LookupError(f"{where} could not be read: {e.message}") from None
        if obj is None:
            raise LookupError(f"{where} not found")
        value = (obj.get("data") or {}).get(ca.key)
        if not isinstance(value, str):
            raise LookupError(f"{where} has no key {ca.key!r}")
        return value


def _entries(data: bytes) -> dict[str, Credentials] | None:
    """The auths entries of a .dockerconfigjson this operator wrote; None if unreadable."""
    try:
        auths = json.loads(data)["auths"]
        return {
            str(server): Credentials(
                str(e["username"]), Redacted(str(e["password"])), str(e.get("email", ""))
            )
            for server, e in auths.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
