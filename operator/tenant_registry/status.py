"""A tenant's status (conditions, counts, bounded failures) and the Events its changes earn.

Pure: the runtime gathers a `Report`, this module turns it into the status dict, tells
whether it differs from the stored one (ignoring timestamps), and which transitions to announce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenant_registry import names
from tenant_registry.verification import UNVERIFIED, VERIFYING, Verdict

SEVERITY = {
    "Forbidden": 0,
    "OwnedByOtherTenant": 1,
    "WantedByOtherTenant": 2,
    "UnmanagedSecretExists": 3,
    "EntryRemovedRepeatedly": 4,
    "CopyRewrittenRepeatedly": 5,
}


@dataclass(frozen=True)
class Failure:
    namespace: str
    reason: str
    message: str


@dataclass(frozen=True)
class Retiring:
    """Copies under a previous secretName, kept for the rename grace."""

    name: str
    namespaces: int
    delete_after: str  # the latest of their names.ANNOTATION_DELETE_AFTER


@dataclass(frozen=True)
class Report:
    generation: int
    state: str  # "active" | "frozen"
    reason: str = ""  # for frozen: InvalidSpec | CredentialsInvalid | Suspended
    message: str = ""
    credentials_resolved: bool = True
    content_hash: str = ""
    selected: int = 0
    synced: int = 0
    failures: tuple[Failure, ...] = ()
    verification: Verdict | None = None  # None: the input did not read (or suspended)
    retiring: tuple[Retiring, ...] = ()


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def build_status(report: Report, current: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The status for `report`; lastTransitionTime kept from `current` where status is unchanged."""
    gen = report.generation
    failures = sorted(report.failures, key=lambda f: (SEVERITY.get(f.reason, 9), f.namespace))
    failed = len(failures)
    if report.state == "frozen":
        ready = _condition("Ready", False, report.reason, report.message, gen)
        creds_ok = report.credentials_resolved
        creds = _condition(
            "CredentialsResolved",
            creds_ok,
            "Resolved" if creds_ok else report.reason,
            "" if creds_ok else report.message,
            gen,
        )
    else:
        creds = _condition("CredentialsResolved", True, "Resolved", "", gen)
        if failed:
            ready = _condition(
                "Ready",
                False,
                "NamespacesFailed",
                f"{failed} of {report.selected} namespaces failed",
                gen,
            )
        elif report.synced < report.selected:
            ready = _condition(
                "Ready",
                False,
                "Progressing",
                f"{report.synced} of {report.selected} namespaces synced",
                gen,
            )
        else:
            ready = _condition(
                "Ready",
                True,
                "Synced",
                f"{report.synced} of {report.selected} namespaces synced",
                gen,
            )
    if failed:
        worst = failures[0]
        degraded = _condition(
            "Degraded",
            True,
            worst.reason,
            f"{failed} namespace(s) failed; first: {worst.namespace}: {worst.message}",
            gen,
        )
    else:
        degraded = _condition("Degraded", False, "AsExpected", "", gen)

    checked = []
    verdict = report.verification
    if verdict is not None:
        checked.append(
            _condition("CredentialsValid", verdict.status == "True", verdict.reason, "", gen)
        )
        checked[0]["status"] = verdict.status
        checked[0]["message"] = verdict.message[:600]

    previous = {c.get("type"): c for c in (current or {}).get("conditions") or []}
    conditions = []
    for cond in (ready, creds, *checked, degraded):
        old = previous.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
        conditions.append(cond)
    out: dict[str, Any] = {
        "observedGeneration": gen,
        "conditions": conditions,
        "selectedNamespaces": report.selected,
        "syncedNamespaces": report.synced,
        "failedNamespaces": failed,
        "failures": [
            {"namespace": f.namespace, "reason": f.reason, "message": f.message[:300]}
            for f in failures[: names.MAX_STATUS_FAILURES]
        ],
        "contentHash": report.content_hash,
        # Bounded: one item per previous secretName still kept somewhere (usually none).
        "retiringSecrets": [
            {"name": r.name, "namespaces": r.namespaces, "deleteAfter": r.delete_after}
            for r in report.retiring[: names.MAX_STATUS_FAILURES]
        ],
        # Kept while the input does not read: the content last verified is still known.
        "verifiedContentHash": verdict.verified_hash
        if verdict is not None
        else (current or {}).get("verifiedContentHash", ""),
        "verifiedRegistries": list(verdict.verified_servers)
        if verdict is not None
        else (current or {}).get("verifiedRegistries", []),
    }
    if "credentialsCheckedAt" in (current or {}):
        # Written by earlier versions at each check; the time of the last check is the
        # metric tenant_registry_credentials_checked_timestamp_seconds now: removed.
        out["credentialsCheckedAt"] = None
    return out


def _comparable(status: dict[str, Any] | None) -> dict[str, Any]:
    # Kopf's and the audit's (auditor.py writes status.audit itself).
    # None: removed by the merge patch (as good as absent).
    s = {k: v for k, v in (status or {}).items() if k not in ("kopf", "audit") and v is not None}
    s["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []
    ]
    s.setdefault("failures", [])
    s.setdefault("retiringSecrets", [])
    return s


def differs(new: dict[str, Any], current: dict[str, Any] | None) -> bool:
    return _comparable(new) != _comparable(current)


@dataclass(frozen=True)
class Announcement:
    type: str  # Normal | Warning
    reason: str
    message: str


def announcements(new: dict[str, Any], current: dict[str, Any] | None) -> list[Announcement]:
    """Events for condition transitions only: quiet at steady state."""
    old = {c.get("type"): c for c in (current or {}).get("conditions") or []}
    out: list[Announcement] = []
    for cond in new["conditions"]:
        before = old.get(cond["type"]) or {}
        if (before.get("status"), before.get("reason")) == (cond["status"], cond["reason"]):
            continue
        t, ok = cond["type"], cond["status"] == "True"
        if t == "Ready" and ok:
            out.append(Announcement("Normal", "Synced", cond["message"]))
        elif t == "Ready" and cond["reason"] not in (
            "Progressing",
            "NamespacesFailed",
            VERIFYING,
            UNVERIFIED,  # CredentialsValid says why
        ):
            kind = "Normal" if cond["reason"] == "Suspended" else "Warning"
            out.append(Announcement(kind, cond["reason"], cond["message"]))
        elif t == "CredentialsValid" and cond["status"] == "False":
            out.append(Announcement("Warning", cond["reason"], cond["message"]))
        elif t == "CredentialsValid" and ok and before.get("status") == "False":
            out.append(Announcement("Normal", "CredentialsVerified", cond["message"]))
        elif t == "Degraded" and ok:
            out.append(Announcement("Warning", cond["reason"], cond["message"]))
        elif t == "Degraded" and before.get("status") == "True":
            out.append(Announcement("Normal", "Recovered", "no namespace is failing"))
    return out
