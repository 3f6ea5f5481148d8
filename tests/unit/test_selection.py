"""Which namespaces and ServiceAccounts a tenant selects."""

from __future__ import annotations

import pytest

from tenant_registry.selection import label_selector_matches, namespace_selected, selects
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
