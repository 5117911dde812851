// LocalReplicator: the single-node implementation of the Replicator seam, before Raft.
//
// One apply thread takes queued commands in arrival order and applies each as the next log
// index to the state machine (opened with sync_writes, so an acknowledged write survives a
// crash); `done` runs on that thread after the apply. Replaced by the raft loop (issue 3).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/state_machine.h"
#include "server/replicator.h"

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

}  // namespace raftkv::server
