// Issue 9, item 4: the backup can fail without crashing the node or letting its log grow
// without bound. The failures are real ones: a snapshot file that cannot be copied, and the
// backup locked by another SQLite connection (an operator's `sqlite3 backup.db` holding a
// write transaction), which makes every backup transaction fail with SQLITE_BUSY until the
// lock goes.
#include <sqlite3.h>

#include <future>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "eventually.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "install_crash_scenario.h"
#include "kv/temp_dir.h"
#include "server/data_dir.h"
#include "server/replication/raft_loop.h"
#include "server/snapshots/backup_worker.h"

namespace raftkv::server {
namespace {

using ::testing::HasSubstr;
using kv::testing::TempDir;
using testing::Eventually;
using testing::PutCommand;

// Holds a write transaction on an SQLite file, as `sqlite3 FILE` with BEGIN IMMEDIATE would:
// every other writer gets SQLITE_BUSY until Release().
class SqliteWriteLock {
 public:
  explicit SqliteWriteLock(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db_, 10'000);  // waits out a backup transaction in progress
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
  }
  ~SqliteWriteLock() { Release(); }
  void Release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

class BackupWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kv::StateMachineOptions o;
    o.db_path = tmp_.Sub("db");
    auto sm = kv::StateMachine::Open(o);
    ASSERT_TRUE(sm.ok()) << sm.status();
    sm_ = *std::move(sm);
    options_.backup_path = tmp_.Sub("backup.db");
    options_.snapshot_dir = tmp_.Sub("snapshots");
    options_.interval_ms = 3'600'000;  // rounds only when asked (Stop) unless a test says so
  }

  std::unique_ptr<BackupWorker> StartWorker() {
    auto w = BackupWorker::Start(sm_.get(), options_, /*first_log_index=*/1, [](SnapshotReport) {});
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }

  // Applies entries up to `last` to the store and queues them for the backup, as the raft
  // loop does.
  void ApplyThrough(BackupWorker* w, uint64_t last) {
    for (uint64_t i = sm_->applied_index() + 1; i <= last; ++i) {
      kvpb::Command cmd = PutCommand(absl::StrCat("k", i), "v");
      ASSERT_TRUE(sm_->Apply(i, 1, cmd).ok());
      w->Enqueue(i, 1, cmd.SerializeAsString());
    }
  }

  TempDir tmp_;
  std::unique_ptr<kv::StateMachine> sm_;
  BackupWorkerOptions options_;
};

// Before: ResetFrom left the backup closed and the worker's next round dereferenced it (the
// process crashed, here at Stop's last round).
TEST_F(BackupWorkerTest, ResetFromAFileThatCannotBeCopiedRebuildsTheBackupInstead) {
  std::unique_ptr<BackupWorker> w = StartWorker();
  ASSERT_NE(w, nullptr);
  ApplyThrough(w.get(), 5);
  absl::Status reset = w->ResetFrom(tmp_.Sub("no-such-snapshot.db"));
  EXPECT_FALSE(reset.ok());
  EXPECT_THAT(w->Health().error.ToString(), HasSubstr("no-such-snapshot.db"));
  ApplyThrough(w.get(), 8);
  w->Stop();  // its last round: rebuilt from the store, then the queue after it
  EXPECT_EQ(w->applied_index(), 8u);
  EXPECT_TRUE(w->Health().error.ok()) << w->Health().error;
}

TEST_F(BackupWorkerTest, FailuresAreReportedAndTheBackupCatchesUpWhenTheCauseGoes) {
  options_.interval_ms = 5;
  std::unique_ptr<BackupWorker> w = StartWorker();
  ASSERT_NE(w, nullptr);
  SqliteWriteLock lock(options_.backup_path);
  ApplyThrough(w.get(), 5);
  ASSERT_TRUE(Eventually([&] { return w->Health().failed_attempts >= 2; }))
      << "the worker never reported a failed attempt";
  BackupHealth failing = w->Health();
  EXPECT_EQ(failing.applied_index, 0u);
  EXPECT_THAT(failing.error.ToString(), HasSubstr("locked"));
  EXPECT_LT(failing.failing_since, absl::Now());

  lock.Release();
  ASSERT_TRUE(Eventually([&] { return w->applied_index() == 5; }))
      << "the backup did not catch up once unlocked: " << w->Health().error;
  BackupHealth healthy = w->Health();
  EXPECT_TRUE(healthy.error.ok()) << healthy.error;
  EXPECT_EQ(healthy.failed_attempts, 0u);
}

// A single-node cluster over a locked backup (`lock` when locked), with
// --max-backup-lag-entries 5 and the given --backup-lag-wait-ms.
struct LaggingBackupNode {
  explicit LaggingBackupNode(uint32_t wait_ms) : dir(tmp.Sub("data")) { Open(wait_ms); }
  // Leaves `loop` null (the test then stops at its ASSERT_NE) if the node does not start.
  void Open(uint32_t wait_ms) {
    kv::StateMachineOptions sm_options;
    sm_options.db_path = dir.db();
    auto opened = kv::StateMachine::Open(sm_options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    sm = *std::move(opened);
    RaftLoopOptions options;
    options.cluster = {NodeAddress{"127.0.0.1", 1, 1}};
    options.tick_ms = 10;
    options.backup_interval_ms = 5;
    options.max_backup_lag_entries = 5;
    options.backup_lag_wait_ms = wait_ms;
    options.request_timeout_ms = 60000;
    auto started = RaftLoop::Start(sm.get(), dir, options);
    ASSERT_TRUE(started.ok()) << started.status();
    loop = *std::move(started);
  }
  ~LaggingBackupNode() {
    if (loop) loop->Stop();
  }
  // Starts a write; the future holds its outcome.
  std::future<absl::StatusOr<kv::ApplyResult>> StartWrite(const std::string& key,
                                                          const std::string& value = "v") {
    auto done = std::make_shared<std::promise<absl::StatusOr<kv::ApplyResult>>>();
    std::future<absl::StatusOr<kv::ApplyResult>> f = done->get_future();
    loop->Write(PutCommand(key, value),
                [done](absl::StatusOr<kv::ApplyResult> r) { done->set_value(std::move(r)); });
    return f;
  }
  absl::Status Write(const std::string& key) { return StartWrite(key).get().status(); }
  // Locks the backup and writes until the backup lags past the limit (the alarm says so).
  void LockAndLag() {
    ASSERT_TRUE(Eventually([&] {
      NodeStatus st = loop->Status();
      return st.applied_index > 0 && st.backup_applied_index == st.applied_index;
    })) << "the backup never caught up before the lock";
    lock = std::make_unique<SqliteWriteLock>(dir.backup());
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(Write(absl::StrCat("k", i)).ok());
    ASSERT_TRUE(Eventually([&] {
      for (const std::string& a : loop->Status().alarms) {
        if (absl::StrContains(a, "--max-backup-lag-entries")) return true;
      }
      return false;
    })) << "the backup never lagged past the limit";
  }

  TempDir tmp;
  DataDir dir;
  std::unique_ptr<kv::StateMachine> sm;
  std::unique_ptr<RaftLoop> loop;
  std::unique_ptr<SqliteWriteLock> lock;
};

// A backup that stays locked: writes past the limit wait --backup-lag-wait-ms, then are
// refused with an error that says why; the status shows alarms. Once the lock goes, the
// backup catches up and writes are accepted again.
TEST(BackupLagTest, WritesAreRefusedPastTheLimitAndAcceptedOnceTheBackupRecovers) {
  LaggingBackupNode node(/*wait_ms=*/100);
  ASSERT_NE(node.loop, nullptr);
  ASSERT_TRUE(Eventually([&] { return node.Write("first").ok(); })) << "no leader";
  node.LockAndLag();
  const absl::Time started = absl::Now();
  absl::Status refused = node.Write("refused");
  EXPECT_GE(absl::Now() - started, absl::Milliseconds(100)) << "refused without waiting";
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("--max-backup-lag-entries"));
  EXPECT_THAT(refused.message(), HasSubstr("--backup-lag-wait-ms"));
  EXPECT_THAT(refused.message(), HasSubstr("writes wait at most 100 ms"));
  EXPECT_THAT(refused.message(), HasSubstr("not applied"));
  // The status is published at the end of the loop's iteration, after the answer.
  ASSERT_TRUE(Eventually([&] {
    NodeStatus st = node.loop->Status();
    return st.alarms.size() == 2 && st.backup_waiting_writes == 0;
  }));
  NodeStatus status = node.loop->Status();
  EXPECT_THAT(status.alarms[0], HasSubstr("locked"));
  EXPECT_THAT(status.alarms[1], HasSubstr("then are refused"));

  node.lock->Release();
  ASSERT_TRUE(Eventually([&] { return node.Write("after").ok(); }))
      << "writes still refused after the backup's cause went away";
  ASSERT_TRUE(Eventually([&] { return node.loop->Status().alarms.empty(); }));
  // The refused write was not applied.
  auto got = node.sm->Get("refused");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
}

// A backup that catches up within --backup-lag-wait-ms: the writes that arrived past the
// limit wait for it and are applied, in order, none refused (they were refused at once
// before: a write load the backup could not follow got errors instead of slower writes).
TEST(BackupLagTest, WritesPastTheLimitWaitForTheBackupAndAreAppliedInOrder) {
  LaggingBackupNode node(/*wait_ms=*/30000);
  ASSERT_NE(node.loop, nullptr);
  ASSERT_TRUE(Eventually([&] { return node.Write("first").ok(); })) << "no leader";
  node.LockAndLag();
  std::vector<std::future<absl::StatusOr<kv::ApplyResult>>> waiting;
  for (int i = 1; i <= 3; ++i) waiting.push_back(node.StartWrite("late", absl::StrCat(i)));
  ASSERT_TRUE(Eventually([&] { return node.loop->Status().backup_waiting_writes == 3; }))
      << "the writes past the limit do not wait";

  node.lock->Release();
  int64_t last_revision = 0;
  for (auto& f : waiting) {
    absl::StatusOr<kv::ApplyResult> r = f.get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->revision, last_revision) << "applied out of the order they arrived in";
    last_revision = r->revision;
  }
  EXPECT_TRUE(Eventually([&] { return node.loop->Status().backup_waiting_writes == 0; }));
  auto got = node.sm->Get("late");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->version, 3);  // all three applied...
  EXPECT_EQ((*got)->value, "3");   // ...the last one last
}

}  // namespace
}  // namespace raftkv::server
