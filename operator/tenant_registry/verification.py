"""Whether a tenant's credentials may be distributed: pure decisions over check results.

A tenant's registries with `verify` (the default) are checked against the registry
(registryclient.py) before their credentials reach any namespace. This room decides, from
the results, what is distributed: the new content once every check passed; else the content
last verified (kept, never replaced by broken credentials); else, on a first-ever failure or
while a first check runs, nothing. It also words the `CredentialsValid` condition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tenant_registry import handshake
from tenant_registry.desired import Active, DesiredCopy, Frozen, Intent
from tenant_registry.handshake import ProbeImage
from tenant_registry.spec import CaRef, Credentials

# Ready's reasons while verification holds a tenant back (nothing distributed yet).
VERIFYING = "Verifying"
UNVERIFIED = "CredentialsUnverified"
# CredentialsValid's reasons besides handshake's.
NOT_VERIFIED = "VerificationDisabled"
CHECKING = "Checking"


@dataclass(frozen=True)
class CheckRequest:
    server: str
    credentials: Credentials
    probe: ProbeImage | None = None
    ca_pem: str = ""  # CAs to trust besides the system's (PEM); "" for none


@dataclass(frozen=True)
class CheckResult:
    reason: str  # handshake.VERIFIED or why not
    message: str
    checked_at: str = ""  # RFC 3339, set by the verifier

    @property
    def ok(self) -> bool:
        return self.reason == handshake.VERIFIED


@dataclass(frozen=True)
class Target:
    """One registry of a tenant to check: `spec.registries[index]`."""

    index: int
    server: str
    credentials: Credentials = field(repr=False)
    probe: ProbeImage | None = None
    ca: CaRef | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies what is checked (never shown: it hashes the password). A new password,
        probe image or CA reference is a new check."""
        parts = (
            self.server,
            self.credentials.username,
            self.credentials.password.reveal(),
            str(self.probe or ""),
            repr(self.ca),
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def targets(intent: Active) -> tuple[Target, ...]:
    """The registries of an active tenant that are to be checked."""
    creds = dict(intent.credentials)
    return tuple(
        Target(i, r.server, creds[r.server], r.probe_image, r.ca)
        for i, r in enumerate(intent.spec.registries)
        if r.verify and r.server in creds
    )


@dataclass(frozen=True)
class Verdict:
    """What status says about verification."""

    status: str  # CredentialsValid: "True" | "False" | "Unknown"
    reason: str
    message: str
    checked_at: str = ""  # the latest check of the tenant's registries
    verified_hash: str = ""  # the content known to work (status.verifiedContentHash)
    # The content last verified is known by its hash only (after a restart): load it.
    load_last_good: str = ""


def decide(
    candidate: Active,
    checks: tuple[Target, ...],
    results: Mapping[str, CheckResult | None],
    last_good: DesiredCopy | None,
    stored_hash: str,
) -> tuple[Intent, Verdict]:
    """What to distribute for a tenant whose input reads fine (`candidate`), given the check
    results by fingerprint (None: not checked yet), the content last verified (if held) and
    the hash of it in status (if any)."""
    want = candidate.copy.content_hash
    if not checks:
        return candidate, Verdict("Unknown", NOT_VERIFIED, "verify is false for every registry")
    checked = [results.get(t.fingerprint) for t in checks]
    checked_at = max((r.checked_at for r in checked if r is not None), default="")
    failed = [(t, r) for t, r in zip(checks, checked, strict=True) if r is not None and not r.ok]
    pending = [t for t, r in zip(checks, checked, strict=True) if r is None]
    if not failed and not pending:
        n = len(checks)
        message = f"{n} {'registry' if n == 1 else 'registries'} accepted the credentials"
        return candidate, Verdict("True", handshake.VERIFIED, message, checked_at, want)

    known_hash = last_good.content_hash if last_good is not None else stored_hash
    if failed:
        target, result = failed[0]
        assert result is not None
        status, reason = "False", result.reason
        message = f"spec.registries[{target.index}] ({target.server}): {result.message}"
    else:
        status, reason = "Unknown", CHECKING
        message = "checking the credentials against the registry"

    def verdict(tail: str, load: str = "") -> Verdict:
        return Verdict(status, reason, f"{message}; {tail}", checked_at, known_hash, load)

    if want == known_hash:
        # The content is the one verified before (a registry that now refuses it, or a check
        # repeated after a restart): it is what is there; keep it.
        return candidate, verdict(f"the content last verified ({want}) stays distributed")
    if last_good is not None:
        kept = replace(
            last_good, secret_name=candidate.copy.secret_name, tenant_uid=candidate.spec.uid
        )
        return Active(candidate.spec, kept, candidate.credentials), verdict(
            f"the content last verified ({known_hash}) stays distributed"
        )
    if known_hash:
        return (
            Frozen(VERIFYING, "reading the content last verified", credentials_resolved=True),
            verdict("reading the content last verified", load=known_hash),
        )
    if failed:
        return (
            Frozen(UNVERIFIED, f"{message}; nothing is distributed", credentials_resolved=True),
            verdict("nothing is distributed until the credentials work"),
        )
    return (
        Frozen(VERIFYING, message, credentials_resolved=True),
        verdict("nothing is distributed before the first check passes"),
    )
