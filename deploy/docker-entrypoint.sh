#!/bin/sh
# Entrypoint of the raftkv image.
#
#   docker run IMAGE                  start one node (below)
#   docker run IMAGE --flag ...       the same, with extra kvd flags (see `kvd --help`)
#   docker run IMAGE kvctl ...        run the CLI (e.g. kvctl --endpoints node0:6000 status)
#   docker run IMAGE kvd ...          run kvd exactly as given
#   docker run IMAGE COMMAND ...      run any other command (sh, ...)
#
# Starting a node reads:
#   RAFTKV_CONFIG    node_config.json of the whole cluster; unset: a single-node cluster
#                    with client port 5000 and gRPC port 6000
#   RAFTKV_ID        this node's position in it (default 0)
#   RAFTKV_DATA_DIR  data directory (default /var/lib/raftkv, the image's volume)
#   RAFTKV_LISTEN_IP address this node listens on (default 0.0.0.0: every interface of the
#                    container, which survives `docker network disconnect`/`connect`)
#
# kvd binds RAFTKV_LISTEN_IP (--listen-ip) and is reached at its own entry's "ip" in the
# config (a compose service name): peers and `member list` see the names, and every node
# derives the same cluster id from the same file.
set -eu

case "${1:-}" in
  ""|-*) ;;                                   # start a node
  *) exec "$@" ;;                             # kvctl, kvd, sh, ...
esac

id=${RAFTKV_ID:-0}
data_dir=${RAFTKV_DATA_DIR:-/var/lib/raftkv}
listen=${RAFTKV_LISTEN_IP:-0.0.0.0}
node_config=${TMPDIR:-/tmp}/raftkv-node-config.json

if [ -z "${RAFTKV_CONFIG:-}" ]; then
  printf '[ { "ip": "127.0.0.1", "port": 5000, "grpc_port": 6000 } ]\n' > "$node_config"
  id=0
else
  [ -r "$RAFTKV_CONFIG" ] || { echo "docker-entrypoint: cannot read RAFTKV_CONFIG=$RAFTKV_CONFIG" >&2; exit 2; }
  case "$id" in
    ''|*[!0-9]*) echo "docker-entrypoint: RAFTKV_ID must be a number, not '$id'" >&2; exit 2 ;;
  esac
  node_config=$RAFTKV_CONFIG
fi

# For the HEALTHCHECK: this node's own gRPC port, asked over loopback.
grpc_port=$(awk -v id="$id" '
  { text = text $0 }
  END {
    n = -1; rest = text
    while ((i = index(rest, "{")) > 0) {
      j = index(substr(rest, i), "}"); if (j == 0) break
      obj = substr(rest, i, j); rest = substr(rest, i + j)
      if (++n == id && match(obj, /"grpc_port"[ \t]*:[ \t]*[0-9]+/)) {
        s = substr(obj, RSTART, RLENGTH); sub(/.*:[ \t]*/, "", s); print s; exit
      }
    }
  }' "$node_config")
echo "127.0.0.1:${grpc_port:-6000}" > "${TMPDIR:-/tmp}/raftkv-healthcheck-endpoint"
# A wildcard listen address is not reachable as such; loopback reaches it.
case "$listen" in 0.0.0.0|::|'[::]') ;; *) echo "$listen:${grpc_port:-6000}" > "${TMPDIR:-/tmp}/raftkv-healthcheck-endpoint" ;; esac

exec kvd --id="$id" --config "$node_config" --data-dir "$data_dir" --listen-ip "$listen" "$@"
