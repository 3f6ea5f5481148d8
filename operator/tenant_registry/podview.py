"""What the audit sees of Pods and the kubelet's pull-secret Events, in memory, fed by watches.

Pods are watched cluster-wide (RBAC cannot narrow a watch to the namespaces tenants select,
and those change), but only a small record (audit.PodRecord) is kept, and only for namespaces
in scope (selected by some tenant): the rest is dropped as it arrives. A namespace entering
scope is listed on its own (`merge_namespace`). Events are watched with a server-side field
selector (reason=FailedToRetrieveImagePullSecret), so only those reach the operator; the API
server deletes Events after an hour (--event-ttl), which bounds them.

The ordering rules are the view's (view.py), per (namespace, name): a record never replaces
a newer one; a delete removes only what is not newer and leaves a tombstone, so a list
older than the delete does not bring the Pod back; a list removes what it does not show and
is not newer than it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tenant_registry.audit import MISSING_SECRET_REASON, PodRecord, SecretEventRecord
from tenant_registry.view import as_version

PODS, PULL_SECRET_EVENTS = "pods", "pull-secret-events"
EVENT_SELECTOR = f"reason={MISSING_SECRET_REASON}"

Record = PodRecord | SecretEventRecord


@dataclass
class Store:
    """Records by namespace and name, kept only for namespaces `in_scope` says yes to (None:
    every namespace)."""

    scope: set[str] | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    tombstones: dict[tuple[str, str], int] = field(default_factory=dict)

    def _wanted(self, ns: str) -> bool:
        return self.scope is None or ns in self.scope

    def in_namespace(self, ns: str) -> list[Any]:
        return list(self.records.get(ns, {}).values())

    def __len__(self) -> int:
        return sum(len(t) for t in self.records.values())

    def _put(self, record: Any) -> bool:
        ns, name = record.namespace, record.name
        if not self._wanted(ns):
            return False
        rv = as_version(record.resource_version)
        held = self.records.get(ns, {}).get(name)
        if held is not None and rv >= 0 and as_version(held.resource_version) >= rv:
            return False
        tomb = self.tombstones.get((ns, name))
        if tomb is not None:
            if 0 <= rv <= tomb:
                return False
            del self.tombstones[(ns, name)]
        self.records.setdefault(ns, {})[name] = record
        return True

    def _pop(self, ns: str, name: str) -> None:
        table = self.records.get(ns)
        if table is not None:
            table.pop(name, None)
            if not table:
                del self.records[ns]

    def apply(self, event_type: str, record: Any) -> bool:
        """A watch event. True if what is held changed."""
        if event_type != "DELETED":
            return self._put(record)
        ns, name = record.namespace, record.name
        if not self._wanted(ns):
            return False
        rv = as_version(record.resource_version)
        self.tombstones[(ns, name)] = max(rv, self.tombstones.get((ns, name), -1))
        held = self.records.get(ns, {}).get(name)
        if held is None or as_version(held.resource_version) > rv >= 0:
            return False
        self._pop(ns, name)
        return True

    def merge_listed(self, records: Iterable[Any]) -> set[str]:
        """One page of a list; the namespaces where something changed."""
        return {r.namespace for r in records if self._put(r)}

    def end_list(self, rv: int, listed: set[tuple[str, str]], namespace: str = "") -> set[str]:
        """A list (of every namespace, or of `namespace`) as of `rv` is complete."""
        gone = [
            (ns, name)
            for ns, table in self.records.items()
            if not namespace or ns == namespace
            for name, r in table.items()
            if (ns, name) not in listed and (rv < 0 or as_version(r.resource_version) <= rv)
        ]
        for key in gone:
            self._pop(*key)
        for key in [
            k
            for k, at in self.tombstones.items()
            if at <= rv and (not namespace or k[0] == namespace) and k not in listed
        ]:
            del self.tombstones[key]  # the list confirms it is gone
        return {ns for ns, _ in gone}

    def set_scope(self, scope: set[str]) -> tuple[set[str], set[str]]:
        """Namespaces in scope from now on: (entered, left). What left is dropped; what
        entered must be listed (merge_namespace), as its Pods were not kept."""
        before = self.scope if self.scope is not None else set(self.records)
        entered, left = scope - before, before - scope
        self.scope = set(scope)
        for ns in left:
            self.records.pop(ns, None)
        for key in [k for k in self.tombstones if k[0] in left]:
            del self.tombstones[key]
        return entered, left

    def merge_namespace(self, ns: str, records: list[Any], rv: int) -> bool:
        """A list of one namespace that entered scope (as of `rv`)."""
        changed = bool(self.merge_listed(records))
        listed = {(r.namespace, r.name) for r in records}
        return bool(self.end_list(rv, listed, namespace=ns)) or changed
