#!/usr/bin/env bash
# Large-state figures for issue 4: with N keys (default 1,000,000) of 100-byte values in a
# 3-node cluster on 127.0.0.1, measure
#   - loading them (kvbench, 50 clients, etcd Put, every key once),
#   - a fresh snapshot of the whole store (kvctl snapshot save),
#   - InstallSnapshot to a wiped follower: kill -9, delete its data dir, restart; time until
#     it has applied everything, and its peak RSS,
#   - kvd --restore-from of that snapshot into a new data dir: time until it serves reads,
#     and its peak RSS.
#   - each node's RSS once loaded, and its peak, then again after --load-seconds of etcd puts
#     from 1,000 clients over 100 connections over the same keys (issue 14: at most 256 MiB).
# Usage: bench/large_state.sh [--keys N] [--bin DIR] [--resp-load] [--memory-only]
#                             [--load-seconds S] [--kvd-flags "FLAGS"] [--log-level L]
#                             (nothing else should run meanwhile)
#   --kvd-flags    more flags for every kvd (an A/B of a setting: "--snapshot-entries 100000")
#   --log-level    kvd's (default warn); at info, the snapshots each node cut while loading
#                  are counted, with their median time
#   --resp-load    load the keys by RESP SET, 50 connections pipelined 16 deep, through the
#                  leader (faster than etcd Puts: the state, not the load, is measured)
#   --memory-only  stop after the memory figures
set -euo pipefail
cd "$(dirname "$0")/.."
keys=1000000
bin=build/bin
resp_load=0
memory_only=0
load_seconds=10
kvd_flags=""
log_level=warn
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --resp-load) resp_load=1; shift ;;
    --memory-only) memory_only=1; shift ;;
    --load-seconds) load_seconds=$2; shift 2 ;;
    --kvd-flags) kvd_flags=$2; shift 2 ;;
    --log-level) log_level=$2; shift 2 ;;
    *) sed -n '2,24p' "$0"; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/raftkv-large.XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/node_config.json" <<EOT
[ {"ip": "127.0.0.1", "port": 17000, "grpc_port": 18000},
  {"ip": "127.0.0.1", "port": 17001, "grpc_port": 18001},
  {"ip": "127.0.0.1", "port": 17002, "grpc_port": 18002} ]
EOT
eps=127.0.0.1:18000,127.0.0.1:18001,127.0.0.1:18002
start_node() {
  "$bin/kvd" --id=$1 --config "$work/node_config.json" --data-dir "$work/n$1" \
    --log-level "$log_level" $kvd_flags "${@:2}" >>"$work/n$1.log" 2>&1 &
  pid[$1]=$!
}
status_json() { "$bin/kvctl" --endpoints "$eps" --timeout-ms 2000 --output json status 2>/dev/null || true; }
field() { python3 -c "import json,sys; d=[s for s in json.load(sys.stdin) if s.get('id')==$1]; print(d[0]['$2'] if d else -1)"; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$1/status; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$1/status; }
memory() {  # what
  local i
  for i in 0 1 2; do
    echo "memory $1: node $i ($([ $i -eq "$leader" ] && echo leader || echo follower)): RSS $(rss_mb ${pid[$i]}) MiB, peak $(peak_rss_mb ${pid[$i]}) MiB"
  done
}

for i in 0 1 2; do start_node $i; done
until status_json | grep -q '"leader":[0-9]'; do sleep 0.2; done
leader=$(status_json | field 0 leader)
follower=$(( (leader + 1) % 3 ))
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; keys: $keys x 100 B"

t=$(now)
if [ $resp_load -eq 1 ]; then
  "$bin/kvbench" --backend resp --endpoints "127.0.0.1:$((17000 + leader))" --clients 50 \
    --conns 50 --pipeline 16 --ops "$keys" --keys "$keys" --sequential-keys --key-prefix bench- \
    --key-bytes 1 --value-bytes 100 --duration 86400 --timeout-ms 10000
else
  "$bin/kvbench" --backend etcd --endpoints "$eps" --clients 50 --conns 50 --ops "$keys" \
    --keys "$keys" --sequential-keys --key-prefix bench- --key-bytes 1 --value-bytes 100 \
    --duration 86400 --timeout-ms 10000
fi
echo "load: $(since $t) s"
if [ "$log_level" != warn ]; then
  for i in 0 1 2; do  # "snapshot: <path> at index N (K keys, T ms; ..."
    grep -o '] snapshot: .* ms;' "$work/n$i.log" | awk '{ print $(NF - 1) }' | sort -n |
      awk -v n=$i '{ t[NR] = $1 }
        END { printf "snapshots cut while loading: node %d: %d, median %d ms\n", n, NR,
              NR ? t[int((NR + 1) / 2)] : 0 }'
  done
fi
memory "after loading $keys keys"
"$bin/kvbench" --backend etcd --endpoints "$eps" --clients 1000 --conns 100 --keys "$keys" \
  --key-prefix bench- --key-bytes 1 --value-bytes 100 --duration "$load_seconds" --warmup 0 \
  --timeout-ms 10000 | grep -E "measured|all "
memory "after ${load_seconds} s of etcd puts from 1,000 clients"
[ $memory_only -eq 1 ] && exit 0

t=$(now)
"$bin/kvctl" --endpoints "127.0.0.1:$((18000 + leader))" --timeout-ms 600000 snapshot save "$work/snap.db" >/dev/null
echo "snapshot (kvctl snapshot save, $(du -m "$work/snap.db" | cut -f1) MB): $(since $t) s"

kill -9 "${pid[$follower]}"; wait "${pid[$follower]}" 2>/dev/null || true
rm -rf "$work/n$follower"
target=$(status_json | field "$leader" applied_index)
t=$(now)
start_node $follower
until [ "$(status_json | field $follower applied_index)" -ge "$target" ] 2>/dev/null; do sleep 0.2; done
echo "wiped follower caught up to index $target: $(since $t) s, peak RSS $(peak_rss_mb ${pid[$follower]}) MB"

cat > "$work/restore.json" <<EOT
[ {"ip": "127.0.0.1", "port": 17010, "grpc_port": 18010} ]
EOT
t=$(now)
"$bin/kvd" --config "$work/restore.json" --data-dir "$work/restored" --restore-from "$work/snap.db" \
  --log-level warn >"$work/restored.log" 2>&1 &
pid[r]=$!
until printf 'GET bench-1\n' | timeout 2 nc -q1 127.0.0.1 17010 2>/dev/null | grep -qx '[a-z]\{100\}'; do sleep 0.2; done
echo "restore into a new node until it serves reads: $(since $t) s, peak RSS $(peak_rss_mb ${pid[r]}) MB"
