"""The probes: `/livez`, `/readyz` (and `/startupz`), answered from a thread of their own.

The HTTP thread never calls into the event loop, so a probe cannot hang: the loop publishes a
heartbeat with the runtime's own verdict every second (`Health.beat`), and the answer is
computed from plain fields (`verdict`, pure). A loop that stopped beating fails liveness
within `stall` seconds; a standby that cannot reach the API server keeps retrying and stays
live.

- live: the process makes progress: while leading, the loop beats and the runtime reports no
  silent watch and no stopped worker; while standing by, the elector keeps trying.
- ready: standing by, or leading with the view synced from the API server.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

STANDBY, LEADING, STOPPING = "standby", "leading", "stopping"


@dataclass
class Health:
    """Written by the elector and the event loop, read by the probe thread."""

    role: str = STANDBY
    beat_at: float = 0.0  # monotonic time of the loop's last heartbeat (0: no loop yet)
    problem: str = ""  # the runtime's own complaint at the last beat ("" when fine)
    synced: bool = False  # the view holds a complete list of everything
    elector_at: float = field(default_factory=time.monotonic)  # last look at the Lease
    details: dict[str, Any] = field(default_factory=dict)

    def elector_tried(self) -> None:
        self.elector_at = time.monotonic()

    def beat(self, problem: str, synced: bool, details: dict[str, Any]) -> None:
        self.problem, self.synced, self.details = problem, synced, details
        self.beat_at = time.monotonic()


def verdict(h: Health, now: float, stall: float = 15.0) -> tuple[bool, bool, str]:
    """(live, ready, why) for the state `h` at monotonic time `now`."""
    if h.role == STOPPING:
        return True, False, "stopping"
    if h.role == STANDBY:
        if now - h.elector_at > stall + 30:
            return False, False, "standby: the leader election loop stopped trying"
        return True, True, "standby: another replica leads"
    if h.beat_at == 0.0:
        return True, False, "leading: starting"
    if now - h.beat_at > stall:
        return False, False, f"leading: the event loop has not run for {now - h.beat_at:.0f} s"
    if h.problem:
        return False, False, f"leading: {h.problem}"
    if not h.synced:
        return True, False, "leading: listing the cluster"
    return True, True, "leading: view synced"


class HealthServer:
    """`/livez`, `/readyz`, `/startupz` (same as readyz) on a port, in a daemon thread."""

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
        state = health

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                live, ready, why = verdict(state, time.monotonic())
                ok = {"/livez": live, "/readyz": ready, "/startupz": ready}.get(self.path)
                if ok is None:
                    self.send_error(404)
                    return
                body = json.dumps({"ok": ok, "role": state.role, "why": why, **state.details})
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode() + b"\n")

            def log_message(self, *args: Any) -> None:  # quiet: probes come every few seconds
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probes", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
