"""Credentials are checked against the registry before they reach any namespace.

Real registries on loopback (Debian's docker-registry 2.8: htpasswd/bcrypt for Basic; token
auth with the test's ES256 issuer for Bearer; TLS with a CA of the test's own), the real
operator, the real control plane. Working credentials are never replaced by broken ones.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tenant_registry import cluster as api
from tenant_registry.desired import Active
from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.controlplane import _free_port
from tenant_registry.localcluster.registry import Registry
from tenant_registry.reconcile import Runtime, Settings
from tenant_registry.view import COPIES, CREDENTIALS, ListEnd, key_of, watch_specs
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import OPERATOR_NS, Cluster, registry
from tests.registry.servers import (
    RefusingProxy,
    TokenIssuer,
    htpasswd_registry,
    push_with_token,
    serving_basic,
    serving_issuer,
    token_registry,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.registry]

USER, PASSWORD = "verify-bot", "the-right-password"


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from serving_basic(tmp_path_factory.mktemp("basic"), USER, PASSWORD)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    yield from serving_issuer(tmp_path_factory.mktemp("issuer"), USER, PASSWORD)


CREATED: list[str] = []


@pytest.fixture(autouse=True)
def delete_tenants(k8s: Cluster) -> Iterator[None]:
    """Verified tenants are re-checked every few seconds (the test operator's
    --verify-interval): they go with their test, so that the tests that count the operator's
    writes count none of theirs (a check that finds something new is a status write)."""
    yield
    while CREATED:
        name = CREATED.pop()
        k8s.delete_tenant(name)
        wait_for(lambda name=name: k8s.tenant_obj(name) is None, what=f"{name} deleted")


def checked(k8s: Cluster, tenant: str, reason: str) -> dict[str, object]:
    return wait_for(
        lambda: (c := k8s.condition(tenant, "CredentialsValid")).get("reason") == reason and c,
        what=f"CredentialsValid {reason} on {tenant}",
        timeout=30,
    )


def distributed_password(k8s: Cluster, ns: str, secret: str, server: str) -> str | None:
    config = k8s.dockerconfig(ns, secret)
    return None if config is None else str(config["auths"][server]["password"])


def ca_object(k8s: Cluster, kind: str, name: str, reg: Registry) -> None:
    """A ConfigMap or Secret (`kind`) `name` next to the credentials, holding `reg`'s CA as
    ca.crt: what a caRef names."""
    assert reg.tls is not None
    field = "data" if kind == "ConfigMap" else "stringData"
    obj = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": OPERATOR_NS},
        field: {"ca.crt": reg.tls.ca.read_text()},
    }
    k8s.cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def verified_tenant(
    k8s: Cluster, name: str, server: str, password: str = PASSWORD, **fields: object
) -> str:
    ns = f"{name}-a"
    k8s.namespace(ns)
    k8s.credentials(name, username=USER, password=password)
    CREATED.append(name)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry(server, name, verify=True, **fields)],
        namespaces={"names": [ns]},
    )
    return ns


def test_valid_credentials_are_verified_then_distributed(
    k8s: Cluster, basic: Registry, unique: str
) -> None:
    name, server = f"vok-{unique}", f"http://{basic.host}"
    ns = verified_tenant(k8s, name, server, probeImage="team/app:v1")
    cond = checked(k8s, name, "Verified")
    assert cond["status"] == "True"
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="the entry")
    assert distributed_password(k8s, ns, f"{name}-pull", server) == PASSWORD
    status = k8s.status(name)
    assert status["verifiedContentHash"] == status["contentHash"]
    assert "credentialsCheckedAt" not in status  # a metric now: no status write per check


def test_a_wrong_password_is_never_distributed(k8s: Cluster, basic: Registry, unique: str) -> None:
    name = f"vbad-{unique}"
    ns = verified_tenant(k8s, name, f"http://{basic.host}", password="not-the-password")
    cond = checked(k8s, name, "Unauthorized")
    assert cond["status"] == "False"
    assert "nothing is distributed" in str(cond["message"])
    assert k8s.condition(name, "Ready")["reason"] == "CredentialsUnverified"
    assert k8s.copy(ns, f"{name}-pull") is None
    assert f"{name}-pull" not in k8s.pull_secrets(ns)
    wait_for(
        lambda: any(e.get("reason") == "Unauthorized" for e in k8s.events(name)),
        what="an Unauthorized Event",
    )


def test_rotated_to_a_wrong_password_keeps_the_last_good_also_across_a_restart(
    k8s: Cluster, basic: Registry, operator: RunningOperator, unique: str
) -> None:
    name, server = f"vrot-{unique}", f"http://{basic.host}"
    ns = verified_tenant(k8s, name, server)
    checked(k8s, name, "Verified")
    wait_for(lambda: k8s.copy(ns, f"{name}-pull"), what="the copy")
    good_hash = k8s.status(name)["contentHash"]

    k8s.credentials(name, username=USER, password="rotated-but-wrong")
    cond = checked(k8s, name, "Unauthorized")
    assert "the entry last verified stays distributed" in str(cond["message"])
    assert good_hash not in str(cond["message"])
    assert distributed_password(k8s, ns, f"{name}-pull", server) == PASSWORD
    assert k8s.status(name)["contentHash"] == good_hash

    # A restart knows the last good content by its hash only: a namespace that joins now
    # still gets it, read back from a copy.
    operator.restart()
    k8s.namespace(f"{name}-b")
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry(server, name, verify=True)],
        namespaces={"names": [ns, f"{name}-b"]},
    )
    wait_for(lambda: k8s.copy(f"{name}-b", f"{name}-pull"), what="the copy in the new namespace")
    assert distributed_password(k8s, f"{name}-b", f"{name}-pull", server) == PASSWORD
    assert distributed_password(k8s, ns, f"{name}-pull", server) == PASSWORD
    checked(k8s, name, "Unauthorized")

    k8s.credentials(name, username=USER, password=PASSWORD)  # fixed
    checked(k8s, name, "Verified")


def test_registry_down(k8s: Cluster, tmp_path_factory: pytest.TempPathFactory, unique: str) -> None:
    # First ever: nothing answers, nothing is written.
    never = f"vdown-{unique}"
    ns = verified_tenant(k8s, never, f"http://127.0.0.1:{_free_port()}")
    checked(k8s, never, "Unreachable")
    assert k8s.copy(ns, f"{never}-pull") is None

    # Verified, then the registry goes away: the periodic check says so, the copy stays.
    reg = htpasswd_registry(tmp_path_factory.mktemp("doomed"), USER, PASSWORD)
    try:
        name, server = f"vgone-{unique}", f"http://{reg.host}"
        ns = verified_tenant(k8s, name, server)
        checked(k8s, name, "Verified")
        wait_for(lambda: k8s.copy(ns, f"{name}-pull"), what="the copy")
    finally:
        reg.stop()
    checked(k8s, name, "Unreachable")
    assert distributed_password(k8s, ns, f"{name}-pull", server) == PASSWORD


def test_tls_with_a_custom_ca_from_a_configmap(
    k8s: Cluster, tmp_path_factory: pytest.TempPathFactory, unique: str
) -> None:
    reg = htpasswd_registry(tmp_path_factory.mktemp("tls"), USER, PASSWORD, tls=True)
    assert reg.tls is not None
    try:
        ca_object(k8s, "ConfigMap", f"ca-{unique}", reg)
        untrusted = f"vnoca-{unique}"
        verified_tenant(k8s, untrusted, reg.host)
        trusted = f"vca-{unique}"
        ns = verified_tenant(
            k8s, trusted, reg.host, caRef={"kind": "ConfigMap", "name": f"ca-{unique}"}
        )
        checked(k8s, trusted, "Verified")
        wait_for(lambda: k8s.copy(ns, f"{trusted}-pull"), what="the copy")
        checked(k8s, untrusted, "TLSError")
        assert k8s.copy(f"{untrusted}-a", f"{untrusted}-pull") is None
    finally:
        reg.stop()


def test_bearer_token_with_scope(
    k8s: Cluster, issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory, unique: str
) -> None:
    reg = token_registry(tmp_path_factory.mktemp("bearer"), issuer)
    try:
        push_with_token(reg, issuer, "team/app", "v1")
        before = len(issuer.requests)
        name, server = f"vtok-{unique}", f"http://{reg.host}"
        ns = verified_tenant(k8s, name, server, probeImage="team/app:v1")
        checked(k8s, name, "Verified")
        wait_for(lambda: k8s.copy(ns, f"{name}-pull"), what="the copy")
        asked = [r for r in issuer.requests[before:] if r["authorized"]]
        assert asked and asked[0]["scopes"] == ["repository:team/app:pull"]
        assert asked[0]["service"] == issuer.service and asked[0]["account"] == USER

        missing = f"vtok404-{unique}"
        verified_tenant(k8s, missing, server, probeImage="team/app:nope")
        checked(k8s, missing, "ProbeImageNotFound")
        wrong = f"vtokbad-{unique}"
        verified_tenant(k8s, wrong, server, password="wrong-password")
        checked(k8s, wrong, "Unauthorized")
    finally:
        reg.stop()


def _deliver_list(runtime: Runtime, client: api.Cluster, kind: str) -> None:
    """One kind's initial list into `runtime`, as its Watcher delivers it (real objects)."""
    spec = next(w for w in watch_specs(OPERATOR_NS) if w.kind == kind)
    listed: set[tuple[str, str]] = set()
    rv = "0"
    for records, page_version in client.list_pages(
        spec.resource,
        namespace=spec.namespace,
        label_selector=spec.label_selector,
        convert=spec.convert,
    ):
        rv = page_version
        listed.update(key_of(kind, r) for r in records)
        runtime._deliver(kind, "LIST_PAGE", records)
    runtime._deliver(kind, "LIST_END", ListEnd(int(rv), listed, periodic=False))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached within 60 s")


def test_a_restart_whose_copies_list_arrives_last_still_reads_back_the_last_good(
    k8s: Cluster, basic: Registry, control_plane: ControlPlane, unique: str
) -> None:
    """The copies list spans every namespace and may well land after the credentials list
    (review 14, finding 1). A runtime fed the real API's lists in that order (the tenant and
    the credentials first, the copies only after their check failed) must not conclude that
    no copy holds the content last verified: once the copies are in, it reads it back."""
    name, server = f"vcold-{unique}", f"http://{basic.host}"
    ns = verified_tenant(k8s, name, server)
    checked(k8s, name, "Verified")
    wait_for(lambda: k8s.copy(ns, f"{name}-pull"), what="the copy")
    good_hash = k8s.status(name)["contentHash"]
    k8s.credentials(name, username=USER, password="rotated-but-wrong")
    checked(k8s, name, "Unauthorized")

    client = api.Cluster.connect(str(control_plane.kubeconfig))

    async def scenario() -> None:
        # A second runtime that is only fed and reads: no workers, so it writes nothing.
        runtime = Runtime(client, Settings(operator_namespace=OPERATOR_NS))
        runtime._loop = asyncio.get_running_loop()
        try:
            body = k8s.tenant_obj(name)
            assert body is not None
            runtime.tenant_event("ADDED", body)
            _deliver_list(runtime, client, CREDENTIALS)
            await _until(  # the check of the wrong password, done
                lambda: (
                    (v := runtime.checks.verdicts.get(name)) is not None
                    and v.reason == "Unauthorized"
                )
            )
            await asyncio.sleep(0.5)  # anything it started meanwhile has run
            frozen = runtime.intents[name]
            assert not isinstance(frozen, Active), "nothing to distribute before the read-back"
            assert runtime.checks.verdicts[name].verified_hash == good_hash, "status keeps the hash"
            for w in watch_specs(OPERATOR_NS):
                if w.kind not in (CREDENTIALS, COPIES):
                    _deliver_list(runtime, client, w.kind)
            _deliver_list(runtime, client, COPIES)
            assert runtime.ready.is_set()
            await _until(lambda: isinstance(runtime.intents[name], Active))  # read back
            intent = runtime.intents[name]
            assert isinstance(intent, Active)
            assert intent.copy.content_hash == good_hash
            assert runtime.checks.verdicts[name].reason == "Unauthorized"
        finally:
            await runtime.checks.stop()
            await runtime.reporter.stop()
            runtime.executor.shutdown()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        client.close()


def test_per_registry_last_good_while_another_registry_is_down(
    k8s: Cluster,
    basic: Registry,
    operator: RunningOperator,
    tmp_path_factory: pytest.TempPathFactory,
    unique: str,
) -> None:
    """Review 14, finding 4: each registry keeps its own entry last verified. A registry that
    passes gets its new entry while another is down; a registry removed from the spec leaves
    the copies at once, also while another is down, also after a restart."""
    name, ns, secret = f"vper-{unique}", f"vper-{unique}-a", f"vper-{unique}-pull"
    doomed = htpasswd_registry(tmp_path_factory.mktemp("per"), USER, PASSWORD)
    down, up = f"http://{doomed.host}", f"http://{basic.host}"
    try:
        k8s.namespace(ns)
        k8s.credentials(f"{name}-down", username=USER, password=PASSWORD)
        k8s.credentials(f"{name}-up", username=USER, password="wrong-at-first")
        CREATED.append(name)
        both = [
            registry(down, f"{name}-down", verify=True),
            registry(up, f"{name}-up", verify=True),
        ]
        k8s.tenant(name, secret_name=secret, registries=both, namespaces={"names": [ns]})
        cond = checked(k8s, name, "Unauthorized")  # the second registry's; the first passed
        assert "nothing is distributed for spec.registries[1]" in str(cond["message"])
        assert "sha256:" not in str(cond["message"])
        wait_for(lambda: k8s.copy(ns, secret), what="the copy with the first registry")
        assert set((k8s.dockerconfig(ns, secret) or {})["auths"]) == {down}
    finally:
        doomed.stop()
    checked(k8s, name, "Unreachable")  # the periodic check finds the first one down

    k8s.credentials(f"{name}-up", username=USER, password=PASSWORD)  # fixed: it passes
    wait_for(
        lambda: (
            distributed_password(k8s, ns, secret, up) == PASSWORD
            if up in ((k8s.dockerconfig(ns, secret) or {}).get("auths") or {})
            else None
        ),
        what="the second registry's entry, while the first is down",
    )
    assert distributed_password(k8s, ns, secret, down) == PASSWORD
    wait_for(
        lambda: k8s.status(name).get("verifiedRegistries") == sorted([down, up]),
        what="both entries recorded as verified",
    )

    operator.restart()
    k8s.tenant(
        name,
        secret_name=secret,
        registries=[registry(down, f"{name}-down", verify=True)],
        namespaces={"names": [ns]},
    )
    wait_for(
        lambda: set((k8s.dockerconfig(ns, secret) or {}).get("auths") or {}) == {down},
        what="the removed registry's entry gone from the copy",
    )
    assert distributed_password(k8s, ns, secret, down) == PASSWORD
    checked(k8s, name, "Unreachable")
    wait_for(
        lambda: k8s.status(name).get("verifiedRegistries") == [down],
        what="only the remaining registry recorded",
    )


def test_a_ca_secret_that_appears_later_is_checked_at_once(
    k8s: Cluster, tmp_path_factory: pytest.TempPathFactory, unique: str
) -> None:
    """Review 14, finding 6: a caRef naming a Secret that is not there yet is CANotFound; when
    it appears, the registry is checked again and passes. (The test operator re-checks every
    3 s anyway; that the Secret's content is part of what is checked, so that its appearance
    is a new check at once, tests/unit/test_verification.py shows.)"""
    reg = htpasswd_registry(tmp_path_factory.mktemp("laterca"), USER, PASSWORD, tls=True)
    assert reg.tls is not None
    try:
        name = f"vlate-{unique}"
        ns = verified_tenant(k8s, name, reg.host, caRef={"kind": "Secret", "name": f"ca-{name}"})
        checked(k8s, name, "CANotFound")
        ca_object(k8s, "Secret", f"ca-{name}", reg)
        checked(k8s, name, "Verified")
        wait_for(lambda: k8s.copy(ns, f"{name}-pull"), what="the copy")
    finally:
        reg.stop()


def _checked_at(operator: RunningOperator, tenant: str) -> float:
    """tenant_registry_credentials_checked_timestamp_seconds{tenant}, from the operator."""
    port = operator.process.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    prefix = f'tenant_registry_credentials_checked_timestamp_seconds{{tenant="{tenant}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_periodic_checks_that_find_the_same_write_nothing(
    k8s: Cluster, basic: Registry, operator: RunningOperator, unique: str
) -> None:
    """Review 14, finding 7: the test operator re-checks every 3 s (--verify-interval=3).
    Across two periodic checks of a verified tenant, and of one whose credentials fail, the
    operator writes nothing (no status, no Event); the time of the check is a metric."""
    good, bad = f"vquiet-{unique}", f"vquietbad-{unique}"
    ns = verified_tenant(k8s, good, f"http://{basic.host}")
    verified_tenant(k8s, bad, f"http://{basic.host}", password="not-the-password")
    checked(k8s, good, "Verified")
    checked(k8s, bad, "Unauthorized")
    wait_for(lambda: k8s.copy(ns, f"{good}-pull"), what="the copy")
    k8s.settle()

    mark = k8s.audit_mark()
    for tenant in (good, bad):
        first = _checked_at(operator, tenant)
        assert first > 0
        second = wait_for(
            lambda t=tenant, f=first: (v := _checked_at(operator, t)) > f and v,
            what=f"a periodic check of {tenant}",
            timeout=30,
        )
        wait_for(
            lambda t=tenant, s=second: _checked_at(operator, t) > s,
            what=f"another periodic check of {tenant}",
            timeout=30,
        )
    assert k8s.operator_writes(mark) == [], "a periodic check that finds the same writes nothing"
    assert "credentialsCheckedAt" not in k8s.status(good)


PROXY_USER, PROXY_PASSWORD = "proxyuser", "PROXYPASS-s3cret"


def test_a_proxy_with_credentials_stays_out_of_status_events_and_logs(
    k8s: Cluster,
    operator: RunningOperator,
    tmp_path_factory: pytest.TempPathFactory,
    unique: str,
) -> None:
    """Review 14, finding 3, end to end: the operator runs with HTTPS_PROXY naming a proxy
    with credentials in its URL (a proxy on loopback that refuses CONNECT). The check fails
    as Unreachable, and neither the proxy's user nor its password is in the tenant's status,
    its Events or the operator's log."""
    reg = htpasswd_registry(tmp_path_factory.mktemp("proxied"), USER, PASSWORD, tls=True)
    proxy = RefusingProxy().start()
    assert reg.tls is not None
    try:
        ca_object(k8s, "ConfigMap", f"pca-{unique}", reg)
        url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        # In the operator's environment only (the test's own clients go direct).
        operator.restart({"HTTPS_PROXY": url, "https_proxy": "", "NO_PROXY": "", "no_proxy": ""})
        name = f"vproxy-{unique}"
        verified_tenant(k8s, name, reg.host, caRef={"kind": "ConfigMap", "name": f"pca-{unique}"})
        cond = checked(k8s, name, "Unreachable")
        assert proxy.asked and "HTTP 403" in str(cond["message"])
        wait_for(
            lambda: any(e.get("reason") == "Unreachable" for e in k8s.events(name)),
            what="an Unreachable Event",
        )
        seen = json.dumps(k8s.status(name)) + json.dumps(k8s.events(name)) + operator.log_text()
        assert PROXY_PASSWORD not in seen
        assert f"{PROXY_USER}:" not in seen and f"{PROXY_USER}@" not in seen
    finally:
        operator.restart()  # without the proxy again
        proxy.stop()
        reg.stop()
