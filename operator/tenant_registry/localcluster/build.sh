#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from their official Go
# modules through the Go module proxy, into DEST (argument 1).
#
# Called by tenant_registry.localcluster.build, which holds the lock, passes an empty staging
# directory and renames it into the cache only when this script succeeded, so a half-built
# cache is never used. Versions come from the environment (pinned in versions.py).
set -euo pipefail
: "${K8S_VERSION:?}" "${ETCD_VERSION:?}"
DEST="$1"
K8S="$K8S_VERSION"; ETCD="$ETCD_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
mkdir -p "$W/k8s" "$W/etcd" "$DEST"

echo "== kubernetes v$K8S: resolving modules"
cd "$W/k8s"
go mod init example.invalid/k8s-testbins >/dev/null 2>&1
# kubernetes' go.mod replaces its staging modules (k8s.io/api, ...) with ./staging paths;
# a wrapper module replaces each with its published v0.MINOR.PATCH instead.
GOMOD="$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
STAGING="v0.${K8S#1.}"
sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$GOMOD" |
  while read -r m; do go mod edit -replace="$m=$m@$STAGING"; done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S" \
              "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S" \
              "k8s.io/kubernetes/cmd/kubectl@v$K8S"
MINOR="$(echo "$K8S" | cut -d. -f2)"
LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD+=" -X $p.gitVersion=v$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  LD+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done
echo "== kubernetes v$K8S: building (about 5 minutes on 2 cores)"
go build -trimpath -tags selinux,notest -ldflags "$LD" -o "$DEST/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl

echo "== etcd v$ETCD: building"
# A module of its own, so minimal version selection does not mix etcd's and kubernetes' deps.
cd "$W/etcd"
go mod init example.invalid/etcd-testbin >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@v$ETCD"
go build -trimpath -ldflags "-s -w" -o "$DEST/etcd" go.etcd.io/etcd/server/v3
"$DEST/kube-apiserver" --version
"$DEST/etcd" --version | head -1
