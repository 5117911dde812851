// Identity: whose data a data dir holds, in <data-dir>/identity (DataDir::identity()).
//
// Written once, when a node first uses an empty data dir (or adopts one written before this
// file existed), atomically (temporary file, fsync, rename, fsync of the directory). At every
// start kvd checks it against the configuration and refuses to start, saying which and what
// to do, when the data dir belongs to another node id or another cluster: a node must never
// serve (or vote with) another node's data. A node whose data dir was lost starts with an
// empty one and rejoins (raft/rejoin.cc): the identity then is written anew.
//
// Format: text lines "key=value" (cluster_id in hex, node_id, members as grpc addresses,
// created_at in unix seconds); unknown keys are ignored, so later versions can add some.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace raftkv::server {

struct Identity {
  uint64_t cluster_id = 0;
  uint32_t node_id = 0;               // position in node_config.json (kvd --id)
  std::vector<std::string> members;   // grpc addresses, in node_config.json order
  int64_t created_at = 0;             // unix seconds
};

// Reads `path`. Errors: kNotFound (no file), kDataLoss (unreadable or malformed, naming it).
absl::StatusOr<Identity> ReadIdentity(const std::string& path);
// Writes `id` to `path` durably (see above). Errors: kInternal naming the path.
absl::Status WriteIdentity(const std::string& path, const Identity& id);

// Checks the data dir's identity at `path` against `expected` (cluster id, node id and
// members from the configuration), writing it if there is none. Errors: kFailedPrecondition
// with a one-line message that names the data dir, what it belongs to, and what to do.
absl::Status CheckOrWriteIdentity(const std::string& path, const std::string& data_dir,
                                  const Identity& expected);

}  // namespace raftkv::server
