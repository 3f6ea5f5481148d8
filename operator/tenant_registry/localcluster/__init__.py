"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager).

Built from the official Go modules, cached by version, started on loopback for the tests,
the demo (`make run`) and the benchmarks. See `ControlPlane` and `ensure_binaries`.
"""

from tenant_registry.localcluster.build import BuildError, ensure_binaries
from tenant_registry.localcluster.controlplane import ControlPlane, StartError
from tenant_registry.localcluster.versions import ETCD_VERSION, K8S_VERSION

__all__ = [
    "ETCD_VERSION",
    "K8S_VERSION",
    "BuildError",
    "ControlPlane",
    "StartError",
    "ensure_binaries",
]
