"""The image tests' measurements, printed at the end of the session (size, build, start,
SIGTERM), so a CI log shows them."""

from __future__ import annotations

import pytest

from tests.planes import measured_for, summarize_measured


@pytest.fixture(scope="session")
def measured(request: pytest.FixtureRequest) -> dict[str, str]:
    return measured_for(request.config, "image")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    summarize_measured(terminalreporter, config, "image")
