"""Whether a tenant's credentials may be distributed: pure decisions over check results.

A tenant's registries with `verify` (the default) are checked against the registry
(registryclient.py) before their credentials reach any namespace. This room decides, from
the results, what is distributed, registry by registry (`decide`): the new entry of a
registry whose check passed; else that registry's entry last verified (never replaced by
broken credentials); else none; and nothing at all for a tenant none of whose registries
ever passed. It also words the `CredentialsValid` condition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tenant_registry import handshake
from tenant_registry.desired import Active, Frozen, Intent, desired_copy
from tenant_registry.handshake import ProbeImage
from tenant_registry.spec import CaRef, Credentials, InvalidInput

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
    checked_at: float = 0.0  # when (Unix time), set by the verifier

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
    ca_version: str = ""  # what the caRef holds now, where known (a Secret's): a hash

    @property
    def fingerprint(self) -> str:
        """Identifies what is checked (never shown: it hashes the password). A new password,
        probe image, CA reference or CA Secret content is a new check."""
        parts = (
            self.server,
            self.credentials.username,
            self.credentials.password.reveal(),
            str(self.probe or ""),
            repr(self.ca),
            self.ca_version,
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def targets(intent: Active, ca_version: Callable[[CaRef], str] | None = None) -> tuple[Target, ...]:
    """The registries of an active tenant that are to be checked; `ca_version` tells what a
    caRef holds now (so that a CA that appears or changes is a new check)."""
    creds = dict(intent.credentials)
    return tuple(
        Target(
            i,
            r.server,
            creds[r.server],
            r.probe_image,
            r.ca,
            ca_version(r.ca) if r.ca is not None and ca_version is not None else "",
        )
        for i, r in enumerate(intent.spec.registries)
        if r.verify and r.server in creds
    )


LastGood = Mapping[str, Credentials]  # server -> the entry last verified for it


@dataclass(frozen=True)
class Stored:
    """What status says about the last verified content (status.verifiedContentHash and
    status.verifiedRegistries): all a restart knows of it."""

    content_hash: str = ""  # the content distributed under verification
    # The servers whose entries in that content were verified; None: a status written before
    # per-registry verification, when every checked registry's entry was.
    servers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Verdict:
    """What status says about verification, and what the runtime keeps."""

    status: str  # CredentialsValid: "True" | "False" | "Unknown"
    reason: str
    message: str
    checked_at: float = 0.0  # the latest check of the tenant's registries (Unix time)
    verified_hash: str = ""  # status.verifiedContentHash
    verified_servers: tuple[str, ...] = ()  # status.verifiedRegistries
    # The content last verified is known by its hash only (after a restart): load it.
    load_last_good: str = ""
    # The entry last verified per registry, to keep (None: unknown, being loaded).
    last_good: LastGood | None = field(default=None, compare=False, repr=False)


def _s(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def decide(
    candidate: Active,
    checks: tuple[Target, ...],
    results: Mapping[str, CheckResult | None],
    last_good: LastGood | None,
    stored: Stored,
) -> tuple[Intent, Verdict]:
    """What to distribute for a tenant whose input reads fine (`candidate`), given the check
    results by fingerprint (None: not checked yet), the entry last verified per registry (None
    when not known: after a restart) and what status says of it.

    Per registry, by `server` key: `verify: false` is distributed as read; a registry whose
    check passed, its new entry (also while another registry fails); one that fails or is
    being checked, its entry last verified, or none if it never passed. A registry gone from
    the spec is gone from the content at once. A tenant none of whose registries ever passed
    gets nothing written while one fails or is checked (a first-ever failure writes nothing)."""
    if not checks:
        return candidate, Verdict("Unknown", NOT_VERIFIED, "verify is false for every registry")
    creds = dict(candidate.credentials)
    by_server = {t.server: t for t in checks}
    result_of = {t.server: results.get(t.fingerprint) for t in checks}
    checked_at = max((r.checked_at for r in result_of.values() if r is not None), default=0.0)
    passed = {s for s, r in result_of.items() if r is not None and r.ok}
    failed = [(by_server[s], r) for s, r in result_of.items() if r is not None and not r.ok]
    failed.sort(key=lambda f: f[0].index)
    if len(passed) == len(checks):
        good = {s: creds[s] for s in passed}
        message = f"{_s(len(checks), 'registry', 'registries')} accepted the credentials"
        return candidate, Verdict(
            "True",
            handshake.VERIFIED,
            message,
            checked_at,
            candidate.copy.content_hash,
            tuple(sorted(good)),
            last_good=good,
        )

    if failed:
        target, result = failed[0]
        assert result is not None
        status, reason = "False", result.reason
        message = f"spec.registries[{target.index}] ({target.server}): {result.message}"
        if len(failed) > 1:
            message += f" (and {len(failed) - 1} more failing)"
    else:
        status, reason = "Unknown", CHECKING
        message = "checking the credentials against the registry"

    if last_good is None:
        if stored.content_hash and stored.content_hash == candidate.copy.content_hash:
            # The content verified before is the one asked for now (a check repeated after a
            # restart, or a registry that now refuses it): its entries are known.
            servers = by_server.keys() if stored.servers is None else stored.servers
            last_good = {s: creds[s] for s in servers if s in by_server}
        elif stored.content_hash:
            return (
                Frozen(VERIFYING, "reading the content last verified", credentials_resolved=True),
                Verdict(
                    status,
                    reason,
                    f"{message}; reading the content last verified",
                    checked_at,
                    stored.content_hash,
                    stored.servers or (),
                    load_last_good=stored.content_hash,
                ),
            )
        else:
            last_good = {}

    chosen: dict[str, Credentials] = {}
    kept: dict[str, Credentials] = {}
    old: list[int] = []  # registries whose entry last verified stands in
    left_out: list[int] = []  # registries that never passed: no entry
    for server, entry in creds.items():
        checked = by_server.get(server)
        if checked is None:
            chosen[server] = entry  # verify: false
        elif server in passed:
            chosen[server] = kept[server] = entry
        elif server in last_good:
            chosen[server] = kept[server] = last_good[server]
            old.append(checked.index)
        else:
            left_out.append(checked.index)

    def verdict(tail: str, content_hash: str, servers: tuple[str, ...]) -> Verdict:
        return Verdict(
            status, reason, f"{message}; {tail}", checked_at, content_hash, servers, "", kept
        )

    if not kept and not last_good:
        # Nothing was ever verified for this tenant: nothing is written (first-ever failure).
        why = f"{message}; nothing is distributed"
        frozen = Frozen(UNVERIFIED if failed else VERIFYING, why, credentials_resolved=True)
        tail = (
            "nothing is distributed until the credentials work"
            if failed
            else "nothing is distributed before the first check passes"
        )
        return frozen, verdict(tail, stored.content_hash, stored.servers or ())

    parts = []
    if old:
        parts.append(
            "the entry last verified stays distributed for "
            + ", ".join(f"spec.registries[{i}]" for i in old)
        )
    if left_out:
        parts.append(
            "nothing is distributed for "
            + ", ".join(f"spec.registries[{i}]" for i in left_out)
            + " until it passes"
        )
    if chosen == creds:
        copy = candidate.copy
    else:
        try:
            copy = desired_copy(candidate.spec, list(chosen.items()))
        except InvalidInput as e:
            return Frozen("CredentialsInvalid", str(e)), verdict(
                "the content could not be built", stored.content_hash, stored.servers or ()
            )
    intent = Active(candidate.spec, copy, candidate.credentials)
    return intent, verdict("; ".join(parts), copy.content_hash, tuple(sorted(kept)))
