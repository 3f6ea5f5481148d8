"""`tenant-registry uninstall` plans with the operator's own planner (a Gone intent) and says
each write in the admin's words."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tenant_registry.desired import Gone, PairInput, plan_pair
from tenant_registry.uninstall import _as_if_done, describe, lease_in_use
from tenant_registry.view_types import CopyInfo, NamespaceInfo, ServiceAccountInfo
from tests.unit.samples import OPNS

NS = NamespaceInfo("acme-web")
COPY = CopyInfo("acme-web", "acme-pull", "5", "acme", "kubernetes.io/dockerconfigjson", "", "")


def _sa(pulls: tuple[str, ...], ours=(), contested=()) -> ServiceAccountInfo:  # type: ignore[no-untyped-def]
    return ServiceAccountInfo(
        "acme-web",
        "default",
        "10",
        pull_secrets=pulls,
        ours=tuple(ours),
        contested=tuple(contested),
        has_annotations=True,
        has_pull_secrets=bool(pulls),
    )


@pytest.mark.parametrize(
    ("copies", "sa", "lines"),
    [
        ((COPY,), None, ["delete secret acme-web/acme-pull"]),
        (
            (),
            _sa(("user-first", "acme-pull", "user-last"), ours=[("acme", "acme-pull")]),
            [
                "patch serviceaccount acme-web/default: remove imagePullSecrets entry acme-pull;"
                " remove annotation registry.tenancy.dev/added-pull-secrets"
            ],
        ),
        (
            # Another tenant's entry on the same ServiceAccount stays, and stays recorded.
            (),
            _sa(("acme-pull", "beta-pull"), ours=[("acme", "acme-pull"), ("beta", "beta-pull")]),
            [
                "patch serviceaccount acme-web/default: remove imagePullSecrets entry acme-pull;"
                " set annotation registry.tenancy.dev/added-pull-secrets=beta/beta-pull"
            ],
        ),
        (
            # Given up after a fight: the entry is gone already, both records go.
            (),
            _sa(("user",), ours=[("acme", "acme-pull")], contested=[("acme", "acme-pull")]),
            [
                "patch serviceaccount acme-web/default:"
                " remove annotation registry.tenancy.dev/added-pull-secrets;"
                " remove annotation registry.tenancy.dev/contested-pull-secrets"
            ],
        ),
        ((), _sa(("user",)), []),  # nothing of ours: no write
    ],
)
def test_the_gone_plan_in_words(copies, sa, lines) -> None:  # type: ignore[no-untyped-def]
    accounts = {sa.name: sa} if sa else {}
    plan = plan_pair(Gone(), PairInput("acme", NS, copies, tuple(accounts.values())), OPNS)
    assert [describe(op, accounts, "") for op in plan.operations] == lines


def test_a_dry_run_plans_the_second_tenant_on_what_the_first_write_leaves() -> None:
    shared = _sa(
        ("user-first", "acme-pull", "beta-pull"),
        ours=[("acme", "acme-pull"), ("beta", "beta-pull")],
    )
    accounts = {"default": shared}
    lines = []
    for tenant in ("acme", "beta"):
        pair = PairInput(tenant, NS, (), tuple(accounts.values()))
        for op in plan_pair(Gone(), pair, OPNS).operations:
            lines.append(describe(op, accounts, ""))
            _as_if_done(op, {}, accounts)
    assert lines == [
        "patch serviceaccount acme-web/default: remove imagePullSecrets entry acme-pull;"
        " set annotation registry.tenancy.dev/added-pull-secrets=beta/beta-pull",
        "patch serviceaccount acme-web/default: remove imagePullSecrets entry beta-pull;"
        " remove annotation registry.tenancy.dev/added-pull-secrets",
    ]
    assert accounts["default"].pull_secrets == ("user-first",)
    assert accounts["default"].ours == ()


NOW = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)


def _lease(holder: str | None, renewed: float | None, duration: int = 10) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    if renewed is not None:
        when = NOW - dt.timedelta(seconds=renewed)
        spec["renewTime"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": "tenant-registry-operator"}, "spec": spec}


@pytest.mark.parametrize(
    ("lease", "says"),
    [
        (None, ""),  # never elected, or deleted
        (_lease(None, 1), ""),  # released on a graceful stop
        (_lease("", 1), ""),
        (_lease("pod-a", 2), "is held by pod-a, renewed 2 s ago, within its 10 s"),
        (_lease("pod-a", 10.5), "is held by pod-a, renewed 10 s ago, within its 10 s"),
        (_lease("pod-a", 11), ""),  # expired: its holder stopped renewing (SIGKILL, node lost)
        (_lease("pod-a", 3600), ""),
        (_lease("pod-a", 25, duration=30), "is held by pod-a, renewed 25 s ago, within its 30 s"),
        (_lease("pod-a", -3), "is held by pod-a, renewed 0 s ago, within its 10 s"),  # skew
        (_lease("pod-a", None), "is held by pod-a (no renewTime)"),
    ],
)
def test_a_lease_is_in_use_while_held_and_renewed_within_its_duration(
    lease: dict[str, Any] | None, says: str
) -> None:
    assert lease_in_use(lease, NOW) == says


def test_an_adopted_copy_says_so_when_deleted() -> None:
    op = plan_pair(Gone(), PairInput("acme", NS, (COPY,), ()), OPNS).operations[0]
    assert describe(op, {}, "would ", frozenset({("acme-web", "acme-pull")})) == (
        "would delete secret acme-web/acme-pull"
        " (adopted: its owner's Secret before; Pods that name it lose it)"
    )
    assert describe(op, {}, "") == "delete secret acme-web/acme-pull"
