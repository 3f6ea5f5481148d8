"""A control plane of a test's own (a session's, a module's), and the figures a test
directory prints at the end of the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tenant_registry.localcluster import ControlPlane


@contextmanager
def own_control_plane(what: str = "control plane", **options: Any) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager, started; stopped afterwards and their
    state removed (kept, and its place printed, with TRO_KEEP_STATE=1)."""
    cp = ControlPlane(**options)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        if os.environ.get("TRO_KEEP_STATE"):
            print(f"\n{what} state kept in {cp.dir}")
        else:
            cp.cleanup()


MEASURED = pytest.StashKey[dict[str, dict[str, str]]]()


def measured_for(config: pytest.Config, label: str) -> dict[str, str]:
    """The figures of one directory's tests (`label`: image, node), kept for the summary."""
    return config.stash.setdefault(MEASURED, {}).setdefault(label, {})


def summarize_measured(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config, label: str
) -> None:
    found = config.stash.get(MEASURED, {}).get(label)
    if found:
        terminalreporter.write_line(f"{label}: " + "; ".join(f"{k} {v}" for k, v in found.items()))
