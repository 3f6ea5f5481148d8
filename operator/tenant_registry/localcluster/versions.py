"""The pinned versions: the one place to change them."""

K8S_VERSION = "1.37.2"
ETCD_VERSION = "3.7.3"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd")
# The node (localcluster/node.py): from the same Kubernetes module and version, cached apart
# so that building it never touches the control plane's cache.
NODE_BINARIES = ("kubelet", "kube-scheduler")
