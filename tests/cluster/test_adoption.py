"""conflictPolicy Adopt: only with the owner's consent, never from another controller, keeping
what others put on the Secret; errors on the way are outcomes, and content fights are limited."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pykube
import pytest

from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

ADOPT = "registry.tenancy.dev/adopt"
OLD_CONFIG = '{"auths":{"old.example":{"auth":"eDp5"}}}'


def _existing(
    k8s: Cluster, ns: str, name: str, *, annotations: dict[str, str], **extra: Any
) -> None:
    """A dockerconfigjson Secret someone else made, with the metadata given."""
    metadata = {"name": name, "namespace": ns, "annotations": annotations}
    metadata.update(extra.pop("metadata", {}))
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": metadata,
        "stringData": {".dockerconfigjson": OLD_CONFIG},
        **extra,
    }
    k8s.cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj))


def _owner(k8s: Cluster, ns: str, name: str, *, controller: bool) -> dict[str, Any]:
    """A real object (a ConfigMap) to own the Secret, so the garbage collector leaves it."""
    cm = pykube.ConfigMap(k8s.api, {"metadata": {"name": name, "namespace": ns}})
    cm.create()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": name,
        "uid": cm.obj["metadata"]["uid"],
        "controller": controller,
    }


def _adopt_tenant(k8s: Cluster, name: str, namespaces: list[str]) -> None:
    k8s.credentials(name, password="first")
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry(f"{name}.example", name)],
        namespaces={"names": namespaces},
        conflictPolicy="Adopt",
    )


def _ours(k8s: Cluster, ns: str, name: str) -> bool:
    return f"{name}.example" in (k8s.dockerconfig(ns, f"{name}-pull") or {}).get("auths", {})


def _failure(k8s: Cluster, name: str, ns: str) -> dict[str, Any]:
    return next((f for f in k8s.status(name).get("failures", []) if f["namespace"] == ns), {})


def test_adopt_takes_only_a_secret_whose_owner_consents(k8s: Cluster, unique: str) -> None:
    name = f"consent-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    _existing(k8s, ns, f"{name}-pull", annotations={ADOPT: "someone-else"})
    _adopt_tenant(k8s, name, [ns])
    failure = wait_for(lambda: _failure(k8s, name, ns), what="the refusal reported")
    assert failure["reason"] == "UnmanagedSecretExists"
    assert f"{ADOPT}={name}" in failure["message"], "it says how to consent"
    time.sleep(1)
    assert not _ours(k8s, ns, name), "untouched without consent"

    k8s.cp.kubectl("annotate", "secret", f"{name}-pull", "-n", ns, f"{ADOPT}={name}", "--overwrite")
    wait_for(lambda: _ours(k8s, ns, name), what="adopted once it consents")
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(ns), what="entry")
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")


def test_adopt_never_takes_a_secret_another_controller_owns(k8s: Cluster, unique: str) -> None:
    name = f"ctl-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    owner = _owner(k8s, ns, "the-controller", controller=True)
    _existing(
        k8s, ns, f"{name}-pull", annotations={ADOPT: name}, metadata={"ownerReferences": [owner]}
    )
    _adopt_tenant(k8s, name, [ns])
    failure = wait_for(lambda: _failure(k8s, name, ns), what="the refusal reported")
    assert failure["reason"] == "UnmanagedSecretExists"
    assert "ConfigMap/the-controller" in failure["message"]
    time.sleep(1)
    assert not _ours(k8s, ns, name)
    assert f"{name}-pull" not in k8s.pull_secrets(ns)


def test_adoption_keeps_foreign_owner_references_also_on_rotation(
    k8s: Cluster, unique: str
) -> None:
    name = f"owners-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    owner = _owner(k8s, ns, "a-user-of-it", controller=False)
    _existing(
        k8s, ns, f"{name}-pull", annotations={ADOPT: name}, metadata={"ownerReferences": [owner]}
    )
    _adopt_tenant(k8s, name, [ns])
    wait_for(lambda: _ours(k8s, ns, name), what="adopted")

    def owners() -> list[tuple[str, str]]:
        refs = (k8s.copy(ns, f"{name}-pull") or {})["metadata"].get("ownerReferences") or []
        return sorted((r["kind"], r["name"]) for r in refs)

    assert owners() == [("ConfigMap", "a-user-of-it"), ("TenantRegistry", name)]
    k8s.credentials(name, password="second")
    wait_for(
        lambda: (
            k8s.dockerconfig(ns, f"{name}-pull")["auths"][f"{name}.example"]["password"] == "second"
        ),
        what="rotated",
    )
    assert owners() == [("ConfigMap", "a-user-of-it"), ("TenantRegistry", name)]


def test_an_immutable_secret_is_reported_clearly_not_as_an_internal_error(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"frozen-{unique}"
    ns = f"{name}-a"
    k8s.namespace(ns)
    _existing(k8s, ns, f"{name}-pull", annotations={ADOPT: name}, immutable=True)
    _adopt_tenant(k8s, name, [ns])
    failure = wait_for(lambda: _failure(k8s, name, ns), what="reported")
    assert failure["reason"] == "UnmanagedSecretExists", failure
    assert "immutable" in failure["message"]
    time.sleep(2)
    assert _failure(k8s, name, ns)["reason"] == "UnmanagedSecretExists"
    log = [line for line in operator.log_text().splitlines() if name in line]
    assert not [line for line in log if "InternalError" in line or "Traceback" in line], log


def test_a_content_fight_over_our_copy_is_limited_and_reported(k8s: Cluster, unique: str) -> None:
    name = f"tug-{unique}"
    ns = k8s.onboard_one(name)
    forged = base64.b64encode(b'{"auths":{"forged.example":{"auth":"eDp5"}}}').decode()
    stop = threading.Event()
    mark = k8s.audit_mark()

    def rewriter() -> None:
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(k8s.cp.kubeconfig)))
        while not stop.is_set():
            secret = pykube.Secret.objects(api, namespace=ns).get_or_none(name=f"{name}-pull")
            if secret is not None and secret.obj["data"][".dockerconfigjson"] != forged:
                secret.patch({"data": {".dockerconfigjson": forged}})
            time.sleep(0.05)

    thread = threading.Thread(target=rewriter)
    thread.start()
    try:
        failure = wait_for(
            lambda: (
                _failure(k8s, name, ns).get("reason") == "CopyRewrittenRepeatedly"
                and _failure(k8s, name, ns)
            ),
            what="the fight reported",
            timeout=30,
        )
        time.sleep(3)
    finally:
        stop.set()
        thread.join()
    assert f"{name}-pull" in failure["message"]
    restores = [
        w
        for w in k8s.operator_writes(mark)
        if w["objectRef"].get("namespace") == ns and w["objectRef"]["resource"] == "secrets"
    ]
    assert 1 <= len(restores) <= 3, f"restored {len(restores)} times"
    k8s.delete_tenant(name)  # leave no copy in a state a later restart would repair
    wait_for(lambda: k8s.tenant_obj(name) is None, what="tenant gone")
