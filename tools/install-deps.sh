#!/usr/bin/env bash
# Installs the Debian packages wsvisor needs that are missing (idempotent: with
# everything present it only checks). Needs root for apt-get when something is missing.
#   install-deps.sh          what `make run` and `make test` need
#   install-deps.sh build    the compiler and libraries only (the Dockerfile's build stage)
#   install-deps.sh fuzz     everything, and clang with libFuzzer (`make fuzz`)
set -euo pipefail

# What compiles the server (and all `install-deps.sh build` installs: the Dockerfile's
# build stage, which needs no test tool, no browser and no node).
packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev doctest-dev libtomlplusplus-dev libcli11-dev
  prometheus-cpp-dev libssl-dev libhiredis-dev
)
build_only=false
[ "${1:-}" = build ] && build_only=true
if ! $build_only; then
  packages+=(
    python3 python3-websockets python3-pytest python3-prometheus-client
    # The Redis client's tests start real redis-servers; haproxy is for the cluster tests.
    redis-server haproxy
    # The dashboard's e2e test drives headless Chromium (tests/e2e/test_dashboard.py).
    chromium chromium-driver python3-selenium
  )
fi
# `install-deps.sh fuzz` (make fuzz): clang and its libFuzzer runtime too.
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# node and npm run the Centrifugo SDK of the hub e2e tests (tests/node; the build installs
# its packages into the build directory). Checked as commands, not packages: a node from
# elsewhere (NodeSource's nodejs, which bundles npm and conflicts with Debian's npm) is fine.
# Debian bookworm has nodejs 18 and npm 9.
if ! $build_only && ! command -v node >/dev/null 2>&1 && ! command -v nodejs >/dev/null 2>&1; then
  missing+=(nodejs)
fi
if ! $build_only && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

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
