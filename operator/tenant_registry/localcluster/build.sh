#!/usr/bin/env bash
# Builds a set of binaries from their official Go modules through the Go module proxy, into
# DEST (argument 2):
#   control-plane: kube-apiserver, kube-controller-manager, kubectl and etcd
#   node:          kubelet and kube-scheduler (same Kubernetes module and version)
#
# Called by tenant_registry.localcluster.build, which holds the set's lock, passes an empty
# staging directory and renames it into the cache only when this script succeeded, so a
# half-built cache is never used. Versions come from the environment (pinned in versions.py).
set -euo pipefail
: "${K8S_VERSION:?}" "${ETCD_VERSION:?}"
SET="$1"; DEST="$2"
case "$SET" in
  control-plane) CMDS=(kube-apiserver kube-controller-manager kubectl) ;;
  node) CMDS=(kubelet kube-scheduler) ;;
  *) echo "unknown set $SET (control-plane or node)" >&2; exit 2 ;;
esac
K8S="$K8S_VERSION"; ETCD="$ETCD_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
mkdir -p "$W/k8s" "$W/etcd" "$DEST"

echo "== kubernetes v$K8S: resolving modules"
cd "$W/k8s"
go mod init "example.invalid/k8s-$SET" >/dev/null 2>&1
# kubernetes' go.mod replaces its staging modules (k8s.io/api, ...) with ./staging paths;
# a wrapper module replaces each with its published v0.MINOR.PATCH instead.
GOMOD="$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
STAGING="v0.${K8S#1.}"
sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$GOMOD" |
  while read -r m; do go mod edit -replace="$m=$m@$STAGING"; done
PKGS=()
for c in "${CMDS[@]}"; do PKGS+=("k8s.io/kubernetes/cmd/$c"); done
TOOLS=()
for p in "${PKGS[@]}"; do TOOLS+=("$p@v$K8S"); done
go get -tool "${TOOLS[@]}"
MINOR="$(echo "$K8S" | cut -d. -f2)"
LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD+=" -X $p.gitVersion=v$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  LD+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done
echo "== kubernetes v$K8S: building ${CMDS[*]} (about 5 minutes on 2 cores with a cold Go cache)"
go build -trimpath -tags selinux,notest -ldflags "$LD" -o "$DEST/" "${PKGS[@]}"
"$DEST/${CMDS[0]}" --version

if [ "$SET" = control-plane ]; then
  echo "== etcd v$ETCD: building"
  # A module of its own, so minimal version selection does not mix etcd's and kubernetes' deps.
  cd "$W/etcd"
  go mod init example.invalid/etcd-testbin >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@v$ETCD"
  go build -trimpath -ldflags "-s -w" -o "$DEST/etcd" go.etcd.io/etcd/server/v3
  "$DEST/etcd" --version | head -1
fi
