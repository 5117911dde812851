#include "server/peer/snapshot_sender.h"

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "server/node_id.h"
#include "server/peer/peer_channels.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

struct SnapshotSender::Transfer {
  raftpb::Message msg;
  std::string path;
  std::string name;       // the file name the receiver sees
  std::ifstream file;
  uint64_t size = 0;
  absl::Time started;
  uint64_t bytes_sent = 0;  // over all attempts, for the rate limit
  std::thread thread;
  absl::Mutex mu;
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;  // the open stream, for Stop()
  bool done = false;  // the thread has finished (guarded by the sender's mu_)
};

SnapshotSender::SnapshotSender(const PeerChannels* channels, SnapshotTransferOptions options,
                               OnDone on_done)
    : channels_(channels), options_(options), on_done_(std::move(on_done)) {}

SnapshotSender::~SnapshotSender() { Stop(); }

bool SnapshotSender::Start(const raftpb::Message& msg, const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  auto it = running_.find(msg.to());
  if (it != running_.end()) {
    if (!it->second->done) return false;
    it->second->thread.join();
    running_.erase(it);
  }
  auto t = std::make_unique<Transfer>();
  t->msg = msg;
  t->path = path;
  Transfer* raw = t.get();
  running_[msg.to()] = std::move(t);
  raw->thread = std::thread([this, raw] { Run(raw); });
  return true;
}

void SnapshotSender::Stop() {
  std::map<uint64_t, std::unique_ptr<Transfer>> running;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, t] : running_) {
      absl::MutexLock tl(&t->mu);
      if (t->context) t->context->TryCancel();
    }
    running.swap(running_);
  }
  for (auto& [id, t] : running) t->thread.join();
}

bool SnapshotSender::WaitUntil(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  return !mu_.AwaitWithDeadline(absl::Condition(&stopping), deadline);
}

void SnapshotSender::Run(Transfer* t) {
  const uint64_t to = t->msg.to();
  const std::string follower = NodeId::FromRaftId(to).ToString();
  std::string error;
  t->file.open(t->path, std::ios::binary | std::ios::ate);
  t->name = t->path.substr(t->path.find_last_of('/') + 1);
  if (channels_->stub(to) == nullptr) {
    error = "unknown peer";
  } else if (!t->file) {
    error = absl::StrCat("cannot open ", t->path);
  } else {
    t->size = static_cast<uint64_t>(t->file.tellg());
  }
  // The channels' retry rule (jittered, capped at --peer-reconnect-backoff-max-ms): a transfer
  // broken by a dead link (noticed by the channel's keepalive) resumes soon after the link
  // is back; one that runs out of attempts is reported failed, and the core sends MSG_SNAP
  // again once the follower answers, resuming at the receiver's offset.
  Backoff backoff = channels_->NewBackoff(absl::Milliseconds(options_.backoff_ms));
  t->started = absl::Now();
  Attempt outcome = Attempt::kFailed;
  for (uint32_t attempt = 0; error.empty() && attempt < options_.max_attempts; ++attempt) {
    if (attempt > 0 && !WaitUntil(absl::Now() + backoff.Next())) {
      error = "stopped";
      break;
    }
    outcome = SendOnce(t, &error);
    if (outcome != Attempt::kBroken) break;
  }
  const bool ok = outcome == Attempt::kDone;
  if (ok) {
    spdlog::info("snapshot send: {} ({} bytes) to {} done", t->name, t->size, follower);
  } else {
    spdlog::warn("snapshot send: {} to {} failed: {}", t->name, follower,
                 error.empty() ? "stream broke too often" : error);
  }
  on_done_(to, ok);
  absl::MutexLock lock(&mu_);
  t->done = true;
}

SnapshotSender::Attempt SnapshotSender::SendOnce(Transfer* t, std::string* error) {
  std::shared_ptr<raftpb::RaftPeer::Stub> stub = channels_->stub(t->msg.to());
  if (stub == nullptr) {
    *error = "the follower is no longer a member";
    return Attempt::kStopped;
  }
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      *error = "stopped";
      return Attempt::kStopped;
    }
    absl::MutexLock tl(&t->mu);
    t->context = &context;
  }
  auto stream = stub->InstallSnapshot(&context);
  raftpb::SnapshotChunk header;
  *header.mutable_message() = t->msg;
  *header.mutable_metadata() = t->msg.snapshot().metadata();
  header.set_from(t->msg.from());
  header.set_term(t->msg.term());
  header.set_name(t->name);
  header.set_total_size(t->size);
  raftpb::SnapshotAck ack;
  bool stream_ok = stream->Write(header) && stream->Read(&ack) && ack.error().empty();
  uint64_t offset = ack.next_offset();  // resume where the receiver is
  if (stream_ok && offset > t->size) {
    // It holds something else under this name (or is broken): size - offset would wrap
    // around. Retrying cannot help.
    *error = absl::StrCat("the receiver asked for offset ", offset, " past the end of ",
                          t->name, " (", t->size, " bytes)");
    stream_ok = false;
  }
  std::string buf;
  while (stream_ok && !ack.done()) {
    uint64_t n = std::min<uint64_t>(options_.chunk_bytes, t->size - offset);
    buf.resize(n);
    t->file.clear();
    t->file.seekg(static_cast<std::streamoff>(offset));
    t->file.read(buf.data(), static_cast<std::streamsize>(n));
    if (!t->file) {
      *error = absl::StrCat("read error in ", t->path);
      break;
    }
    raftpb::SnapshotChunk chunk;
    chunk.set_offset(offset);
    chunk.set_crc32c(base::crc32c::Value(buf.data(), buf.size()));
    chunk.set_data(buf);
    chunk.set_last(offset + n == t->size);
    stream_ok = stream->Write(chunk) && stream->Read(&ack) && ack.error().empty();
    offset += n;
    t->bytes_sent += n;
    if (options_.rate_bytes_per_sec > 0) {
      // Rate limit: never run ahead of rate_bytes_per_sec since the transfer started.
      absl::Time due = t->started + absl::Microseconds(t->bytes_sent * 1000000 /
                                                       options_.rate_bytes_per_sec);
      if (!WaitUntil(due)) stream_ok = false;
    }
  }
  const bool done = stream_ok && ack.done();
  if (!ack.error().empty()) *error = ack.error();  // the receiver refused: don't retry
  stream->WritesDone();
  stream->Finish();
  {
    absl::MutexLock tl(&t->mu);
    t->context = nullptr;
  }
  if (done) return Attempt::kDone;
  if (!error->empty()) return Attempt::kFailed;
  return Attempt::kBroken;
}

}  // namespace raftkv::server
