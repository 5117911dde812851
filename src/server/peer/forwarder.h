// Forwarder: sends a write that reached a follower to the leader (RaftPeer.Forward) without
// blocking the caller: the reply arrives on a gRPC callback thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "kv/state_machine.h"

namespace raftkv::raftpb {
class ForwardResponse;
}

namespace raftkv::server {

// Trailing metadata the leader's Forward handler sets on every answer it gives itself, so the
// follower can tell the leader's "not applied" (UNAVAILABLE: not the leader) from a call that
// broke in transport (also UNAVAILABLE in gRPC, but the outcome is unknown).
inline constexpr char kForwardAnsweredKey[] = "raftkv-forward-answered";

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
  // Errors: kUnavailable (unknown peer, or the leader's own "not the leader": not applied),
  // kUnknown (the call broke in transport after it may have been sent: outcome unknown),
  // kDeadlineExceeded (outcome unknown), others as returned by the leader.
  void Forward(uint64_t leader_id, std::string command, uint32_t timeout_ms, Done done);

  // Forwards several serialized commands in ONE call (ForwardRequest's batched form); the
  // leader proposes them in this order as consecutive entries. `done` runs once, with one
  // answer per command, in order; a failed call gives every command the call's error (as
  // Forward would). A leader that answers in the single form (it does not know the batched
  // one) applied the first command only: the others are kUnavailable, not applied.
  // REQUIRES: commands is not empty.
  using BatchDone = absl::AnyInvocable<void(std::vector<absl::StatusOr<ForwardResult>>) &&>;
  void ForwardBatch(uint64_t leader_id, std::vector<std::string> commands, uint32_t timeout_ms,
                    BatchDone done);

 private:
  const PeerChannels* const channels_;
};

}  // namespace raftkv::server
