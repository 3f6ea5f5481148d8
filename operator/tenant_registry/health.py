"""The probes: `/livez`, `/readyz` (and `/startupz`), answered from a thread of their own.

The HTTP thread never calls into the event loop, so a probe cannot hang: the loop publishes a
heartbeat with the runtime's own verdict every second (`Health.beat`), and the answer is
computed from plain fields (`verdict`, pure). A loop that stopped beating fails liveness
within `stall` seconds; a standby that cannot reach the API server keeps retrying and stays
live.

- started (the startup probe; liveness counts only after it): standing by with the Lease read,
  or leading with the runtime beating. A first leader's lists may take long: the startup
  probe's budget, not liveness, bounds that.
- live: the process makes progress: while leading, the loop beats (or the runtime starts within
  a minute of taking the Lease) and the runtime reports no silent watch and no stopped worker;
  while standing by, the elector keeps trying.
- ready: standing by with the Lease read within 30 s (able to take over), or leading with the
  view synced and writes not paused.
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
    paused: bool = False  # leading, but the Lease is not renewed: writes are refused
    started_at: float = field(default_factory=time.monotonic)  # of this role
    elector_at: float = field(default_factory=time.monotonic)  # last look at the Lease
    lease_read_at: float = 0.0  # last successful look at the Lease (0: none yet)
    lease_error: str = ""  # why the last look failed
    details: dict[str, Any] = field(default_factory=dict)

    def become(self, role: str) -> None:
        self.role, self.started_at = role, time.monotonic()

    def elector_tried(self, error: str = "") -> None:
        self.elector_at = time.monotonic()
        self.lease_error = error
        if not error:
            self.lease_read_at = self.elector_at

    def beat(
        self, problem: str, synced: bool, details: dict[str, Any], *, paused: bool = False
    ) -> None:
        self.problem, self.synced, self.details, self.paused = problem, synced, details, paused
        self.beat_at = time.monotonic()


@dataclass(frozen=True)
class Verdict:
    live: bool
    ready: bool
    started: bool
    why: str


def verdict(
    h: Health, now: float, stall: float = 15.0, lease_stale: float = 30.0, grace: float = 60.0
) -> Verdict:
    """What the probes answer for the state `h` at monotonic time `now`.

    `stall`: a loop silent this long fails liveness. `lease_stale`: a standby that has not read
    the Lease for this long is not ready (it could not take over). `grace`: how long a replica
    that became leader may take to start its runtime (its first heartbeat)."""
    if h.role == STOPPING:
        return Verdict(True, False, True, "stopping")
    if h.role == STANDBY:
        if now - h.elector_at > stall + 30:
            return Verdict(False, False, False, "standby: the leader election loop stopped")
        if not h.lease_read_at or now - h.lease_read_at > lease_stale:
            why = f"standby: cannot read the Lease: {h.lease_error or 'no answer yet'}"
            # Live: a restart does not help an API server or RBAC that refuses the read.
            return Verdict(True, False, False, why)
        return Verdict(True, True, True, "standby: another replica leads")
    if h.beat_at == 0.0:
        if now - h.started_at > grace:
            return Verdict(False, False, False, "leading: the runtime never started")
        return Verdict(True, False, False, "leading: starting")
    if now - h.beat_at > stall:
        return Verdict(
            False, False, True, f"leading: the event loop has not run for {now - h.beat_at:.0f} s"
        )
    if h.problem:
        return Verdict(False, False, True, f"leading: {h.problem}")
    if h.paused:
        return Verdict(True, False, True, "leading: writes paused, the Lease is not renewed")
    if not h.synced:
        return Verdict(True, False, True, "leading: listing the cluster")
    return Verdict(True, True, True, "leading: view synced")


class HealthServer:
    """`/livez`, `/readyz`, `/startupz` on a port, in a daemon thread."""

    def __init__(self, health: Health, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
        state = health

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                v = verdict(state, time.monotonic())
                why = v.why
                ok = {"/livez": v.live, "/readyz": v.ready, "/startupz": v.started}.get(self.path)
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
