// PeerChannels: one gRPC channel (and stub) per peer, shared by everything this node sends to
// that peer: the Raft message stream (PeerTransport), forwarded writes (Forwarder) and
// snapshot streams (SnapshotSender). One connection per peer, dialled and re-dialled in one
// place with one rule; HTTP/2 interleaves the streams on it frame by frame.
//
// A dead or black-holed link is noticed within a bound (keepalive: an HTTP/2 PING every
// keepalive_ms, the connection closed when no ack comes within keepalive_timeout_ms; gRPC
// also sets TCP_USER_TIMEOUT to keepalive_timeout_ms, so data left unacknowledged that long
// closes it too). Every stream on it then fails at once, and the channel re-dials: each
// attempt waits at most connect_timeout_ms for the peer, and attempts follow a jittered
// backoff capped at reconnect_backoff_max_ms. So after a partition heals, a SYN reaches the
// peer within about max(connect timeout, backoff cap) instead of whenever TCP's doubling
// retransmission timer of the old connection fires (issue 15, docs/reliability.md).
//
// Peer ids are the core's (raft ids; node_id.h). Includes gRPC headers: only peer/ sources
// and the raft loop (which owns the channels) include it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"

namespace raftkv::server {

// Exponential backoff with jitter between attempts: the nominal wait starts at `min` and
// doubles up to `max`; each wait is drawn uniformly from [nominal / 2, nominal], so loops
// that failed at the same moment (every stream on a connection that died) do not retry in
// lockstep, and no wait exceeds `max`. Reset() after a success starts over. Not thread-safe
// (one per retry loop). Dials themselves follow gRPC's own backoff, jittered too.
class Backoff {
 public:
  Backoff(absl::Duration min, absl::Duration max)
      : min_(min), max_(std::max(min, max)), nominal_(min) {}
  // The wait before the next attempt.
  absl::Duration Next() {
    const absl::Duration nominal = nominal_;
    nominal_ = std::min(nominal_ * 2, max_);
    return nominal * absl::Uniform(bitgen_, 0.5, 1.0);
  }
  void Reset() { nominal_ = min_; }

 private:
  const absl::Duration min_;
  const absl::Duration max_;
  absl::Duration nominal_;
  absl::BitGen bitgen_;
};

// The smallest --peer-keepalive-ms accepted; every node's gRPC server accepts pings from its
// peers this often (ApplyPeerServerOptions in peer_service.h), whatever their own setting.
inline constexpr uint32_t kMinPeerKeepaliveMs = 100;

struct PeerChannelOptions {
  // --peer-keepalive-ms: an HTTP/2 PING on each peer connection when nothing arrived from the
  // peer for this long; 0 turns keepalive (and TCP_USER_TIMEOUT) off. 0 or at least
  // kMinPeerKeepaliveMs.
  uint32_t keepalive_ms = 500;
  // --peer-keepalive-timeout-ms: no ack (or unacknowledged data, by TCP_USER_TIMEOUT) for this
  // long closes the connection. A dead link is noticed within keepalive_ms plus this.
  uint32_t keepalive_timeout_ms = 1000;
  // --peer-connect-timeout-ms: how long one dial waits for the peer (TCP and HTTP/2
  // handshakes; gRPC's GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20 s by default).
  uint32_t connect_timeout_ms = 500;
  // First wait before re-dialling and before re-opening a broken stream; doubles from there.
  uint32_t reconnect_backoff_min_ms = 20;
  // --peer-reconnect-backoff-max-ms: the longest wait between dials (and between stream
  // re-opens and snapshot retries: one rule, Backoff above / gRPC's own, both jittered).
  uint32_t reconnect_backoff_max_ms = 500;
};

class PeerChannels {
 public:
  using Stub = raftpb::RaftPeer::Stub;
  // `addresses`: peer id -> "host:grpc_port" (this node excluded).
  PeerChannels(std::map<uint64_t, std::string> addresses, PeerChannelOptions options = {});

  // The members change (replication/member_table.h): a new peer gets a channel, a peer whose
  // address changed a new one, and a removed peer's channel is dropped (it closes once the
  // streams and calls still holding its stub end). Any thread.
  void SetPeer(uint64_t peer, const std::string& address);
  void RemovePeer(uint64_t peer);

  // nullptr for an unknown peer. Holding the stub keeps its channel open.
  std::shared_ptr<Stub> stub(uint64_t peer) const;
  // "" for an unknown peer.
  std::string address(uint64_t peer) const;
  std::map<uint64_t, std::string> addresses() const;
  // The retry rule of every loop that re-opens something on these channels: the first wait
  // `first` (default: reconnect_backoff_min_ms), capped at reconnect_backoff_max_ms.
  Backoff NewBackoff() const;
  Backoff NewBackoff(absl::Duration first) const;

 private:
  std::shared_ptr<Stub> Dial(const std::string& address) const;

  const PeerChannelOptions options_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::string> addresses_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace raftkv::server
