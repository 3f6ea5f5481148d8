"""The only module that talks to the API server.

Reads and watches return plain dicts (no client model objects: they cost memory and time at
thousands of objects). Writes are synchronous calls meant to run in the runtime's bounded
thread pool. HTTP errors become `ApiError` with one of a few kinds the rest cares about;
request bodies (which may hold secret material) never reach an exception message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import importlib.metadata
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from tenant_registry import names

log = logging.getLogger(__name__)
TIMEOUT = (5, 30)  # (connect, read) seconds for every single request
# A Lease request that hangs must not outlast the renew deadline (election.py).
LEASE_TIMEOUT = (2, 3)

GONE, CONFLICT, EXISTS, INVALID, FORBIDDEN, TERMINATING, TRANSIENT = (
    "Gone",
    "Conflict",
    "AlreadyExists",
    "Invalid",
    "Forbidden",
    "NamespaceTerminating",
    "Transient",
)


class ApiError(Exception):
    """A failed API call, classified. `kind` is one of the constants above."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        self.kind, self.status, self.message = kind, status, message
        super().__init__(f"{kind} ({status}): {message}")


_BINDING = re.compile(r" with binding '[^']*'")


def _classify(e: ApiException) -> ApiError:
    status = int(e.status or 0)
    reason, message = "", ""
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(e.body or "{}")
        reason, message = str(body.get("reason", "")), str(body.get("message", ""))
    if status == 422 and "denied request" in message:
        # "... ValidatingAdmissionPolicy 'p' with binding 'p' denied request: <rule>": the
        # binding's name (ours: the policy's) would push the rule past the 300 characters kept.
        message = _BINDING.sub("", message, count=1)
    message = message[:300]
    if status == 404:
        return ApiError(GONE, status, message)
    if status == 409:
        return ApiError(EXISTS if reason == "AlreadyExists" else CONFLICT, status, message)
    if status == 422 and "denied request" in message:
        # An admission policy said no (e.g. deploy/admission-policy.yaml): not a stale view.
        return ApiError(FORBIDDEN, status, message)
    if status == 422:
        return ApiError(INVALID, status, message)
    if status == 403:
        if "being terminated" in message:
            return ApiError(TERMINATING, status, message)
        return ApiError(FORBIDDEN, status, message)
    if status == 0 or status == 429 or status >= 500:
        return ApiError(TRANSIENT, status, message or str(e.reason))
    return ApiError(INVALID, status, message)


# A connection refused, reset or cut mid-response never reaches ApiException: urllib3 raises
# its own errors (or an OSError). Both are transient trouble, like a 503.
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def _network(e: Exception) -> ApiError:
    # The exception's class only: its text can quote a URL, never a body, but stays short.
    return ApiError(TRANSIENT, 0, f"network: {type(e).__name__}")


def _load(resp: Any) -> Any:
    return json.loads(resp.data) if resp.data else None


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]


class Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class _Unvalidated:
    """The official client's generated API methods without pydantic's per-call argument
    validation: our arguments are plain values we built, and at thousands of writes that
    validation cost more operator CPU than the rest of the request."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        method = getattr(type(self._api), name)
        raw = getattr(method, "raw_function", method)
        bound = raw.__get__(self._api)
        setattr(self, name, bound)
        return bound


class Cluster:
    """A connection to one API server with the official client."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client
        self.core: Any = _Unvalidated(kubernetes.client.CoreV1Api(api_client))
        self.custom: Any = _Unvalidated(kubernetes.client.CustomObjectsApi(api_client))
        self.coordination: Any = _Unvalidated(kubernetes.client.CoordinationV1Api(api_client))
        # Leader election: while this says False, every write is refused here, before it is
        # sent (a replica that lost its Lease must not write while it shuts down).
        self.may_write: Callable[[], bool] = lambda: True
        self.apps: Any = _Unvalidated(kubernetes.client.AppsV1Api(api_client))

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, pool_size: int = 32, identity: str = ""
    ) -> Cluster:
        config = kubernetes.client.Configuration()
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        if kubeconfig:  # an explicit kubeconfig wins, also inside a Pod (e.g. a CI runner's)
            kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
        else:
            try:
                kubernetes.config.load_incluster_config(client_configuration=config)
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=config)
        config.connection_pool_maxsize = pool_size
        # No transparent re-sends: urllib3 would repeat a PUT or DELETE after a read timeout,
        # past the leader-election fence and the Lease timeout. Every caller here retries.
        config.retries = False
        client = kubernetes.client.ApiClient(config)
        # Audit logs then tell which replica wrote what (all replicas share one identity).
        client.user_agent = f"{names.COMPONENT}/{version()}" + (
            f" ({identity})" if identity else ""
        )
        return cls(client)

    @classmethod
    def for_user(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        """A read-only connection for the CLI's explain and plan: the user's kubeconfig (the
        flag, else $KUBECONFIG, else ~/.kube/config, as kubectl resolves it), never written
        back (no token refresh persisted), and every write refused before it is sent."""
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=kubeconfig,
            context=context,
            client_configuration=config,
            persist_config=False,
        )
        client = kubernetes.client.ApiClient(config)
        client.user_agent = f"tenant-registry-cli/{version()}"
        cluster = cls(client)
        cluster.may_write = lambda: False
        return cluster

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()

    # -- list and watch (plain dicts) ----------------------------------------------------
    def _lister(self, kind: str, namespace: str | None) -> Any:
        if kind == "namespaces":
            return self.core.list_namespace
        if kind == "serviceaccounts":
            return self.core.list_service_account_for_all_namespaces
        if kind == "secrets" and namespace:
            return lambda **kw: self.core.list_namespaced_secret(namespace, **kw)
        if kind == "secrets":
            return self.core.list_secret_for_all_namespaces
        if kind == "pods" and namespace:
            return lambda **kw: self.core.list_namespaced_pod(namespace, **kw)
        if kind == "pods":
            return self.core.list_pod_for_all_namespaces
        if kind == "events" and namespace:
            return lambda **kw: self.core.list_namespaced_event(namespace, **kw)
        if kind == "events":
            return self.core.list_event_for_all_namespaces
        if kind == names.PLURAL:
            return lambda **kw: self.custom.list_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, **kw
            )
        raise ValueError(kind)

    def list_pages(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        chunk: int = 500,
        convert: Callable[[dict[str, Any]], Any] | None = None,
        resource_version: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[tuple[list[Any], str]]:
        """The objects of a kind page by page, each with the list's resourceVersion. With
        `convert`, each page is turned into small records as it arrives, so the raw pages of a
        large cluster never sit in memory together. With `resource_version`, the list is of
        exactly that version (Expired if it was compacted away)."""
        fn = self._lister(kind, namespace)
        token = None
        while True:
            kw: dict[str, Any] = {
                "limit": chunk,
                "_preload_content": False,
                "_request_timeout": (10, 120),
            }
            if label_selector:
                kw["label_selector"] = label_selector
            if field_selector:
                kw["field_selector"] = field_selector
            if token:
                kw["_continue"] = token  # carries the version of the first page
            elif resource_version:
                kw["resource_version"] = resource_version
                kw["resource_version_match"] = "Exact"
            try:
                page = _load(fn(**kw))
            except ApiException as e:
                if e.status == 410:
                    raise Expired from None
                raise _classify(e) from None
            except NETWORK_ERRORS as e:
                raise _network(e) from None
            raw = page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            yield (
                list(map(convert, raw)) if convert else raw,
                str(page["metadata"]["resourceVersion"]),
            )
            if not token:
                return

    def list_objects(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        chunk: int = 500,
        convert: Callable[[dict[str, Any]], Any] | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Any], str]:
        """All objects of a kind (paginated), and the list's resourceVersion."""
        items: list[Any] = []
        rv = ""
        for page, page_version in self.list_pages(
            kind,
            namespace=namespace,
            label_selector=label_selector,
            chunk=chunk,
            convert=convert,
            field_selector=field_selector,
        ):
            items.extend(page)
            rv = page_version
        return items, rv

    def watch(
        self,
        kind: str,
        resource_version: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout: int = 290,
        field_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        """Events after `resource_version` until the server ends the stream."""
        fn = self._lister(kind, namespace)
        kw: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
            "_request_timeout": (10, timeout + 30),
        }
        if label_selector:
            kw["label_selector"] = label_selector
        if field_selector:
            kw["field_selector"] = field_selector
        try:
            resp = fn(**kw)
        except ApiException as e:
            if e.status == 410:
                raise Expired from None
            raise _classify(e) from None
        except NETWORK_ERRORS as e:
            raise _network(e) from None
        try:
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    if (event.get("object") or {}).get("code") == 410:
                        raise Expired
                    raise ApiError(TRANSIENT, 0, str((event.get("object") or {}).get("message")))
                yield WatchEvent(event["type"], event["object"])
        except NETWORK_ERRORS as e:  # the stream was cut
            raise _network(e) from None
        finally:
            resp.close()
            resp.release_conn()

    def _call_api(
        self,
        method: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        timeout: tuple[float, float] = TIMEOUT,
        **kw: Any,
    ) -> dict[str, Any] | None:
        """One request: the decoded JSON body, None for 404 when `missing_ok`, else ApiError."""
        try:
            resp = method(*args, _preload_content=False, _request_timeout=timeout, **kw)
            body = _load(resp)
        except ApiException as e:
            err = _classify(e)
            if missing_ok and err.kind == GONE:
                return None
            raise err from None
        except NETWORK_ERRORS as e:
            raise _network(e) from None
        return dict(body) if body is not None else None

    def _object(self, method: Callable[..., Any], *args: Any, **kw: Any) -> dict[str, Any]:
        """A write whose answer is the object written."""
        self._check_fence()
        body = self._call_api(method, *args, **kw)
        if body is None:
            raise ApiError(TRANSIENT, 0, "empty response")
        return body

    def _check_fence(self) -> None:
        if not self.may_write():
            raise ApiError(TRANSIENT, 0, "not the leader: writes are stopped")

    # -- reads ---------------------------------------------------------------------------
    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call_api(self.core.read_namespaced_secret, name, namespace, missing_ok=True)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A CA bundle for a registry's TLS (verifier.py), in the operator's namespace."""
        return self._call_api(
            self.core.read_namespaced_config_map, name, namespace, missing_ok=True
        )

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call_api(
            self.core.read_namespaced_service_account, name, namespace, missing_ok=True
        )

    # -- reads for the CLI (explain, plan) -------------------------------------------------
    def get_namespace(self, name: str) -> dict[str, Any] | None:
        return self._call_api(self.core.read_namespace, name, missing_ok=True)

    def list_service_accounts(self, namespace: str) -> list[dict[str, Any]]:
        body = self._call_api(self.core.list_namespaced_service_account, namespace)
        return list((body or {}).get("items") or [])

    def list_secrets_named(self, name: str) -> list[dict[str, Any]]:
        """Every Secret of that name, in any namespace (one request, a field selector)."""
        body = self._call_api(
            self.core.list_secret_for_all_namespaces, field_selector=f"metadata.name={name}"
        )
        return list((body or {}).get("items") or [])

    # -- writes --------------------------------------------------------------------------
    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(self.core.create_namespaced_secret, namespace, body)

    def merge_patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return self._object(
            self.core.patch_namespaced_secret,
            name,
            namespace,
            patch,
            _content_type="application/merge-patch+json",
        )

    def delete_secret(self, namespace: str, name: str, resource_version: str | None) -> None:
        """Delete, guarded by resourceVersion; already gone counts as done."""
        pre = kubernetes.client.V1Preconditions(resource_version=resource_version)
        self._check_fence()
        self._call_api(
            self.core.delete_namespaced_secret,
            name,
            namespace,
            body=kubernetes.client.V1DeleteOptions(preconditions=pre),
            missing_ok=True,
        )

    def delete_pod(self, namespace: str, name: str, uid: str, resource_version: str) -> None:
        """Delete exactly the Pod judged (uid and resourceVersion preconditions: a Pod that
        changed meanwhile is not deleted); already gone counts as done."""
        pre = kubernetes.client.V1Preconditions(uid=uid, resource_version=resource_version)
        self._check_fence()
        self._call_api(
            self.core.delete_namespaced_pod,
            name,
            namespace,
            body=kubernetes.client.V1DeleteOptions(preconditions=pre),
            missing_ok=True,
        )

    def json_patch_service_account(
        self, namespace: str, name: str, patch: list[dict[str, Any]]
    ) -> dict[str, Any]:
        # imagePullSecrets is an atomic list: only a JSON Patch adds or removes one entry.
        return self._object(
            self.core.patch_namespaced_service_account,
            name,
            namespace,
            patch,
            _content_type="application/json-patch+json",
        )

    def patch_tenant_status(self, name: str, status: dict[str, Any]) -> None:
        self._check_fence()
        self._call_api(
            self.custom.patch_cluster_custom_object_status,
            names.GROUP,
            names.VERSION,
            names.PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
            missing_ok=True,
        )

    def post_event(
        self,
        namespace: str,
        involved: dict[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
    ) -> None:
        """A core/v1 Event; best effort (an Event is a report, not state)."""
        now = dt.datetime.now(dt.UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved.get('name', 'x')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "type": type_,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": names.COMPONENT},
            "reportingComponent": names.COMPONENT,
            "reportingInstance": names.COMPONENT,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        try:
            self._check_fence()
            self._call_api(self.core.create_namespaced_event, namespace, body)
        except ApiError as e:
            log.warning("could not post Event %s in %s: %s", reason, namespace, e)

    # -- leader election (not fenced: the Lease is how a replica gets to write at all) ---
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call_api(
            self.coordination.read_namespaced_lease,
            name,
            namespace,
            missing_ok=True,
            timeout=LEASE_TIMEOUT,
        )

    def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = self._call_api(
            self.coordination.create_namespaced_lease, namespace, body, timeout=LEASE_TIMEOUT
        )
        assert obj is not None
        return obj

    def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT, guarded by the body's resourceVersion: 409 if another replica wrote first."""
        obj = self._call_api(
            self.coordination.replace_namespaced_lease, name, namespace, body, timeout=LEASE_TIMEOUT
        )
        assert obj is not None
        return obj

    # -- uninstall (uninstall.py, run with the admin's credentials) ----------------------
    def get_tenant(self, name: str) -> dict[str, Any] | None:
        return self._call_api(
            self.custom.get_cluster_custom_object,
            names.GROUP,
            names.VERSION,
            names.PLURAL,
            name,
            missing_ok=True,
        )

    def json_patch_tenant(self, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        # finalizers is a list too: one JSON Patch removes our item by index, guarded.
        return self._object(
            self.custom.patch_cluster_custom_object,
            names.GROUP,
            names.VERSION,
            names.PLURAL,
            name,
            patch,
            _content_type="application/json-patch+json",
        )

    def get_lease_at_server_time(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any] | None, dt.datetime | None]:
        """The Lease (None if there is none) and the API server's clock when it answered (its
        Date header; None without one): a Lease's renewTime compares with the cluster's time,
        not with the clock of the admin's machine."""
        try:
            resp = self.coordination.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
            body = _load(resp)
            date = resp.headers.get("Date")
        except ApiException as e:
            err = _classify(e)
            if err.kind == GONE:
                return None, None
            raise err from None
        except NETWORK_ERRORS as e:
            raise _network(e) from None
        server_time = None
        with contextlib.suppress(TypeError, ValueError):
            server_time = email.utils.parsedate_to_datetime(date) if date else None
        return (dict(body) if body is not None else None), server_time

    def list_deployments(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        body = self._call_api(
            self.apps.list_namespaced_deployment, namespace, label_selector=label_selector
        )
        return list((body or {}).get("items") or [])


def version() -> str:
    try:
        return importlib.metadata.version("tenant-registry-operator")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
