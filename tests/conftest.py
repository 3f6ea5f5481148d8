"""Session fixtures: one real local control plane per test session, unique names per test;
the fault tests' seed and long-variant flag."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator

import pytest

from tenant_registry.localcluster import ControlPlane
from tests.planes import own_control_plane

CLUSTER_DIRS = ("cluster", "e2e", "bench")
LONG_FAULT_TIMEOUT = 3600  # seconds per long fault test (the short ones keep the default)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults")
    group.addoption(
        "--long-faults",
        action="store_true",
        default=bool(os.environ.get("TRO_LONG_FAULTS")),
        help="run the fault tests' long variants (also TRO_LONG_FAULTS=1)",
    )
    group.addoption(
        "--fault-seed",
        type=int,
        default=int(os.environ["TRO_FAULT_SEED"]) if os.environ.get("TRO_FAULT_SEED") else None,
        help="seed of the fault tests' random choices (also TRO_FAULT_SEED); default: new",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--fault-seed") is None:
        config.option.fault_seed = random.SystemRandom().randrange(1, 2**31)


def pytest_report_header(config: pytest.Config) -> str:
    long = " (long variants)" if config.getoption("--long-faults") else ""
    return f"fault seed: {config.getoption('--fault-seed')}{long}; reproduce with --fault-seed"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long-faults"):
        for item in items:
            if item.get_closest_marker("faults"):
                item.add_marker(pytest.mark.timeout(LONG_FAULT_TIMEOUT))
    # Tests marked `last` search what every other test left behind: they run at the end.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def fault_seed(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--fault-seed"))


@pytest.fixture(scope="session")
def long_faults(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("--long-faults"))


@pytest.fixture
def rng(request: pytest.FixtureRequest, fault_seed: int) -> random.Random:
    """This test's random choices: the session seed and the test's name fix them."""
    print(f"\n{request.node.nodeid}: fault seed {fault_seed} (--fault-seed={fault_seed})")
    return random.Random(f"{fault_seed}:{request.node.name}")


@pytest.fixture
def figures() -> Iterator[dict[str, float]]:
    """A place for a test's figures; printed at its end (`-s` shows them, the README has them)."""
    figures: dict[str, float] = {}
    started = time.monotonic()
    yield figures
    figures["test seconds"] = round(time.monotonic() - started, 1)
    print("figures: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with own_control_plane() as cp:
        yield cp


@pytest.fixture
def unique() -> str:
    """A short unique suffix for this test's namespaces and names."""
    return uuid.uuid4().hex[:6]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and "rng" in getattr(item, "fixturenames", ()):
        seed = item.config.getoption("--fault-seed")
        long = " --long-faults" if item.config.getoption("--long-faults") else ""
        report.sections.append(
            ("fault seed", f"reproduce: pytest '{item.nodeid}' --fault-seed={seed}{long}")
        )
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        cp = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
        if cp is not None:
            report.sections.append(
                ("control plane", f"component logs: {cp.logs_dir} (set TRO_KEEP_STATE=1 to keep)")
            )
