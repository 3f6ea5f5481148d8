"""Status from a report: conditions, counts, bounded failures, and which changes are news."""

from __future__ import annotations

from tenant_registry.status import Failure, Report, announcements, build_status, differs

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def cond(status: dict, type_: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_all_synced_is_ready() -> None:
    s = build_status(Report(2, "active", content_hash="h", selected=3, synced=3), None, T0)
    assert cond(s, "Ready")["status"] == "True" and cond(s, "Degraded")["status"] == "False"
    assert (s["selectedNamespaces"], s["syncedNamespaces"], s["failedNamespaces"]) == (3, 3, 0)
    assert s["observedGeneration"] == 2 and s["contentHash"] == "h"


def test_failures_are_bounded_and_worst_first() -> None:
    many = tuple(Failure(f"ns-{i:02}", "UnmanagedSecretExists", "m") for i in range(30))
    failures = (*many, Failure("zz", "Forbidden", "denied"))
    s = build_status(Report(1, "active", selected=31, failures=failures), None, T0)
    assert s["failedNamespaces"] == 31 and len(s["failures"]) == 20
    assert s["failures"][0]["namespace"] == "zz"
    assert cond(s, "Degraded")["reason"] == "Forbidden"


def test_frozen_names_the_reason_and_field() -> None:
    s = build_status(
        Report(1, "frozen", "InvalidSpec", "spec.secretName: bad", credentials_resolved=False),
        None,
        T0,
    )
    assert cond(s, "Ready")["reason"] == "InvalidSpec"
    assert "spec.secretName" in cond(s, "CredentialsResolved")["message"]


def test_transition_time_kept_while_status_unchanged() -> None:
    first = build_status(Report(1, "active", selected=1, synced=1), None, T0)
    again = build_status(Report(1, "active", selected=1, synced=1), first, T1)
    assert cond(again, "Ready")["lastTransitionTime"] == T0
    assert not differs(again, first)
    assert announcements(again, first) == []


def test_only_transitions_are_announced() -> None:
    progressing = build_status(Report(1, "active", selected=2, synced=1), None, T0)
    assert [a.reason for a in announcements(progressing, None)] == []
    ready = build_status(Report(1, "active", selected=2, synced=2), progressing, T1)
    assert [a.reason for a in announcements(ready, progressing)] == ["Synced"]
    broken = build_status(
        Report(1, "active", selected=2, synced=1, failures=(Failure("a", "Forbidden", "x"),)),
        ready,
        T1,
    )
    assert "Forbidden" in [a.reason for a in announcements(broken, ready)]
