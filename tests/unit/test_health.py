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
    h = Health(role=role, started_at=NOW - float(kw.pop("role_ago", 0.0)))  # type: ignore[arg-type]
    h.elector_at = NOW - float(kw.pop("elector_ago", 0.0))  # type: ignore[arg-type]
    read_ago = kw.pop("read_ago", 0.0)
    h.lease_read_at = 0.0 if read_ago is None else NOW - float(read_ago)  # type: ignore[arg-type]
    if beat_ago is not None:
        h.beat_at = NOW - beat_ago
    for k, v in kw.items():
        setattr(h, k, v)
    return h


@pytest.mark.parametrize(
    ("health", "live", "ready", "started", "why"),
    [
        (_health(STANDBY), True, True, True, "standby: another replica leads"),
        (_health(STANDBY, elector_ago=600), False, False, False, "stopped"),
        # A standby that cannot read the Lease could not take over: not ready, still live.
        (_health(STANDBY, read_ago=None, lease_error="403"), True, False, False, "403"),
        (_health(STANDBY, read_ago=45), True, False, False, "cannot read the Lease"),
        (_health(LEADING), True, False, False, "starting"),
        (_health(LEADING, role_ago=61), False, False, False, "never started"),
        (_health(LEADING, beat_ago=1, synced=False), True, False, True, "listing"),
        (_health(LEADING, beat_ago=1, synced=True), True, True, True, "synced"),
        (_health(LEADING, beat_ago=1, synced=True, paused=True), True, False, True, "paused"),
        (_health(LEADING, beat_ago=60, synced=True), False, False, True, "not run for 60 s"),
        (_health(LEADING, beat_ago=1, synced=True, problem="silent"), False, False, True, "silent"),
        (_health(STOPPING, beat_ago=1, synced=True), True, False, True, "stopping"),
    ],
)
def test_verdict(health: Health, live: bool, ready: bool, started: bool, why: str) -> None:
    v = verdict(health, NOW)
    assert (v.live, v.ready, v.started) == (live, ready, started)
    assert why in v.why
