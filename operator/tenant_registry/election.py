"""Leader election on a coordination.k8s.io/v1 Lease: two replicas, one active.

The decision is pure (`decide`): what to do given the Lease as last read, when its record was
first seen unchanged (by this process's monotonic clock, never by comparing another host's
timestamps) and who we are. `Elector` runs it in a thread against the API server: it blocks in
`acquire()` while another replica leads, then renews in the background; `leading()` turns
False on its own once renewals have failed for `renew_deadline` seconds, which is shorter than
the `lease_duration` a standby waits after the last renewal it saw, so the old leader has
stopped writing before a new one may start. When the API server comes back, the leader renews
and writes again, or learns that another replica took over and stops for good.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenant_registry.cluster import CONFLICT, EXISTS, GONE, ApiError, Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Worst case after the leader dies: lease_duration + 2 poll periods until a standby
    holds the Lease (12 s), then its start-up. The leader renews every renew_period and stops
    writing renew_deadline after its last renewal, 4 s before any standby may take over."""

    lease_duration: float = 10.0  # a standby takes over this long after the last renewal it saw
    renew_deadline: float = 6.0  # the leader stops writing when renewals failed this long
    renew_period: float = 2.0  # between the leader's renewals
    poll_period: float = 1.0  # between a standby's looks at the Lease (reads)


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration: float
    transitions: int
    resource_version: str


def record_of(obj: dict[str, Any] | None) -> LeaseRecord | None:
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=float(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion", "")),
    )


def released(record: LeaseRecord) -> bool:
    """Handed over by a leader that stopped (`Elector.release`): no holder, 1 s duration."""
    return not record.holder and record.duration <= 1


def decide(
    record: LeaseRecord | None,
    identity: str,
    unchanged_for: float,
    timing: Timing,
    *,
    seen_held: bool = False,
) -> str:
    """ "create" (no Lease), "take" (ours, released, or expired) or "wait".

    `unchanged_for`: seconds since this process first saw exactly this record (or its
    absence). `seen_held`: this process has seen the Lease held by another replica. A Lease
    that vanished, or whose holder someone cleared, may still have a leader writing until its
    next renewal: wait a whole lease duration for it, as for a holder that stopped renewing.
    Only a Lease never seen held (a fresh install) or released by its leader is free at once."""
    quiet = unchanged_for >= max(record.duration if record else 0.0, timing.lease_duration)
    if record is None:
        return "create" if not seen_held or quiet else "wait"
    if record.holder == identity or released(record) or quiet:
        return "take"
    return "wait"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    name: str, namespace: str, identity: str, timing: Timing, previous: LeaseRecord | None
) -> dict[str, Any]:
    """The Lease as the holder writes it; guarded by the previous resourceVersion."""
    transitions = 0 if previous is None else previous.transitions
    if previous is not None and previous.holder != identity:
        transitions += 1
    now = _now()
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        meta["resourceVersion"] = previous.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": int(timing.lease_duration),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        },
    }


class Elector:
    """Acquire, renew and release one Lease. `acquire()` blocks; the rest runs in a thread."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing = Timing(),
        on_lost: Callable[[], None] = lambda: None,
        on_attempt: Callable[[str], None] = lambda error: None,
    ) -> None:
        """`on_lost`: another replica holds the Lease now (called once, from the thread).
        `on_attempt(error)`: after every look at the Lease ("" when it answered).
        `on_regained`: set later; called when writing resumes after renewals had lapsed."""
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.identity, self.timing, self.on_lost = identity, timing, on_lost
        self.on_attempt = on_attempt
        self.on_regained: Callable[[], None] = lambda: None
        self.stopped = threading.Event()
        self._record: LeaseRecord | None = None
        self._acquire_time = ""
        self._renewed_at = 0.0  # monotonic time of the last successful write of the Lease
        self._thread: threading.Thread | None = None
        self.holder = ""  # who holds it, as last seen (for the log)

    def leading(self) -> bool:
        """True while our last renewal is younger than the renew deadline, until stopped."""
        return (
            not self.stopped.is_set()
            and self._renewed_at > 0
            and time.monotonic() - self._renewed_at < self.timing.renew_deadline
        )

    # -- standby -------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Block until this process holds the Lease (True) or stop() was called (False)."""
        seen: LeaseRecord | None = None
        seen_at = time.monotonic()
        seen_held = False
        announced = ""
        while not self.stopped.is_set():
            try:
                record = record_of(self.cluster.get_lease(self.namespace, self.name))
                self.on_attempt("")
                if record != seen:
                    seen, seen_at = record, time.monotonic()
                self.holder = record.holder if record else ""
                seen_held = seen_held or bool(self.holder and self.holder != self.identity)
                step = decide(
                    record,
                    self.identity,
                    time.monotonic() - seen_at,
                    self.timing,
                    seen_held=seen_held,
                )
                if step != "wait" and self._write(record):
                    log.info("leading: acquired Lease %s/%s", self.namespace, self.name)
                    return True
                if step == "wait" and announced != self.holder:
                    announced = self.holder
                    log.info(
                        "standing by: Lease %s/%s is held by %s",
                        self.namespace,
                        self.name,
                        self.holder or "nobody (waiting for it to be quiet)",
                    )
            except ApiError as e:
                self.on_attempt(str(e))
                log.warning("leader election: %s", e)
            except Exception as e:  # keep trying whatever happens; the probe reports it
                self.on_attempt(type(e).__name__)
                log.exception("leader election failed unexpectedly; retrying")
            self.stopped.wait(self.timing.poll_period)
        return False

    def _write(self, previous: LeaseRecord | None) -> bool:
        """Create or take over the Lease; False when another writer got there first, or
        when stopping (a release must never be followed by a renewal)."""
        if self.stopped.is_set():
            return False
        body = lease_body(self.name, self.namespace, self.identity, self.timing, previous)
        if previous is not None and previous.holder == self.identity and self._acquire_time:
            body["spec"]["acquireTime"] = self._acquire_time
        started = time.monotonic()
        try:
            if previous is None:
                obj = self.cluster.create_lease(self.namespace, body)
            else:
                obj = self.cluster.replace_lease(self.namespace, self.name, body)
        except ApiError as e:
            if e.kind in (CONFLICT, EXISTS, GONE):
                return False
            raise
        self._record = record_of(obj)
        self._acquire_time = body["spec"]["acquireTime"]
        self.holder = self.identity
        # Count from before the request: the API server may have stored it at any moment of it.
        self._renewed_at = started
        return True

    # -- leader --------------------------------------------------------------------------
    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def renewing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _renew_loop(self) -> None:
        """Renew until stopped. Renewals failing past the deadline only pause writing (the
        API server may be down for everyone): the Lease is renewed again as soon as it can
        be, unless another replica took it meanwhile, which ends leading for good."""
        lapsed = False
        while not self.stopped.wait(self.timing.renew_period):
            try:
                renewed = self._write(self._record)
                if not renewed and not self.stopped.is_set():
                    # Someone wrote the Lease (or deleted it): read it; it may still be ours
                    # (a stale version) or free (an admin cleared or deleted it: a standby
                    # waits a whole lease duration then, so we take it back first).
                    record = record_of(self.cluster.get_lease(self.namespace, self.name))
                    self.holder = record.holder if record else ""
                    if record is not None and record.holder not in ("", self.identity):
                        log.warning("lost the Lease to %s", self.holder)
                        break
                    renewed = self._write(record)
                self.on_attempt("")
            except Exception as e:  # ApiError, or anything else: the thread must go on
                self.on_attempt(str(e) if isinstance(e, ApiError) else type(e).__name__)
                if not isinstance(e, ApiError):
                    log.exception("renewing the Lease failed unexpectedly")
                if not lapsed and not self.leading():
                    lapsed = True
                    log.warning(
                        "writes paused: the Lease could not be renewed for %.0f s (%s)",
                        self.timing.renew_deadline,
                        e,
                    )
                continue
            if renewed and lapsed:
                lapsed = False
                log.info("writes resumed: the Lease is renewed again")
                self.on_regained()
        self._renewed_at = 0.0
        if not self.stopped.is_set():
            self.on_lost()

    def release(self) -> None:
        """Stop renewing; if we hold the Lease, hand it over at once (holder cleared)."""
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.renew_period + 4)
        if self._record is None or self._record.holder != self.identity:
            return  # never held it (the resourceVersion guard covers a Lease taken since)
        body = lease_body(self.name, self.namespace, "", self.timing, self._record)
        body["spec"]["holderIdentity"] = None
        body["spec"]["leaseDurationSeconds"] = 1
        body["spec"]["leaseTransitions"] = self._record.transitions
        try:
            self.cluster.replace_lease(self.namespace, self.name, body)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except ApiError as e:
            log.warning(
                "could not release the Lease (a standby takes over after it expires): %s", e
            )
        self._renewed_at = 0.0
