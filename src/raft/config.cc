#include "raft/config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace raftkv::raft {

absl::Status Config::Validate() const {
  if (id == 0) return absl::InvalidArgumentError("raft config: id must be >= 1");
  // (A node joining an existing cluster is not among the bootstrap voters.)
  if (peers.empty()) return absl::InvalidArgumentError("raft config: no peers");
  std::vector<uint64_t> sorted = peers;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError("raft config: duplicate peer id");
  }
  if (sorted.front() == 0) return absl::InvalidArgumentError("raft config: peer id 0");
  if (heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("raft config: heartbeat_tick must be > 0");
  }
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError("raft config: election_tick must be > heartbeat_tick");
  }
  if (max_msg_bytes == 0) return absl::InvalidArgumentError("raft config: max_msg_bytes = 0");
  if (max_inflight_msgs == 0) {
    return absl::InvalidArgumentError("raft config: max_inflight_msgs = 0");
  }
  if (max_apply_bytes == 0) return absl::InvalidArgumentError("raft config: max_apply_bytes = 0");
  if (max_uncommitted_bytes == 0) {
    return absl::InvalidArgumentError("raft config: max_uncommitted_bytes = 0");
  }
  if (incarnation == 0) return absl::InvalidArgumentError("raft config: incarnation = 0");
  return absl::OkStatus();
}

}  // namespace raftkv::raft
