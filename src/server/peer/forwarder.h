// Forwarder: sends a write that reached a follower to the leader (RaftPeer.Forward) without
// blocking the caller: the reply arrives on a gRPC callback thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "kv/state_machine.h"

namespace raftkv::raftpb {
class ForwardResponse;
}

namespace raftkv::server {

struct ForwardResult {
  uint64_t index = 0;          // the log index the leader applied the write at
  kv::ApplyResult result;
};

// Conversions between the apply result and its wire form.
void ToWire(uint64_t index, const kv::ApplyResult& result, raftpb::ForwardResponse* out);
ForwardResult FromWire(const raftpb::ForwardResponse& wire);

class PeerChannels;

class Forwarder {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;

  // REQUIRES: channels outlives this object.
  explicit Forwarder(const PeerChannels* channels) : channels_(channels) {}

  // Forwards a serialized kvpb::Command to `leader_id` (a raft id); `done` runs once, on a
  // gRPC thread (or at once, for an unknown peer).
  // Errors: kUnavailable (unknown peer, unreachable, or it is not the leader either),
  // kDeadlineExceeded (outcome unknown), others as returned by the leader.
  void Forward(uint64_t leader_id, std::string command, uint32_t timeout_ms, Done done);

 private:
  const PeerChannels* const channels_;
};

}  // namespace raftkv::server
