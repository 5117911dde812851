// Issue 9, item 4: the backup can fail without crashing the node or letting its log grow
// without bound. The failures are real ones: a snapshot file that cannot be copied, and the
// backup locked by another SQLite connection (an operator's `sqlite3 backup.db` holding a
// write transaction), which makes every backup transaction fail with SQLITE_BUSY until the
// lock goes.
#include <sqlite3.h>

#include <future>
#include <memory>
#include <string>

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

// A single-node cluster whose backup is locked: writes are applied until the backup lags by
// more than --max-backup-lag-entries, then refused with an error that says why; the status
// shows an alarm. Once the lock goes, the backup catches up and writes are accepted again.
TEST(BackupLagTest, WritesAreRefusedPastTheLimitAndAcceptedOnceTheBackupRecovers) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  kv::StateMachineOptions sm_options;
  sm_options.db_path = dir.db();
  auto sm = kv::StateMachine::Open(sm_options);
  ASSERT_TRUE(sm.ok()) << sm.status();
  RaftLoopOptions options;
  options.cluster = {NodeAddress{"127.0.0.1", 1, 1}};
  options.tick_ms = 10;
  options.backup_interval_ms = 5;
  options.max_backup_lag_entries = 5;
  auto loop = RaftLoop::Start(sm->get(), dir, options);
  ASSERT_TRUE(loop.ok()) << loop.status();

  auto write = [&](const std::string& key) {
    std::promise<absl::StatusOr<kv::ApplyResult>> done;
    (*loop)->Write(PutCommand(key, "v"), [&](absl::StatusOr<kv::ApplyResult> r) {
      done.set_value(std::move(r));
    });
    return done.get_future().get().status();
  };
  ASSERT_TRUE(Eventually([&] { return write("first").ok(); })) << "no leader";

  SqliteWriteLock lock(dir.backup());
  absl::Status refused;
  int accepted = 0;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    refused = write(absl::StrCat("k", i));
    if (refused.ok()) ++accepted;
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("--max-backup-lag-entries"));
  EXPECT_THAT(refused.message(), HasSubstr("backup"));
  EXPECT_GE(accepted, 4);
  EXPECT_LE(accepted, 6);
  ASSERT_TRUE(Eventually([&] { return (*loop)->Status().alarms.size() == 2; }));
  NodeStatus status = (*loop)->Status();
  EXPECT_THAT(status.alarms[0], HasSubstr("locked"));
  EXPECT_THAT(status.alarms[1], HasSubstr("writes are refused"));

  lock.Release();
  ASSERT_TRUE(Eventually([&] { return write("after").ok(); }))
      << "writes still refused after the backup's cause went away";
  ASSERT_TRUE(Eventually([&] { return (*loop)->Status().alarms.empty(); }));
  (*loop)->Stop();
}

}  // namespace
}  // namespace raftkv::server
