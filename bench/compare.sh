#!/usr/bin/env bash
# raftkv against its peers on this machine, same tools, same run (issue 14).
#
# Usage: bench/compare.sh [--quick] [--rounds N] [--duration S] [--warmup S] [--sweep LIST]
#                         [--bin DIR] [--out DIR] [--base-port P] [--no-etcd36]
#                         [--etcd36-version vX.Y.Z] [--open-rate LIST] [--keep-logs]
#
# Starts, on fresh data dirs under one temp dir, all on 127.0.0.1:
#   raftkv     3 nodes (DIR/kvd, fsync on: its defaults)
#   etcd 3.4   3 nodes (Debian's etcd-server)
#   etcd 3.6   3 nodes (built once with Go from the module proxy, go.etcd.io/etcd/server/v3,
#              cached in ~/.cache/raftkv-bench; skipped with a message if it cannot be built)
#   redis      redis-server without persistence (Debian's), the bar for the RESP rows
# one system at a time, in the same order every round (A B C D A B C D ...), and runs against
# each the same kvbench workloads (DIR/kvbench):
#   etcd API put, 256 B values, at each client count of --sweep (default 1,50,1000) over
#     min(clients, 100) connections spread over the 3 endpoints (as etcd's benchmark tool),
#   etcd API linearizable range of one key (preloaded), 100 clients over 100 connections,
# and against raftkv (leader and a follower) and redis, redis-benchmark -c 50 -d 100 with SET
# and GET, each with and without -P 16 (redis-benchmark has no duration: its -n is sized from
# a kvbench RESP run of the same shape, which is reported too). Prints one table of medians
# over the rounds with raftkv/peer ratios, writes every raw result, the medians, the table and
# a chart (gnuplot: throughput and p99 against client count) to --out.
#
#   --quick       1 round of 2 s per workload (a smoke run of the script, not a measurement)
#   --rounds N    rounds (default 3); --duration S seconds per workload (default 10),
#                 --warmup S of them not recorded (default 1)
#   --sweep LIST  client counts of the put workload (default 1,50,1000)
#   --open-rate LIST  also an open-loop put workload at each of these rates (ops/s; at most
#                 1,000 in flight over 100 connections): the same offered load for every
#                 system, latency counted from when each put was due (default: none)
#   --bin DIR     where kvd, kvctl and kvbench are (default build/bin)
#   --out DIR     results (default ~/.cache/raftkv-bench/results/DATE)
#   --base-port P ports P..P+399 on 127.0.0.1 are used (default 23000)
#   --no-etcd36   skip etcd 3.6; --etcd36-version (default v3.6.16)
#   --keep-logs   copy the servers' logs into --out
# Nothing else should run on the machine meanwhile: the figures are only as good as that.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rounds=3
rounds_set=0
duration=10
warmup=1
sweep=1,50,1000
open_rates=""
bin=build/bin
out=""
base=23000
etcd36=1
etcd36_version=v3.6.16
keep_logs=0
quick=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --rounds) rounds=$2; rounds_set=1; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --sweep) sweep=$2; shift 2 ;;
    --open-rate) open_rates=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    --no-etcd36) etcd36=0; shift ;;
    --etcd36-version) etcd36_version=$2; shift 2 ;;
    --keep-logs) keep_logs=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ $quick -eq 1 ]; then
  duration=2
  warmup=0.5
  [ $rounds_set -eq 1 ] || rounds=1
fi
keys=10000
[ $quick -eq 1 ] && keys=1000
bin=$(cd "$bin" 2>/dev/null && pwd) || { echo "compare: no directory $bin (build first)" >&2; exit 2; }
for b in kvd kvctl kvbench; do
  [ -x "$bin/$b" ] || {
    echo "compare: missing $bin/$b; build it: cmake -G Ninja -S . -B build && ninja -C build kvd kvctl kvbench" >&2
    exit 2
  }
done
cache=${XDG_CACHE_HOME:-$HOME/.cache}/raftkv-bench
[ -n "$out" ] || out=$cache/results/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { echo "compare: $*" >&2; }

# --- packages (Debian), idempotent and quiet --------------------------------------------------
need=()
for p in etcd-server redis-tools redis-server gnuplot-nox python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packages start system services on their default ports; this script starts its own.
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now etcd redis-server >/dev/null 2>&1 || true
  fi
fi

# --- processes and temp dirs: everything started is stopped on every exit path ---------------
work=$(mktemp -d /tmp/raftkv-compare.XXXXXX)
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 15))
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ $keep_logs -eq 1 ]; then
    mkdir -p "$out/logs"
    find "$work" -name '*.log' -exec cp --parents {} "$out/logs" \; 2>/dev/null || true
  fi
  rm -rf "$work"
  exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
wait_port() {  # port pid what
  local deadline=$((SECONDS + 30))
  until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { log "$3 exited at start-up"; return 1; }
    [ $SECONDS -lt $deadline ] || { log "$3: port $1 did not open within 30 s"; return 1; }
    sleep 0.1
  done
}
for off in 0 1 2 10 11 12 100 101 102 110 111 112 200 201 202 210 211 212 300; do
  port_free $((base + off)) ||
    { log "port $((base + off)) on 127.0.0.1 is in use; pick another --base-port"; exit 2; }
done

# --- etcd 3.6, built once with Go from the module proxy --------------------------------------
etcd36_bin=""
build_etcd36() {
  local target=$cache/etcd-$etcd36_version
  if [ -x "$target" ]; then etcd36_bin=$target; return 0; fi
  local go=""
  if command -v go >/dev/null 2>&1; then go=$(command -v go); elif [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go; fi
  [ -n "$go" ] || { log "etcd 3.6 skipped: no Go toolchain (go or /usr/local/go/bin/go)"; return 1; }
  local src=$cache/etcd-$etcd36_version-src
  mkdir -p "$src"
  # etcd's own main is one call to etcdmain.Main; the server module is what the proxy serves.
  cat > "$src/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  log "building etcd $etcd36_version with $go (once; cached in $target; a few minutes)"
  if ! (cd "$src" && { [ -f go.mod ] || "$go" mod init raftkvbench/etcd >/dev/null 2>&1; } &&
        nice -n 10 "$go" get "go.etcd.io/etcd/server/v3@$etcd36_version" &&
        nice -n 10 "$go" build -o "$target.tmp" . && mv "$target.tmp" "$target") \
       >"$cache/etcd-$etcd36_version-build.log" 2>&1; then
    log "etcd 3.6 skipped: the build failed (see $cache/etcd-$etcd36_version-build.log)"
    rm -f "$target.tmp"
    return 1
  fi
  etcd36_bin=$target
}
if [ $etcd36 -eq 1 ]; then build_etcd36 || true; fi

# --- the systems -------------------------------------------------------------------------------
# Each start_X sets `eps` (etcd API endpoints) and, for RESP, `resp_leader`, `resp_follower` or
# `resp_port`, and returns non-zero if the system did not come up.
kvbench() { "$bin/kvbench" "$@"; }
wait_etcd_api() {  # what endpoint...: every endpoint takes a put
  local what=$1; shift
  local deadline=$((SECONDS + 60)) ep
  for ep in "$@"; do
    until kvbench --backend etcd --endpoints "$ep" --ops 1 --duration 5 --connect-timeout-ms 2000 \
          --key-prefix kvbench-ready- >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { log "$what: $ep took no put within 60 s"; return 1; }
      sleep 0.2
    done
  done
}

start_raftkv() {
  local dir=$work/raftkv-r$1 i
  mkdir -p "$dir"
  cat > "$dir/node_config.json" <<EOT
[ {"ip": "127.0.0.1", "port": $base, "grpc_port": $((base + 10))},
  {"ip": "127.0.0.1", "port": $((base + 1)), "grpc_port": $((base + 11))},
  {"ip": "127.0.0.1", "port": $((base + 2)), "grpc_port": $((base + 12))} ]
EOT
  for i in 0 1 2; do
    "$bin/kvd" --id=$i --config "$dir/node_config.json" --data-dir "$dir/n$i" \
      --log-level warn >"$dir/n$i.log" 2>&1 &
    pids+=($!)
    raftkv_pid[$i]=$!
  done
  for i in 0 1 2; do wait_port $((base + 10 + i)) "${raftkv_pid[$i]}" "raftkv node $i" || return 1; done
  eps=127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))
  wait_etcd_api raftkv ${eps//,/ } || return 1
  local leader
  leader=$("$bin/kvctl" --endpoints "$eps" --output json status 2>/dev/null |
           python3 -c 'import json,sys; print(next((s["leader"] for s in json.load(sys.stdin) if s.get("leader") is not None), ""))')
  [ -n "$leader" ] || { log "raftkv: no leader in kvctl status"; return 1; }
  resp_leader=$((base + leader))
  resp_follower=$((base + (leader + 1) % 3))
}

start_etcd() {  # round name binary port-offset
  local dir=$work/$2-r$1 off=$4 i
  mkdir -p "$dir"
  local cluster="" sep=""
  for i in 0 1 2; do cluster+="${sep}e$i=http://127.0.0.1:$((base + off + 10 + i))"; sep=,; done
  for i in 0 1 2; do
    "$3" --name e$i --data-dir "$dir/e$i" \
      --listen-client-urls http://127.0.0.1:$((base + off + i)) \
      --advertise-client-urls http://127.0.0.1:$((base + off + i)) \
      --listen-peer-urls http://127.0.0.1:$((base + off + 10 + i)) \
      --initial-advertise-peer-urls http://127.0.0.1:$((base + off + 10 + i)) \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "raftkv-compare-$2-$1" \
      --log-level warn >"$dir/e$i.log" 2>&1 &
    pids+=($!)
    wait_port $((base + off + i)) $! "$2 node $i" || return 1
  done
  eps=127.0.0.1:$((base + off)),127.0.0.1:$((base + off + 1)),127.0.0.1:$((base + off + 2))
  wait_etcd_api "$2" ${eps//,/ }
}
start_etcd34() { start_etcd "$1" etcd34 "$(command -v etcd)" 100; }
start_etcd36() { start_etcd "$1" etcd36 "$etcd36_bin" 200; }

start_redis() {
  local dir=$work/redis-r$1
  mkdir -p "$dir"
  redis-server --port $((base + 300)) --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
  pids+=($!)
  wait_port $((base + 300)) $! redis || return 1
  resp_port=$((base + 300))
}

# --- the workloads ------------------------------------------------------------------------------
raw=$out/raw.jsonl
: > "$raw"
note() {  # tags one kvbench JSON line with round, system, workload, role
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(round=int(sys.argv[1]), system=sys.argv[2], workload=sys.argv[3], role=sys.argv[4], tool="kvbench"); print(json.dumps(d))' "$@" >> "$raw"
}
show() {  # prefix: one progress line from one JSON result on stdin
  python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
a = d["latency_us"]["all"]
line = "%10.0f ops/s  p50 %8.2f ms  p99 %8.2f ms" % (d["throughput"], a["p50"] / 1000, a["p99"] / 1000)
if d.get("tool") == "redis-benchmark":
    line += "  (redis-benchmark -n %d)" % d["ok"]
else:
    line += "  errors %d timeouts %d" % (d["errors"], d["timeouts"])
print("  %s %s" % (sys.argv[1], line))' "$1"
}
run_kvbench() {  # round system workload role kvbench-args...
  local r=$1 sys=$2 wl=$3 role=$4; shift 4
  local res
  if res=$(kvbench --duration "$duration" --warmup "$warmup" --keys $keys --key-bytes 16 \
             --format json --max-error-ratio 0.01 --label "$sys/$wl" "$@" 2>"$work/kvbench.err"); then
    :
  else
    log "round $r $sys $wl: kvbench exited non-zero: $(tail -n 2 "$work/kvbench.err" | tr '\n' ' ')"
  fi
  last_throughput=0
  if [ -n "$res" ] && echo "$res" | note "$r" "$sys" "$wl" "$role"; then
    echo "$res" | show "round $r $sys $wl ${role:+($role)}" >&2
    last_throughput=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["throughput"]))' "$res")
  else
    log "round $r $sys $wl: no result"
  fi
}

etcd_api_workloads() {  # round system
  local c
  for c in ${sweep//,/ }; do
    run_kvbench "$1" "$2" "put-c$c" "" --backend etcd --endpoints "$eps" --clients "$c" \
      --conns $((c < 100 ? c : 100)) --value-bytes 256
  done
  for c in ${open_rates//,/ }; do
    run_kvbench "$1" "$2" "put-open$c" "" --backend etcd --endpoints "$eps" --rate "$c" \
      --clients 1000 --conns 100 --value-bytes 256
  done
  run_kvbench "$1" "$2" range-c100 "" --backend etcd --endpoints "$eps" --clients 100 --conns 100 \
    --read-ratio 1 --preload --value-bytes 256
}

# redis-benchmark's -n for about $duration seconds at the rate kvbench just measured.
requests_for() { python3 -c "import sys; print(max(1000, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$duration"; }
run_redis_benchmark() {  # round system workload role port test pipeline
  local r=$1 sys=$2 wl=$3 role=$4 port=$5 t=$6 p=$7 res
  local n; n=$(requests_for "$last_throughput")
  # The hard bound: redis-benchmark stops after -n requests; timeout stops it if the target stalls.
  local limit; limit=$(python3 -c "print(int(float('$duration') * 6 + 30))")
  if res=$(timeout "$limit" redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -d 100 -n "$n" -P "$p" \
             -r $keys -t "$t" --csv 2>/dev/null | tail -n 1); then :; else
    log "round $r $sys $wl: redis-benchmark failed or timed out after ${limit}s"
    return 0
  fi
  python3 - "$r" "$sys" "$wl" "$role" "$res" "$n" >> "$raw" <<'PY' || { log "round $r $sys $wl: unreadable redis-benchmark output: $res"; return 0; }
import csv, json, sys
r, system, wl, role, line, n = sys.argv[1:]
row = next(csv.reader([line]))
# --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
ms = lambda i: float(row[i]) * 1000 if len(row) > i else 0.0
print(json.dumps(dict(round=int(r), system=system, workload=wl, role=role, tool="redis-benchmark",
                      ok=int(n), throughput=float(row[1]),
                      latency_us=dict(all=dict(p50=ms(4), p99=ms(6), max=ms(7))))))
PY
  tail -n 1 "$raw" | show "round $r $sys $wl ${role:+($role)}" >&2
}
resp_workloads() {  # round system role port
  local r=$1 sys=$2 role=$3 port=$4 t p
  for t in set get; do
    for p in 16 1; do
      local wl="resp-$t-c50$([ "$p" -gt 1 ] && echo "-P$p")"
      # kvbench first (duration-bounded, same shape: 50 connections, pipeline p, 100 B values);
      # its throughput sizes redis-benchmark's run.
      run_kvbench "$r" "$sys" "$wl" "$role" --backend resp --endpoints "127.0.0.1:$port" \
        --clients 50 --conns 50 --pipeline "$p" --value-bytes 100 \
        $([ "$t" = get ] && echo "--read-ratio 1 --preload")
      run_redis_benchmark "$r" "$sys" "$wl" "$role" "$port" "$t" "$p"
    done
  done
}

systems=(raftkv etcd34)
[ -n "$etcd36_bin" ] && systems+=(etcd36)
systems+=(redis)
{
  echo "# raftkv compare.sh run of $(date -u '+%Y-%m-%d %H:%M UTC')$([ $quick -eq 1 ] && echo ' (--quick: a smoke run, not a measurement)')"
  echo "# machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# raftkv: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'); etcd 3.4: $(etcd --version 2>/dev/null | awk 'NR == 1 {print $3}'); etcd 3.6: $(if [ -n "$etcd36_bin" ]; then "$etcd36_bin" --version | awk 'NR == 1 {print $3}'; else echo skipped; fi); redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
  echo "# rounds: $rounds, $duration s per workload ($warmup s warm-up), $keys keys, put sweep: $sweep clients${open_rates:+, open-loop puts at $open_rates/s}"
} > "$out/header.txt"
cat "$out/header.txt" >&2

for ((r = 1; r <= rounds; r++)); do
  for sys in "${systems[@]}"; do
    log "round $r/$rounds: $sys"
    if ! "start_$sys" "$r"; then
      log "round $r: $sys did not start; its logs:"
      tail -n 5 "$work/$sys-r$r"/*.log >&2 2>/dev/null || true
      stop_all
      continue
    fi
    case $sys in
      raftkv)
        etcd_api_workloads "$r" raftkv
        resp_workloads "$r" raftkv leader "$resp_leader"
        resp_workloads "$r" raftkv follower "$resp_follower" ;;
      redis) resp_workloads "$r" redis "" "$resp_port" ;;
      *) etcd_api_workloads "$r" "$sys" ;;
    esac
    stop_all
    rm -rf "$work/$sys-r$r"/n[0-9] "$work/$sys-r$r"/e[0-9]   # data dirs; logs stay until exit
  done
done

python3 "$repo/bench/compare_table.py" --header "$out/header.txt" --raw "$raw" \
  --medians "$out/medians.tsv" --sweep "$out/sweep.dat" --table "$out/table.md"
cat "$out/table.md"
if command -v gnuplot >/dev/null 2>&1; then
  if gnuplot -e "data='$out/sweep.dat'; out='$out/chart.png'; title='$(head -1 "$out/header.txt" | sed "s/^# //; s/'//g")'" \
       "$repo/bench/compare_chart.gp" 2>"$work/gnuplot.err"; then
    log "chart: $out/chart.png"
  else
    log "gnuplot failed: $(head -3 "$work/gnuplot.err")"
  fi
fi
log "results in $out (raw.jsonl, medians.tsv, table.md, sweep.dat, chart.png)"
