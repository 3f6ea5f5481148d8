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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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

    __slots__ = ("data", "type")

    def __init__(self, type_: str, data: dict[str, str]) -> None:
        self.type = type_
        self.data = data

    def as_object(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}

    def __repr__(self) -> str:
        return f"<SecretData type={self.type} keys={sorted(self.data)}>"

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


def _rv(record: Any) -> int:
    try:
        return int(record.resource_version)
    except (AttributeError, ValueError):
        return -1


@dataclass
class View:
    """The operator's picture of the cluster. Read and written on the event loop only."""

    namespaces: dict[str, NamespaceInfo]
    service_accounts: dict[str, dict[str, ServiceAccountInfo]]
    copies: dict[str, dict[str, CopyInfo]]
    credentials: dict[str, SecretData]

    @classmethod
    def empty(cls) -> View:
        return cls({}, {}, {}, {})

    # Writes from our own API responses and from watches both land here; a record older than
    # the one held (by resourceVersion) is ignored so a late watch event cannot regress it.
    def _table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.service_accounts if kind == SERVICE_ACCOUNTS else self.copies

    def held(self, kind: str, namespace: str, name: str) -> Any:
        """The ServiceAccount or copy record held for that object, if any."""
        return self._table(kind).get(namespace, {}).get(name)

    def seen(self, kind: str, record: Any) -> bool:
        """Is exactly this version already held? (The watch echo of our own write.)"""
        if kind not in (SERVICE_ACCOUNTS, COPIES):
            return False
        held = self.held(kind, record.namespace, record.name)
        return held is not None and held.resource_version == record.resource_version

    def _put(self, kind: str, record: Any) -> None:
        held = self.held(kind, record.namespace, record.name)
        if held is None or _rv(record) >= _rv(held) or _rv(record) < 0:
            self._table(kind).setdefault(record.namespace, {})[record.name] = record

    def _drop(self, kind: str, namespace: str, name: str) -> None:
        self._table(kind).get(namespace, {}).pop(name, None)

    def put_service_account(self, sa: ServiceAccountInfo) -> None:
        self._put(SERVICE_ACCOUNTS, sa)

    def drop_service_account(self, namespace: str, name: str) -> None:
        self._drop(SERVICE_ACCOUNTS, namespace, name)

    def put_copy(self, c: CopyInfo) -> None:
        self._put(COPIES, c)

    def drop_copy(self, namespace: str, name: str) -> None:
        self._drop(COPIES, namespace, name)

    def replace(self, kind: str, records: list[Any]) -> None:
        """A fresh list: replaces everything of that kind (catches deletes missed meanwhile)."""
        if kind == NAMESPACES:
            self.namespaces = {r.name: r for r in records}
        elif kind in (SERVICE_ACCOUNTS, COPIES):
            table: dict[str, dict[str, Any]] = {}
            for r in records:
                table.setdefault(r.namespace, {})[r.name] = r
            if kind == SERVICE_ACCOUNTS:
                self.service_accounts = table
            else:
                self.copies = table
        elif kind == CREDENTIALS:
            self.credentials = dict(records)

    def apply(self, kind: str, event_type: str, record: Any) -> None:
        deleted = event_type == "DELETED"
        if kind == NAMESPACES:
            if deleted:
                self.namespaces.pop(record.name, None)
                self.service_accounts.pop(record.name, None)
                self.copies.pop(record.name, None)
            else:
                self.namespaces[record.name] = record
        elif kind in (SERVICE_ACCOUNTS, COPIES):
            if deleted:
                self._drop(kind, record.namespace, record.name)
            else:
                self._put(kind, record)
        elif kind == CREDENTIALS:
            name, data = record
            if deleted:
                self.credentials.pop(name, None)
            else:
                self.credentials[name] = data


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


def watch_specs(operator_namespace: str) -> list[WatchSpec]:
    def credential(obj: dict[str, Any]) -> tuple[str, SecretData]:
        return obj["metadata"]["name"], SecretData(
            obj.get("type") or "Opaque", dict(obj.get("data") or {})
        )

    return [
        WatchSpec(NAMESPACES, "namespaces", namespace_info),
        WatchSpec(SERVICE_ACCOUNTS, "serviceaccounts", service_account_info),
        WatchSpec(COPIES, "secrets", copy_record, label_selector=names.COPY_SELECTOR),
        WatchSpec(CREDENTIALS, "secrets", credential, namespace=operator_namespace),
    ]


Deliver = Callable[[str, str, Any], None]  # (kind, "SNAPSHOT"|event type, records|record)


class Watcher:
    """List, then watch from the list's version; list again on 410 or any stream failure."""

    def __init__(
        self, cluster: Cluster, spec: WatchSpec, deliver: Deliver, timeout: int = 290
    ) -> None:
        self.cluster, self.spec, self.deliver, self.timeout = cluster, spec, deliver, timeout
        self.stopped = threading.Event()
        self.last_seen = time.monotonic()  # any list, event or bookmark: for the liveness probe
        self.thread = threading.Thread(target=self._run, name=f"watch-{spec.kind}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            try:
                records, rv = self.cluster.list_objects(
                    self.spec.resource,
                    namespace=self.spec.namespace,
                    label_selector=self.spec.label_selector,
                    convert=self.spec.convert,
                )
                self.last_seen = time.monotonic()
                self.deliver(self.spec.kind, "SNAPSHOT", records)
                failures = 0
                while not self.stopped.is_set():
                    rv = self._stream(rv)
            except Expired:
                log.info("watch on %s expired; listing again", self.spec.kind)
            except (ApiError, OSError, ValueError) as e:
                failures += 1
                log.warning("watch on %s failed (%s); retrying", self.spec.kind, e)
                self.stopped.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
            except Exception:  # keep watching whatever happens; the probe reports silence
                failures += 1
                log.exception("watch on %s crashed; retrying", self.spec.kind)
                self.stopped.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _stream(self, rv: str) -> str:
        self.last_seen = time.monotonic()
        for event in self.cluster.watch(
            self.spec.resource,
            rv,
            namespace=self.spec.namespace,
            label_selector=self.spec.label_selector,
            timeout=self.timeout,
        ):
            self.last_seen = time.monotonic()
            with contextlib.suppress(KeyError, TypeError):
                rv = str(event.object["metadata"]["resourceVersion"])
            if self.stopped.is_set():
                break
            if event.type == "BOOKMARK":
                continue
            self.deliver(self.spec.kind, event.type, self.spec.convert(event.object))
        return rv
