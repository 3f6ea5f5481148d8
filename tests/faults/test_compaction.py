"""Compaction: etcd's history is compacted every second and the API server serves watches from
etcd (no watch cache), so a watch resumed from a resourceVersion a few seconds old gets 410
Gone. The proxy ends every watch stream cleanly after a few seconds (as the API server's own
timeout does, only sooner), so the operator resumes often. While the cluster changes under it,
nothing may be missed."""

from __future__ import annotations

import random
import time

import pytest

from tests.cluster.tenants import registry
from tests.faults.isolated import IsolatedCluster
from tests.faults.proxy import FaultProxy, Faults
from tests.faults.state import Expected, differences
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

COMPACTING = ("--watch-cache=false", "--etcd-compaction-interval=1s")


def test_watches_expiring_under_compaction_miss_nothing(
    rng: random.Random, long_faults: bool, figures: dict[str, float]
) -> None:
    churn_seconds = 120.0 if long_faults else 20.0
    tenant, secret, server = "cmp", "cmp-pull", "cmp.example"
    token = f"{rng.getrandbits(64):016x}"
    with IsolatedCluster("compaction", apiserver_args=COMPACTING) as c:
        k8s = c.k8s
        labelled = {f"cmp-{i:03d}" for i in range(10)}
        c.namespaces(sorted(labelled), tenant=tenant)
        plain = {f"cmp-{i:03d}" for i in range(10, 15)}
        c.namespaces(sorted(plain))
        password = f"cmp-0-{token}"
        k8s.credentials(tenant, username="u", password=password)
        faults = Faults(watch_lifetime=(1.5, 4.0))
        with FaultProxy(c.cp.port, c.cp.ca_path.parent, faults, rng.getrandbits(32)) as proxy:
            c.operator(server=proxy.url)
            k8s.tenant(
                tenant,
                secret_name=secret,
                registries=[registry(server, tenant)],
                namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
            )
            made = len(labelled) + len(plain)
            actions: dict[str, int] = {}
            end = time.monotonic() + churn_seconds
            while time.monotonic() < end:
                action = rng.choice(
                    ["create", "create", "label", "unlabel", "drift", "drift", "rotate", "delete"]
                )
                if action == "create":
                    ns = f"cmp-{made:03d}"
                    made += 1
                    if rng.random() < 0.7:
                        k8s.namespace(ns, tenant=tenant)
                        labelled.add(ns)
                    else:
                        k8s.namespace(ns)
                        plain.add(ns)
                elif action == "label" and plain:
                    ns = rng.choice(sorted(plain))
                    k8s.label_namespace(ns, tenant=tenant)
                    plain.discard(ns)
                    labelled.add(ns)
                elif action == "unlabel" and labelled:
                    ns = rng.choice(sorted(labelled))
                    k8s.label_namespace(ns, tenant=None)
                    labelled.discard(ns)
                    plain.add(ns)
                elif action == "drift" and labelled:
                    ns = rng.choice(sorted(labelled))
                    k8s.cp.kubectl("delete", "secret", secret, "-n", ns, "--ignore-not-found")
                elif action == "rotate":
                    password = f"cmp-{made}-{token}"
                    k8s.credentials(tenant, username="u", password=password)
                elif action == "delete" and labelled | plain:
                    ns = rng.choice(sorted(labelled | plain))
                    k8s.cp.kubectl("delete", "namespace", ns, "--wait=false")
                    labelled.discard(ns)
                    plain.discard(ns)
                actions[action] = actions.get(action, 0) + 1
                # Now and then a quiet spell: even the busy watches then resume from a
                # version that compaction has removed.
                time.sleep(rng.uniform(2, 5) if rng.random() < 0.1 else rng.uniform(0, 0.4))
            churned = time.monotonic()
            want = Expected(
                tenant,
                secret,
                server,
                password,
                selected=frozenset(labelled),
                universe=frozenset(labelled | plain),
            )
            last: list[str] = []

            def converged() -> bool:
                nonlocal last
                last = differences(k8s, want)
                return not last

            try:
                wait_for(converged, what="convergence", timeout=30, interval=0.5)
            except AssertionError:
                raise AssertionError(
                    f"missed after compaction: {len(last)} differences, e.g. {last[:10]}"
                ) from None
            figures["converged s after the churn"] = round(time.monotonic() - churned, 1)
            figures["watch streams ended by the proxy"] = proxy.summary().get("watch-ended", 0)
        log = c.operator_log()
        expired = log.count("expired; listing again")
        figures["operator watches that got 410 Gone"] = expired
        figures["kinds that got 410"] = len(
            {
                k
                for k in ("namespaces", "serviceaccounts", "copies", "credentials")
                if f"watch on {k} expired" in log
            }
        )
        figures["cluster changes"] = sum(actions.values())
        print(f"changes: {actions}")
        assert expired >= 3, "the fault happened: watches resumed from compacted versions"
        assert "Traceback" not in log
