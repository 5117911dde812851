#include "server/peer/peer_channels.h"

namespace raftkv::server {

PeerChannels::PeerChannels(std::map<uint64_t, std::string> addresses,
                           PeerChannelOptions options)
    : addresses_(std::move(addresses)), options_(options) {
  for (const auto& [id, address] : addresses_) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);  // loopback must not go through a proxy
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    if (options.keepalive_ms > 0) {
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_ms));
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout_ms));
      // Probe the link between two streams too (a broken Raft stream is re-opened only after
      // a backoff), and with no limit on pings while no data is sent (a follower with
      // nothing to say still needs to know whether its leader is reachable). The peer's
      // server accepts this rate: ApplyPeerServerOptions.
      args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
      args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    }
    // gRPC waits max(this, the current backoff) for one dial; its default, 20 s, outlasts
    // most partitions, and a SYN lost to one is retransmitted only after 1, 3, 7 ... s.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.connect_timeout_ms));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(options.reconnect_backoff_min_ms));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(options.reconnect_backoff_max_ms));
    stubs_[id] = raftpb::RaftPeer::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
}

raftpb::RaftPeer::Stub* PeerChannels::stub(uint64_t peer) const {
  auto it = stubs_.find(peer);
  return it == stubs_.end() ? nullptr : it->second.get();
}

const std::string& PeerChannels::address(uint64_t peer) const {
  static const std::string* const kNone = new std::string();
  auto it = addresses_.find(peer);
  return it == addresses_.end() ? *kNone : it->second;
}

Backoff PeerChannels::NewBackoff() const {
  return NewBackoff(absl::Milliseconds(options_.reconnect_backoff_min_ms));
}

Backoff PeerChannels::NewBackoff(absl::Duration first) const {
  return Backoff(first, absl::Milliseconds(options_.reconnect_backoff_max_ms));
}

}  // namespace raftkv::server
