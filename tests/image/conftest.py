"""The image tests' measurements, printed at the end of the session (size, build, start,
SIGTERM), so a CI log shows them."""

from __future__ import annotations

import pytest

MEASURED = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def measured(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.config.stash.setdefault(MEASURED, {})


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    found = config.stash.get(MEASURED, {})
    if found:
        terminalreporter.write_line("image: " + "; ".join(f"{k} {v}" for k, v in found.items()))
