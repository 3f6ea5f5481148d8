"""Polling with a timeout: tests wait for outcomes, never with a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], *, what: str, timeout: float = 20.0, interval: float = 0.1
) -> T:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
            last_error = None
        except Exception as e:  # the cluster may not have caught up yet
            last_error = e
        if last and last_error is None:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}; last value {last!r}"
        + (f", last error {last_error!r}" if last_error else "")
    )
