// LocalReplicator: a TEST DOUBLE of the Replicator seam for front-end tests (etcd_fakes.h):
// one node, no Raft. It was kvd's pre-Raft write path; kvd now always uses RaftLoop,
// so it lives under tests/ where no production code can reach it.
//
// One apply thread takes queued commands in arrival order and applies each as the next log
// index to the state machine; `done` runs on that thread after the apply.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "kv/state_machine.h"
#include "server/service/replicator.h"

namespace raftkv::server {

struct LocalReplicatorOptions {
  uint64_t node_id = 0;
  std::string address;           // ip:client_port, for Members()
  std::string grpc_address;      // ip:grpc_port
  uint64_t cluster_id = 0;
  size_t max_pending_writes = 100000;  // --max-pending-writes; over it: kResourceExhausted
};

class LocalReplicator : public Replicator {
 public:
  // REQUIRES: sm outlives this object.
  LocalReplicator(kv::StateMachine* sm, LocalReplicatorOptions options);
  ~LocalReplicator() override;  // Stop()s.

  // Applies every queued write, answers them, then stops the apply thread. Later calls to
  // Write/ReadBarrier fail with kUnavailable. Idempotent.
  void Stop();

  void Write(kvpb::Command cmd, WriteDone done) override;
  void ReadBarrier(ReadDone done) override;
  NodeStatus Status() const override;
  std::vector<PeerStatus> Members() const override;

 private:
  void ApplyLoop();

  kv::StateMachine* const sm_;
  const LocalReplicatorOptions options_;

  absl::Mutex mu_;
  // Commands waiting for the apply thread, in arrival order.
  std::deque<std::pair<kvpb::Command, WriteDone>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread apply_thread_;
};

inline LocalReplicator::LocalReplicator(kv::StateMachine* sm, LocalReplicatorOptions options)
    : sm_(sm), options_(std::move(options)) {
  apply_thread_ = std::thread([this] { ApplyLoop(); });
}

inline LocalReplicator::~LocalReplicator() { Stop(); }

inline void LocalReplicator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
}

inline void LocalReplicator::Write(kvpb::Command cmd, WriteDone done) {
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

inline void LocalReplicator::ReadBarrier(ReadDone done) {
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  // One node: every acknowledged write was applied before it was acknowledged, so the
  // local state machine already reflects it.
  std::move(done)(stopping ? absl::UnavailableError("node is shutting down") : absl::OkStatus());
}

inline void LocalReplicator::ApplyLoop() {
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

inline NodeStatus LocalReplicator::Status() const {
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

inline std::vector<PeerStatus> LocalReplicator::Members() const {
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
