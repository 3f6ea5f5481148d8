"""Which namespaces and ServiceAccounts a tenant selects: names, globs, label selectors."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from tenant_registry.spec import LabelSelector, Requirement, Selection


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


@dataclass(frozen=True)
class Anchors:
    """What every namespace a selection selects has: one of these exact names, or one of
    these labels (key, value). Lets an index find a selection's namespaces (and a namespace's
    selections) without testing every pair; the full test still decides."""

    names: frozenset[str]
    labels: frozenset[tuple[str, str]]


def anchors(selection: Selection) -> Anchors | None:
    """The selection's anchors, or None when it may select a namespace that has neither (a
    glob, or a selector with no `matchLabels` entry and no `In`): then test every one."""
    if any("*" in pattern for pattern in selection.include):
        return None
    labels: frozenset[tuple[str, str]] = frozenset()
    if selection.selector is not None:
        sel = selection.selector
        if sel.match_labels:
            labels = frozenset(sel.match_labels[:1])  # each entry is necessary: one suffices
        else:
            within = [r for r in sel.match_expressions if r.operator == "In"]
            if not within:
                return None
            labels = frozenset((within[0].key, v) for v in within[0].values)
    return Anchors(frozenset(selection.include), labels)


# -- why: the same decisions, in words (for `tenant-registry explain namespace`) ----------


@dataclass(frozen=True)
class Why:
    """A selection decision and the reasons behind it, each a short phrase."""

    selected: bool
    reasons: tuple[str, ...]


def _requirement_text(req: Requirement) -> str:
    if req.operator in ("In", "NotIn"):
        return f"{req.key} {req.operator.lower()} ({','.join(req.values)})"
    return req.key if req.operator == "Exists" else f"!{req.key}"


def selector_text(selector: LabelSelector) -> str:
    """A LabelSelector as kubectl's -l syntax ("" for the empty selector)."""
    parts = [f"{k}={v}" for k, v in selector.match_labels]
    parts += [_requirement_text(r) for r in selector.match_expressions]
    return ",".join(parts)


def selector_misses(selector: LabelSelector, labels: Mapping[str, str]) -> list[str]:
    """The requirements of `selector` that `labels` do not meet, in words."""
    misses = []
    for key, value in selector.match_labels:
        if key not in labels:
            misses.append(f"{key}={value} (no label {key})")
        elif labels[key] != value:
            misses.append(f"{key}={value} (it has {key}={labels[key]})")
    for req in selector.match_expressions:
        if not label_selector_matches(LabelSelector((), (req,)), labels):
            found = labels.get(req.key)
            have = f"no label {req.key}" if found is None else f"it has {req.key}={found}"
            misses.append(f"{_requirement_text(req)} ({have})")
    return misses


def why_selected(
    selection: Selection,
    name: str,
    labels: Mapping[str, str],
    *,
    exact_only: bool = False,
    exact_only_reason: str = "",
) -> Why:
    """`selects`, with its reasons: which `!` name excludes; else every name, glob and the
    label selector that include (or why they do not)."""
    for pattern in selection.exclude:
        if pattern == name or ("*" in pattern and fnmatch.fnmatchcase(name, pattern)):
            kind = "name" if pattern == name else "glob"
            return Why(False, (f"excluded by the {kind} '!{pattern}'",))
    included: list[str] = []
    reasons: list[str] = [exact_only_reason] if exact_only and exact_only_reason else []
    if name in selection.include:
        included.append(f"selected by the name '{name}'")
    globs = [p for p in selection.include if "*" in p and fnmatch.fnmatchcase(name, p)]
    for pattern in globs:
        if exact_only:
            reasons.append(f"the glob '{pattern}' matches, but only an exact name counts here")
        else:
            included.append(f"selected by the glob '{pattern}'")
    if selection.include and not globs and name not in selection.include:
        reasons.append(f"no name or glob matches ({', '.join(selection.include)})")
    if selection.selector is not None:
        text = selector_text(selection.selector) or "{} (everything)"
        if not label_selector_matches(selection.selector, labels):
            misses = "; ".join(selector_misses(selection.selector, labels))
            reasons.append(f"the label selector {text} does not match: {misses}")
        elif exact_only:
            reasons.append(f"the label selector {text} matches, but only an exact name counts here")
        else:
            included.append(f"selected by the label selector {text}")
    if included:
        return Why(True, (*reasons, *included) if exact_only else tuple(included))
    return Why(False, tuple(reasons) or ("selects nothing",))


def why_namespace_selected(
    selection: Selection, name: str, labels: Mapping[str, str], operator_namespace: str
) -> Why:
    """`namespace_selected`, with its reasons (including the kube-*/operator-namespace rule)."""
    system = is_system_namespace(name, operator_namespace)
    rule = (
        f"{name} is a system namespace (kube-* or the operator's own, {operator_namespace}): "
        "only an exact name selects it"
    )
    return why_selected(selection, name, labels, exact_only=system, exact_only_reason=rule)
