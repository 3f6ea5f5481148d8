"""Which tenants concern a namespace, and which namespaces concern a tenant.

Two indexes, so that work grows with what changed, not with tenants x namespaces:
- selection: the namespaces each Active tenant selects, kept per tenant spec change and per
  namespace change. A selection's anchors (selection.anchors: exact names, one label) find its
  candidates without testing every namespace, and a namespace's candidates without testing
  every tenant; `namespace_selected` still decides each candidate.
- holdings: the namespaces where the view shows a copy or a ServiceAccount entry of a tenant,
  kept as the view's records change (View.on_change).
Reads the view; no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tenant_registry.selection import Anchors, anchors, namespace_selected
from tenant_registry.spec import Selection
from tenant_registry.view import COPIES, NAMESPACES, SERVICE_ACCOUNTS, View
from tenant_registry.view_types import CopyInfo, NamespaceInfo, ServiceAccountInfo

# Every namespace carries its own name in this label (Kubernetes 1.21+): indexed by name (the
# view itself), not as 10,000 one-member sets.
NAME_LABEL = "kubernetes.io/metadata.name"


def _tenants_of(kind: str, record: Any) -> tuple[str, ...]:
    """The tenants a copy or ServiceAccount record holds something of."""
    if record is None:
        return ()
    if kind == COPIES:
        assert isinstance(record, CopyInfo)
        return (record.tenant,) if record.tenant else ()
    assert isinstance(record, ServiceAccountInfo)
    return tuple({t for t, _ in (*record.ours, *record.contested)})


class TenantIndex:
    def __init__(self, view: View, operator_namespace: str) -> None:
        self.view = view
        self.own = operator_namespace
        self._selections: dict[str, Selection] = {}
        self._anchors: dict[str, Anchors | None] = {}
        self.selected: dict[str, set[str]] = {}  # tenant -> namespaces it selects
        self.selecting: dict[str, set[str]] = {}  # namespace -> tenants selecting it
        self._by_name: dict[str, set[str]] = defaultdict(set)  # anchor name -> tenants
        self._by_label: dict[tuple[str, str], set[str]] = defaultdict(set)  # label -> tenants
        self._unanchored: set[str] = set()  # tenants whose selection has no anchors
        self._ns_by_label: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.held: dict[str, dict[str, int]] = {}  # tenant -> namespace -> records holding
        for kind, table in ((COPIES, view.copies), (SERVICE_ACCOUNTS, view.service_accounts)):
            for records in table.values():
                for record in records.values():
                    self.view_changed(kind, None, record)
        for ns in view.namespaces.values():
            self.view_changed(NAMESPACES, None, ns)

    # -- tenants ---------------------------------------------------------------------------
    def set_selection(self, tenant: str, selection: Selection | None) -> None:
        """The tenant now selects by `selection` (None: it selects nothing, e.g. not Active)."""
        if tenant in self._selections and self._selections[tenant] == selection:
            return
        if tenant not in self._selections and selection is None:
            return
        old = self._anchors.pop(tenant, None) if tenant in self._selections else None
        if tenant in self._selections:
            del self._selections[tenant]
            self._forget_anchors(tenant, old)
            for ns in self.selected.pop(tenant, set()):
                self._unselect(tenant, ns)
        if selection is None:
            return
        self._selections[tenant] = selection
        found = anchors(selection)
        self._anchors[tenant] = found
        if found is None:
            self._unanchored.add(tenant)
            candidates: set[str] = set(self.view.namespaces)
        else:
            for name in found.names:
                self._by_name[name].add(tenant)
            for label in found.labels:
                self._by_label[label].add(tenant)
            candidates = {n for n in found.names if n in self.view.namespaces}
            for label in found.labels:
                if label[0] == NAME_LABEL:
                    candidates |= {label[1]} & self.view.namespaces.keys()
                else:
                    candidates |= self._ns_by_label.get(label, set())
        mine = self.selected[tenant] = set()
        for name in candidates:
            info = self.view.namespaces[name]
            if namespace_selected(selection, name, info.labels, self.own):
                mine.add(name)
                self.selecting.setdefault(name, set()).add(tenant)

    def _forget_anchors(self, tenant: str, found: Anchors | None) -> None:
        if found is None:
            self._unanchored.discard(tenant)
            return
        for name in found.names:
            self._by_name[name].discard(tenant)
            if not self._by_name[name]:
                del self._by_name[name]
        for label in found.labels:
            self._by_label[label].discard(tenant)
            if not self._by_label[label]:
                del self._by_label[label]

    def _unselect(self, tenant: str, ns: str) -> None:
        tenants = self.selecting.get(ns)
        if tenants is not None:
            tenants.discard(tenant)
            if not tenants:
                del self.selecting[ns]

    # -- the view's records ----------------------------------------------------------------
    def view_changed(self, kind: str, old: Any, new: Any) -> None:
        if kind == NAMESPACES:
            self._namespace_changed(old, new)
        elif kind in (COPIES, SERVICE_ACCOUNTS):
            ns = (new or old).namespace
            for tenant in _tenants_of(kind, old):
                held = self.held.get(tenant, {})
                held[ns] = held.get(ns, 0) - 1
                if held[ns] <= 0:
                    del held[ns]
                if not held:
                    self.held.pop(tenant, None)
            for tenant in _tenants_of(kind, new):
                held = self.held.setdefault(tenant, {})
                held[ns] = held.get(ns, 0) + 1

    def _namespace_changed(self, old: NamespaceInfo | None, new: NamespaceInfo | None) -> None:
        name = (new or old).name  # type: ignore[union-attr]
        before = set(old.labels.items()) if old is not None else set()
        after = set(new.labels.items()) if new is not None else set()
        for label in before - after:
            names = self._ns_by_label.get(label)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._ns_by_label[label]
        for label in after - before:
            if label[0] != NAME_LABEL:
                self._ns_by_label[label].add(name)
        if old is not None and new is not None and before == after:
            return  # selection depends on the name and labels only
        now: set[str] = set()
        if new is not None:
            candidates = set(self._unanchored) | self._by_name.get(name, set())
            for label in after:
                candidates |= self._by_label.get(label, set())
            now = {
                t
                for t in candidates
                if namespace_selected(self._selections[t], name, new.labels, self.own)
            }
        was = self.selecting.get(name, set())
        for tenant in was - now:
            self.selected[tenant].discard(name)
        for tenant in now - was:
            self.selected[tenant].add(name)
        if now:
            self.selecting[name] = now
        else:
            self.selecting.pop(name, None)

    # -- questions -------------------------------------------------------------------------
    def selected_by(self, tenant: str) -> set[str]:
        return self.selected.get(tenant, set())

    def holdings(self, tenant: str) -> set[str]:
        return set(self.held.get(tenant, {}))

    def tenants_in(self, ns: str) -> set[str]:
        """The tenants selecting `ns` or holding something there."""
        found = set(self.selecting.get(ns, ()))
        for copy in self.view.copies.get(ns, {}).values():
            found.update(_tenants_of(COPIES, copy))
        for sa in self.view.service_accounts.get(ns, {}).values():
            found.update(_tenants_of(SERVICE_ACCOUNTS, sa))
        return found
