#!/usr/bin/env bash
# Sets everything up and runs the main job: installs packages, builds, and starts a local
# cluster on 127.0.0.1 in the foreground (Ctrl-C stops it). Extra arguments go to
# deploy/local-cluster.sh (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
scripts/build.sh build
exec deploy/local-cluster.sh "$@"
