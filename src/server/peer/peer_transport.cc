#include "server/peer/peer_transport.h"

#include <deque>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/peer/peer_channels.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

// One peer: a bounded queue and a sender thread that owns the stream.
class PeerTransport::Peer {
 public:
  Peer(uint64_t peer_id, const PeerChannels* channels, const PeerTransportOptions& options,
       const OnUnreachable* on_unreachable, const OnRemoved* on_removed)
      : peer_id_(peer_id),
        address_(channels->address(peer_id)),
        channels_(channels),
        stub_(channels->stub(peer_id)),
        options_(options),
        on_unreachable_(on_unreachable),
        on_removed_(on_removed) {
    thread_ = std::thread([this] { Run(); });
  }

  ~Peer() { Stop(); }

  const std::string& address() const { return address_; }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      if (context_) context_->TryCancel();  // unblocks a Write stuck on flow control
    }
    if (thread_.joinable()) thread_.join();
  }

  void Enqueue(raftpb::Message m) {
    absl::MutexLock lock(&mu_);
    if (queue_.size() >= options_.max_queue_msgs) return;  // dropped: Raft retransmits
    queue_.push_back(std::move(m));
  }

 private:
  void Run() {
    Backoff backoff = channels_->NewBackoff();
    std::unique_ptr<grpc::ClientWriter<raftpb::MessageBatch>> writer;
    raftpb::PeerEmpty response;
    bool connected = false;        // the open stream has carried a batch
    absl::Time broke_at;           // when the last stream broke, for the log
    for (;;) {
      grpc::ClientContext* new_stream = nullptr;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        };
        // With nothing to send for idle_write_ms, an empty batch goes out anyway: a stream
        // whose connection died while this peer had nothing to say (a follower towards
        // another follower) is noticed now, not when the first message after the heal is
        // lost on it; and a broken stream is re-opened at once, so the channel keeps
        // redialling through a partition and the stream is ready when it heals.
        mu_.AwaitWithTimeout(absl::Condition(&ready),
                             absl::Milliseconds(options_.idle_write_ms));
        if (stopping_) break;
        if (!writer) {
          context_ = std::make_unique<grpc::ClientContext>();
          // Wait until the channel is connected instead of failing at once while it
          // re-dials (peer_channels.h: bounded dials on a jittered, capped backoff): the
          // stream opens as soon as the peer is reachable again, not at this loop's next
          // retry. Stop() cancels the wait.
          context_->set_wait_for_ready(true);
          new_stream = context_.get();
        }
      }
      // Opening the stream waits for the connection: never under mu_, which Send() and
      // Stop() take.
      if (new_stream != nullptr) writer = stub_->Send(new_stream, &response);
      // The batch is taken once the stream is open: it carries everything queued while the
      // stream was opening (or nothing: an idle write).
      raftpb::MessageBatch batch;
      batch.set_cluster_id(options_.cluster_id);
      batch.set_from(options_.self_id);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) break;
        size_t bytes = 0;
        while (!queue_.empty() &&
               (batch.messages_size() == 0 || bytes < options_.max_batch_bytes)) {
          bytes += queue_.front().ByteSizeLong();
          *batch.add_messages() = std::move(queue_.front());
          queue_.pop_front();
        }
      }
      if (writer->Write(batch)) {
        if (!connected && broke_at != absl::Time()) {
          spdlog::info("peer {}: stream to {} open again, {} after it broke", peer_id_,
                       address_, absl::FormatDuration(absl::Now() - broke_at));
        }
        connected = true;
        backoff.Reset();
        continue;
      }
      // The stream broke (peer down, restarted, never up, or the link found dead by
      // keepalive): these messages are lost.
      const grpc::Status status = writer->Finish();
      writer.reset();
      bool removed = false;
      {
        absl::MutexLock lock(&mu_);
        const auto& trailers = context_->GetServerTrailingMetadata();
        removed = trailers.find(kMemberRemovedKey) != trailers.end();
        context_.reset();
      }
      if (removed && *on_removed_) (*on_removed_)(peer_id_, status.error_message());
      if (connected) {
        spdlog::warn("peer {}: stream to {} broke", peer_id_, address_);
        broke_at = absl::Now();
      }
      connected = false;
      (*on_unreachable_)(peer_id_);
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), backoff.Next())) break;
    }
    if (writer) {
      writer->WritesDone();
      writer->Finish();
    }
  }

  const uint64_t peer_id_;
  const std::string address_;
  const PeerChannels* const channels_;
  const std::shared_ptr<raftpb::RaftPeer::Stub> stub_;  // keeps the channel open
  const PeerTransportOptions options_;
  const OnUnreachable* const on_unreachable_;  // owned by PeerTransport
  const OnRemoved* const on_removed_;          // owned by PeerTransport

  absl::Mutex mu_;
  std::deque<raftpb::Message> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The open stream's context; replaced only by the sender thread, which alone may use it
  // outside mu_.
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

PeerTransport::PeerTransport(const PeerChannels* channels, PeerTransportOptions options,
                             OnUnreachable on_unreachable, OnRemoved on_removed)
    : channels_(channels),
      options_(options),
      on_unreachable_(std::move(on_unreachable)),
      on_removed_(std::move(on_removed)) {
  SyncPeers();
}

void PeerTransport::SyncPeers() {
  const std::map<uint64_t, std::string> addresses = channels_->addresses();
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto a = addresses.find(it->first);
    if (a == addresses.end() || a->second != it->second->address()) {
      spdlog::info("peer {}: sender to {} stops (member removed or moved)", it->first,
                   it->second->address());
      it = peers_.erase(it);  // ~Peer stops its thread
    } else {
      ++it;
    }
  }
  for (const auto& [id, address] : addresses) {
    if (!peers_.count(id)) {
      peers_[id] =
          std::make_unique<Peer>(id, channels_, options_, &on_unreachable_, &on_removed_);
    }
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

}  // namespace raftkv::server
