// The follower of tests/server/snapshot_install_crash_test.cc and its child process
// (install_crash_child.cc): what both must agree on to run one RaftLoop over the same data
// dir, before and after the child is killed during a snapshot install.
//
// Node 1 (raft id 2) of a three-node cluster whose peers are never reachable; the test plays
// the leader (raft id 1) by delivering its messages with RaftLoop::Deliver.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv/state_machine.h"
#include "raft.pb.h"
#include "server/replication/raft_loop.h"
#include "forwarding_state_machine.h"

namespace raftkv::server::testing {

inline constexpr uint64_t kLeaderRaftId = 1;
inline constexpr uint64_t kFollowerRaftId = 2;

// Exit codes of install_crash_child.
inline constexpr int kChildCrashed = 42;      // ended itself at the requested point
inline constexpr int kChildInstallDone = 3;   // the install finished before that point
inline constexpr int kChildFailed = 4;        // could not start, or the install never ended

inline RaftLoopOptions FollowerLoopOptions(const std::string& data_dir) {
  RaftLoopOptions o;
  o.node_index = 1;
  // Port 1 on loopback: nothing listens, every send fails fast; the test is the leader.
  for (int i = 0; i < 3; ++i) o.cluster.push_back(NodeAddress{"127.0.0.1", 1, 1});
  o.cluster_id = 7;
  o.tick_ms = 3'600'000;               // no tick, so no election, during a test
  o.backup_interval_ms = 3'600'000;    // the backup applies at Stop (or when asked)
  o.wal_segment_bytes = 4096;          // the minimum: several segments for the install to delete
  o.backup_path = data_dir + "/backup.db";
  return o;
}

// The leader's InstallSnapshot, as SnapshotReceiver hands it to the loop once the file at
// `path` is complete.
inline raftpb::Message SnapMessage(const std::string& path, uint64_t index, uint64_t term) {
  raftpb::Message m;
  m.set_type(raftpb::MSG_SNAP);
  m.set_from(kLeaderRaftId);
  m.set_to(kFollowerRaftId);
  m.set_term(term);
  raftpb::SnapshotMetadata* meta = m.mutable_snapshot()->mutable_metadata();
  meta->set_index(index);
  meta->set_term(term);
  for (uint64_t id : {1, 2, 3}) meta->mutable_conf_state()->add_voters(id);
  m.mutable_snapshot()->set_handle(path);
  return m;
}

inline kvpb::Command PutCommand(const std::string& key, const std::string& value) {
  kvpb::Command cmd;
  auto* put = cmd.add_ops()->mutable_put();
  put->set_key(key);
  put->set_value(value);
  return cmd;
}

inline raftpb::Entry PutEntry(uint64_t index, uint64_t term, const std::string& key,
                              const std::string& value) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(PutCommand(key, value).SerializeAsString());
  return e;
}

// The leader's AppendEntries of one put at prev_index + 1, committing it.
inline raftpb::Message AppendAfter(uint64_t prev_index, uint64_t term, const std::string& key,
                                   const std::string& value) {
  raftpb::Message m;
  m.set_type(raftpb::MSG_APP);
  m.set_from(kLeaderRaftId);
  m.set_to(kFollowerRaftId);
  m.set_term(term);
  m.set_index(prev_index);
  m.set_log_term(term);
  *m.add_entries() = PutEntry(prev_index + 1, term, key, value);
  m.set_commit(prev_index + 1);
  return m;
}

// A state machine that lets a test wait until an index is applied (no sleeping): every call
// goes to the real one; WaitApplied wakes on each Apply.
class WaitableStateMachine final : public ForwardingStateMachine {
 public:
  using ForwardingStateMachine::ForwardingStateMachine;

  // Whether applied_index() reached `index` within `timeout`.
  bool WaitApplied(uint64_t index, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [&] { return inner().applied_index() >= index; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  // From now on, applying a put of `key` blocks (the caller, the raft loop, with it) until
  // Unblock(); WaitBlocked says when the loop is held there.
  void BlockApplyOf(const std::string& key) {
    absl::MutexLock lock(&gate_mu_);
    block_key_ = key;
  }
  bool WaitBlocked(absl::Duration timeout) {
    absl::MutexLock lock(&gate_mu_);
    return gate_mu_.AwaitWithTimeout(absl::Condition(&blocked_), timeout);
  }
  void Unblock() {
    absl::MutexLock lock(&gate_mu_);
    block_key_.reset();
  }

  absl::StatusOr<kv::ApplyResult> Apply(uint64_t index, uint64_t term,
                                        const kvpb::Command& cmd) override {
    {
      absl::MutexLock lock(&gate_mu_);
      auto blocks = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(gate_mu_) {
        if (!block_key_) return false;
        for (const auto& op : cmd.ops()) {
          if (op.has_put() && op.put().key() == *block_key_) return true;
        }
        return false;
      };
      if (blocks()) {
        blocked_ = true;
        auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(gate_mu_) { return !blocks(); };
        gate_mu_.Await(absl::Condition(&released));
        blocked_ = false;
      }
    }
    absl::MutexLock lock(&mu_);  // releasing it re-evaluates WaitApplied's condition
    return ForwardingStateMachine::Apply(index, term, cmd);
  }
  absl::Status ApplyEmpty(uint64_t index, uint64_t term) override {
    absl::MutexLock lock(&mu_);
    return ForwardingStateMachine::ApplyEmpty(index, term);
  }
  absl::Status InstallSnapshot(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    return ForwardingStateMachine::InstallSnapshot(path);
  }

 private:
  absl::Mutex mu_;
  absl::Mutex gate_mu_;
  std::optional<std::string> block_key_ ABSL_GUARDED_BY(gate_mu_);
  bool blocked_ ABSL_GUARDED_BY(gate_mu_) = false;
};

}  // namespace raftkv::server::testing
