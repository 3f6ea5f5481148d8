"""Flaky network: the operator reaches the API server only through a proxy that adds latency,
resets connections (before a request is forwarded, and after a write was applied but before
its answer arrived) and answers some requests itself with 429, 500 or 503. The operator
converges, backs off, and never writes twice what once was enough (counted in the audit log,
which records only what reached the API server)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter

import pytest

from tests.cluster.tenants import registry
from tests.faults.isolated import AuditTail, IsolatedCluster, per_namespace
from tests.faults.proxy import FaultProxy, Faults
from tests.faults.state import Expected, converge

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

FLAKY = Faults(
    latency=(0.0, 0.15),
    status={429: 0.04, 500: 0.03, 503: 0.03},
    reset_before=0.03,
    reset_after=0.03,
)


def test_flaky_network_converges_backs_off_and_writes_once(
    rng: random.Random, long_faults: bool, figures: dict[str, float]
) -> None:
    n = 150 if long_faults else 30
    tenant, secret, server = "flaky", "flaky-pull", "flaky.example"
    universe = [f"flaky-{i:03d}" for i in range(n)]
    token = f"{rng.getrandbits(64):016x}"
    with IsolatedCluster("flaky") as c:
        k8s = c.k8s
        c.namespaces(universe, tenant=tenant)
        k8s.credentials(tenant, username="u", password=f"first-{token}")
        audit = AuditTail(c.cp.audit_log)
        with FaultProxy(c.cp.port, c.cp.ca_path.parent, FLAKY, rng.getrandbits(32)) as proxy:
            c.operator(server=proxy.url)
            want = Expected(
                tenant,
                secret,
                server,
                f"first-{token}",
                selected=frozenset(universe),
                universe=frozenset(universe),
            )
            mark = audit.mark()
            started = time.monotonic()
            k8s.tenant(
                tenant,
                secret_name=secret,
                registries=[registry(server, tenant)],
                namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
            )
            converge(k8s, want, "onboarding through the flaky proxy")
            figures["onboarding: converged s"] = round(time.monotonic() - started, 1)
            time.sleep(2)  # late retries would show now
            onboarding = per_namespace(audit.operator_writes(mark), set(universe))
            twice = {
                ns: w
                for ns, w in onboarding.items()
                if sorted(w) != sorted(["create secrets", "patch serviceaccounts"])
            }
            figures["onboarding: namespaces written other than once + once"] = len(twice)

            mark = audit.mark()
            started = time.monotonic()
            k8s.credentials(tenant, username="u", password=f"second-{token}")
            want = dataclasses.replace(want, password=f"second-{token}")
            converge(k8s, want, "rotation through the flaky proxy")
            figures["rotation: converged s"] = round(time.monotonic() - started, 1)
            time.sleep(2)
            rotation = per_namespace(audit.operator_writes(mark), set(universe))
            twice_rot = {ns: w for ns, w in rotation.items() if w != ["patch secrets"]}
            figures["rotation: namespaces written other than once"] = len(twice_rot)
            actions = proxy.summary()
            per_object = Counter(
                (s.method, s.path)
                for s in proxy.seen
                if s.method in ("POST", "PATCH", "PUT", "DELETE") and "/namespaces/flaky-" in s.path
            )
        log = c.operator_log()
        for k, v in sorted(actions.items()):
            figures[f"proxy {k}"] = v
        figures["most attempts at one write target"] = max(per_object.values())
        assert sum(v for k, v in actions.items() if k != "forwarded") > 0, "faults happened"
        assert not twice, f"onboarding wrote more than once: {dict(list(twice.items())[:5])}"
        assert not twice_rot, f"rotation wrote more than once: {dict(list(twice_rot.items())[:5])}"
        assert len(rotation) == n
        # A dropped connection is transient trouble, not an internal error: no stack trace,
        # no InternalError in status or Events, no 30 s penalty.
        assert "failed unexpectedly" not in log, _around(log, "failed unexpectedly")
        assert '"reason": "InternalError"' not in log
        # Backing off: no write target was tried more than a handful of times.
        assert max(per_object.values()) <= 8, per_object.most_common(3)


def _around(text: str, needle: str) -> str:
    i = text.find(needle)
    return text[max(0, i - 200) : i + 800]
