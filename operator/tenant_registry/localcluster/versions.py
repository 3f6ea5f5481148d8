"""The pinned control-plane versions: the one place to change them."""

K8S_VERSION = "1.37.2"
ETCD_VERSION = "3.7.3"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd")
