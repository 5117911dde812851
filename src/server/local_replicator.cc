#include "server/local_replicator.h"

#include "absl/strings/str_format.h"

namespace raftkv::server {

LocalReplicator::LocalReplicator(kv::StateMachine* sm, LocalReplicatorOptions options)
    : sm_(sm), options_(std::move(options)) {
  apply_thread_ = std::thread([this] { ApplyLoop(); });
}

LocalReplicator::~LocalReplicator() { Stop(); }

void LocalReplicator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
}

void LocalReplicator::Write(kvpb::Command cmd, WriteDone done) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("node is shutting down");
    } else if (queue_.size() >= options_.max_pending_writes) {
      refused = absl::ResourceExhaustedError(absl::StrFormat(
          "too many pending writes (limit %d)", options_.max_pending_writes));
    } else {
      queue_.emplace_back(std::move(cmd), std::move(done));
      return;
    }
  }
  std::move(done)(refused);  // outside the lock: callbacks may take other locks
}

void LocalReplicator::ReadBarrier(ReadDone done) {
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  // One node: every acknowledged write was applied before it was acknowledged, so the
  // local state machine already reflects it.
  std::move(done)(stopping ? absl::UnavailableError("node is shutting down") : absl::OkStatus());
}

void LocalReplicator::ApplyLoop() {
  for (;;) {
    std::deque<std::pair<kvpb::Command, WriteDone>> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](LocalReplicator* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, and everything queued was answered
      batch.swap(queue_);
    }
    for (auto& [cmd, done] : batch) {
      absl::StatusOr<kv::ApplyResult> result =
          sm_->Apply(sm_->applied_index() + 1, /*term=*/1, cmd);
      std::move(done)(std::move(result));
    }
  }
}

NodeStatus LocalReplicator::Status() const {
  NodeStatus s;
  s.id = options_.node_id;
  s.role = "leader";
  s.term = 1;
  s.leader_id = static_cast<int64_t>(options_.node_id);
  s.commit_index = sm_->applied_index();
  s.applied_index = sm_->applied_index();
  s.revision = sm_->revision();
  s.cluster_id = options_.cluster_id;
  return s;
}

std::vector<PeerStatus> LocalReplicator::Members() const {
  PeerStatus p;
  p.id = options_.node_id;
  p.address = options_.address;
  p.grpc_address = options_.grpc_address;
  p.role = "leader";
  p.term = 1;
  p.commit_index = p.applied_index = sm_->applied_index();
  return {p};
}

}  // namespace raftkv::server
