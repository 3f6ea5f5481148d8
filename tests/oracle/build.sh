#!/usr/bin/env bash
# Builds main.go (in the current directory) against k8s.io/kubernetes v$K8S into ./oracle.
# kubernetes' go.mod points its staging modules (k8s.io/api, ...) at ./staging; this module
# replaces each with the published v0.MINOR.PATCH, as localcluster/build.sh does.
set -euo pipefail
: "${K8S:?}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod init example.invalid/tro-oracle >/dev/null 2>&1
GOMOD="$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$GOMOD" |
  while read -r m; do go mod edit -replace="$m=$m@v0.${K8S#1.}"; done
go get "k8s.io/kubernetes@v$K8S" >/dev/null 2>&1
go build -trimpath -o oracle .
