#include "server/peer/peer_channels.h"

namespace raftkv::server {

PeerChannels::PeerChannels(std::map<uint64_t, std::string> addresses,
                           PeerChannelOptions options)
    : addresses_(std::move(addresses)) {
  for (const auto& [id, address] : addresses_) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);  // loopback must not go through a proxy
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
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

}  // namespace raftkv::server
