#!/usr/bin/env bash
# Installs the Debian packages wsvisor needs that are missing (idempotent: with
# everything present it only checks). Needs root for apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev doctest-dev libtomlplusplus-dev libcli11-dev
  prometheus-cpp-dev libssl-dev
  python3 python3-websockets python3-pytest python3-prometheus-client
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages and not root; run as root or install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
