#include "server/peer/peer_channels.h"

namespace raftkv::server {

PeerChannels::PeerChannels(std::map<uint64_t, std::string> addresses,
                           PeerChannelOptions options)
    : options_(options) {
  for (const auto& [id, address] : addresses) SetPeer(id, address);
}

std::shared_ptr<PeerChannels::Stub> PeerChannels::Dial(const std::string& address) const {
  const PeerChannelOptions& options = options_;
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
  // A local subchannel pool: a removed member's connection closes with its last stub, and a
  // re-added address dials afresh.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return std::shared_ptr<Stub>(raftpb::RaftPeer::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
}

void PeerChannels::SetPeer(uint64_t peer, const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = addresses_.find(peer);
  if (it != addresses_.end() && it->second == address) return;
  addresses_[peer] = address;
  stubs_[peer] = Dial(address);
}

void PeerChannels::RemovePeer(uint64_t peer) {
  absl::MutexLock lock(&mu_);
  addresses_.erase(peer);
  stubs_.erase(peer);
}

std::shared_ptr<PeerChannels::Stub> PeerChannels::stub(uint64_t peer) const {
  absl::MutexLock lock(&mu_);
  auto it = stubs_.find(peer);
  return it == stubs_.end() ? nullptr : it->second;
}

std::string PeerChannels::address(uint64_t peer) const {
  absl::MutexLock lock(&mu_);
  auto it = addresses_.find(peer);
  return it == addresses_.end() ? std::string() : it->second;
}

std::map<uint64_t, std::string> PeerChannels::addresses() const {
  absl::MutexLock lock(&mu_);
  return addresses_;
}

Backoff PeerChannels::NewBackoff() const {
  return NewBackoff(absl::Milliseconds(options_.reconnect_backoff_min_ms));
}

Backoff PeerChannels::NewBackoff(absl::Duration first) const {
  return Backoff(first, absl::Milliseconds(options_.reconnect_backoff_max_ms));
}

}  // namespace raftkv::server
