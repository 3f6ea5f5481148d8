"""The operator itself as a real Pod: its image imported into the node, deploy/ applied with
`kubectl apply -k` through the overlay of localcluster/operatorpod.py. The kubelet enforces
the Deployment's securityContext and runs its probes; the Pod becomes Ready, onboards a
tenant whose Pods then pull, and is restarted by its liveness probe when its watches go
silent.

Silent, honestly: the Pod reaches the API server through a relay on loopback (its
KUBERNETES_SERVICE_PORT), and the test freezes that relay: every connection stays open, no
byte moves. The Pod runs with `--watch-timeout=10 --watch-silence=20` so that takes seconds,
not the default 400.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykube
import pytest

from tenant_registry.localcluster import operatorpod
from tests.node.apiproxy import ApiProxy
from tests.node.conftest import SKIP_REASON, Registries
from tests.node.pods import NodeCluster
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.node,
    pytest.mark.image,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON),
    pytest.mark.timeout(900),  # a first image build: the base (1-2 min), the wheels, the image
]

WATCH_ARGS = ("--watch-timeout=10", "--watch-silence=20")
LABEL = "app.kubernetes.io/name=tenant-registry-operator"


class Deployed:
    def __init__(self, k8s: NodeCluster, pod: operatorpod.OperatorPod, proxy: ApiProxy) -> None:
        self.k8s, self.pod, self.proxy = k8s, pod, proxy

    def pods(self) -> list[dict[str, Any]]:
        return [
            p.obj
            for p in pykube.Pod.objects(self.k8s.api, namespace=operatorpod.NAMESPACE).filter(
                selector=LABEL
            )
        ]

    def the_pod(self) -> dict[str, Any]:
        (only,) = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
        return only

    def ready(self) -> bool:
        conditions = self.the_pod().get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def status(self) -> dict[str, Any]:
        (status,) = self.the_pod()["status"]["containerStatuses"]
        return dict(status)

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            url = self.pod.probe_url(path)  # http://127.0.0.1:<port>/...
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return int(e.code), json.loads(e.read() or b"{}")
        except (OSError, urllib.error.URLError, ValueError):
            return 0, {}

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [
            e.obj
            for e in pykube.Event.objects(self.k8s.api, namespace=operatorpod.NAMESPACE)
            if e.obj.get("reason") == reason
        ]


@pytest.fixture(scope="module")
def deployed(node_cluster: NodeCluster, measured: dict[str, str]) -> Iterator[Deployed]:
    k8s = node_cluster
    proxy = ApiProxy(k8s.cp.port).start()
    try:
        pod = operatorpod.deploy(k8s.cp, k8s.node, api_port=proxy.port, extra_args=WATCH_ARGS)
        applied = time.monotonic()
        found = Deployed(k8s, pod, proxy)
        wait_for(found.ready, what="the operator's Pod Ready", timeout=120, interval=0.2)
        measured["operator image build"] = f"{pod.timings['image build']:.1f} s"
        measured["operator image import"] = f"{pod.timings['image import']:.1f} s"
        measured["apply -k → operator Pod Ready"] = f"{time.monotonic() - applied:.1f} s"
        yield found
    finally:
        proxy.stop()


def test_the_pod_becomes_ready_with_the_deployments_security_context(
    deployed: Deployed,
) -> None:
    status = deployed.status()
    assert status["ready"] and status["started"] and status["restartCount"] == 0
    # The kubelet ran the startup and readiness probes; the operator answers leading.
    assert deployed.probe("/readyz") == (200, deployed.probe("/readyz")[1])
    assert deployed.probe("/readyz")[1]["role"] == "leading"

    # The process the kubelet started, as the Deployment says: its user and group, no
    # capabilities, no privilege escalation, the runtime's seccomp filter, a read-only root
    pid = _container_pid(deployed)
    proc = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert proc["Uid"].split() == ["65532"] * 4 and proc["Gid"].split() == ["65532"] * 4
    assert int(proc["CapEff"], 16) == 0 and int(proc["CapBnd"], 16) == 0
    assert proc["NoNewPrivs"].strip() == "1"
    assert proc["Seccomp"].strip() == "2"
    root = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    assert "ro" in root[5].split(","), root
    # Pod Security: what the overlay needs beyond `restricted` is the host network and the
    # probes' host (127.0.0.1), nothing else
    (warning,) = deployed.pod.apply_warnings
    violations = warning.split('restricted:latest": ', 1)[1]
    assert set(re.findall(r"(?:^|, )([a-z ]+) \(", violations)) == {
        "host namespaces",
        "probe or lifecycle host",
    }, warning


def _container_pid(deployed: Deployed) -> int:
    container_id = deployed.status()["containerID"].removeprefix("containerd://")
    for line in deployed.k8s.node.ctr("tasks", "list").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    raise AssertionError(f"no task {container_id}")


def test_the_pod_onboards_a_tenant_whose_pods_pull(
    deployed: Deployed, registries: Registries, unique: str
) -> None:
    k8s, acme = deployed.k8s, registries["acme"]
    tenant = f"pod-{unique}"
    ns = f"{tenant}-web"
    image = registries.image("acme", f"acme/pod-{unique}:v1")
    k8s.namespace(ns, tenant=tenant)
    k8s.credentials(tenant, username=acme.user, password=acme.password)
    k8s.tenant(
        tenant,
        secret_name=f"{tenant}-pull",
        registries=[{"server": acme.host, "credentialsRef": {"name": tenant}, "verify": False}],
        namespaces={"selector": {"matchLabels": {"tenant": tenant}}},
    )
    wait_for(lambda: f"{tenant}-pull" in k8s.pull_secrets(ns), what="the entry")
    k8s.pod(ns, "app", image)
    k8s.wait_running(ns, "app")
    # The operator Pod's own log, from the kubelet's pod log directory, names the writes
    log = k8s.node.container_log(
        operatorpod.NAMESPACE, deployed.the_pod()["metadata"]["name"], "operator"
    )
    assert f'"namespace": "{ns}"' in log and "create secrets/" in log, log[-2000:]
    k8s.delete_tenant(tenant)


def test_the_liveness_probe_restarts_it_when_its_watches_go_silent(
    deployed: Deployed, registries: Registries, unique: str, measured: dict[str, str]
) -> None:
    before = deployed.status()["restartCount"]
    frozen = time.monotonic()
    deployed.proxy.freeze()
    try:
        # The operator itself says why, on the port the kubelet probes
        _, body = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(deployed.probe("/livez")),
            what="/livez failing",
            timeout=60,
        )
        assert "silent watches" in body["why"], body
        measured["watches frozen → /livez fails"] = f"{time.monotonic() - frozen:.1f} s"
        # The kubelet: three failed liveness probes, then it kills the container
        wait_for(
            lambda: any(
                "failed liveness probe" in (e.get("message") or "")
                for e in deployed.events("Killing")
            ),
            what="the kubelet killing the container for its liveness probe",
            timeout=90,
            interval=0.5,
        )
        measured["watches frozen → kubelet kills it"] = f"{time.monotonic() - frozen:.1f} s"
    finally:
        deployed.proxy.thaw()
    wait_for(
        lambda: deployed.status()["restartCount"] > before and deployed.ready(),
        what="the restarted container Ready",
        timeout=120,
        interval=0.5,
    )
    measured["frozen → restarted and Ready"] = f"{time.monotonic() - frozen:.1f} s"
    assert deployed.probe("/livez")[0] == 200
    # ...and it works: a new tenant namespace gets the Secret and pulls
    test_the_pod_onboards_a_tenant_whose_pods_pull(deployed, registries, f"{unique}r")
