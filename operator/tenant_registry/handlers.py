"""Kopf wiring, thin: decorators that hand events to the runtime.

Kopf owns the TenantRegistry lifecycle (its watch, the finalizer, retries of the deletion
handler). Namespaces, ServiceAccounts and Secrets are watched by the runtime's own view, so
Kopf never writes its bookkeeping onto them. Kopf runs only in the replica that holds the
Lease (cli.py); the probes are health.py's, not Kopf's.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
from typing import Any

import kopf

from tenant_registry import metrics, names
from tenant_registry.cluster import Cluster
from tenant_registry.election import Elector
from tenant_registry.health import Health
from tenant_registry.reconcile import Runtime, Settings

# Set by the CLI before kopf.run(); read once at start-up.
SETTINGS = Settings()
CLUSTER: Cluster | None = None
ELECTOR: Elector | None = None
HEALTH = Health()


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf stores the last handled spec on the object (an annotation patch per TenantRegistry
    and per spec change) to tell create/update apart. This operator has no create/update
    handlers (tenant_changed sees every event), so every state counts as handled as it is:
    nothing to store, one patch per tenant less. Deletion does not depend on it."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's bookkeeping (only ever on TenantRegistry objects) under our own domain.
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=names.KOPF_PREFIX
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.enabled = False  # we post our own Events, on transitions only
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    # Right after start-up the API server may answer 429 "storage is (re)initializing";
    # retry quickly at first instead of Kopf's default of a whole second.
    settings.networking.error_backoffs = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if "runtime" in memo:
        return  # Kopf retries a start-up handler that failed: never start a second runtime
    cluster = CLUSTER or Cluster.connect(pool_size=SETTINGS.concurrency + 8)
    runtime = Runtime(cluster, SETTINGS)
    # Not awaited until the view is complete: the lists of a large cluster may take long, and
    # the probes (not a start-up timeout) tell whether it is making progress. Stored only
    # once started, so that a retry after a failure here starts it again.
    runtime.start()
    memo["runtime"] = runtime
    memo["heartbeat"] = asyncio.create_task(_heartbeat(runtime), name="heartbeat")
    if ELECTOR is not None:
        # Writes were refused while the Lease lapsed (an API outage): plan everything again.
        loop = asyncio.get_running_loop()

        def regained() -> None:
            loop.call_soon_threadsafe(runtime.resync)

        ELECTOR.on_regained = regained


async def _heartbeat(runtime: Runtime) -> None:
    """Tell the probes, every second, that the loop runs and what the runtime says."""
    while True:
        try:
            details = runtime.healthy()
            problem = ""
        except RuntimeError as e:
            details, problem = {}, str(e)
        paused = ELECTOR is not None and not ELECTOR.leading()
        HEALTH.beat(problem, runtime.ready.is_set(), details, paused=paused)
        metrics.WRITES_PAUSED.set(1 if paused else 0)
        await asyncio.sleep(1)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # As Cluster.connect: an explicit $KUBECONFIG (the --kubeconfig flag sets it) wins, else
    # the in-cluster token; read now, not at import time as the official client does; no
    # fallback to other client libraries.
    if os.environ.get("KUBECONFIG"):
        kubeconfig: kopf.ConnectionInfo | None = kopf.login_with_kubeconfig(**kwargs)
        return kubeconfig
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    if info is None:
        return kopf.login_with_kubeconfig(**kwargs)
    # Kopf names the server https://kubernetes.default.svc, which only cluster DNS resolves;
    # the kubelet's KUBERNETES_SERVICE_HOST/PORT need no DNS (client-go and the official
    # client in cluster.py use them).
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        host = f"[{host}]" if ":" in host else host  # an IPv6 Service address
        info = dataclasses.replace(info, server=f"https://{host}:{port}")
    return info


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    # Kopf waits for its stop-flag waiter like for a hung task (5 s) unless the flag is set.
    flag: asyncio.Event | None = memo.get("stop_flag")
    if flag is not None:
        flag.set()
    beat: asyncio.Task[None] | None = memo.get("heartbeat")
    if beat is not None:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        # Close the fence first: a plan still running in a pool thread sends nothing more,
        # so that nothing is written after the Lease is released (cli.py releases it last).
        runtime.cluster.may_write = lambda: False
        await runtime.stop()
        runtime.cluster.close()


# async: Kopf runs plain functions in a thread pool, and the runtime lives on the event loop.
@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def tenant_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["runtime"].tenant_event(type or "ADDED", copy.deepcopy(dict(body)))


@kopf.on.delete(names.GROUP, names.VERSION, names.PLURAL)
async def tenant_deleted(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    if not await runtime.remove_tenant(name, copy.deepcopy(dict(body))):
        raise kopf.TemporaryError("copies or ServiceAccount entries remain; retrying", delay=5)
    if not runtime.cluster.may_write():
        # Kopf removes the finalizer itself, past cluster.py's fence: not while writes are
        # paused (the Lease lapsed), when the view the check above used may be stale.
        raise kopf.TemporaryError("writes are paused (leader election); retrying", delay=5)
