// PeerTransport: sends Raft messages to the other nodes over long-lived gRPC client streams
// (proto/raft_service.proto, RaftPeer.Send); peer_service.h is the receiving side.
//
// Each peer has its own bounded queue and its own sender thread, so a slow or dead peer
// never blocks the raft loop or the other peers: Send() only enqueues. When a peer's queue
// is full, new messages to it are dropped (Raft retransmits; dropping is always safe) and
// counted. A broken stream is re-opened with exponential backoff; the messages in flight
// on it are lost, and the peer is reported unreachable so the core can slow down.
//
// Node ids here are the core's (1-based: config position + 1).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "raft.pb.h"

namespace raftkv::server {

struct PeerTransportOptions {
  size_t max_queue_msgs = 4096;            // per peer; beyond it messages are dropped
  size_t max_batch_bytes = 4 * 1024 * 1024;  // one stream write carries at most this much
  uint32_t backoff_min_ms = 20;
  uint32_t backoff_max_ms = 1000;
};

struct PeerStats {
  uint64_t sent_msgs = 0;
  uint64_t dropped_msgs = 0;
  uint64_t reconnects = 0;
  bool connected = false;
};

class PeerTransport {
 public:
  // `on_unreachable(peer_id)` is called from a sender thread when a stream to that peer
  // breaks or cannot be opened; it must not block.
  PeerTransport(uint64_t self_id, std::map<uint64_t, std::string> peer_addresses,
                PeerTransportOptions options, std::function<void(uint64_t)> on_unreachable);
  ~PeerTransport();  // Stop()s.

  // Queues each message for its `to` peer. Never blocks. Messages to unknown ids are dropped.
  void Send(std::vector<raftpb::Message> msgs);
  // Stops every sender thread; queued messages are discarded. Idempotent.
  void Stop();

  PeerStats stats(uint64_t peer_id) const;

 private:
  class Peer;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;
};

}  // namespace raftkv::server
