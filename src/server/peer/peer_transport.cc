#include "server/peer_transport.h"

#include <algorithm>
#include <chrono>

#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

// One peer: a bounded queue and a sender thread that owns the stream.
class PeerTransport::Peer {
 public:
  Peer(uint64_t self_id, uint64_t peer_id, std::string address,
       const PeerTransportOptions& options, std::function<void(uint64_t)> on_unreachable)
      : self_id_(self_id),
        peer_id_(peer_id),
        address_(std::move(address)),
        options_(options),
        on_unreachable_(std::move(on_unreachable)) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);  // loopback must not go through a proxy
    args.SetMaxSendMessageSize(-1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, options_.backoff_min_ms);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options_.backoff_max_ms);
    channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
    stub_ = raftpb::RaftPeer::NewStub(channel_);
    thread_ = std::thread([this] { Run(); });
  }

  ~Peer() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      if (context_) context_->TryCancel();  // unblocks a Write stuck on flow control
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Enqueue(raftpb::Message m) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= options_.max_queue_msgs) {
        ++stats_.dropped_msgs;
        return;
      }
      queue_.push_back(std::move(m));
    }
    cv_.notify_one();
  }

  PeerStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  void Run() {
    uint32_t backoff_ms = options_.backoff_min_ms;
    std::unique_ptr<grpc::ClientWriter<raftpb::MessageBatch>> writer;
    raftpb::PeerEmpty response;
    for (;;) {
      raftpb::MessageBatch batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        size_t bytes = 0;
        while (!queue_.empty() &&
               (batch.messages_size() == 0 || bytes < options_.max_batch_bytes)) {
          bytes += queue_.front().ByteSizeLong();
          *batch.add_messages() = std::move(queue_.front());
          queue_.pop_front();
        }
        if (!writer) {
          context_ = std::make_unique<grpc::ClientContext>();
          writer = stub_->Send(context_.get(), &response);
        }
      }
      if (writer->Write(batch)) {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.sent_msgs += batch.messages_size();
        stats_.connected = true;
        backoff_ms = options_.backoff_min_ms;
        continue;
      }
      // The stream broke (peer down, restarted, or never up): these messages are lost.
      writer->Finish();
      writer.reset();
      bool was_connected;
      {
        std::lock_guard<std::mutex> lock(mu_);
        context_.reset();
        was_connected = stats_.connected;
        stats_.connected = false;
        ++stats_.reconnects;
        stats_.dropped_msgs += batch.messages_size();
      }
      if (was_connected) spdlog::warn("peer {}: stream to {} broke", peer_id_, address_);
      on_unreachable_(peer_id_);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
      if (stopping_) break;
      backoff_ms = std::min(backoff_ms * 2, options_.backoff_max_ms);
    }
    if (writer) {
      writer->WritesDone();
      writer->Finish();
    }
  }

  const uint64_t self_id_;
  const uint64_t peer_id_;
  const std::string address_;
  const PeerTransportOptions options_;
  const std::function<void(uint64_t)> on_unreachable_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<raftpb::RaftPeer::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<raftpb::Message> queue_;        // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::unique_ptr<grpc::ClientContext> context_;  // guarded by mu_; the open stream's
  PeerStats stats_;                          // guarded by mu_
  std::thread thread_;
};

PeerTransport::PeerTransport(uint64_t self_id, std::map<uint64_t, std::string> peer_addresses,
                             PeerTransportOptions options,
                             std::function<void(uint64_t)> on_unreachable) {
  for (auto& [id, address] : peer_addresses) {
    if (id == self_id) continue;
    peers_[id] = std::make_unique<Peer>(self_id, id, address, options, on_unreachable);
  }
}

PeerTransport::~PeerTransport() { Stop(); }

void PeerTransport::Send(std::vector<raftpb::Message> msgs) {
  for (raftpb::Message& m : msgs) {
    auto it = peers_.find(m.to());
    if (it != peers_.end()) it->second->Enqueue(std::move(m));
  }
}

void PeerTransport::Stop() {
  for (auto& [id, peer] : peers_) peer->Stop();
}

PeerStats PeerTransport::stats(uint64_t peer_id) const {
  auto it = peers_.find(peer_id);
  return it == peers_.end() ? PeerStats{} : it->second->stats();
}

}  // namespace raftkv::server
