#!/usr/bin/env bash
# Sets everything up and runs the whole test suite:
#   1. installs the Debian packages (scripts/setup.sh; quiet when already installed),
#   2. builds build/ (RelWithDebInfo) and runs every ctest suite there (unit, Raft
#      simulation, integration with real kvd processes),
#   3. builds build-asan/ (Debug, AddressSanitizer + UBSan) and runs the unit suites there,
#   4. runs the chaos checker's own tests (first, they need no build), a bounded chaos run
#      (tests/chaos, about 3 min) and the heal test (five partitions of a 3-node cluster, each
#      cut-off node must serve a write within 2 s of the heal; about 40 s),
#   5. builds the Docker image from build/bin's kvd and kvctl (no second compile) and tests
#      a 3-node compose cluster (tests/deploy; SKIPPED where no Docker engine answers).
# Exit code 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${RAFTKV_JOBS:-$(nproc)}
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)"; }

step "setup"
bash scripts/setup.sh

step "chaos checker: unit tests and the shared linearizability test vectors"
/usr/bin/python3 tests/chaos/test_checker.py

step "build (RelWithDebInfo)"
scripts/build.sh build
step "tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

step "build (Debug, ASan+UBSan)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DRAFTKV_SANITIZE=ON -DRAFTKV_BUILD_BENCH=OFF
step "tests (ASan+UBSan, unit and simulation suites)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900 -LE 'integration|long'
step "chaos (bounded: 3 min of kill/pause/partition/restart/lost-disk faults; prints seed on failure)"
tests/chaos/run --minutes 3 --faults kill,pause,partition,restart,disk --bin build/bin \
  ${RAFTKV_CHAOS_SEED:+--seed "$RAFTKV_CHAOS_SEED"}
step "chaos heal test (issue 15: a cut-off node serves a write within 2 s of the heal)"
tests/chaos/run heal --kinds isolated-leader,isolated-follower,one-way,one-way,bridge \
  --repeat 1 --hold 7 --bound 2 --bin build/bin ${RAFTKV_CHAOS_SEED:+--seed "$RAFTKV_CHAOS_SEED"}
step "deploy test (docker)"
bash tests/deploy/run    # the image and a 3-node compose cluster; SKIPPED without a Docker engine
step "all tests passed"
