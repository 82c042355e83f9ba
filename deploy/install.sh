#!/usr/bin/env bash
# Installs the system packages troupe needs on Debian 12, as root. Idempotent: when everything
# is present it only checks and returns (well under a second).
set -euo pipefail

# package -> a file it installs
declare -A NEED=(
  [nats-server]=/usr/sbin/nats-server
  [crun]=/usr/bin/crun
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iproute2]=/usr/sbin/ip
  [iptables]=/usr/sbin/iptables
  [nftables]=/usr/sbin/nft
  [busybox-static]=/bin/busybox
  [skopeo]=/usr/bin/skopeo
  [umoci]=/usr/bin/umoci
  [docker-registry]=/usr/bin/docker-registry
  [util-linux]=/usr/bin/unshare
)

missing=()
for pkg in "${!NEED[@]}"; do
  [ -e "${NEED[$pkg]}" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "troupe: missing system packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "troupe: missing system packages: ${missing[*]}; this script knows only apt-get (Debian 12)" >&2
  exit 1
fi

echo "troupe: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# docker-registry's package starts a system service on :5000; troupe's tests run their own.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
echo "troupe: system packages ready" >&2
