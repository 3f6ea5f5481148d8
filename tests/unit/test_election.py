"""Leader election decisions: who may take the Lease, and when."""

from __future__ import annotations

import pytest

from tenant_registry.election import LeaseRecord, Timing, decide, lease_body, record_of

T = Timing(lease_duration=10)


def _rec(holder: str, duration: float = 10, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration, transitions, "42")


@pytest.mark.parametrize(
    ("record", "unchanged_for", "seen_held", "step"),
    [
        (None, 0, False, "create"),  # a fresh install
        (None, 0, True, "wait"),  # deleted under a leader that may still write
        (None, 10, True, "create"),
        (_rec("", duration=1), 0, True, "take"),  # released by a leader that stopped
        (_rec(""), 0, True, "wait"),  # holder cleared by someone: wait a lease duration
        (_rec(""), 10, True, "take"),
        (_rec("me"), 0, False, "take"),  # ours: a restarted container of the same Pod
        (_rec("other"), 0, True, "wait"),
        (_rec("other"), 9.9, True, "wait"),
        (_rec("other"), 10, True, "take"),  # not renewed for a whole lease duration
        (_rec("other", duration=30), 20, True, "wait"),  # the holder asked for longer
        (_rec("other", duration=30), 30, True, "take"),
        (_rec("other", duration=1), 5, True, "wait"),  # never shorter than ours
    ],
)
def test_decide(
    record: LeaseRecord | None, unchanged_for: float, seen_held: bool, step: str
) -> None:
    assert decide(record, "me", unchanged_for, T, seen_held=seen_held) == step


def test_identities_differ_without_a_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hostNetwork replicas without $POD_NAME share host name and PID 1."""
    from tenant_registry.cli import identity

    monkeypatch.delenv("POD_NAME", raising=False)
    assert identity() != identity()
    monkeypatch.setenv("POD_NAME", "op-7d9f-abc")
    assert identity() == "op-7d9f-abc"


def test_taking_over_counts_a_transition_and_is_guarded() -> None:
    body = lease_body("l", "ns", "me", T, _rec("other", transitions=3))
    assert body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["leaseTransitions"] == 4
    assert body["metadata"]["resourceVersion"] == "42"
    renewed = lease_body("l", "ns", "me", T, _rec("me", transitions=4))
    assert renewed["spec"]["leaseTransitions"] == 4


def test_record_of_reads_the_api_object() -> None:
    obj = {
        "metadata": {"resourceVersion": "7"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10, "leaseTransitions": 2},
    }
    assert record_of(obj) == LeaseRecord("a", 10.0, 2, "7")
    assert record_of({"metadata": {}, "spec": {}}) == LeaseRecord("", 0.0, 0, "")
    assert record_of(None) is None
