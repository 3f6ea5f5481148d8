"""Session fixtures: one real local control plane per test session, unique names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tenant_registry.localcluster import ControlPlane

CLUSTER_DIRS = ("cluster", "e2e", "bench")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        if os.environ.get("TRO_KEEP_STATE"):
            print(f"\ncontrol plane state kept in {cp.dir}")
        else:
            cp.cleanup()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for this test's namespaces and names."""
    return uuid.uuid4().hex[:6]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        cp = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
        if cp is not None:
            report.sections.append(
                ("control plane", f"component logs: {cp.logs_dir} (set TRO_KEEP_STATE=1 to keep)")
            )
