#!/usr/bin/env bash
# Installs the Debian packages listed in host-packages.txt that are missing, with apt-get,
# non-interactively and without starting any service. Quick and silent when all are there.
#
# Not root and something missing: says so in one line and exits 0; the tests that need the
# packages then skip, naming them (in CI, which runs as root, they are installed and run).
#
# As root the whole run holds a machine-wide lock (flock), so overlapping runs (two checkouts'
# `make test`) take turns. The policy-rc.d it puts in place for the install carries a marker
# line and is removed only if it is still that one; a run killed before its trap ran (SIGKILL)
# leaves it, and the next run removes it first, restoring the one it had moved aside.
# The environment may name other paths (the tests do): HOST_PACKAGES_LIST, _POLICY, _LOCK,
# _APT_GET.
set -euo pipefail
LIST="${HOST_PACKAGES_LIST:-$(dirname "$0")/host-packages.txt}"
POLICY="${HOST_PACKAGES_POLICY:-/usr/sbin/policy-rc.d}"
LOCK="${HOST_PACKAGES_LOCK:-/run/lock/tenant-registry-operator-host-packages.lock}"
APT_GET="${HOST_PACKAGES_APT_GET:-apt-get}"
BACKUP="$POLICY.before-host-packages"  # one name: under the lock there is one run at a time
MARK="# put here by tenant-registry-operator scripts/host-packages.sh, removed when it ends"

if [ "$(id -u)" -eq 0 ]; then
  exec 9>"$LOCK"
  flock 9
fi

ours() { [ -f "$POLICY" ] && grep -qxF "$MARK" "$POLICY"; }
# Only ever removes our own policy-rc.d; puts back what was there before it.
restore() {
  if ours; then rm -f "$POLICY"; fi
  if [ -e "$BACKUP" ] && [ ! -e "$POLICY" ]; then mv "$BACKUP" "$POLICY"; fi
}
if [ "$(id -u)" -eq 0 ]; then
  restore  # what a killed run left behind
fi

mapfile -t WANTED < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$LIST")
missing=()
for pkg in "${WANTED[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = installed ] || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "host-packages: not root, not installing ${missing[*]} (run: sudo $0); tests needing them skip" >&2
  exit 0
fi

echo "host-packages: installing ${missing[*]}" >&2
# policy-rc.d exiting 101 tells invoke-rc.d and deb-systemd-invoke not to start services
# (podman's socket, for one): a test machine wants the binaries, not daemons.
trap restore EXIT
trap 'exit 130' INT TERM HUP  # so that the EXIT trap runs
if [ -e "$POLICY" ]; then mv "$POLICY" "$BACKUP"; fi
printf '#!/bin/sh\n%s\nexit 101\n' "$MARK" >"$POLICY.tmp"
chmod 755 "$POLICY.tmp"
mv "$POLICY.tmp" "$POLICY"

export DEBIAN_FRONTEND=noninteractive
APT=("$APT_GET" -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
     -o Dpkg::Options::=--force-confold)
"${APT[@]}" update >/dev/null
"${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "host-packages: installed ${missing[*]}" >&2
