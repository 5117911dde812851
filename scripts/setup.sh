#!/usr/bin/env bash
# Installs everything raftkv needs to build, test and run, from Debian 12 packages.
# Idempotent and quiet when everything is already there. Run as root (or with sudo).
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build pkg-config g++ git
  # libraries (see shared/build-notes.md)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler librocksdb-dev
  libabsl-dev libcli11-dev libgtest-dev libgmock-dev libsqlite3-dev libasio-dev libspdlog-dev
  libbenchmark-dev libjemalloc-dev
  # clients and peers used by tests, the run script and benchmarks
  redis-tools etcd-client etcd-server netcat-openbsd sqlite3 procps python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# etcd-server starts a system etcd on 2379/2380 when installed; the benchmarks start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
echo "setup: done"
