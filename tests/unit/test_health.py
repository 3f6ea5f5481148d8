"""The probes: liveness fails fast (never hangs) when the loop stalls or the runtime complains;
readiness means standing by, or leading with the view synced."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tenant_registry.health import LEADING, STANDBY, STOPPING, Health, verdict
from tenant_registry.reconcile import Runtime, Settings


def _runtime(last_seen: float, settings: Settings | None = None) -> Runtime:
    rt = Runtime(cluster=SimpleNamespace(), settings=settings or Settings())  # type: ignore[arg-type]
    rt._watchers = [SimpleNamespace(last_seen=last_seen, spec=SimpleNamespace(kind="namespaces"))]
    return rt


def test_recent_watch_activity_is_healthy() -> None:
    assert "queue" in _runtime(time.monotonic()).healthy()


def test_silent_watch_fails_the_probe() -> None:
    with pytest.raises(RuntimeError, match="silent watches: \\['namespaces'\\]"):
        _runtime(time.monotonic() - 3600).healthy()


@pytest.mark.parametrize(("silent_for", "live"), [(10.0, True), (30.0, False)])
def test_the_silence_limit_is_the_settings_one(silent_for: float, live: bool) -> None:
    """`--watch-silence 20` (as the node test's operator Pod runs): 30 s of silence fails."""
    rt = _runtime(time.monotonic() - silent_for, Settings(watch_silence_seconds=20.0))
    if live:
        assert "queue" in rt.healthy()
    else:
        with pytest.raises(RuntimeError, match="silent watches"):
            rt.healthy()


NOW = 1000.0


def _health(role: str, beat_ago: float | None = None, **kw: object) -> Health:
    h = Health(role=role, elector_at=NOW - kw.pop("elector_ago", 0.0))  # type: ignore[arg-type]
    if beat_ago is not None:
        h.beat_at = NOW - beat_ago
    for k, v in kw.items():
        setattr(h, k, v)
    return h


@pytest.mark.parametrize(
    ("health", "live", "ready", "why"),
    [
        (_health(STANDBY), True, True, "standby"),
        (_health(STANDBY, elector_ago=600), False, False, "stopped trying"),
        (_health(LEADING), True, False, "starting"),
        (_health(LEADING, beat_ago=1, synced=False), True, False, "listing"),
        (_health(LEADING, beat_ago=1, synced=True), True, True, "synced"),
        (_health(LEADING, beat_ago=60, synced=True), False, False, "has not run for 60 s"),
        (
            _health(LEADING, beat_ago=1, synced=True, problem="silent watches"),
            False,
            False,
            "silent",
        ),
        (_health(STOPPING, beat_ago=1, synced=True), True, False, "stopping"),
    ],
)
def test_verdict(health: Health, live: bool, ready: bool, why: str) -> None:
    got_live, got_ready, got_why = verdict(health, NOW)
    assert (got_live, got_ready) == (live, ready)
    assert why in got_why
