"""Races made explicit: a runtime in this process, against the real API server and as the
operator's ServiceAccount, with the bad interleaving forced at the one call where it happens.

The TenantRegistry exists in the cluster but suspended, so the session's operator process leaves
it alone; the runtime here is handed the same object with `suspend: false`. It writes no status
(its status loop is idle), and after the test the session's operator cleans up as usual.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pykube
import pytest

from tenant_registry import auditor
from tenant_registry import cluster as api
from tenant_registry.desired import Outcome
from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.harness import OPERATOR_SA
from tenant_registry.reconcile import Runtime, Settings
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import OPERATOR_NS, Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

Hook = Callable[..., Any]


class Hooked(api.Cluster):
    """The real client; a test may run a hook before (or instead of) one call, once."""

    hooks: dict[str, Hook]
    calls: Counter[tuple[str, str]]
    # resource -> an Event its watch waits for before delivering each event (a lagging watch)
    gates: dict[str, threading.Event]

    def hook(self, method: str, fn: Hook) -> None:
        self.hooks[method] = fn

    def _hooked(self, method: str, *args: Any) -> Any:
        self.calls[(method, str(args[1]) if len(args) > 1 else "")] += 1
        fn = self.hooks.pop(method, None)
        if fn is not None:
            return fn(getattr(super(), method), *args)
        return getattr(super(), method)(*args)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._hooked("get_secret", namespace, name)
        return result

    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._hooked("create_secret", namespace, body)
        return result

    def merge_patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._hooked("merge_patch_secret", namespace, name, patch)
        return result

    def list_pages(self, kind: str, **kw: Any) -> Iterator[tuple[list[Any], str]]:
        self.calls[("list_pages", f"{kind} {kw.get('namespace') or '*'}")] += 1
        yield from super().list_pages(kind, **kw)

    def watch(self, kind: str, resource_version: str, **kw: Any) -> Iterator[api.WatchEvent]:
        for event in super().watch(kind, resource_version, **kw):
            gate = self.gates.get(kind)
            if gate is not None:
                gate.wait()
            yield event


class InProcess:
    """A runtime on its own event loop in a background thread."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cluster = Hooked.connect(
            str(cp.serviceaccount_kubeconfig(OPERATOR_NS, OPERATOR_SA)), pool_size=24
        )
        self.cluster.hooks, self.cluster.calls, self.cluster.gates = {}, Counter(), {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = Settings(
            operator_namespace=OPERATOR_NS,
            status_interval=3600,  # the cluster's operator owns these tenants' status
            resync_seconds=3600,
            conflict_recheck_seconds=0.5,
        )
        self.runtime = Runtime(self.cluster, settings)
        self.tenants: list[str] = []
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)

    async def _start(self) -> None:
        self.runtime.start()
        await self.runtime.ready.wait()

    def create(
        self, k8s: Cluster, name: str, ns: str, namespaces: Any = None, **spec: Any
    ) -> dict[str, Any]:
        """The TenantRegistry in the cluster (suspended), and the body the runtime here gets;
        deleted after the runtime here stopped, so the cluster's operator cleans up alone."""
        k8s.credentials(name)
        k8s.tenant(
            name,
            secret_name=f"{name}-pull",
            registries=[registry(f"{name}.example", name)],
            namespaces=namespaces or {"names": [ns]},
            suspend=True,
            **spec,
        )
        self.tenants.append(name)
        body: dict[str, Any] = wait_for(lambda: k8s.tenant_obj(name), what="the TenantRegistry")
        body["spec"]["suspend"] = False
        return body

    def tenant(self, body: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.runtime.tenant_event, "MODIFIED", body)

    def outcome(self, tenant: str, ns: str) -> Outcome | None:
        return self.runtime.outcomes.get(tenant, {}).get(ns)

    def close(self) -> None:
        for gate in self.cluster.gates.values():
            gate.set()
        asyncio.run_coroutine_threadsafe(self.runtime.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.cluster.close()


@pytest.fixture
def inprocess(
    k8s: Cluster, operator: RunningOperator, caplog: pytest.LogCaptureFixture
) -> Iterator[InProcess]:
    caplog.set_level(logging.INFO, logger="tenant_registry")
    running = InProcess(k8s.cp)
    try:
        yield running
    finally:
        running.close()
        for name in running.tenants:
            k8s.delete_tenant(name)
    unexpected = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert not unexpected, "no stack trace, no InternalError"


def _admin(k8s: Cluster) -> pykube.HTTPClient:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(k8s.cp.kubeconfig)))


def _never_internal_error(inprocess: InProcess, tenant: str, ns: str) -> None:
    outcome = inprocess.outcome(tenant, ns)
    assert outcome is None or outcome.reason != "InternalError", outcome


def test_a_create_result_older_than_the_watch_does_not_resurrect_the_copy(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    name = f"stale-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    admin = _admin(k8s)

    def create_then_lose_it(create: Hook, namespace: str, body: dict[str, Any]) -> Any:
        created = create(namespace, body)
        pykube.Secret.objects(admin, namespace=namespace).get(name=f"{name}-pull").delete()
        time.sleep(1)  # the watch delivers ADDED and DELETED before this result is stored
        return created

    inprocess.cluster.hook("create_secret", create_then_lose_it)
    inprocess.tenant(inprocess.create(k8s, name, ns))
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is not None, what="the copy created again")
    wait_for(
        lambda: (o := inprocess.outcome(name, ns)) is not None and o.state == "synced",
        what="synced",
    )


def test_the_secret_in_the_way_vanishing_before_it_is_read_is_a_re_plan(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    name = f"vanish-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.secret(ns, f"{name}-pull", "Opaque", {"mine": "x"})
    admin = _admin(k8s)

    def delete_then_get(get: Hook, namespace: str, secret: str) -> Any:
        pykube.Secret.objects(admin, namespace=namespace).get(name=secret).delete()
        return get(namespace, secret)

    inprocess.cluster.hook("get_secret", delete_then_get)
    started = time.monotonic()
    inprocess.tenant(inprocess.create(k8s, name, ns))
    wait_for(
        lambda: (
            (k8s.copy(ns, f"{name}-pull") or {}).get("type") == "kubernetes.io/dockerconfigjson"
        ),
        what="our copy, at once",
        timeout=10,
    )
    assert time.monotonic() - started < 10, "no 30 s backoff"
    _never_internal_error(inprocess, name, ns)


def test_a_transient_error_reading_the_secret_in_the_way_is_retried_soon(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    name = f"blip-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.secret(ns, f"{name}-pull", "Opaque", {"mine": "x"})

    def unavailable(get: Hook, namespace: str, secret: str) -> Any:
        raise api.ApiError(api.TRANSIENT, 503, "injected: the API server is busy")

    inprocess.cluster.hook("get_secret", unavailable)
    inprocess.tenant(inprocess.create(k8s, name, ns))
    wait_for(
        lambda: getattr(inprocess.outcome(name, ns), "reason", "") == "UnmanagedSecretExists",
        what="the Secret in the way reported after a retry",
        timeout=10,
    )
    _never_internal_error(inprocess, name, ns)


@pytest.mark.parametrize("change", ["annotated", "made-immutable"])
def test_the_secret_changing_before_the_adoption_patch_is_handled(
    k8s: Cluster, inprocess: InProcess, unique: str, change: str
) -> None:
    name = f"moved-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.secret(
        ns,
        f"{name}-pull",
        "kubernetes.io/dockerconfigjson",
        {".dockerconfigjson": '{"auths":{"old.example":{"auth":"eDp5"}}}'},
    )
    k8s.cp.kubectl(
        "annotate", "secret", f"{name}-pull", "-n", ns, f"registry.tenancy.dev/adopt={name}"
    )
    admin = _admin(k8s)

    def change_then_patch(patch: Hook, namespace: str, secret: str, body: dict[str, Any]) -> Any:
        obj = pykube.Secret.objects(admin, namespace=namespace).get(name=secret)
        if change == "annotated":
            obj.patch({"metadata": {"annotations": {"someone": "was-here"}}})
        else:
            obj.patch({"immutable": True})
        return patch(namespace, secret, body)

    inprocess.cluster.hook("merge_patch_secret", change_then_patch)
    inprocess.tenant(inprocess.create(k8s, name, ns, conflictPolicy="Adopt"))
    if change == "annotated":
        wait_for(
            lambda: "moved" in str(k8s.dockerconfig(ns, f"{name}-pull")),
            what="adopted after re-reading",
            timeout=10,
        )
    else:
        wait_for(
            lambda: "immutable" in getattr(inprocess.outcome(name, ns), "message", ""),
            what="a clear outcome",
            timeout=10,
        )
        assert inprocess.outcome(name, ns).reason == "UnmanagedSecretExists"  # type: ignore[union-attr]
    _never_internal_error(inprocess, name, ns)


def test_a_secret_in_the_way_no_tenant_wants_any_more_is_not_read_again(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    name = f"forget-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.secret(ns, f"{name}-pull", "Opaque", {"mine": "x"})
    body = inprocess.create(k8s, name, ns)
    inprocess.tenant(body)
    wait_for(
        lambda: getattr(inprocess.outcome(name, ns), "reason", "") == "UnmanagedSecretExists",
        what="blocked",
    )
    wait_for(
        lambda: inprocess.cluster.calls[("get_secret", f"{name}-pull")] >= 2,
        what="re-read while wanted",
    )
    renamed = {**body, "spec": {**body["spec"], "secretName": f"{name}-other"}}
    inprocess.tenant(renamed)
    wait_for(lambda: k8s.copy(ns, f"{name}-other") is not None, what="the new name's copy")
    time.sleep(1)
    reads = inprocess.cluster.calls[("get_secret", f"{name}-pull")]
    time.sleep(3)  # six re-check intervals
    assert inprocess.cluster.calls[("get_secret", f"{name}-pull")] == reads, "forgotten"


def _onboarded_then_namespaces_held(
    k8s: Cluster, inprocess: InProcess, name: str
) -> tuple[str, threading.Event]:
    """A tenant `name` of the in-process runtime selecting `<name>-a` by the label
    tenant=<name>, onboarded; then the runtime's namespace watch held (its view of namespaces
    stale) until the Event returned with the namespace is set."""
    ns = f"{name}-a"
    k8s.namespace(ns, tenant=name)
    selector = {"selector": {"matchLabels": {"tenant": name}}}
    inprocess.tenant(inprocess.create(k8s, name, ns, namespaces=selector))
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="onboarded")
    gate = threading.Event()
    inprocess.cluster.gates["namespaces"] = gate
    return ns, gate


def test_a_namespace_created_again_unselected_gets_nothing_while_its_watch_lags(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    """The namespace watch lags: the view still holds the old namespace (selected by its label)
    while the ServiceAccount watch already delivers the new namespace's `default`. Nothing may
    be written into the new namespace, which the tenant does not select."""
    name = f"lag-{unique}"
    ns, gate = _onboarded_then_namespaces_held(k8s, inprocess, name)
    k8s.cp.kubectl("delete", "namespace", ns, "--timeout=60s")
    k8s.namespace(ns)  # the same name, without the tenant's label
    new_sa = wait_for(lambda: k8s.sa(ns), what="the new namespace's default", timeout=30)
    view = inprocess.runtime.view
    wait_for(
        lambda: (
            getattr(view.held("serviceaccounts", ns, "default"), "resource_version", "")
            == new_sa["metadata"]["resourceVersion"]
        ),
        what="the runtime sees the new default ServiceAccount",
    )
    wait_for(lambda: len(inprocess.runtime.queue) == 0, what="the runtime idle")
    assert k8s.copy(ns, f"{name}-pull") is None, "no copy in a namespace the tenant lost"
    assert f"{name}-pull" not in k8s.pull_secrets(ns), "no entry either"

    gate.set()
    wait_for(
        lambda: (
            inprocess.runtime.view.namespaces.get(ns) is not None
            and "tenant" not in inprocess.runtime.view.namespaces[ns].labels
        ),
        what="the namespace watch caught up",
    )
    wait_for(lambda: len(inprocess.runtime.queue) == 0, what="the runtime idle")
    assert k8s.copy(ns, f"{name}-pull") is None
    assert inprocess.outcome(name, ns) is None, "not selected: nothing to report"


def test_a_rotation_reaches_no_namespace_that_left_while_its_watch_lags(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    """A namespace relabelled out of the tenant (say, to evict it) and then the password
    rotated: the view still thinks it selected, but the new credentials must not go in. The
    read before the write sees the relabel; the copy is removed instead."""
    name = f"lagrot-{unique}"
    ns, gate = _onboarded_then_namespaces_held(k8s, inprocess, name)
    mark = k8s.audit_mark()
    k8s.label_namespace(ns, tenant=None)
    k8s.credentials(name, password="rotated-after-eviction")
    wait_for(lambda: k8s.copy(ns, f"{name}-pull") is None, what="the copy removed, not rotated")
    # The entry goes in the pair's next write (the copy first): wait for it, do not race it.
    wait_for(lambda: f"{name}-pull" not in k8s.pull_secrets(ns), what="the entry removed too")
    wait_for(lambda: len(inprocess.runtime.queue) == 0, what="the runtime idle")
    assert f"{name}-pull" not in k8s.pull_secrets(ns)
    on_copy = [
        w["verb"]
        for w in k8s.operator_writes(mark)
        if (w.get("objectRef") or {}).get("resource") == "secrets"
        and (w.get("objectRef") or {}).get("namespace") == ns
    ]
    assert on_copy == ["delete"], "never the new content"
    gate.set()


def test_status_does_not_count_a_namespace_synced_while_its_copy_holds_old_content(
    k8s: Cluster, inprocess: InProcess, unique: str
) -> None:
    name = f"rot-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    inprocess.tenant(inprocess.create(k8s, name, ns))
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="onboarded")
    runtime = inprocess.runtime

    def report() -> Any:
        async def get() -> Any:
            return runtime.reporter.report(name)

        return asyncio.run_coroutine_threadsafe(get(), inprocess.loop).result(timeout=10)

    wait_for(lambda: report().synced == 1, what="synced")
    first_hash = report().content_hash
    held = threading.Event()

    def slow_patch(patch: Hook, namespace: str, secret: str, body: dict[str, Any]) -> Any:
        held.set()
        wait_for(lambda: release.is_set(), what="the test's go-ahead", timeout=60)
        return patch(namespace, secret, body)

    release = threading.Event()
    inprocess.cluster.hook("merge_patch_secret", slow_patch)
    k8s.credentials(name, password="rotated-pw")
    wait_for(held.is_set, what="the rotation's patch under way")
    during = report()
    assert during.content_hash != first_hash
    assert during.synced == 0, "the copy still holds the old content: not synced"
    release.set()
    wait_for(lambda: report().synced == 1, what="synced with the new content")
    assert "rotated-pw" in str(k8s.dockerconfig(ns, f"{name}-pull"))


def test_many_namespaces_entering_the_audit_are_listed_together(
    k8s: Cluster, inprocess: InProcess, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant onboarding many namespaces at once: the audit lists the Pods and Events of all
    of them in one list each (auditor._list_entered), not two requests per namespace, and
    holds each namespace's Pods as a list of that namespace would."""
    monkeypatch.setattr(auditor, "_bulk", lambda entered, namespaces: True)
    name = f"bulk-{unique}"
    spaces = [f"{name}-{i}" for i in range(3)]
    wait_for(lambda: inprocess.runtime.auditor.pods.scope is not None, what="a first audit pass")
    for ns in spaces:
        k8s.namespace(ns)
        pykube.Pod(
            k8s.api,
            {
                "metadata": {"name": "app", "namespace": ns},
                "spec": {"containers": [{"name": "app", "image": f"{name}.example/app:v1"}]},
            },
        ).create()
    store = inprocess.runtime.auditor.pods
    wait_for(lambda: inprocess.runtime.view.namespaces.get(spaces[-1]) is not None, what="seen")
    assert all(not store.in_namespace(ns) for ns in spaces), "out of scope: not held"
    inprocess.cluster.calls.clear()
    inprocess.tenant(inprocess.create(k8s, name, spaces[0], namespaces={"names": spaces}))
    wait_for(
        lambda: all([p.name for p in store.in_namespace(ns)] == ["app"] for ns in spaces),
        what="every namespace's Pod held",
    )
    lists = {n for (method, n) in inprocess.cluster.calls if method == "list_pages"}
    assert {"pods *", "events *"} <= lists, "one list of all Pods and of all Events"
    assert not {f"pods {ns}" for ns in spaces} & lists, "no list per namespace"
