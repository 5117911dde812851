#!/usr/bin/env bash
# A/B of kvd builds on the write path (issue 14's techniques, one commit at a time): a
# 3-node raftkv cluster on 127.0.0.1 (fsync on: kvd's defaults) per variant and round, on a
# fresh data dir, the variants alternating (A B A B ..., or A B C A B C ... with --c), so
# drift in the machine's load spreads over all of them. Per round and variant:
#   counts (deterministic, the loaded machine cannot blur them): with strace attached to the
#     leader and one follower during --count-ops sequential SETs (one client, RESP): WAL
#     fdatasync/fsync calls per write on each, and writes to RocksDB's own WAL files (*.log
#     under db/) per write on the leader;
#   throughput: redis-benchmark SET -c 50 -d 100 against the leader, with -P 16 and without,
#     and the CPU time all three nodes spent per write during each run (from /proc),
#     --duration-ish runs (its -n is fixed: --rb-ops; keys drawn from --rb-keys, 100,000 by
#     default, so most writes create their key; compare.sh draws from 10,000); with
#     --follower also against a follower (which forwards every write to the leader);
#   with --gets: redis-benchmark GET -c 50, with -P 16 and without (on the follower too with
#     --follower), --get-ops each, of the keys the SET runs wrote (--no-sets: of keys one
#     unmeasured SET run wrote), and the CPU time per read as for writes;
#   with --etcd-clients LIST: etcd API puts by kvbench (256 B values, 10,000 keys), for each
#     client count in LIST, over min(clients, 100) connections spread on the 3 nodes (as
#     compare.sh and etcd's benchmark tool), --etcd-duration seconds each: ops/s and p99 ms.
# Prints one line per measurement and then the medians per variant and the ratios to A.
#
#   bench/write_path_ab.sh --a OLD/kvd --b NEW/kvd [--c NEWER/kvd] [--rounds 3] [--count-ops 300]
#                          [--rb-ops 100000] [--rb-keys 100000] [--base-port 27400] [--keep] [--counts-only]
#                          [--follower] [--etcd-clients 50,1000] [--etcd-duration 10]
#                          [--kvbench build/bin/kvbench] [--no-redis]
#                          [--gets] [--get-ops 1000000] [--no-sets]
set -euo pipefail

a="" b="" c="" rounds=3 count_ops=300 rb_ops=100000 rb_keys=100000 base=27400 keep=0 counts_only=0
on_follower=0 etcd_clients="" etcd_duration=10 kvbench=build/bin/kvbench no_redis=0
gets=0 get_ops=1000000 no_sets=0
while [ $# -gt 0 ]; do
  case $1 in
    --a) a=$2; shift 2 ;;
    --b) b=$2; shift 2 ;;
    --c) c=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --count-ops) count_ops=$2; shift 2 ;;
    --rb-ops) rb_ops=$2; shift 2 ;;
    --rb-keys) rb_keys=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --counts-only) counts_only=1; shift ;;
    --follower) on_follower=1; shift ;;
    --etcd-clients) etcd_clients=$2; shift 2 ;;
    --etcd-duration) etcd_duration=$2; shift 2 ;;
    --kvbench) kvbench=$2; shift 2 ;;
    --no-redis) no_redis=1; shift ;;
    --gets) gets=1; shift ;;
    --get-ops) get_ops=$2; shift 2 ;;
    --no-sets) no_sets=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "write_path_ab: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$a" ] && [ -x "$b" ] || { echo "write_path_ab: --a and --b must be kvd binaries" >&2; exit 2; }
for t in strace redis-benchmark redis-cli python3; do
  command -v $t >/dev/null || { echo "write_path_ab: needs $t" >&2; exit 2; }
done
if [ -n "$etcd_clients" ] && [ ! -x "$kvbench" ]; then
  echo "write_path_ab: --etcd-clients needs kvbench at $kvbench (--kvbench)" >&2; exit 2
fi

work=$(mktemp -d /tmp/write-path-ab.XXXXXX)
results=$work/results.tsv
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $keep -eq 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT INT TERM

log() { echo "write_path_ab: $*" >&2; }
wait_port() {
  local deadline=$((SECONDS + 30))
  until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { log "port $1 did not open"; return 1; }
    sleep 0.1
  done
}

node_pid=()
start_cluster() {  # kvd dir
  local kvd=$1 dir=$2 i
  mkdir -p "$dir"
  cat > "$dir/cluster.json" <<EOT
[ {"ip": "127.0.0.1", "port": $base, "grpc_port": $((base + 10))},
  {"ip": "127.0.0.1", "port": $((base + 1)), "grpc_port": $((base + 11))},
  {"ip": "127.0.0.1", "port": $((base + 2)), "grpc_port": $((base + 12))} ]
EOT
  for i in 0 1 2; do
    "$kvd" --id=$i --config "$dir/cluster.json" --data-dir "$dir/n$i" --log-level warn \
      >"$dir/n$i.log" 2>&1 &
    node_pid[$i]=$!
    pids+=($!)
  done
  for i in 0 1 2; do wait_port $((base + i)) || return 1; done
  # The leader: the node whose SET succeeds (a follower forwards, so ask INFO-free: try each).
  local deadline=$((SECONDS + 30))
  leader=""
  while [ -z "$leader" ]; do
    for i in 0 1 2; do
      if [ "$(redis-cli -p $((base + i)) INFO 2>/dev/null | tr -d '\r' | sed -n "s/^raft_role:\(.*\)/\1/p")" = leader ]; then
        leader=$i
      fi
    done
    [ -n "$leader" ] || { [ $SECONDS -lt $deadline ] || { log "no leader"; return 1; }; sleep 0.2; }
  done
  follower=$(( (leader + 1) % 3 ))
  # The cluster takes writes before anything is measured.
  until [ "$(redis-cli -p $((base + leader)) SET ready 1 2>/dev/null)" = OK ]; do sleep 0.1; done
}

stop_cluster() {
  local i
  for i in 0 1 2; do kill "${node_pid[$i]}" 2>/dev/null || true; done
  for i in 0 1 2; do wait "${node_pid[$i]}" 2>/dev/null || true; done
}

count_syscalls() {  # variant round dir
  local v=$1 r=$2 dir=$3
  strace -f -qq -y -e trace=fsync,fdatasync,write,pwrite64,writev -p "${node_pid[$leader]}" \
    -o "$dir/strace.leader" 2>/dev/null &
  local s1=$!
  strace -f -qq -y -e trace=fsync,fdatasync -p "${node_pid[$follower]}" \
    -o "$dir/strace.follower" 2>/dev/null &
  local s2=$!
  sleep 1  # strace attaches to every thread before the first write
  local i
  for i in $(seq 1 "$count_ops"); do echo "SET count$i 0123456789"; done |
    redis-cli -p $((base + leader)) >/dev/null
  sleep 0.5  # the followers' last appends and commits
  kill -INT $s1 $s2 2>/dev/null || true
  wait $s1 $s2 2>/dev/null || true
  python3 - "$v" "$r" "$count_ops" "$dir/strace.leader" "$dir/strace.follower" >>"$results" <<'EOF'
import re, sys
v, r, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def count(path, pred):
    c = 0
    for line in open(path, errors="replace"):
        m = re.search(r'\b(fsync|fdatasync|write|pwrite64|writev)\((\d+)<([^>]*)>', line)
        if m and pred(m.group(1), m.group(3)):
            c += 1
    return c
sync = lambda call, path: call in ("fsync", "fdatasync")
rocks_wal = lambda call, path: call in ("write", "pwrite64", "writev") and "/db/" in path and path.endswith(".log")
print(f"{v}\t{r}\tleader_fsyncs_per_write\t{count(sys.argv[4], sync) / n:.3f}")
print(f"{v}\t{r}\tfollower_fsyncs_per_write\t{count(sys.argv[5], sync) / n:.3f}")
print(f"{v}\t{r}\tleader_rocksdb_wal_writes_per_write\t{count(sys.argv[4], rocks_wal) / n:.3f}")
EOF
}

etcd_bench() {  # variant round clients
  local v=$1 r=$2 c=$3 res
  local eps="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
  if ! res=$("$kvbench" --backend etcd --endpoints "$eps" --clients "$c" \
               --conns $((c < 100 ? c : 100)) --value-bytes 256 --keys 10000 --key-bytes 16 \
               --duration "$etcd_duration" --warmup 1 --format json --max-error-ratio 0.01 \
               2>"$work/kvbench.err"); then
    log "round $r $v: kvbench at $c clients failed: $(tail -n 2 "$work/kvbench.err" | tr '\n' ' ')"
    return 0
  fi
  python3 - "$v" "$r" "$c" "$res" >>"$results" <<'EOF'
import json, sys
v, r, c, d = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
print(f"{v}\t{r}\tetcd_put_c{c}_ops_per_s\t{d['throughput']:.0f}")
print(f"{v}\t{r}\tetcd_put_c{c}_p99_ms\t{d['latency_us']['all']['p99'] / 1000:.2f}")
EOF
}

# CPU time (user + system, clock ticks) the three nodes have used so far.
cluster_cpu_ticks() {
  local i t=0
  for i in 0 1 2; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/${node_pid[$i]}/stat")))
  done
  echo $t
}

redis_bench() {  # variant round name args... (a name with _get_ runs GETs)
  local v=$1 r=$2 name=$3; shift 3
  local rps node=$leader t0 t1 test=set label=SET ops=$rb_ops per=write
  if [ "${name#follower_}" != "$name" ]; then node=$follower; fi
  if [ "${name#*_get_}" != "$name" ]; then test=get label=GET ops=$get_ops per=read; fi
  t0=$(cluster_cpu_ticks)
  rps=$(redis-benchmark -p $((base + node)) -t $test -d 100 -r "$rb_keys" -n "$ops" -q "$@" 2>/dev/null |
        tr '\r' '\n' | sed -n "s/^$label: \\([0-9.]*\\) requests per second.*/\\1/p" | tail -1)
  t1=$(cluster_cpu_ticks)
  echo -e "$v\t$r\t$name\t${rps:-0}" >>"$results"
  # The CPU the whole cluster spent per write (all three nodes' threads; not the client's,
  # nor the kernel's softirq work charged to no process): less noisy than throughput on a
  # machine whose speed drifts, and what a saturated machine's throughput is bound by.
  python3 -c "import sys, os; print(f'{sys.argv[1]}\t{sys.argv[2]}\t{sys.argv[3]}\t{(int(sys.argv[5]) - int(sys.argv[4])) / os.sysconf(\"SC_CLK_TCK\") * 1e6 / int(sys.argv[6]):.1f}')" \
    "$v" "$r" "${name%_ops_per_s}_cpu_us_per_$per" "$t0" "$t1" "$ops" >>"$results"
}

for r in $(seq 1 "$rounds"); do
  variants="A B"; [ -n "$c" ] && variants="A B C"
  for v in $variants; do
    kvd=$a; [ $v = B ] && kvd=$b; [ $v = C ] && kvd=$c
    dir=$work/$v-r$r
    log "round $r, $v ($kvd): load $(cut -d' ' -f1-3 /proc/loadavg)"
    start_cluster "$kvd" "$dir" || exit 1
    count_syscalls $v $r "$dir"
    if [ $counts_only -eq 0 ]; then
      for cl in ${etcd_clients//,/ }; do etcd_bench $v $r "$cl"; done
    fi
    if [ $counts_only -eq 0 ] && [ $no_redis -eq 0 ] && [ $no_sets -eq 0 ]; then
      redis_bench $v $r "resp_set_c50_P16_ops_per_s" -c 50 -P 16
      redis_bench $v $r "resp_set_c50_ops_per_s" -c 50
      if [ $on_follower -eq 1 ]; then
        redis_bench $v $r "follower_resp_set_c50_P16_ops_per_s" -c 50 -P 16
        redis_bench $v $r "follower_resp_set_c50_ops_per_s" -c 50
      fi
    fi
    if [ $counts_only -eq 0 ] && [ $gets -eq 1 ]; then
      if [ $no_sets -eq 1 ]; then  # the keys the GETs read, written unmeasured
        redis-benchmark -p $((base + leader)) -t set -d 100 -r "$rb_keys" -n "$rb_ops" -q \
          -c 50 -P 16 >/dev/null 2>&1
      fi
      redis_bench $v $r "resp_get_c50_P16_ops_per_s" -c 50 -P 16
      redis_bench $v $r "resp_get_c50_ops_per_s" -c 50
      if [ $on_follower -eq 1 ]; then
        redis_bench $v $r "follower_resp_get_c50_P16_ops_per_s" -c 50 -P 16
        redis_bench $v $r "follower_resp_get_c50_ops_per_s" -c 50
      fi
    fi
    stop_cluster
    rm -rf "$dir/n0" "$dir/n1" "$dir/n2"
  done
done

cat "$results"
python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    v, r, name, val = line.rstrip("\n").split("\t")
    rows[(name, v)].append(float(val))
names = sorted({n for n, _ in rows})
variants = sorted({v for _, v in rows})
print("\nmeasurement\t" + "\t".join(f"{v} median" for v in variants) + "\t" +
      "\t".join(f"{v}/A" for v in variants[1:]) + "\t(values per variant)")
for n in names:
    meds = {v: statistics.median(rows[(n, v)]) for v in variants if rows.get((n, v))}
    line = [n] + [f"{meds.get(v, float('nan')):g}" for v in variants]
    line += [f"{meds[v] / meds['A']:.2f}" if meds.get("A") and v in meds else "nan" for v in variants[1:]]
    line.append("; ".join(f"{v}: " + ", ".join(f"{x:g}" for x in rows.get((n, v), [])) for v in variants))
    print("\t".join(line))
EOF
