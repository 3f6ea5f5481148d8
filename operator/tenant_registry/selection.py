"""Which namespaces and ServiceAccounts a tenant selects: names, globs, label selectors."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from tenant_registry.spec import LabelSelector, Selection


def label_selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics: all of matchLabels and matchExpressions hold."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def _any_match(patterns: tuple[str, ...], name: str, *, exact_only: bool = False) -> bool:
    for pattern in patterns:
        if pattern == name:
            return True
        if not exact_only and "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def is_system_namespace(name: str, operator_namespace: str) -> bool:
    """Namespaces only an exact name may select: kube-* and the operator's own."""
    return name.startswith("kube-") or name == operator_namespace


def selects(
    selection: Selection,
    name: str,
    labels: Mapping[str, str],
    *,
    exact_only: bool = False,
) -> bool:
    """`names` OR `selector`, minus `!` exclusions. `exact_only` disables globs and selector."""
    if _any_match(selection.exclude, name):
        return False
    if _any_match(selection.include, name, exact_only=exact_only):
        return True
    return (
        not exact_only
        and selection.selector is not None
        and label_selector_matches(selection.selector, labels)
    )


def namespace_selected(
    selection: Selection, name: str, labels: Mapping[str, str], operator_namespace: str
) -> bool:
    return selects(
        selection, name, labels, exact_only=is_system_namespace(name, operator_namespace)
    )


def service_account_selected(selection: Selection, name: str, labels: Mapping[str, str]) -> bool:
    return selects(selection, name, labels)
