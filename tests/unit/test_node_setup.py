"""The local node's configuration carries this machine's gotchas, and the operator Pod's
overlay changes deploy/ only where this machine needs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenant_registry.localcluster import ensure_binaries, nodeconfig, operatorpod
from tenant_registry.localcluster.nodeslot import Slot
from tenant_registry.localcluster.registry import Registry

SLOT = Slot(3, "/tmp/tro-node-x")


def test_the_kubelet_config_handles_the_machines_gotchas() -> None:
    config = nodeconfig.kubelet_config(SLOT, ca="/ca.crt", port=1, healthz_port=2)
    assert config["failCgroupV1"] is False  # cgroup v1 (hybrid) here
    assert config["cgroupDriver"] == "cgroupfs"  # containerd 1.6 cannot tell it
    assert config["cgroupRoot"] == "/tro-node3"  # the slot's cgroup: found and removed
    assert config["makeIPTablesUtilChains"] is False  # nothing in the machine's iptables
    assert config["address"] == config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["podLogsDir"] == "/tmp/tro-node-x/pod-logs"
    assert config["containerRuntimeEndpoint"] == (
        "unix:///run/tenant-registry-operator/node3/containerd.sock"
    )


def test_containerd_keeps_its_state_in_the_slot_and_restricts_oom_score_adj() -> None:
    toml = nodeconfig.containerd_config(SLOT, "localhost/tro-node/pause:3.10")
    for line in (
        "restrict_oom_score_adj = true",  # root without CAP_SYS_RESOURCE here
        "netns_mounts_under_state_dir = true",  # not /var/run/netns
        'Root = "/run/tenant-registry-operator/node3/runc"',  # not /run/containerd/runc
        'state = "/run/tenant-registry-operator/node3/containerd"',
        'root = "/tmp/tro-node-x/containerd"',
        'path = "/tmp/tro-node-x/containerd-opt"',  # not /opt/containerd
        'sandbox_image = "localhost/tro-node/pause:3.10"',
        'config_path = "/tmp/tro-node-x/certs.d"',
        'address = ""',  # no metrics listener
    ):
        assert line in toml, line


def test_the_pods_network_reaches_nothing_beyond_the_pod() -> None:
    (bridge,) = json.loads(nodeconfig.cni_config(SLOT))["plugins"]
    assert bridge["bridge"] == "tro-node3" and len(bridge["bridge"]) <= 15
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.217.3.0/24"}]]


_HEAD = "http.request.method=HEAD http.request.uri=/v2/team/app/manifests/v1"
LOG = "\n".join(  # distribution 2.8's lines for a pull: the anonymous try, then with a password
    [
        'level=warning msg="error authorizing context: basic authentication challenge for '
        f'realm \\"r\\": invalid authorization credential" {_HEAD} vars.name=team/app',
        f'level=info msg="authorized request" {_HEAD} vars.name=team/app vars.reference=v1',
        f'level=info msg="response completed" {_HEAD} http.response.status=200',
        'level=info msg="authorized request" http.request.method=GET '
        'http.request.uri="/v2/team/app/blobs/sha256:ab" vars.name=team/app',
    ]
)


def test_the_registry_log_tells_authorized_manifest_requests(tmp_path: Path) -> None:
    registry = Registry(tmp_path, user="u", password="p", port=5)
    registry.log.write_text(LOG)
    assert registry.manifest_requests() == [("team/app", False), ("team/app", True)]


def _render(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = str(ensure_binaries(quiet=True) / "kubectl")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            k: v for key, sub in value.items() for k, v in _leaves(sub, f"{path}/{key}").items()
        }
    if isinstance(value, list):
        return {k: v for i, sub in enumerate(value) for k, v in _leaves(sub, f"{path}/{i}").items()}
    return {path: value}


@pytest.mark.cluster  # needs the pinned kubectl (its kustomize)
def test_the_operator_pods_overlay_changes_only_what_this_machine_needs(tmp_path: Path) -> None:
    plain = _render(operatorpod.DEPLOY)
    ours = _render(
        operatorpod.overlay(
            tmp_path / "overlay", api_port=6443, health_port=18080, metrics_port=19090
        )
    )
    assert set(ours) == set(plain)
    changed = {
        key: {
            p: v for p, v in _leaves(ours[key]).items() if _leaves(plain[key]).get(p, "absent") != v
        }
        for key in plain
    }
    c = "/spec/template/spec/containers/0"
    args = len(
        plain[("Deployment", operatorpod.DEPLOYMENT)]["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
    )
    env = len(
        plain[("Deployment", operatorpod.DEPLOYMENT)]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    )
    assert {k: v for k, v in changed.items() if v} == {
        ("Namespace", operatorpod.NAMESPACE): {
            "/metadata/labels/pod-security.kubernetes.io/enforce": "privileged",
            "/metadata/labels/pod-security.kubernetes.io/warn": "restricted",
        },
        ("Deployment", operatorpod.DEPLOYMENT): {
            "/spec/replicas": 1,
            "/spec/template/spec/hostNetwork": True,
            f"{c}/image": "localhost/tenant-registry-operator:dev",
            f"{c}/imagePullPolicy": "Never",
            f"{c}/ports/0/containerPort": 18080,
            f"{c}/ports/1/containerPort": 19090,
            f"{c}/args/{args}": "--health-port=18080",
            f"{c}/args/{args + 1}": "--metrics-port=19090",
            f"{c}/env/{env}/name": "KUBERNETES_SERVICE_HOST",
            f"{c}/env/{env}/value": "127.0.0.1",
            f"{c}/env/{env + 1}/name": "KUBERNETES_SERVICE_PORT",
            f"{c}/env/{env + 1}/value": "6443",
            f"{c}/startupProbe/httpGet/host": "127.0.0.1",
            f"{c}/livenessProbe/httpGet/host": "127.0.0.1",
            f"{c}/readinessProbe/httpGet/host": "127.0.0.1",
        },
    }
