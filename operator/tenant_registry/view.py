"""What the cluster has, in memory, fed by list+watch: the reconciler decides from this.

Watches run in daemon threads (the official client is synchronous) and hand plain records to
the event loop, where the `View` is read and changed. Only what the operator needs is kept:
namespaces, ServiceAccounts, our own copies (server-side label selector) and the credential
Secrets of the operator's namespace; never every Secret of the cluster.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tenant_registry import dockerconfig, names
from tenant_registry.cluster import ApiError, Cluster, Expired
from tenant_registry.view_types import (
    CopyInfo,
    NamespaceInfo,
    ServiceAccountInfo,
    copy_info,
    namespace_info,
    service_account_info,
)

log = logging.getLogger(__name__)

NAMESPACES, SERVICE_ACCOUNTS, COPIES, CREDENTIALS = (
    "namespaces",
    "serviceaccounts",
    "copies",
    "credentials",
)
KINDS = (NAMESPACES, SERVICE_ACCOUNTS, COPIES, CREDENTIALS)


class SecretData:
    """A credential Secret's type and data; repr never shows the data."""

    __slots__ = ("data", "name", "namespace", "resource_version", "type")

    def __init__(
        self,
        type_: str,
        data: dict[str, str],
        *,
        name: str = "",
        namespace: str = "",
        resource_version: str = "",
    ) -> None:
        self.type = type_
        self.data = data
        self.name, self.namespace, self.resource_version = name, namespace, resource_version

    def as_object(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}

    def __repr__(self) -> str:
        return f"<SecretData {self.name} type={self.type} keys={sorted(self.data)}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretData) and (self.type, self.data) == (other.type, other.data)

    __hash__ = None  # type: ignore[assignment]


def copy_record(obj: dict[str, Any]) -> CopyInfo:
    raw = (obj.get("data") or {}).get(names.DOCKERCONFIGJSON_KEY, "")
    try:
        digest = dockerconfig.content_hash(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError):
        digest = "invalid"
    return copy_info(obj, digest)


def credential_record(obj: dict[str, Any]) -> SecretData:
    meta = obj.get("metadata") or {}
    return SecretData(
        obj.get("type") or "Opaque",
        dict(obj.get("data") or {}),
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def as_version(resource_version: str) -> int:
    """A resourceVersion as a number (-1 if unknown). Kubernetes guarantees that
    resourceVersions of objects of one resource compare as integers (KEP-5504, v1.35), and
    only those: the view never compares versions across resources."""
    try:
        return int(resource_version)
    except (TypeError, ValueError):
        return -1


def version(record: Any) -> int:
    return as_version(getattr(record, "resource_version", ""))


def key_of(kind: str, record: Any) -> tuple[str, str]:
    """(namespace, name) of a record; "" for the namespace of namespaces and credentials."""
    if kind in (NAMESPACES, CREDENTIALS):
        return "", str(record.name)
    return str(record.namespace), str(record.name)


@dataclass
class View:
    """The operator's picture of the cluster. Read and written on the event loop only.

    It is fed from three sources that race: watch events, the results of our own writes and
    reads, and lists. The rules that keep it from staying wrong, per kind (one resource):
    - a record never replaces one with a higher resourceVersion; a delete removes a record
      only if it is not newer than the deleted version;
    - the watch's horizon (the highest version it delivered, events and bookmarks) is where
      the watch has told everything: a write's result or a read at or below it is old news
      and ignored, so a result stored late never overwrites a newer event or resurrects
      something deleted meanwhile;
    - our own delete leaves a tombstone until the watch reports it, so no list or result
      older than it brings the Secret back;
    - a list replaces what it covers: records it lacks that are not newer than it go.
    A namespace's DELETED event removes only the namespace: its ServiceAccounts and copies
    have their own DELETED events (the namespace controller deletes them first), and a late
    DELETED of an old namespace must not remove what a new one of that name already has.
    """

    namespaces: dict[str, NamespaceInfo]
    service_accounts: dict[str, dict[str, ServiceAccountInfo]]
    copies: dict[str, dict[str, CopyInfo]]
    credentials: dict[str, SecretData]
    horizons: dict[str, int] = field(default_factory=dict)
    tombstones: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # Told (kind, old record or None, new record or None) on every change, e.g. for indexes.
    on_change: Callable[[str, Any, Any], None] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def empty(cls) -> View:
        return cls({}, {}, {}, {})

    # -- generic access by kind ------------------------------------------------------------
    def _flat(self, kind: str) -> dict[str, Any] | None:
        if kind == NAMESPACES:
            return self.namespaces
        if kind == CREDENTIALS:
            return self.credentials
        return None

    def _nested(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.service_accounts if kind == SERVICE_ACCOUNTS else self.copies

    def held(self, kind: str, namespace: str, name: str) -> Any:
        """The record held for that object, if any."""
        flat = self._flat(kind)
        if flat is not None:
            return flat.get(name)
        return self._nested(kind).get(namespace, {}).get(name)

    def _set(self, kind: str, record: Any) -> None:
        flat = self._flat(kind)
        if flat is not None:
            old = flat.get(record.name)
            flat[record.name] = record
        else:
            held = self._nested(kind).setdefault(record.namespace, {})
            old = held.get(record.name)
            held[record.name] = record
        if self.on_change is not None:
            self.on_change(kind, old, record)

    def _pop(self, kind: str, namespace: str, name: str) -> None:
        flat = self._flat(kind)
        if flat is not None:
            old = flat.pop(name, None)
        else:
            table = self._nested(kind)
            held = table.get(namespace)
            old = None
            if held is not None:
                old = held.pop(name, None)
                if not held:
                    del table[namespace]
        if old is not None and self.on_change is not None:
            self.on_change(kind, old, None)

    def _records(self, kind: str) -> Iterator[tuple[tuple[str, str], Any]]:
        flat = self._flat(kind)
        if flat is not None:
            return ((("", name), r) for name, r in flat.items())
        return (((ns, name), r) for ns, t in self._nested(kind).items() for name, r in t.items())

    def horizon(self, kind: str) -> int:
        return self.horizons.get(kind, -1)

    # -- the rules ---------------------------------------------------------------------------
    def _put(self, kind: str, record: Any) -> bool:
        ns, name = key_of(kind, record)
        rv = version(record)
        held = self.held(kind, ns, name)
        if rv >= 0:
            if held is not None and version(held) >= rv:
                return False  # the echo of what we hold, or older
            tomb = self.tombstones.get((kind, ns, name))
            if tomb is not None:
                if rv <= tomb:
                    return False  # a version we deleted
                del self.tombstones[(kind, ns, name)]
        self._set(kind, record)
        return True

    def _remove(self, kind: str, namespace: str, name: str, rv: int) -> bool:
        held = self.held(kind, namespace, name)
        if held is None or (rv >= 0 and version(held) > rv):
            return False  # nothing, or a newer object of that name
        self._pop(kind, namespace, name)
        return True

    def _advance(self, kind: str, rv: int) -> None:
        if rv > self.horizons.get(kind, -1):
            self.horizons[kind] = rv

    # -- from the watch --------------------------------------------------------------------
    def apply(self, kind: str, event_type: str, record: Any) -> bool:
        """A watch event. True if the view changed (False for an echo of what it holds)."""
        rv = version(record)
        self._advance(kind, rv)
        ns, name = key_of(kind, record)
        if event_type == "DELETED":
            self.tombstones.pop((kind, ns, name), None)
            return self._remove(kind, ns, name, rv)
        return self._put(kind, record)

    def bookmark(self, kind: str, rv: int) -> None:
        self._advance(kind, rv)

    # -- from our own writes and reads -------------------------------------------------------
    def absorb(self, kind: str, record: Any) -> bool:
        """A write's result or a read: kept only if newer than what the watch has told."""
        rv = version(record)
        if 0 <= rv <= self.horizon(kind):
            return False
        return self._put(kind, record)

    def absorb_deleted(self, kind: str, namespace: str, name: str, rv: int) -> None:
        """The object at version `rv` is gone (our delete, or a read that found nothing)."""
        if rv < 0:
            return
        key = (kind, namespace, name)
        self.tombstones[key] = max(rv, self.tombstones.get(key, -1))
        self._remove(kind, namespace, name, rv)

    # -- from lists --------------------------------------------------------------------------
    def merge_listed(self, kind: str, records: list[Any]) -> list[tuple[str, str]]:
        """One page of a list: newer records go in. The keys that changed."""
        return [key_of(kind, r) for r in records if self._put(kind, r)]

    def end_list(self, kind: str, rv: int, listed: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """The list (as of `rv`) is complete: what it lacks and is not newer goes."""
        changed = [
            key
            for key, record in self._records(kind)
            if key not in listed and (rv < 0 or version(record) <= rv)
        ]
        for key in changed:
            self._pop(kind, *key)
        for tomb in [t for t, at in self.tombstones.items() if t[0] == kind and at <= rv]:
            if (tomb[1], tomb[2]) not in listed:
                del self.tombstones[tomb]  # the list confirms it is gone
        self._advance(kind, rv)
        return changed


def namespace_of(kind: str, record: Any) -> str | None:
    if kind == NAMESPACES:
        return str(record.name)
    if kind in (SERVICE_ACCOUNTS, COPIES):
        return str(record.namespace)
    return None


@dataclass(frozen=True)
class WatchSpec:
    kind: str  # one of KINDS
    resource: str  # the API resource listed and watched
    convert: Callable[[dict[str, Any]], Any]
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None


def watch_specs(operator_namespace: str) -> list[WatchSpec]:
    return [
        WatchSpec(NAMESPACES, "namespaces", namespace_info),
        WatchSpec(SERVICE_ACCOUNTS, "serviceaccounts", service_account_info),
        WatchSpec(COPIES, "secrets", copy_record, label_selector=names.COPY_SELECTOR),
        WatchSpec(CREDENTIALS, "secrets", credential_record, namespace=operator_namespace),
    ]


@dataclass(frozen=True)
class ListEnd:
    """The last page of a list has been delivered."""

    resource_version: int
    listed: set[tuple[str, str]]  # the (namespace, name) keys the list held
    periodic: bool  # the periodic re-list at the watch's own horizon (differences = repairs)


# (kind, event type, record) for watch events; (kind, "BOOKMARK", version);
# (kind, "LIST_PAGE", records); (kind, "LIST_END", ListEnd).
Deliver = Callable[[str, str, Any], None]


def _backoff(failures: int) -> float:
    """Seconds before the next list after `failures` failed in a row: 0.5 s doubling, at most
    5 s (an API server back from an outage is seen within seconds), jittered so that watches
    and replicas do not come back in step."""
    return float(min(5.0, 0.25 * 2 ** min(failures, 6))) * random.uniform(0.8, 1.2)


class Watcher:
    """List, then watch from the list's version; list again on 410 or any stream failure.

    Every `relist_seconds` the watcher lists again, exactly at the version its stream has
    reached (resourceVersionMatch=Exact): what the list shows is what the view should hold at
    that point, so every difference is something the view got wrong, repaired and counted.
    Lists are paginated and delivered page by page, so no single step blocks the event loop
    for long; the stream resumes from the same version, so nothing is missed in between."""

    def __init__(
        self,
        cluster: Cluster,
        spec: WatchSpec,
        deliver: Deliver,
        timeout: int = 290,
        relist_seconds: float = 0.0,  # 0: only when the watch fails
    ) -> None:
        self.cluster, self.spec, self.deliver, self.timeout = cluster, spec, deliver, timeout
        self.relist_seconds = relist_seconds
        self.stopped = threading.Event()
        self.last_seen = time.monotonic()  # any list, event or bookmark: for the liveness probe
        self.listed_at = 0.0
        self.thread = threading.Thread(target=self._run, name=f"watch-{spec.kind}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _due(self) -> float:
        """Seconds until the next periodic re-list (infinite when there is none)."""
        if self.relist_seconds <= 0:
            return float("inf")
        return self.listed_at + self.relist_seconds - time.monotonic()

    def _run(self) -> None:
        failures = 0
        rv: str | None = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    rv = self._list(None)
                    failures = 0
                elif self._due() <= 0:
                    rv = self._list(rv)
                rv = self._stream(rv)
            except Expired:
                log.info("watch on %s expired; listing again", self.spec.kind)
                rv = None
            except (ApiError, OSError, ValueError) as e:
                failures += 1
                rv = None
                log.warning("watch on %s failed (%s); retrying", self.spec.kind, e)
                self.stopped.wait(_backoff(failures))
            except Exception:  # keep watching whatever happens; the probe reports silence
                failures += 1
                rv = None
                log.exception("watch on %s crashed; retrying", self.spec.kind)
                self.stopped.wait(_backoff(failures))

    def _list(self, at: str | None) -> str:
        """List (exactly at version `at`, or the latest), page by page into the view."""
        kind = self.spec.kind
        listed: set[tuple[str, str]] = set()
        rv = at or ""
        for records, page_version in self.cluster.list_pages(
            self.spec.resource,
            namespace=self.spec.namespace,
            label_selector=self.spec.label_selector,
            convert=self.spec.convert,
            resource_version=at,
            field_selector=self.spec.field_selector,
        ):
            rv = page_version
            self.last_seen = time.monotonic()
            listed.update(key_of(kind, r) for r in records)
            self.deliver(kind, "LIST_PAGE", records)
        self.listed_at = time.monotonic()
        try:
            at_version = int(rv)
        except ValueError:
            at_version = -1
        self.deliver(kind, "LIST_END", ListEnd(at_version, listed, periodic=at is not None))
        return rv

    def _stream(self, rv: str) -> str:
        self.last_seen = time.monotonic()
        # The server ends the stream after `timeout`: at the latest when a re-list is due.
        timeout = int(max(1, min(self.timeout, self._due())))
        for event in self.cluster.watch(
            self.spec.resource,
            rv,
            namespace=self.spec.namespace,
            label_selector=self.spec.label_selector,
            timeout=timeout,
            field_selector=self.spec.field_selector,
        ):
            self.last_seen = time.monotonic()
            with contextlib.suppress(KeyError, TypeError):
                rv = str(event.object["metadata"]["resourceVersion"])
            if self.stopped.is_set():
                break
            if event.type == "BOOKMARK":
                with contextlib.suppress(ValueError):
                    self.deliver(self.spec.kind, "BOOKMARK", int(rv))
                continue
            self.deliver(self.spec.kind, event.type, self.spec.convert(event.object))
        return rv
