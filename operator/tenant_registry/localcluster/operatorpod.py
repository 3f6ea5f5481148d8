"""The operator as a real Pod on the local node: `kubectl apply -k` of deploy/ through an
overlay that changes only what this machine needs.

What the overlay changes, and why (everything else, the securityContext, probes, resources,
volumes, env and args of deploy/deployment.yaml, the kubelet enforces as in any cluster):

- the image: `localhost/tenant-registry-operator:dev`, built by localcluster/image.py and
  imported into the node's containerd, so `imagePullPolicy: Never`;
- `hostNetwork: true` and `KUBERNETES_SERVICE_HOST/PORT` pointing at the API server on
  127.0.0.1: the local control plane listens on loopback only, and no kube-proxy serves the
  `kubernetes` Service;
- the probes' `host: 127.0.0.1`: a host-network Pod's IP is the Node's, which is this
  machine's own network address, and the node's traffic stays on loopback;
- the health and metrics ports (free ones, in the container ports the probes name and in the
  args): on the host network 8080 and 9090 would be this shared machine's own ports;
- `replicas: 1`: with the host network, each replica takes those ports on the one node, so
  the scheduler would keep the second replica Pending (leader election between replicas is
  shown by tests/cluster/test_leader_election.py);
- the namespace's Pod Security `enforce: privileged` (the host network is not allowed by
  `restricted` nor `baseline`), with `warn: restricted` added, so `kubectl apply` lists what
  this Pod needs beyond `restricted`: the host network and the probes' host, nothing else.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tenant_registry.localcluster import image as image_mod
from tenant_registry.localcluster.controlplane import ControlPlane, _free_port
from tenant_registry.localcluster.harness import REPO
from tenant_registry.localcluster.node import Node

DEPLOY = REPO / "deploy"
NAMESPACE = "tenant-registry-system"
DEPLOYMENT = "tenant-registry-operator"
CONTAINER = "operator"
UPSTREAM_IMAGE = "ghcr.io/tenancy-dev/tenant-registry-operator"


@dataclass
class OperatorPod:
    """The Deployment as applied: its ports on 127.0.0.1, the overlay, what kubectl said."""

    overlay: Path
    health_port: int
    metrics_port: int
    apply_warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def probe_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"


def _deployment() -> dict[str, Any]:
    docs = yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "Deployment")


def overlay(
    directory: Path,
    *,
    api_port: int,
    health_port: int,
    metrics_port: int,
    image: str = image_mod.IMAGE,
    extra_args: tuple[str, ...] = (),
) -> Path:
    """Write the overlay (kustomization.yaml) into `directory`; see the module docstring."""
    directory.mkdir(parents=True, exist_ok=True)
    container = _container_index()
    ports = {p["name"]: i for i, p in enumerate(_container()["ports"])}
    c = f"/spec/template/spec/containers/{container}"
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": f"{c}/name", "value": CONTAINER},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/spec/template/spec/hostNetwork", "value": True},
        {"op": "replace", "path": f"{c}/imagePullPolicy", "value": "Never"},
        {
            "op": "replace",
            "path": f"{c}/ports/{ports['health']}/containerPort",
            "value": health_port,
        },
        {
            "op": "replace",
            "path": f"{c}/ports/{ports['metrics']}/containerPort",
            "value": metrics_port,
        },
    ]
    for arg in (f"--health-port={health_port}", f"--metrics-port={metrics_port}", *extra_args):
        ops.append({"op": "add", "path": f"{c}/args/-", "value": arg})
    for name, value in (
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", str(api_port)),
    ):
        ops.append({"op": "add", "path": f"{c}/env/-", "value": {"name": name, "value": value}})
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        ops.append({"op": "add", "path": f"{c}/{probe}/httpGet/host", "value": "127.0.0.1"})
    name, _, tag = image.rpartition(":")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, directory)],
        "images": [{"name": UPSTREAM_IMAGE, "newName": name, "newTag": tag}],
        "patches": [
            {
                "target": {"kind": "Deployment", "name": DEPLOYMENT},
                "patch": yaml.safe_dump(ops, sort_keys=False),
            },
            {
                "target": {"kind": "Namespace", "name": NAMESPACE},
                "patch": yaml.safe_dump(
                    [
                        {
                            "op": "add",
                            "path": "/metadata/labels/pod-security.kubernetes.io~1enforce",
                            "value": "privileged",
                        },
                        {
                            "op": "add",
                            "path": "/metadata/labels/pod-security.kubernetes.io~1warn",
                            "value": "restricted",
                        },
                    ],
                    sort_keys=False,
                ),
            },
        ],
    }
    (directory / "kustomization.yaml").write_text(
        yaml.dump(kustomization, Dumper=_BlockDumper, sort_keys=False)
    )
    return directory


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the patches) as `|` blocks, readable in the written overlay."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def _container() -> dict[str, Any]:
    return dict(_deployment()["spec"]["template"]["spec"]["containers"][_container_index()])


def _container_index() -> int:
    containers = _deployment()["spec"]["template"]["spec"]["containers"]
    return next(i for i, c in enumerate(containers) if c["name"] == CONTAINER)


def deploy(
    cp: ControlPlane,
    node: Node,
    *,
    api_port: int | None = None,
    extra_args: tuple[str, ...] = (),
    image: str | None = None,
) -> OperatorPod:
    """Build the image (podman's cache makes an unchanged one quick), import it into the node,
    apply crds/ and the overlay of deploy/. `api_port`: where the Pod finds the API server
    on 127.0.0.1 (default: the API server itself). Does not wait for the Pod."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    # This checkout's own tag: podman's storage is the machine's, shared with other checkouts.
    tag = image or image_mod.build(tag=image_mod.checkout_tag()).tag
    timings["image build"] = time.monotonic() - started
    timings["image import"] = node.import_image(tag)
    health, metrics = _free_port(), _free_port()
    path = overlay(
        cp.dir / "operator-overlay",
        api_port=api_port or cp.port,
        health_port=health,
        metrics_port=metrics,
        image=tag,
        extra_args=extra_args,
    )
    cp.kubectl("apply", "-k", str(REPO / "crds"))
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/tenantregistries.registry.tenancy.dev",
    )
    applied = cp.kubectl("apply", "-k", str(path))
    warnings = [line for line in applied.stderr.splitlines() if line.startswith("Warning:")]
    return OperatorPod(path, health, metrics, warnings, timings)
