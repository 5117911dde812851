#!/usr/bin/env bash
# State machine + SQLite snapshot figures: apply throughput (async and synced RocksDB writes),
# then snapshot, verify and restore of the loaded store, then the backup that follows the log
# (seed, per-round incremental cost at 20k and at KEYS keys, online-backup copy). Run from the
# repository root after building kv_bench; takes the build lock so it does not compete with
# builds.
#   bench/kv/run.sh [BUILD_DIR] [KEYS]
set -euo pipefail
build=${1:-build}
keys=${2:-1000000}
bin=$build/bin/kv_bench
work=$(mktemp -d "${TMPDIR:-/tmp}/kv_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
run() { flock /tmp/raftkv-build.lock "$bin" "$@"; }
run load --db "$work/sync" --keys 20000 --keys-per-entry 1 --sync
run backup --db "$work/sync" --backup "$work/small-backup.db" --keys 20000 --rounds 3
run load --db "$work/db" --keys "$keys" --keys-per-entry 1
run snapshot --db "$work/db" --snap "$work/snap.db"
run verify --snap "$work/snap.db"
run restore --snap "$work/snap.db" --db "$work/restored"
run install --db "$work/restored" --snap "$work/snap.db"
run backup --db "$work/db" --backup "$work/backup.db" --keys "$keys" --rounds 3
du -sm "$work/db" "$work/restored" | sed 's/^/disk_mib /'
