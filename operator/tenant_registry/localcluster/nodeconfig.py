"""The configuration files of a local node: containerd, CNI, the kubelet, its kubeconfig.

Pure functions of the slot (localcluster/nodeslot.py) and a few paths, so one place says how
the node is set up for this kind of machine; the keeper (localcluster/node.py) writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenant_registry.localcluster.nodeslot import Slot

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


@dataclass(frozen=True)
class Spec:
    """What the handle tells the keeper (as JSON)."""

    name: str  # the Node's name
    state_dir: str
    server: str  # the API server's URL
    ca_dir: str  # the control plane's PKI (ca.crt, ca.key)
    admin_kubeconfig: str
    kubectl: str
    node_bin: str  # kubelet, kube-scheduler
    pause_archive: str
    pause_image: str
    keep_logs: bool = False


def containerd_config(slot: Slot, pause_image: str) -> str:
    state, run = Path(slot.state_dir), slot.run_dir
    return f"""\
version = 2
root = "{state}/containerd"
state = "{run}/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{slot.socket}"
[ttrpc]
  address = "{slot.socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{state}/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot give the sandbox the
  # oom_score_adj of -998 and every sandbox fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  sandbox_image = "{pause_image}"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{state}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{run}/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{state}/certs.d"
"""


def cni_config(slot: Slot) -> str:
    # No gateway and no masquerade: a Pod reaches nothing beyond its own network namespace
    # (and the bridge sets no sysctl). The operator's Pod uses the host network instead.
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": slot.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": slot.bridge,
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": slot.subnet}]],
                        "dataDir": str(slot.run_dir / "cni-ipam"),
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config(slot: Slot, *, ca: str, port: int, healthz_port: int) -> dict[str, Any]:
    state = Path(slot.state_dir)
    endpoint = f"unix://{slot.socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine: cgroup v1 (hybrid)
        "cgroupDriver": "cgroupfs",  # containerd 1.6 cannot tell the kubelet its driver
        "cgroupRoot": slot.cgroup,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(state / "pki" / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(state / "pki" / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": ca},
        },
        "authorization": {"mode": "AlwaysAllow"},  # listens on loopback only, certs only
        "resolvConf": str(state / "resolv.conf"),
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "enforceNodeAllocatable": [],
        "evictionHard": {},  # a shared machine's disk or memory must not evict test Pods
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "podLogsDir": str(slot.pod_logs),
        "volumePluginDir": str(state / "volume-plugins"),
        "maxPods": 110,
    }


def kubeconfig_text(server: str, ca: str, cert: Path, key: Path) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": server, "certificate-authority": ca}}
            ],
            "users": [
                {"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
            "current-context": "node",
        }
    )
