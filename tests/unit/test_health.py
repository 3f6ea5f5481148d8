"""The liveness probe fails when a watch went silent, not only when the process is gone."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tenant_registry.reconcile import Runtime, Settings


def _runtime(last_seen: float) -> Runtime:
    rt = Runtime(cluster=SimpleNamespace(), settings=Settings())  # type: ignore[arg-type]
    rt._watchers = [SimpleNamespace(last_seen=last_seen, spec=SimpleNamespace(kind="namespaces"))]
    return rt


def test_recent_watch_activity_is_healthy() -> None:
    assert "queue" in _runtime(time.monotonic()).healthy()


def test_silent_watch_fails_the_probe() -> None:
    with pytest.raises(RuntimeError, match="silent watches: \\['namespaces'\\]"):
        _runtime(time.monotonic() - 3600).healthy()
