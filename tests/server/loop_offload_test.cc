// Issue 10 item 4: the raft loop only does consensus. What a client's read does after its
// barrier, and a snapshot install's store and backup steps, run on other threads: the loop
// meanwhile goes on taking writes, appending, acknowledging and committing.
//
// Each test blocks the off-loop work on purpose (a read callback, the store's install) until
// the loop has shown progress that needs it to be free, so a loop that ran that work itself
// would never show it: the bounded wait fails. (tests/integration/test_loop_latency.py
// measures the same with real kvd processes and a large keyspace.)
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "eventually.h"
#include "forwarding_state_machine.h"
#include "gtest/gtest.h"
#include "install_crash_scenario.h"
#include "kv/sqlite_snapshot.h"
#include "kv/temp_dir.h"
#include "server/data_dir.h"
#include "server/replication/raft_loop.h"
#include "server/replication/recovery.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::server {
namespace {

using kv::testing::TempDir;
using testing::AppendAfter;
using testing::Eventually;
using testing::FollowerLoopOptions;
using testing::PutCommand;
using testing::SnapMessage;

constexpr absl::Duration kWait = absl::Seconds(20);

// A read whose callback does not return until a write made after it was answered: with the
// callback on the loop, that write could never be proposed.
// A store in `dir`, as a single-node loop opens it.
absl::StatusOr<std::unique_ptr<kv::StateMachine>> OpenStore(const DataDir& dir) {
  kv::StateMachineOptions sm_options;
  sm_options.db_path = dir.db();
  return kv::StateMachine::Open(sm_options);
}

RaftLoopOptions OneNodeOptions() {
  RaftLoopOptions options;
  options.cluster = {NodeAddress{"127.0.0.1", 1, 1}};  // one node
  options.tick_ms = 10;
  return options;
}

TEST(LoopOffloadTest, AReadRunsOffTheLoop) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  auto sm = OpenStore(dir);
  ASSERT_TRUE(sm.ok()) << sm.status();
  auto loop = RaftLoop::Start(sm->get(), dir, OneNodeOptions());
  ASSERT_TRUE(loop.ok()) << loop.status();
  ASSERT_TRUE(Eventually([&] { return (*loop)->Status().role == "leader"; }));

  absl::Notification read_started, write_answered, read_done;
  (*loop)->ReadBarrier([&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    read_started.Notify();
    // As long as a read of the whole keyspace would take, and then some.
    write_answered.WaitForNotificationWithTimeout(kWait);
    read_done.Notify();
  });
  ASSERT_TRUE(read_started.WaitForNotificationWithTimeout(kWait));
  absl::Status write_status = absl::UnknownError("not answered");
  (*loop)->Write(PutCommand("k", "v"), [&](absl::StatusOr<kv::ApplyResult> r) {
    write_status = r.status();
    write_answered.Notify();
  });
  EXPECT_TRUE(write_answered.WaitForNotificationWithTimeout(kWait))
      << "a write was not answered while a read callback ran: the read holds the raft loop";
  EXPECT_TRUE(read_done.WaitForNotificationWithTimeout(kWait));
  if (write_answered.HasBeenNotified()) {
    EXPECT_TRUE(write_status.ok()) << write_status;
  }
  (*loop)->Stop();
}

// Delegates to a real store; applying the put of key "hold" waits until the test lets it go.
class HoldingApplyStateMachine final : public testing::ForwardingStateMachine {
 public:
  using ForwardingStateMachine::ForwardingStateMachine;

  absl::Notification apply_held;
  absl::Notification release_apply;

  absl::StatusOr<kv::ApplyResult> Apply(uint64_t index, uint64_t term,
                                        const kvpb::Command& cmd) override {
    if (cmd.ops_size() == 1 && cmd.ops(0).has_put() && cmd.ops(0).put().key() == "hold") {
      apply_held.Notify();
      release_apply.WaitForNotificationWithTimeout(kWait);
    }
    return ForwardingStateMachine::Apply(index, term, cmd);
  }
};

// The reads one loop iteration releases reach the reader pool in one hand-off (one lock and
// one wake of the pool), not one each: 200 read barriers that queue while the loop is held in
// an apply are released by one ReadIndex round and handed off together. Every read is
// answered, on a pool thread.
TEST(LoopOffloadTest, ReadsReleasedTogetherReachThePoolInOneHandOff) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  auto inner = OpenStore(dir);
  ASSERT_TRUE(inner.ok()) << inner.status();
  HoldingApplyStateMachine sm(*std::move(inner));
  auto loop = RaftLoop::Start(&sm, dir, OneNodeOptions());
  ASSERT_TRUE(loop.ok()) << loop.status();
  ASSERT_TRUE(Eventually([&] { return (*loop)->Status().role == "leader"; }));

  absl::Notification write_answered;
  (*loop)->Write(PutCommand("hold", "v"), [&](absl::StatusOr<kv::ApplyResult> r) {
    EXPECT_TRUE(r.ok()) << r.status();
    write_answered.Notify();
  });
  ASSERT_TRUE(sm.apply_held.WaitForNotificationWithTimeout(kWait));
  const NodeStatus before = (*loop)->Status();
  constexpr int kReads = 200;
  const std::thread::id test_thread = std::this_thread::get_id();
  absl::Mutex mu;
  int answered = 0;
  int on_test_thread = 0;
  for (int i = 0; i < kReads; ++i) {
    (*loop)->ReadBarrier([&](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      absl::MutexLock lock(&mu);
      ++answered;
      if (std::this_thread::get_id() == test_thread) ++on_test_thread;
    });
  }
  sm.release_apply.Notify();
  ASSERT_TRUE(write_answered.WaitForNotificationWithTimeout(kWait));
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return answered == kReads; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kWait))
        << answered << " of " << kReads << " reads answered";
    EXPECT_EQ(on_test_thread, 0);
  }
  const NodeStatus after = (*loop)->Status();
  EXPECT_EQ(after.read_barriers_released - before.read_barriers_released, static_cast<uint64_t>(kReads));
  // All in one iteration; allow one more should a tick split them.
  EXPECT_LE(after.read_handoffs - before.read_handoffs, 2u)
      << "the " << kReads << " reads went to the pool one by one";
  (*loop)->Stop();
}

// Delegates to a real store; InstallSnapshot waits until the test lets it go.
class BlockingInstallStateMachine final : public testing::ForwardingStateMachine {
 public:
  using ForwardingStateMachine::ForwardingStateMachine;

  absl::Notification install_started;
  absl::Notification release_install;

  absl::Status InstallSnapshot(const std::string& path) override {
    install_started.Notify();
    release_install.WaitForNotificationWithTimeout(kWait);
    return ForwardingStateMachine::InstallSnapshot(path);
  }
};

// A follower (install_crash_scenario.h: the test plays the leader) receives a snapshot at
// index 10; while the store's install is held, the leader's next entry arrives: the follower
// appends it and its commit index moves (the loop is free), but nothing is applied before the
// store holds the snapshot; once released, the entry is applied after it.
TEST(LoopOffloadTest, ASnapshotInstallRunsOffTheLoopAndNothingIsAppliedBeforeIt) {
  constexpr uint64_t kSnapIndex = 10, kSnapTerm = 2;
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  std::filesystem::create_directories(dir.received_snapshots());
  const std::string snap_path =
      SnapshotStore(dir.received_snapshots()).PathFor(kSnapIndex, kSnapTerm);
  {
    kv::StateMachineOptions o;
    o.db_path = tmp.Sub("leader-db");
    auto leader = kv::StateMachine::Open(o);
    ASSERT_TRUE(leader.ok()) << leader.status();
    for (uint64_t i = 1; i <= kSnapIndex; ++i) {
      ASSERT_TRUE((*leader)->Apply(i, kSnapTerm, PutCommand(absl::StrCat("k", i), "v")).ok());
    }
    auto meta = kv::WriteSnapshot(**leader, snap_path);
    ASSERT_TRUE(meta.ok()) << meta.status();
  }
  auto opened = OpenStateMachine(dir, "");
  ASSERT_TRUE(opened.ok()) << opened.status();
  BlockingInstallStateMachine sm(*std::move(opened));
  RaftLoopOptions options = FollowerLoopOptions(dir.root());
  options.empty_start = raft::Config::EmptyStart::kNewCluster;  // takes the leader's log at once
  auto loop = RaftLoop::Start(&sm, dir, options);
  ASSERT_TRUE(loop.ok()) << loop.status();

  (*loop)->Deliver(SnapMessage(snap_path, kSnapIndex, kSnapTerm));
  ASSERT_TRUE(sm.install_started.WaitForNotificationWithTimeout(kWait));
  (*loop)->Deliver(AppendAfter(kSnapIndex, kSnapTerm, "after", "snapshot"));
  const bool committed = Eventually([&] {
    return (*loop)->Status().commit_index == kSnapIndex + 1;
  });
  const uint64_t applied_while_installing = sm.applied_index();
  sm.release_install.Notify();
  EXPECT_TRUE(committed) << "the follower took no entry while its store installed a "
                            "snapshot: the install holds the raft loop";
  EXPECT_EQ(applied_while_installing, 0u) << "applied before the store held the snapshot";

  ASSERT_TRUE(Eventually([&] { return sm.applied_index() == kSnapIndex + 1; }))
      << "applied " << sm.applied_index();
  auto after = sm.Get("after");
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->value, "snapshot");
  auto k1 = sm.Get("k1");
  ASSERT_TRUE(k1.ok() && k1->has_value()) << "the snapshot's data is missing";
  (*loop)->Stop();
}

}  // namespace
}  // namespace raftkv::server
