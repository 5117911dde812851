// PeerChannels: one gRPC channel (and stub) per peer, shared by everything this node sends to
// that peer: the Raft message stream (PeerTransport), forwarded writes (Forwarder) and
// snapshot streams (SnapshotSender). One connection per peer, dialled and re-dialled in one
// place with one rule; HTTP/2 interleaves the streams on it frame by frame.
//
// Peer ids are the core's (raft ids; node_id.h). Includes gRPC headers: only peer/ sources
// include it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"

namespace raftkv::server {

// Exponential backoff between attempts: the first wait is `min`, each later one doubles, up
// to `max`; Reset() after a success starts over. Not thread-safe (one per retry loop).
class Backoff {
 public:
  Backoff(absl::Duration min, absl::Duration max) : min_(min), max_(max), next_(min) {}
  // The wait before the next attempt; the one after it is twice as long (capped).
  absl::Duration Next() {
    absl::Duration d = next_;
    next_ = std::min(next_ * 2, max_);
    return d;
  }
  void Reset() { next_ = min_; }

 private:
  const absl::Duration min_;
  const absl::Duration max_;
  absl::Duration next_;
};

struct PeerChannelOptions {
  // gRPC's own re-dial backoff of a broken connection.
  uint32_t reconnect_backoff_min_ms = 20;
  uint32_t reconnect_backoff_max_ms = 1000;
};

class PeerChannels {
 public:
  // `addresses`: peer id -> "host:grpc_port" (this node excluded).
  PeerChannels(std::map<uint64_t, std::string> addresses, PeerChannelOptions options = {});

  // nullptr for an unknown peer. The stub lives as long as this object.
  raftpb::RaftPeer::Stub* stub(uint64_t peer) const;
  // "" for an unknown peer.
  const std::string& address(uint64_t peer) const;
  const std::map<uint64_t, std::string>& addresses() const { return addresses_; }

 private:
  const std::map<uint64_t, std::string> addresses_;
  std::map<uint64_t, std::unique_ptr<raftpb::RaftPeer::Stub>> stubs_;
};

}  // namespace raftkv::server
