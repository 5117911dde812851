#!/bin/sh
# Docker HEALTHCHECK: healthy when this node itself knows a leader. Asks the node over its
# own gRPC port (the one docker-entrypoint recorded; 127.0.0.1:6000 otherwise).
endpoint=$(cat /tmp/raftkv-healthcheck-endpoint 2>/dev/null || echo 127.0.0.1:6000)
out=$(kvctl --endpoints "$endpoint" --timeout-ms 3000 --output json status 2>&1) || {
  echo "kvctl status failed: $out"; exit 1; }
case "$out" in
  *'"leader":'[0-9]*) echo "$out"; exit 0 ;;
  *) echo "no leader known: $out"; exit 1 ;;
esac
