#!/usr/bin/env bash
# Installs the Debian packages listed in host-packages.txt that are missing, with apt-get,
# non-interactively and without starting any service. Quick and silent when all are there.
#
# Not root and something missing: says so in one line and exits 0; the tests that need the
# packages then skip, naming them (in CI, which runs as root, they are installed and run).
set -euo pipefail
LIST="$(dirname "$0")/host-packages.txt"
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
POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
  BACKUP="$(mktemp "$POLICY.host-packages.XXXXXX")"
  mv "$POLICY" "$BACKUP"
fi
restore() {
  rm -f "$POLICY"
  if [ -n "$BACKUP" ]; then mv "$BACKUP" "$POLICY"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
     -o Dpkg::Options::=--force-confold)
"${APT[@]}" update >/dev/null
"${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "host-packages: installed ${missing[*]}" >&2
