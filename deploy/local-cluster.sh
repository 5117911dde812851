#!/usr/bin/env bash
# Starts a local raftkv cluster on 127.0.0.1 and keeps it in the foreground; Ctrl-C stops
# every node cleanly (SIGTERM, then waits for each to exit).
#
# Usage: deploy/local-cluster.sh [--nodes N] [--data DIR] [--bin DIR] [-- extra kvd flags]
#        deploy/local-cluster.sh add-node [--data DIR] [--bin DIR] [-- extra kvd flags]
#   node i listens on client port 5000+i (text + RESP) and gRPC port 6000+i (etcd API).
#   add-node: adds one node to the cluster running on 127.0.0.1:6000.. (member add as a
#   learner, kvd --join, promote once caught up) and keeps it in the foreground; Ctrl-C
#   stops that node only (remove it first with kvctl member remove ID if it is to go for good).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${RAFTKV_NODES:-3}
data=./cluster-data
bin=./build/bin
extra=()
add_node=0
if [ "${1:-}" = "add-node" ]; then add_node=1; shift; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "local-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin/kvd" ] || { echo "local-cluster: $bin/kvd not built (run scripts/build.sh)" >&2; exit 2; }

if [ $add_node -eq 1 ]; then
  # The members now, over every gRPC port that answers (6000..6015).
  eps=$(seq -s, -f '127.0.0.1:%g' 6000 6015)
  members=$("$bin/kvctl" --endpoints "$eps" --timeout-ms 300 --output json member list) || {
    echo "local-cluster add-node: no running cluster answers on 127.0.0.1:6000.." >&2; exit 2; }
  # The first index i whose ports no member uses.
  i=0
  while echo "$members" | grep -q "127.0.0.1:$((6000 + i))\""; do i=$((i + 1)); done
  for port in $((5000 + i)) $((6000 + i)); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      echo "local-cluster add-node: port $port on 127.0.0.1 is in use; stop it first" >&2
      exit 2
    fi
  done
  out=$("$bin/kvctl" --endpoints "$eps" --timeout-ms 3000 --output json member add \
        --peer-url "http://127.0.0.1:$((6000 + i))" --client-port $((5000 + i)))
  id=$(echo "$out" | sed -n 's/.*"member_id":\([0-9]*\).*/\1/p')
  echo "local-cluster add-node: added member $id (node $((id - 1))) as a learner on ports $((5000 + i))/$((6000 + i))"
  rm -rf "$data/node$i"  # a new member starts on an empty data dir
  join=$(echo "$members" | sed -n 's|.*"peer_url":"http://\([^"]*\)".*|\1|p' | head -n1)
  "$bin/kvd" --join "${join:-127.0.0.1:6000}" --member-id "$id" --advertise-ip 127.0.0.1 \
    --port $((5000 + i)) --grpc-port $((6000 + i)) --data-dir "$data/node$i" "${extra[@]}" \
    >>"$data/node$i.log" 2>&1 &
  pid=$!
  trap 'kill -TERM $pid 2>/dev/null; wait $pid; echo "local-cluster add-node: node stopped (still a member: kvctl member remove $id)"; exit 0' INT TERM
  # Promote once it has caught up (the leader refuses while it lags, saying how far).
  deadline=$((SECONDS + 60))
  until "$bin/kvctl" --endpoints "$eps" --timeout-ms 3000 member promote "$id" 2>/dev/null; do
    if ! kill -0 $pid 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "local-cluster add-node: member $id did not catch up; its log ($data/node$i.log):" >&2
      tail -n 20 "$data/node$i.log" >&2
      kill -TERM $pid 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  "$bin/kvctl" --endpoints "$eps" member list
  echo "local-cluster add-node: node $((id - 1)) serves on 127.0.0.1:$((5000 + i)); Ctrl-C stops it"
  wait $pid
  exit 0
fi

# Refuse to start over ports another process holds: a node that cannot bind would exit while
# the stranger answers in its place.
for ((i = 0; i < nodes; i++)); do
  for port in $((5000 + i)) $((6000 + i)); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      echo "local-cluster: port $port on 127.0.0.1 is in use (another kvd?); stop it first" >&2
      exit 2
    fi
  done
done

mkdir -p "$data"
config="$data/node_config.json"
{
  echo "["
  for ((i = 0; i < nodes; i++)); do
    sep=","; [ $i -eq $((nodes - 1)) ] && sep=""
    echo "  { \"ip\": \"127.0.0.1\", \"port\": $((5000 + i)), \"grpc_port\": $((6000 + i)) }$sep"
  done
  echo "]"
} > "$config"

pids=()
stop_all() {
  trap - INT TERM
  echo; echo "local-cluster: stopping ${#pids[@]} node(s)..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "local-cluster: stopped; data kept in $data"
  exit 0
}
trap stop_all INT TERM

for ((i = 0; i < nodes; i++)); do
  "$bin/kvd" --id=$i --config "$config" --data-dir "$data/node$i" "${extra[@]}" \
    >>"$data/node$i.log" 2>&1 &
  pids+=($!)
done

# Wait (bounded) until every node accepts connections on both ports.
deadline=$((SECONDS + 30))
for ((i = 0; i < nodes; i++)); do
  until (exec 3<>/dev/tcp/127.0.0.1/$((5000 + i))) 2>/dev/null &&
        (exec 3<>/dev/tcp/127.0.0.1/$((6000 + i))) 2>/dev/null; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "local-cluster: node $i did not start; its log ($data/node$i.log):" >&2
      tail -n 20 "$data/node$i.log" >&2
      stop_all
    fi
    sleep 0.1
  done
done
endpoints=$(seq -s, -f '127.0.0.1:%g' 6000 $((6000 + nodes - 1)))
# Wait (bounded) until the nodes have elected a leader.
until "$bin/kvctl" --endpoints "$endpoints" --output json status 2>/dev/null |
      grep -q '"leader":[0-9]'; do
  if [ $SECONDS -ge $deadline ]; then
    echo "local-cluster: no leader elected within 30 s; see $data/node*.log" >&2
    stop_all
  fi
  sleep 0.1
done
for ((i = 0; i < nodes; i++)); do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "local-cluster: node $i exited; its log ($data/node$i.log):" >&2
    tail -n 20 "$data/node$i.log" >&2
    stop_all
  fi
done
"$bin/kvctl" --endpoints "$endpoints" status || true

cat <<EOT

raftkv: $nodes node(s) up, data in $data (logs: $data/node*.log). Connect with:
  printf 'SET a hello world\nGET a\n' | nc -q1 127.0.0.1 5000
  redis-cli -p 5000 set a b ; redis-cli -p 5000 get a
  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:6000 put foo bar ; ... get foo
  $bin/kvctl --endpoints 127.0.0.1:6000 put k v ; $bin/kvctl get k ; $bin/kvctl status
Ctrl-C stops the cluster.
EOT
wait
