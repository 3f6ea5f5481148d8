"""The tenant index agrees with testing every (tenant, namespace) pair, whatever changes."""

from __future__ import annotations

import random

import pytest

from tenant_registry.index import NAME_LABEL, TenantIndex
from tenant_registry.selection import anchors, namespace_selected
from tenant_registry.spec import LabelSelector, Requirement, Selection
from tenant_registry.view import COPIES, NAMESPACES, SERVICE_ACCOUNTS, View
from tenant_registry.view_types import CopyInfo, NamespaceInfo, ServiceAccountInfo

OPNS = "tenant-registry-system"
SELECTIONS = [
    Selection(include=("a-1", "b-2")),
    Selection(include=("a-*",), exclude=("a-3",)),
    Selection(selector=LabelSelector((("team", "x"),))),
    Selection(selector=LabelSelector((("team", "x"), ("env", "prod")))),
    Selection(selector=LabelSelector((), (Requirement("team", "In", ("x", "y")),))),
    Selection(selector=LabelSelector((), (Requirement("team", "Exists"),))),
    Selection(selector=LabelSelector()),  # everything but system namespaces
    Selection(include=("kube-system", OPNS)),
    Selection(include=("b-1",), selector=LabelSelector((("env", "prod"),)), exclude=("b-*",)),
    Selection(selector=LabelSelector(((NAME_LABEL, "a-2"),))),  # by the name label
]
NAMES = ["a-1", "a-2", "a-3", "b-1", "b-2", "kube-system", OPNS]
LABELS = [{}, {"team": "x"}, {"team": "y", "env": "prod"}, {"team": "x", "env": "prod"}]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (SELECTIONS[0], ({"a-1", "b-2"}, set())),
        (SELECTIONS[1], None),  # a glob: no anchor
        (SELECTIONS[2], (set(), {("team", "x")})),
        (SELECTIONS[3], (set(), {("team", "x")})),  # one necessary label suffices
        (SELECTIONS[4], (set(), {("team", "x"), ("team", "y")})),
        (SELECTIONS[5], None),
        (SELECTIONS[6], None),
        (SELECTIONS[8], ({"b-1"}, {("env", "prod")})),
    ],
)
def test_anchors(
    selection: Selection, expected: tuple[set[str], set[tuple[str, str]]] | None
) -> None:
    found = anchors(selection)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (set(found.names), set(found.labels)) == expected


def brute(view: View, selections: dict[str, Selection]) -> dict[str, set[str]]:
    return {
        t: {
            n.name
            for n in view.namespaces.values()
            if namespace_selected(sel, n.name, n.labels, OPNS)
        }
        for t, sel in selections.items()
    }


@pytest.mark.parametrize("seed", range(30))
def test_index_agrees_with_every_pair_tested(seed: int) -> None:
    rnd = random.Random(seed)
    view = View.empty()
    index = TenantIndex(view, OPNS)
    view.on_change = index.view_changed
    selections: dict[str, Selection] = {}
    for rv in range(1, 121):
        step = rnd.random()
        if step < 0.3:
            tenant = rnd.choice("tuvw")
            sel = rnd.choice([*SELECTIONS, None])
            index.set_selection(tenant, sel)
            if sel is None:
                selections.pop(tenant, None)
            else:
                selections[tenant] = sel
        elif step < 0.8:
            name = rnd.choice(NAMES)
            labels = dict(rnd.choice(LABELS))
            if rnd.random() < 0.5:
                labels[NAME_LABEL] = name  # as the API server sets it
            view.apply(NAMESPACES, "ADDED", NamespaceInfo(name, labels, False, "", str(rv)))
        elif step < 0.9:
            name = rnd.choice(NAMES)
            view.apply(NAMESPACES, "DELETED", NamespaceInfo(name, {}, False, "", str(rv)))
        else:
            ns, tenant = rnd.choice(NAMES), rnd.choice("tuvw")
            view.apply(COPIES, "ADDED", CopyInfo(ns, "pull", str(rv), tenant, "t", "h", "h"))
            view.apply(
                SERVICE_ACCOUNTS,
                "ADDED" if rnd.random() < 0.7 else "DELETED",
                ServiceAccountInfo(ns, "default", str(rv), ours=((tenant, "pull"),)),
            )
        expected = brute(view, selections)
        for tenant in "tuvw":
            assert index.selected_by(tenant) == expected.get(tenant, set())
        for name in NAMES:
            selecting = {t for t, nss in expected.items() if name in nss}
            assert index.selecting.get(name, set()) == selecting
        for tenant in "tuvw":
            holds = {
                c.namespace
                for cs in view.copies.values()
                for c in cs.values()
                if c.tenant == tenant
            }
            holds |= {
                sa.namespace
                for sas in view.service_accounts.values()
                for sa in sas.values()
                if any(t == tenant for t, _ in sa.ours)
            }
            assert index.holdings(tenant) == holds
