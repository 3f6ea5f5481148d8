"""Which namespaces and ServiceAccounts a tenant selects."""

from __future__ import annotations

import pytest

from tenant_registry.selection import (
    label_selector_matches,
    namespace_selected,
    selects,
    why_namespace_selected,
)
from tenant_registry.spec import LabelSelector, Requirement, Selection

OPNS = "tenant-registry-system"
BY_NAME = Selection(include=("acme-*", "shared"), exclude=("acme-sandbox",))
BY_LABEL = Selection(selector=LabelSelector((("tenant", "acme"),)))
EVERYTHING = Selection(selector=LabelSelector())


@pytest.mark.parametrize(
    ("selection", "name", "labels", "expected"),
    [
        (BY_NAME, "acme-web", {}, True),
        (BY_NAME, "shared", {}, True),
        (BY_NAME, "acme-sandbox", {}, False),  # `!` wins
        (BY_NAME, "beta-web", {}, False),
        (BY_LABEL, "anything", {"tenant": "acme"}, True),
        (BY_LABEL, "anything", {"tenant": "beta"}, False),
        (
            Selection(
                include=("acme-*",),
                exclude=("acme-sandbox",),
                selector=LabelSelector((("tenant", "acme"),)),
            ),
            "acme-sandbox",
            {"tenant": "acme"},
            False,
        ),
        (EVERYTHING, "default", {}, True),
        (EVERYTHING, "kube-system", {}, False),  # system: only by exact name
        (Selection(include=("kube-*",)), "kube-public", {}, False),
        (Selection(include=("kube-public",)), "kube-public", {}, True),
        (EVERYTHING, OPNS, {}, False),
        (Selection(include=(OPNS,)), OPNS, {}, True),
    ],
)
def test_namespace_selected(
    selection: Selection, name: str, labels: dict[str, str], expected: bool
) -> None:
    assert namespace_selected(selection, name, labels, OPNS) is expected


@pytest.mark.parametrize(
    ("reqs", "labels", "expected"),
    [
        ((Requirement("tier", "In", ("a", "b")),), {"tier": "a"}, True),
        ((Requirement("tier", "In", ("a", "b")),), {"tier": "c"}, False),
        ((Requirement("tier", "In", ("a",)),), {}, False),
        ((Requirement("tier", "NotIn", ("a",)),), {}, True),
        ((Requirement("tier", "NotIn", ("a",)),), {"tier": "a"}, False),
        ((Requirement("tier", "Exists"),), {"tier": ""}, True),
        ((Requirement("tier", "Exists"),), {}, False),
        ((Requirement("tier", "DoesNotExist"),), {}, True),
        ((Requirement("tier", "DoesNotExist"),), {"tier": "x"}, False),
    ],
)
def test_match_expressions(
    reqs: tuple[Requirement, ...], labels: dict[str, str], expected: bool
) -> None:
    assert label_selector_matches(LabelSelector((), reqs), labels) is expected


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        (("*",), "anything", True),
        (("builder-*",), "builder-1", True),
        (("builder-*",), "builder", False),
        (("default",), "default", True),
        (("*", "!ci"), "ci", False),
    ],
)
def test_service_account_names(patterns: tuple[str, ...], name: str, expected: bool) -> None:
    include = tuple(p for p in patterns if not p.startswith("!"))
    exclude = tuple(p[1:] for p in patterns if p.startswith("!"))
    assert selects(Selection(include, exclude), name, {}) is expected


SELECTED_BY_BOTH = Selection(
    include=("acme-*", "shared"),
    exclude=("acme-sandbox",),
    selector=LabelSelector((("tenant", "acme"),), (Requirement("tier", "NotIn", ("dev",)),)),
)


@pytest.mark.parametrize(
    ("selection", "name", "labels", "selected", "reasons"),
    [
        (BY_NAME, "shared", {}, True, ["selected by the name 'shared'"]),
        (BY_NAME, "acme-web", {}, True, ["selected by the glob 'acme-*'"]),
        (BY_NAME, "acme-sandbox", {}, False, ["excluded by the name '!acme-sandbox'"]),
        (
            Selection(include=("*",), exclude=("acme-*",)),
            "acme-web",
            {},
            False,
            ["excluded by the glob '!acme-*'"],
        ),
        (BY_NAME, "beta-web", {}, False, ["no name or glob matches (acme-*, shared)"]),
        (
            SELECTED_BY_BOTH,
            "acme-web",
            {"tenant": "acme"},
            True,
            [
                "selected by the glob 'acme-*'",
                "selected by the label selector tenant=acme,tier notin (dev)",
            ],
        ),
        (
            SELECTED_BY_BOTH,
            "beta-web",
            {"tenant": "beta", "tier": "dev"},
            False,
            [
                "no name or glob matches (acme-*, shared)",
                "the label selector tenant=acme,tier notin (dev) does not match: "
                "tenant=acme (it has tenant=beta); tier notin (dev) (it has tier=dev)",
            ],
        ),
        (
            BY_LABEL,
            "x",
            {},
            False,
            ["the label selector tenant=acme does not match: tenant=acme (no label tenant)"],
        ),
        (EVERYTHING, "x", {}, True, ["selected by the label selector {} (everything)"]),
        (
            EVERYTHING,
            "kube-system",
            {},
            False,
            [
                f"kube-system is a system namespace (kube-* or the operator's own, {OPNS}): "
                "only an exact name selects it",
                "the label selector {} (everything) matches, but only an exact name counts here",
            ],
        ),
        (
            Selection(include=("kube-*",)),
            "kube-public",
            {},
            False,
            [
                f"kube-public is a system namespace (kube-* or the operator's own, {OPNS}): "
                "only an exact name selects it",
                "the glob 'kube-*' matches, but only an exact name counts here",
            ],
        ),
        (
            Selection(include=(OPNS,)),
            OPNS,
            {},
            True,
            [
                f"{OPNS} is a system namespace (kube-* or the operator's own, {OPNS}): "
                "only an exact name selects it",
                f"selected by the name '{OPNS}'",
            ],
        ),
    ],
)
def test_why_namespace_selected(
    selection: Selection, name: str, labels: dict[str, str], selected: bool, reasons: list[str]
) -> None:
    why = why_namespace_selected(selection, name, labels, OPNS)
    assert (why.selected, list(why.reasons)) == (selected, reasons)
    # The words never disagree with the decision the operator makes.
    assert why.selected is namespace_selected(selection, name, labels, OPNS)


@pytest.mark.parametrize("selection", [BY_NAME, BY_LABEL, EVERYTHING, SELECTED_BY_BOTH])
@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("acme-web", {}),
        ("acme-sandbox", {"tenant": "acme"}),
        ("shared", {"tier": "dev"}),
        ("kube-system", {"tenant": "acme"}),
        (OPNS, {}),
        ("other", {"tenant": "acme", "tier": "prod"}),
    ],
)
def test_why_agrees_with_the_decision(
    selection: Selection, name: str, labels: dict[str, str]
) -> None:
    assert why_namespace_selected(selection, name, labels, OPNS).selected is namespace_selected(
        selection, name, labels, OPNS
    )
