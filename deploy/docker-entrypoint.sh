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
# kvd listens on its own entry's "ip". Peers may be host names (gRPC resolves them), but
# kvd's text/RESP listener takes only a numeric address, and a container's own address is
# not known in advance. So the node gets a copy of the config in which its own "ip" is
# RAFTKV_LISTEN_IP; the other entries stay as written (e.g. compose service names).
# Side effects, until kvd can listen on a host name (or takes a listen-address flag): the
# cluster id kvd reports is a hash of the config's addresses, so each node reports its own;
# and a node lists itself as 0.0.0.0 in `etcdctl member list` / `kvctl members`.
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
  printf '[ { "ip": "%s", "port": 5000, "grpc_port": 6000 } ]\n' "$listen" > "$node_config"
  id=0
else
  [ -r "$RAFTKV_CONFIG" ] || { echo "docker-entrypoint: cannot read RAFTKV_CONFIG=$RAFTKV_CONFIG" >&2; exit 2; }
  case "$id" in
    ''|*[!0-9]*) echo "docker-entrypoint: RAFTKV_ID must be a number, not '$id'" >&2; exit 2 ;;
  esac
  # The config is a JSON array of flat objects: rewrite the "ip" of object number $id.
  rc=0
  awk -v id="$id" -v ip="$listen" '
    { text = text $0 "\n" }
    END {
      n = -1; out = ""; rest = text; found = 0
      while ((i = index(rest, "{")) > 0) {
        j = index(substr(rest, i), "}")
        if (j == 0) break
        out = out substr(rest, 1, i - 1)
        obj = substr(rest, i, j)
        if (++n == id) {
          if (!sub(/"ip"[ \t\r\n]*:[ \t\r\n]*"[^"]*"/, "\"ip\": \"" ip "\"", obj)) exit 3
          found = 1
        }
        out = out obj
        rest = substr(rest, i + j)
      }
      if (!found) exit 4
      printf "%s%s", out, rest
    }' "$RAFTKV_CONFIG" > "$node_config" || rc=$?
  case $rc in
    0) ;;
    3) echo "docker-entrypoint: node $id in $RAFTKV_CONFIG has no \"ip\"" >&2; exit 2 ;;
    4) echo "docker-entrypoint: RAFTKV_ID=$id is not a node of $RAFTKV_CONFIG" >&2; exit 2 ;;
    *) exit 2 ;;
  esac
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

exec kvd --id="$id" --config "$node_config" --data-dir "$data_dir" "$@"
