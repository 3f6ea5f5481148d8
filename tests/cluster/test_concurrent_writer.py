"""Concurrent writer: while the operator onboards and cleans up, another client adds and
removes its own imagePullSecrets entries on the same ServiceAccounts, as a careful controller
does (read, change, write guarded by resourceVersion, retry on conflict). Every entry it left is
there, in its order; ours is there exactly once while wanted, and gone after."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane
from tests.cluster.tenants import Cluster, registry
from tests.faults.state import Expected, differences
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


class OtherWriter(threading.Thread):
    """Edits its own entries (`w-<k>`) at random places in random ServiceAccounts: half the
    edits by read-modify-PUT, half by JSON Patch with a `test` of resourceVersion."""

    def __init__(self, cp: ControlPlane, namespaces: list[str], edits: int, seed: int) -> None:
        super().__init__(name="other-writer", daemon=True)
        self.api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(cp.kubeconfig)))
        self.namespaces, self.edits, self.rng = namespaces, edits, random.Random(seed)
        self.mine: dict[str, list[str]] = {ns: [] for ns in namespaces}  # what it left, in order
        self.done = 0
        self.conflicts = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for k in range(self.edits):
                self._edit(self.rng.choice(self.namespaces), f"w-{k}")
                self.done += 1
                time.sleep(self.rng.uniform(0, 0.01))
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
            self.mine[ns] = [n for n in written if n.startswith("w-")]
            return
        raise AssertionError(f"{ns}: 100 conflicts in a row")


def test_another_writer_on_the_same_service_accounts_keeps_its_entries_in_order(
    k8s: Cluster, unique: str, rng: random.Random, long_faults: bool, figures: dict[str, float]
) -> None:
    edits = 1000 if long_faults else 300
    n = 20 if long_faults else 8
    tenant = f"cw-{unique}"
    secret, server = f"{tenant}-pull", f"{tenant}.example"
    universe = [f"{tenant}-{i}" for i in range(n)]
    for ns in universe:
        k8s.namespace(ns, tenant=tenant)
    for ns in universe:
        wait_for(lambda ns=ns: k8s.sa(ns), what=f"default ServiceAccount in {ns}")
    k8s.credentials(tenant, username="u", password=f"cw-password-{unique}")
    writer = OtherWriter(k8s.cp, universe, edits, rng.getrandbits(32))
    writer.start()

    def at(share: float) -> None:
        wait_for(lambda: writer.done >= edits * share or not writer.is_alive(), what="edits")

    at(0.15)
    k8s.tenant(
        tenant,
        secret_name=secret,
        registries=[registry(server, tenant)],
        namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
    )
    for ns in universe:
        wait_for(lambda ns=ns: secret in k8s.pull_secrets(ns), what=f"our entry in {ns}")
    figures["edits when every namespace was onboarded"] = writer.done
    samples = 0
    while writer.done < edits * 0.5 and writer.is_alive():
        for ns in universe:  # while both write: ours exactly once, always
            assert k8s.pull_secrets(ns).count(secret) == 1, k8s.pull_secrets(ns)
            samples += 1
    figures["samples with our entry exactly once"] = samples
    leaving = universe[: n // 2]
    for ns in leaving:
        k8s.label_namespace(ns, tenant=None)
    at(0.75)
    k8s.delete_tenant(tenant)
    writer.join(timeout=240)
    assert writer.error is None, writer.error
    assert not writer.is_alive()
    figures["edits by the other writer"] = writer.done
    figures["its conflicts (409/422), retried"] = writer.conflicts
    want = Expected(
        tenant,
        secret,
        server,
        "",
        selected=frozenset(),
        universe=frozenset(universe),
        user_entries={(ns, "default"): writer.mine[ns] for ns in universe},
    )
    last: list[str] = []

    def clean() -> bool:
        nonlocal last
        last = differences(k8s, want)
        return not last and k8s.tenant_obj(tenant) is None

    try:
        wait_for(clean, what="cleanup", timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{len(last)} differences, e.g. {last[:10]}") from None
    figures["entries the other writer left"] = sum(len(v) for v in writer.mine.values())
