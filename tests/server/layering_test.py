#!/usr/bin/env python3
"""Fails when a source in a room of src/server includes a room its library does not link.

The arrows (src/server/CMakeLists.txt): frontend/tcp and frontend/etcd use service;
replication implements service's Replicator seam and uses peer and snapshots; peer and
snapshots use nothing of the server but the shared vocabulary at the top (node_id.h,
node_address.h, data_dir.h, grpc_status.h, grpc_async_unary.h). Only the composition root (node, config, main)
sees every room. Usage: layering_test.py SRC_SERVER_DIR
"""
import os
import re
import sys

COMMON = {"node_id.h", "node_address.h", "data_dir.h", "grpc_status.h", "grpc_async_unary.h"}
# Which rooms each room may include (itself always).
ALLOWED = {
    "service": set(),
    "frontend/tcp": {"service"},
    "frontend/etcd": {"service"},
    "snapshots": set(),
    "peer": set(),
    "replication": {"service", "peer", "snapshots"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"server/([^"]+)"')


def room_of(header):
    """The room a server/... include belongs to, or None for a top-level file."""
    for room in sorted(ALLOWED, key=len, reverse=True):
        if header.startswith(room + "/"):
            return room
    return None


def main():
    root = sys.argv[1]
    errors = []
    checked = 0
    for room, allowed in ALLOWED.items():
        folder = os.path.join(root, room)
        if not os.path.isdir(folder):
            errors.append(f"{room}: the room's folder is missing")
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".h", ".cc")):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    checked += 1
                    target = m.group(1)
                    target_room = room_of(target)
                    if target_room is None:
                        if target not in COMMON:
                            errors.append(f"{room}/{name}:{lineno}: includes server/{target}, "
                                          "which belongs to the composition root")
                    elif target_room != room and target_room not in allowed:
                        errors.append(f"{room}/{name}:{lineno}: includes server/{target}: "
                                      f"{room} must not depend on {target_room}")
    for e in errors:
        print(e)
    print(f"{checked} includes checked, {len(errors)} wrong-way arrows")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
