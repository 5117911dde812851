// Forwarder: sends a write that reached a follower to the leader (RaftPeer.Forward) without
// blocking the caller: the reply arrives on a gRPC callback thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

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

class Forwarder {
 public:
  // `peer_addresses`: core id (1-based) -> "ip:grpc_port".
  explicit Forwarder(const std::map<uint64_t, std::string>& peer_addresses);
  ~Forwarder();

  // Forwards a serialized kvpb::Command to `leader_id`; `done` runs once, on a gRPC thread.
  // Errors: kUnavailable (unknown peer, unreachable, or it is not the leader either),
  // kDeadlineExceeded (outcome unknown), others as returned by the leader.
  void Forward(uint64_t leader_id, std::string command, uint32_t timeout_ms,
               std::function<void(absl::StatusOr<ForwardResult>)> done);

 private:
  struct Stubs;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace raftkv::server
