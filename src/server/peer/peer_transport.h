// PeerTransport: sends Raft messages to the other nodes over long-lived gRPC client streams
// (proto/raft_service.proto, RaftPeer.Send) on the shared peer channels; peer_service.h is
// the receiving side.
//
// Each peer has its own bounded queue and its own sender thread, so a slow or dead peer
// never blocks the raft loop or the other peers: Send() only enqueues. When a peer's queue
// is full, new messages to it are dropped (Raft retransmits; dropping is always safe). A
// broken stream (the peer gone, or the link found dead by the channel's keepalive) is
// re-opened after the channels' backoff (peer_channels.h), and the new stream waits for the
// channel to connect again; the messages in flight on the old one are lost, and the peer is
// reported unreachable so the core can slow down. A sender with nothing to send writes an
// empty batch every idle_write_ms, so a stream that died idle is noticed and re-opened too.
//
// A peer that applied this node's removal refuses its streams and says so (kMemberRemovedKey
// in the trailers): `on_removed` then runs. That is how a node learns of a removal its own
// log never got (it was down, or the entry's commit never reached it before the leader
// stopped sending to it); the idle writes make sure it asks even when it has nothing to say.
//
// Peer ids are raft ids (node_id.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "raft.pb.h"

namespace raftkv::server {

class PeerChannels;

struct PeerTransportOptions {
  size_t max_queue_msgs = 4096;              // --peer-queue-msgs: per peer, then dropped
  size_t max_batch_bytes = 4 * 1024 * 1024;  // one stream write carries at most this much
  uint32_t idle_write_ms = 200;              // nothing to send this long: an empty batch
  uint64_t cluster_id = 0;                   // stamped on every batch (peers check it)
  uint64_t self_id = 0;                      // stamped on every batch as `from`
};

// Trailing metadata key of a refused stream whose sender is a removed member.
inline constexpr char kMemberRemovedKey[] = "raftkv-member-removed";

class PeerTransport {
 public:
  using OnUnreachable = absl::AnyInvocable<void(uint64_t peer) const>;
  using OnRemoved = absl::AnyInvocable<void(uint64_t peer, const std::string& why) const>;

  // One sender per peer of `channels` (which must outlive this object). `on_unreachable`
  // runs on a sender thread when a stream to that peer breaks or cannot be opened; it must
  // not block. `on_removed` (may be empty) runs on a sender thread each time a peer refuses
  // a stream because this node was removed; it must not block.
  PeerTransport(const PeerChannels* channels, PeerTransportOptions options,
                OnUnreachable on_unreachable, OnRemoved on_removed = {});
  ~PeerTransport();  // Stop()s.

  // Queues each message for its `to` peer. Never blocks. Messages to unknown ids are dropped.
  void Send(std::vector<raftpb::Message> msgs);
  // The members changed: a sender for each peer of the channels that has none, or whose
  // address changed; the senders of peers no longer in the channels stop. Call on the thread
  // that calls Send (the raft loop).
  void SyncPeers();
  // Stops every sender thread; queued messages are discarded. Idempotent.
  void Stop();

 private:
  class Peer;
  const PeerChannels* const channels_;
  const PeerTransportOptions options_;
  OnUnreachable on_unreachable_;
  OnRemoved on_removed_;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;
};

}  // namespace raftkv::server
