#!/usr/bin/env bash
# Side-by-side write benchmark: a 3-node raftkv cluster and a 3-node etcd 3.4 cluster (Debian's
# etcd-server), both on 127.0.0.1 on this machine, both fsyncing every commit, driven by the
# same load generator (bench/server/kvload.cc) over the same etcd v3 gRPC Put API.
#
# Usage: bench/cluster_vs_etcd.sh [--runs N] [--ops N] [--bin DIR]
#   For each of N runs (default 3) and each system: a fresh cluster, then
#     1 client  x --ops/4 sequential puts  (latency), and
#     50 clients x --ops puts              (throughput).
#   Prints every run and the medians; nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
ops=20000
bin=build/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
for b in kvd kvload; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build with scripts/build.sh" >&2; exit 2; }
done
command -v etcd >/dev/null || { echo "etcd not installed (apt-get install etcd-server)" >&2; exit 2; }

work=$(mktemp -d /tmp/raftkv-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup; rm -rf "$work"' EXIT

wait_port() {
  local deadline=$((SECONDS + 30))
  until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "port $1 did not open" >&2; exit 1; }
    sleep 0.1
  done
}

start_raftkv() {
  local dir=$work/raftkv
  rm -rf "$dir"; mkdir -p "$dir"
  cat > "$dir/node_config.json" <<EOT
[ {"ip": "127.0.0.1", "port": 15000, "grpc_port": 16000},
  {"ip": "127.0.0.1", "port": 15001, "grpc_port": 16001},
  {"ip": "127.0.0.1", "port": 15002, "grpc_port": 16002} ]
EOT
  for i in 0 1 2; do
    "$bin/kvd" --id=$i --config "$dir/node_config.json" --data-dir "$dir/n$i" \
      --log-level warn >"$dir/n$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do wait_port $((16000 + i)); done
  endpoints=127.0.0.1:16000,127.0.0.1:16001,127.0.0.1:16002
  # Wait for a leader: a put must succeed.
  local deadline=$((SECONDS + 30))
  until "$bin/kvload" --endpoints=127.0.0.1:16000 --clients=1 --ops=1 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "raftkv: no leader" >&2; exit 1; }
    sleep 0.2
  done
}

start_etcd() {
  local dir=$work/etcd
  rm -rf "$dir"; mkdir -p "$dir"
  local cluster="e0=http://127.0.0.1:12380,e1=http://127.0.0.1:12381,e2=http://127.0.0.1:12382"
  for i in 0 1 2; do
    etcd --name e$i --data-dir "$dir/e$i" \
      --listen-client-urls http://127.0.0.1:$((12379 + i * 10)) \
      --advertise-client-urls http://127.0.0.1:$((12379 + i * 10)) \
      --listen-peer-urls http://127.0.0.1:$((12380 + i)) \
      --initial-advertise-peer-urls http://127.0.0.1:$((12380 + i)) \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --log-level warn >"$dir/e$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do wait_port $((12379 + i * 10)); done
  endpoints=127.0.0.1:12379,127.0.0.1:12389,127.0.0.1:12399
  local deadline=$((SECONDS + 30))
  until "$bin/kvload" --endpoints=127.0.0.1:12379 --clients=1 --ops=1 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "etcd: no leader" >&2; exit 1; }
    sleep 0.2
  done
}

results=$work/results.txt
: > "$results"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
echo "etcd: $(etcd --version | head -1)"
for ((r = 1; r <= runs; r++)); do
  for sys in raftkv etcd; do
    "start_$sys"
    # Latency: one client, sequential, against the leader-or-not first endpoint.
    seq_line=$("$bin/kvload" --endpoints="${endpoints%%,*}" --clients=1 --ops=$((ops / 4)))
    # Throughput: 50 clients spread over all three endpoints.
    par_line=$("$bin/kvload" --endpoints="$endpoints" --clients=50 --ops="$ops")
    echo "run $r $sys sequential: $seq_line"
    echo "run $r $sys 50-clients: $par_line"
    echo "$sys seq $seq_line" >> "$results"
    echo "$sys par $par_line" >> "$results"
    cleanup
  done
done

python3 - "$results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    sysname, kind, rest = line.split(" ", 2)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    rows.setdefault((sysname, kind), []).append(kv)
def med(sysname, kind, field):
    return statistics.median(float(r[field]) for r in rows[(sysname, kind)])
print("\nmedians over runs:")
print(f"{'':28s} {'raftkv':>10s} {'etcd':>10s} {'raftkv/etcd':>12s}")
for kind, field, label in [("seq", "p50_us", "1 client p50 latency (us)"),
                           ("seq", "p99_us", "1 client p99 latency (us)"),
                           ("seq", "ops_per_sec", "1 client ops/s"),
                           ("par", "ops_per_sec", "50 clients ops/s"),
                           ("par", "p50_us", "50 clients p50 latency (us)"),
                           ("par", "p99_us", "50 clients p99 latency (us)")]:
    a, b = med("raftkv", kind, field), med("etcd", kind, field)
    print(f"{label:28s} {a:10.0f} {b:10.0f} {a / b:12.2f}")
PY
