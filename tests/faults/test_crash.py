"""Crash anywhere: SIGKILL the operator at random moments while it onboards, rotates and
cleans up, restart it each time; the end state is a clean run's."""

from __future__ import annotations

import dataclasses
import random
import time

import pykube
import pytest

from tests.cluster.tenants import registry
from tests.faults.isolated import AuditTail, IsolatedCluster
from tests.faults.state import Expected, converge
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def _crash_loop(
    c: IsolatedCluster, audit: AuditTail, rng: random.Random, kills: int, budget: int
) -> list[str]:
    """Kill the running operator `kills` times and restart it after each. A moment is either
    after a random number of its writes (so mid-work), or a random instant of a start-up
    (while it lists, before it is healthy). Returns what each kill hit."""
    hits = []
    for _ in range(kills):
        op = c.operators[-1]
        if rng.random() < 0.7:
            target = rng.randint(1, max(1, budget // kills))
            mark = audit.mark()
            deadline = time.monotonic() + 3
            while len(audit.operator_writes(mark)) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            hits.append(f"after {len(audit.operator_writes(mark))} writes")
            op.kill()
            c.operator()
        else:
            op.kill()
            starting = c.operator(start=False)
            starting.start(wait=False)
            delay = rng.uniform(0.2, 2.5)
            time.sleep(delay)
            hits.append(f"{delay:.1f} s into a start-up")
            starting.kill()
            c.operator()
    return hits


def test_sigkill_at_random_moments_leaves_a_clean_runs_state(
    rng: random.Random, long_faults: bool, figures: dict[str, float]
) -> None:
    n = 200 if long_faults else 40
    kills = 20 if long_faults else 3
    tenant, secret, server = "crash", "crash-pull", "crash.example"
    token = f"{rng.getrandbits(64):016x}"
    universe = [f"crash-{i:03d}" for i in range(n)]
    with IsolatedCluster("crash") as c:
        k8s = c.k8s
        c.namespaces(universe, tenant=tenant)
        # The user's own entries, which must survive in their order: on every third default
        # ServiceAccount, and on a `builder` ServiceAccount in every fourth namespace.
        user: dict[tuple[str, str], list[str]] = {}
        for i, ns in enumerate(universe):
            if i % 3 == 0:
                sa = pykube.ServiceAccount.objects(k8s.api, namespace=ns).get(name="default")
                sa.patch({"imagePullSecrets": [{"name": "users-b"}, {"name": "users-a"}]})
                user[(ns, "default")] = ["users-b", "users-a"]
            if i % 4 == 0:
                k8s.service_account(ns, "builder", ["zeta", "alpha", "mid"])
                user[(ns, "builder")] = ["zeta", "alpha", "mid"]
        builders = sum(1 for _, sa in user if sa == "builder")
        k8s.credentials(tenant, username="u", password=f"first-{token}")
        audit = AuditTail(c.cp.audit_log)
        c.operator()
        mark = audit.mark()
        k8s.tenant(
            tenant,
            secret_name=secret,
            registries=[registry(server, tenant)],
            namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
            serviceAccounts={"names": ["default", "builder"]},
        )
        want = Expected(
            tenant,
            secret,
            server,
            f"first-{token}",
            selected=frozenset(universe),
            universe=frozenset(universe),
            service_accounts=frozenset({"default", "builder"}),
            user_entries=user,
        )

        hits = _crash_loop(c, audit, rng, kills, budget=2 * n + builders)
        figures["onboarding: converged s after the last restart"] = converge(
            k8s, want, "onboarded after kills"
        )
        onboard_writes = [
            w for w in audit.operator_writes(mark) if w["objectRef"].get("namespace") in universe
        ]
        figures["onboarding: namespace writes (clean run: 2N+builders)"] = len(onboard_writes)
        figures["onboarding: clean run's namespace writes"] = 2 * n + builders

        mark = audit.mark()
        k8s.credentials(tenant, username="u", password=f"second-{token}")
        want = dataclasses.replace(want, password=f"second-{token}")
        hits += _crash_loop(c, audit, rng, kills, budget=n)
        figures["rotation: converged s after the last restart"] = converge(
            k8s, want, "rotated after kills"
        )
        figures["rotation: namespace writes (clean run: N)"] = len(
            [w for w in audit.operator_writes(mark) if w["objectRef"].get("namespace") in universe]
        )

        # Cleanup: a third of the namespaces leave, then the tenant goes.
        leaving = universe[::3]
        for ns in leaving:
            k8s.label_namespace(ns, tenant=None)
        k8s.delete_tenant(tenant)
        hits += _crash_loop(c, audit, rng, kills, budget=2 * n + builders)
        want = dataclasses.replace(want, selected=frozenset())
        figures["cleanup: converged s after the last restart"] = converge(
            k8s, want, "cleaned up after kills"
        )
        wait_for(lambda: k8s.tenant_obj(tenant) is None, what="finalizer released", timeout=60)
        figures["kills"] = len(hits)
        print("kills hit: " + "; ".join(hits))
        assert "Traceback" not in c.operator_log(), "no unexpected exception in any run"
