"""API server outage: kube-apiserver stops mid-onboarding and comes back on the same address;
the same operator process finishes the work within 30 s of the return, and its liveness probe
never asked for a restart meanwhile."""

from __future__ import annotations

import datetime as dt
import json
import random
import time

import pytest

from tenant_registry.localcluster.harness import OperatorProcess
from tests.cluster.tenants import registry
from tests.faults.isolated import AuditTail, IsolatedCluster
from tests.faults.state import Expected, differences
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

RECOVERY_BUDGET = 30.0  # seconds from the API server's return


def test_api_server_outage_mid_onboarding_recovers_without_a_restart(
    rng: random.Random, long_faults: bool, figures: dict[str, float]
) -> None:
    n = 200 if long_faults else 60
    outage = 60.0 if long_faults else 15.0
    tenant, secret, server = "outage", "outage-pull", "outage.example"
    universe = [f"outage-{i:03d}" for i in range(n)]
    password = f"outage-{rng.getrandbits(64):016x}"
    with IsolatedCluster("outage") as c:
        k8s = c.k8s
        c.namespaces(universe, tenant=tenant)
        k8s.credentials(tenant, username="u", password=password)
        op = c.operator()
        pid = op.pid()
        audit = AuditTail(c.cp.audit_log)
        mark = audit.mark()
        k8s.tenant(
            tenant,
            secret_name=secret,
            registries=[registry(server, tenant)],
            namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
        )
        # Mid-onboarding: after a random share of the 2N namespace writes.
        target = rng.randint(n // 5, n)
        wait_for(
            lambda: len(audit.operator_writes(mark)) >= target,
            what=f"{target} operator writes",
            interval=0.005,
        )
        down = time.monotonic()
        # It stops listening at once; its graceful shutdown can then hang: 5 s, then SIGKILL.
        c.cp.stop_apiserver(timeout=5)
        figures["writes done when the API server stopped"] = len(audit.operator_writes(mark))
        figures["of writes in a clean onboarding"] = 2 * n
        health = []
        while time.monotonic() < down + outage:
            health.append(op.probe("/livez")[0] == 200)
            time.sleep(1)
        # The worst moment to return, for a client that backs off: just after it tried and
        # failed. Wait for its next failed attempt, then start (deterministic, not lucky).
        _next_failed_watch(c, dt.datetime.now(dt.UTC), health, op)
        c.cp.start_apiserver()
        back = time.monotonic()
        figures["outage s (stop to ready again)"] = round(back - down, 1)
        # Something new right after the return must be seen too (the watches are live).
        k8s.namespace("outage-late", tenant=tenant)
        want = Expected(
            tenant,
            secret,
            server,
            password,
            selected=frozenset({*universe, "outage-late"}),
            universe=frozenset({*universe, "outage-late"}),
        )
        last: list[str] = []

        def recovered() -> bool:
            nonlocal last
            last = differences(k8s, want)
            return not last and k8s.status(tenant).get("syncedNamespaces") == n + 1

        try:
            wait_for(recovered, what="recovery", timeout=120, interval=0.25)
        except AssertionError:
            raise AssertionError(
                f"not recovered 120 s after the return: {len(last)} differences, e.g. {last[:5]}"
            ) from None
        took = round(time.monotonic() - back, 1)
        figures["recovered s after the return"] = took
        figures["probe failures during the outage"] = health.count(False)
        assert op.alive() and op.pid() == pid, "the same process recovered, without a restart"
        assert health.count(False) == 0, "liveness failed during the outage: a kubelet restarts"
        assert took <= RECOVERY_BUDGET, f"recovered {took} s after the return"


def _next_failed_watch(
    c: IsolatedCluster, after: dt.datetime, health: list[bool], op: OperatorProcess
) -> None:
    """Wait (up to 60 s) for the operator's next failed attempt to watch namespaces."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in c.operator_log().splitlines():
            if '"watch on namespaces failed' not in line:
                continue
            at = dt.datetime.fromisoformat(json.loads(line)["timestamp"])
            if at > after:
                return
        health.append(op.probe("/livez")[0] == 200)
        time.sleep(0.2)
