"""Concurrent writer: while the operator onboards and cleans up, another client adds and
removes its own imagePullSecrets entries on the same ServiceAccounts, as a careful controller
does (read, change, write guarded by resourceVersion, retry on conflict). Every entry it left is
there, in its order; ours is there exactly once while wanted, and gone after."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.faults.state import Expected, differences
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


class OtherWriter(threading.Thread):
    """Edits its own entries (`<prefix><k>`) at random places in random ServiceAccounts: half
    the edits by read-modify-PUT, half by JSON Patch with a `test` of resourceVersion."""

    def __init__(
        self, cp: ControlPlane, namespaces: list[str], edits: int, seed: int, prefix: str
    ) -> None:
        super().__init__(name=f"other-writer-{prefix}", daemon=True)
        self.prefix = prefix
        self.api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(cp.kubeconfig)))
        self.namespaces, self.edits, self.rng = namespaces, edits, random.Random(seed)
        self.mine: dict[str, list[str]] = {ns: [] for ns in namespaces}  # what it left, in order
        self.done = 0
        self.conflicts = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for k in range(self.edits):
                self._edit(self.rng.choice(self.namespaces), f"{self.prefix}{k}")
                self.done += 1
        except BaseException as e:
            self.error = e

    def _edit(self, ns: str, new: str) -> None:
        remove = self.mine[ns] and self.rng.random() < 0.45
        victim = self.rng.choice(self.mine[ns]) if remove else ""
        use_put = self.rng.random() < 0.5
        for _ in range(100):
            sa = pykube.ServiceAccount.objects(self.api, namespace=ns).get(name="default")
            pulls: list[dict[str, Any]] = list(sa.obj.get("imagePullSecrets") or [])
            names = [p.get("name") for p in pulls]
            if remove:
                if victim not in names:
                    raise AssertionError(f"{ns}: the other writer's {victim} vanished: {names}")
                at = names.index(victim)
                after = pulls[:at] + pulls[at + 1 :]
                patch: list[dict[str, Any]] = [{"op": "remove", "path": f"/imagePullSecrets/{at}"}]
            else:
                at = self.rng.randint(0, len(pulls))
                after = [*pulls[:at], {"name": new}, *pulls[at:]]
                patch = (
                    [{"op": "add", "path": f"/imagePullSecrets/{at}", "value": {"name": new}}]
                    if "imagePullSecrets" in sa.obj
                    else [{"op": "add", "path": "/imagePullSecrets", "value": [{"name": new}]}]
                )
            rv = sa.obj["metadata"]["resourceVersion"]
            if use_put:
                sa.obj["imagePullSecrets"] = after
                resp = self.api.put(
                    url=f"serviceaccounts/{sa.name}", namespace=ns, data=json.dumps(sa.obj)
                )
            else:
                guard = {"op": "test", "path": "/metadata/resourceVersion", "value": rv}
                resp = self.api.patch(
                    url=f"serviceaccounts/{sa.name}",
                    namespace=ns,
                    data=json.dumps([guard, *patch]),
                    headers={"Content-Type": "application/json-patch+json"},
                )
            if resp.status_code in (409, 422):
                self.conflicts += 1
                continue
            resp.raise_for_status()
            written = [p.get("name") for p in resp.json().get("imagePullSecrets") or []]
            self.mine[ns] = [n for n in written if n.startswith(self.prefix)]
            return
        raise AssertionError(f"{ns}: 100 conflicts in a row")


def _operator_conflicts(operator: RunningOperator) -> float:
    """tenant_registry_conflicts_total{resource="serviceaccounts"}: stale-view retries."""
    for line in operator.process.metrics().splitlines():
        if line.startswith('tenant_registry_conflicts_total{resource="serviceaccounts"}'):
            return float(line.split()[-1])
    return 0.0


def test_another_writer_on_the_same_service_accounts_keeps_its_entries_in_order(
    k8s: Cluster,
    operator: RunningOperator,
    unique: str,
    rng: random.Random,
    long_faults: bool,
    figures: dict[str, float],
) -> None:
    edits = 1000 if long_faults else 300
    n = 20 if long_faults else 6
    tenant = f"cw-{unique}"
    secret, server = f"{tenant}-pull", f"{tenant}.example"
    universe = [f"{tenant}-{i}" for i in range(n)]
    for ns in universe:
        k8s.namespace(ns, tenant=tenant)
    for ns in universe:
        wait_for(lambda ns=ns: k8s.sa(ns), what=f"default ServiceAccount in {ns}")
    k8s.credentials(tenant, username="u", password=f"cw-password-{unique}")
    # Two writers (their own entries: a-<k>, b-<k>), as fast as the API answers, so the
    # ServiceAccounts change under every write of the operator's.
    writers = [
        OtherWriter(k8s.cp, universe, edits // 2, rng.getrandbits(32), prefix)
        for prefix in ("a-", "b-")
    ]
    conflicts_before = _operator_conflicts(operator)
    for w in writers:
        w.start()

    def done() -> int:
        return sum(w.done for w in writers)

    def at(share: float) -> None:
        wait_for(
            lambda: done() >= edits * share or not any(w.is_alive() for w in writers),
            what=f"{share:.0%} of the edits",
            timeout=120,
        )

    at(0.15)
    k8s.tenant(
        tenant,
        secret_name=secret,
        registries=[registry(server, tenant)],
        namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
    )
    for ns in universe:
        wait_for(lambda ns=ns: secret in k8s.pull_secrets(ns), what=f"our entry in {ns}")
    figures["edits when every namespace was onboarded"] = done()
    samples = 0
    while done() < edits * 0.5 and any(w.is_alive() for w in writers):
        for ns in universe:  # while all write: ours exactly once, always
            assert k8s.pull_secrets(ns).count(secret) == 1, k8s.pull_secrets(ns)
            samples += 1
    figures["samples with our entry exactly once"] = samples
    for ns in universe[: n // 2]:  # these namespaces leave the tenant
        k8s.label_namespace(ns, tenant=None)
    at(0.75)
    k8s.delete_tenant(tenant)  # and then the tenant goes
    for w in writers:
        w.join(timeout=240)
        assert w.error is None, w.error
        assert not w.is_alive()
    figures["edits by the other writers"] = done()
    figures["their conflicts (409/422), retried"] = sum(w.conflicts for w in writers)
    figures["the operator's stale-view retries on ServiceAccounts"] = (
        _operator_conflicts(operator) - conflicts_before
    )

    def left(ns: str) -> list[str]:
        return [p for p in k8s.pull_secrets(ns) if p != secret]

    last: list[str] = []

    def clean() -> bool:
        nonlocal last
        want = Expected(
            tenant,
            secret,
            server,
            "",
            selected=frozenset(),
            universe=frozenset(universe),
            user_entries={(ns, "default"): left(ns) for ns in universe},
        )
        last = differences(k8s, want)
        return not last and k8s.tenant_obj(tenant) is None

    try:
        wait_for(clean, what="cleanup", timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{len(last)} differences, e.g. {last[:10]}") from None
    for w in writers:  # each writer's entries, exactly as it left them, in its order
        for ns in universe:
            theirs = [p for p in k8s.pull_secrets(ns) if p.startswith(w.prefix)]
            assert theirs == w.mine[ns], (ns, w.prefix, theirs, w.mine[ns])
    assert all(len(left(ns)) == sum(len(w.mine[ns]) for w in writers) for ns in universe)
    figures["entries the other writers left"] = sum(
        len(w.mine[ns]) for w in writers for ns in universe
    )
