#include "server/snapshot_transfer.h"

#include <algorithm>
#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

struct SnapshotSender::Transfer {
  raftpb::Message msg;
  std::string path;
  std::thread thread;
  std::mutex mu;
  grpc::ClientContext* context = nullptr;  // guarded by mu: the open stream, for Stop()
  bool done = false;                       // the thread has finished (guarded by Sender mu_)
};

SnapshotSender::SnapshotSender(std::map<uint64_t, std::string> peer_addresses,
                               SnapshotTransferOptions options,
                               std::function<void(uint64_t, bool)> on_done)
    : addresses_(std::move(peer_addresses)), options_(options), on_done_(std::move(on_done)) {}

SnapshotSender::~SnapshotSender() { Stop(); }

bool SnapshotSender::Start(const raftpb::Message& msg, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, t] : running_) {
      std::lock_guard<std::mutex> tl(t->mu);
      if (t->context) t->context->TryCancel();
    }
    running.swap(running_);
  }
  cv_.notify_all();
  for (auto& [id, t] : running) t->thread.join();
}

void SnapshotSender::Run(Transfer* t) {
  const uint64_t to = t->msg.to();
  bool ok = false;
  std::string error;
  auto addr = addresses_.find(to);
  std::ifstream file(t->path, std::ios::binary | std::ios::ate);
  if (addr == addresses_.end()) {
    error = "unknown peer";
  } else if (!file) {
    error = absl::StrCat("cannot open ", t->path);
  }
  const uint64_t size = file ? static_cast<uint64_t>(file.tellg()) : 0;
  std::string name = t->path.substr(t->path.find_last_of('/') + 1);
  std::unique_ptr<raftpb::RaftPeer::Stub> stub;
  if (error.empty()) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    args.SetMaxSendMessageSize(-1);
    stub = raftpb::RaftPeer::NewStub(
        grpc::CreateCustomChannel(addr->second, grpc::InsecureChannelCredentials(), args));
  }
  uint32_t backoff_ms = options_.backoff_ms;
  const auto started = std::chrono::steady_clock::now();
  uint64_t bytes_sent = 0;
  for (uint32_t attempt = 0; error.empty() && !ok && attempt < options_.max_attempts;
       ++attempt) {
    if (attempt > 0) {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; })) {
        error = "stopped";
        break;
      }
      backoff_ms = std::min<uint32_t>(backoff_ms * 2, 5000);
    }
    grpc::ClientContext context;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        error = "stopped";
        break;
      }
      std::lock_guard<std::mutex> tl(t->mu);
      t->context = &context;
    }
    auto stream = stub->InstallSnapshot(&context);
    raftpb::SnapshotChunk header;
    *header.mutable_message() = t->msg;
    *header.mutable_metadata() = t->msg.snapshot().metadata();
    header.set_from(t->msg.from());
    header.set_term(t->msg.term());
    header.set_name(name);
    header.set_total_size(size);
    raftpb::SnapshotAck ack;
    bool stream_ok = stream->Write(header) && stream->Read(&ack) && ack.error().empty();
    uint64_t offset = ack.next_offset();
    std::string buf;
    while (stream_ok && !ack.done()) {
      uint64_t n = std::min<uint64_t>(options_.chunk_bytes, size - offset);
      buf.resize(n);
      file.clear();
      file.seekg(static_cast<std::streamoff>(offset));
      file.read(buf.data(), static_cast<std::streamsize>(n));
      if (!file) {
        error = absl::StrCat("read error in ", t->path);
        break;
      }
      raftpb::SnapshotChunk chunk;
      chunk.set_offset(offset);
      chunk.set_crc32c(base::crc32c::Value(buf.data(), buf.size()));
      chunk.set_data(buf);
      chunk.set_last(offset + n == size);
      stream_ok = stream->Write(chunk) && stream->Read(&ack) && ack.error().empty();
      offset += n;
      bytes_sent += n;
      if (options_.rate_bytes_per_sec > 0) {
        // Rate limit: never run ahead of rate_bytes_per_sec since the transfer started.
        auto due = started + std::chrono::microseconds(bytes_sent * 1000000 /
                                                       options_.rate_bytes_per_sec);
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_until(lock, due, [&] { return stopping_; })) stream_ok = false;
      }
    }
    ok = stream_ok && ack.done();
    if (!ack.error().empty()) error = ack.error();  // the receiver refused: don't retry
    stream->WritesDone();
    stream->Finish();
    std::lock_guard<std::mutex> tl(t->mu);
    t->context = nullptr;
  }
  if (ok) {
    spdlog::info("snapshot send: {} ({} bytes) to node {} done", name, size, to - 1);
  } else {
    spdlog::warn("snapshot send: {} to node {} failed: {}", name, to - 1,
                 error.empty() ? "stream broke too often" : error);
  }
  on_done_(to, ok);
  std::lock_guard<std::mutex> lock(mu_);
  t->done = true;
}

}  // namespace raftkv::server
