// BackupWorker (snapshots/backup_worker.h): a backup the log no longer reaches is rebuilt from
// the state machine at start (and one the log still reaches is not: the log fills it in);
// ResetFrom replaces the backup with the installed snapshot and drops the queued entries it
// already holds; snapshots are paced by their cost (SnapshotPacer). (Failures, retries and a
// failed ResetFrom: backup_failure_test.cc.)
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "eventually.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/temp_dir.h"
#include "server/snapshots/backup_worker.h"

namespace raftkv::server {
namespace {

using kv::testing::TempDir;
using testing::Eventually;

kvpb::Command Put(const std::string& key) {
  kvpb::Command cmd;
  auto* put = cmd.add_ops()->mutable_put();
  put->set_key(key);
  put->set_value("v");
  return cmd;
}

class BackupWorkerStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sm_ = Open("db");
    options_.backup_path = tmp_.Sub("backup.db");
    options_.snapshot_dir = tmp_.Sub("snapshots");
    options_.interval_ms = 3'600'000;  // rounds only at Stop
  }
  std::unique_ptr<kv::StateMachine> Open(const std::string& name) {
    kv::StateMachineOptions o;
    o.db_path = tmp_.Sub(name);
    auto sm = kv::StateMachine::Open(o);
    EXPECT_TRUE(sm.ok()) << sm.status();
    return sm.ok() ? *std::move(sm) : nullptr;
  }
  std::unique_ptr<BackupWorker> Start(uint64_t first_log_index) {
    auto w = BackupWorker::Start(sm_.get(), options_, first_log_index, [](SnapshotReport) {});
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  // The keys in the backup file now (it is a valid snapshot at every commit).
  int64_t BackupKeys() {
    auto meta = kv::VerifySnapshot(options_.backup_path);
    EXPECT_TRUE(meta.ok()) << meta.status();
    return meta.ok() ? meta->kv_count : -1;
  }

  TempDir tmp_;
  std::unique_ptr<kv::StateMachine> sm_;
  BackupWorkerOptions options_;
};

// The store applied 1..10 while the backup stayed at 0, and the log was compacted through 5:
// entries 1..5 exist nowhere but in the store, so the backup is rebuilt from it, at once.
TEST_F(BackupWorkerStartTest, ABackupTheLogNoLongerReachesIsRebuiltFromTheStateMachine) {
  Start(1)->Stop();  // creates the backup, at index 0
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(sm_->Apply(i, 1, Put(absl::StrCat("k", i))).ok());
  std::unique_ptr<BackupWorker> w = Start(/*first_log_index=*/6);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->applied_index(), 10u);
  w->Stop();
  EXPECT_EQ(BackupKeys(), 10);
}

// The log still holds everything after the backup: no full copy (the raft loop queues the
// missing entries from the log, recovery.h CatchUpBackup).
TEST_F(BackupWorkerStartTest, ABackupTheLogStillReachesIsNotRebuilt) {
  Start(1)->Stop();
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(sm_->Apply(i, 1, Put(absl::StrCat("k", i))).ok());
  std::unique_ptr<BackupWorker> w = Start(/*first_log_index=*/1);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->applied_index(), 0u);
  w->Stop();
  EXPECT_EQ(BackupKeys(), 0);
}

// After the store installed a snapshot, the backup becomes a copy of it (keys only the
// snapshot holds are there), queued entries at or below its index are dropped, and the ones
// after it are applied on top.
TEST_F(BackupWorkerStartTest, ResetFromMakesTheBackupACopyOfTheSnapshotAndKeepsWhatFollows) {
  std::unique_ptr<BackupWorker> w = Start(1);
  ASSERT_NE(w, nullptr);
  // Entries 1..3 of a history the snapshot replaces, queued but not yet applied.
  for (uint64_t i = 1; i <= 3; ++i) w->Enqueue(i, 1, Put(absl::StrCat("old", i)).SerializeAsString());
  // The leader's snapshot at index 5: keys s1..s5.
  std::unique_ptr<kv::StateMachine> leader = Open("leader");
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(leader->Apply(i, 1, Put(absl::StrCat("s", i))).ok());
  }
  const std::string snap = tmp_.Sub("snap-5.db");
  ASSERT_TRUE(kv::WriteSnapshot(*leader, snap).ok());
  ASSERT_TRUE(w->ResetFrom(snap).ok());
  EXPECT_EQ(w->applied_index(), 5u);
  // Entries after the snapshot follow.
  for (uint64_t i = 6; i <= 7; ++i) w->Enqueue(i, 1, Put(absl::StrCat("n", i)).SerializeAsString());
  w->Stop();
  EXPECT_EQ(w->applied_index(), 7u);
  EXPECT_EQ(BackupKeys(), 7) << "s1..s5 and n6, n7; none of old1..old3";
  EXPECT_TRUE(w->Health().error.ok()) << w->Health().error;
}

// SnapshotPacer: after a snapshot that took d, the next waits d * (1 - share) / share, so
// that snapshots take at most `share` of the time; share 1 waits for nothing.
TEST(SnapshotPacerTest, TheNextSnapshotWaitsNineTimesTheLastOnesDurationAtATenthShare) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  SnapshotPacer pacer(0.1);
  EXPECT_TRUE(pacer.Due(t0)) << "the first snapshot waits for nothing";
  pacer.Took(t0, t0 + absl::Milliseconds(300));
  EXPECT_FALSE(pacer.Due(t0 + absl::Milliseconds(2999)));
  EXPECT_TRUE(pacer.Due(t0 + absl::Milliseconds(3001)));
  SnapshotPacer whole(1.0);
  whole.Took(t0, t0 + absl::Seconds(5));
  EXPECT_TRUE(whole.Due(t0 + absl::Seconds(5)));
}

// The worker asks the pacer: --snapshot-entries passed twice, yet a worker whose share makes
// it wait more than 15 minutes after any copy (1e-6 of the time) cuts one snapshot, while one
// that does not wait (share 1) cuts two. Counted once Stop() joined the worker, whose round
// that applied the last entry also decided on the snapshot.
class BackupWorkerPacingTest : public BackupWorkerStartTest,
                               public ::testing::WithParamInterface<std::pair<double, int>> {};

TEST_P(BackupWorkerPacingTest, ASnapshotWaitsForThePacer) {
  const auto [share, expected] = GetParam();
  options_.interval_ms = 5;
  options_.snapshot_entries = 5;
  options_.snapshot_time_share = share;
  std::atomic<int> made{0};
  auto started = BackupWorker::Start(sm_.get(), options_, 1, [&](SnapshotReport) { ++made; });
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<BackupWorker> w = *std::move(started);
  auto enqueue = [&](uint64_t i) {
    w->Enqueue(i, 1, Put(absl::StrCat("k", i)).SerializeAsString());
  };
  for (uint64_t i = 1; i <= 5; ++i) enqueue(i);
  ASSERT_TRUE(Eventually([&] { return made.load() == 1; })) << "no first snapshot";
  for (uint64_t i = 6; i <= 10; ++i) enqueue(i);
  ASSERT_TRUE(Eventually([&] { return w->applied_index() == 10; }));
  w->Stop();
  EXPECT_EQ(made.load(), expected);
}

INSTANTIATE_TEST_SUITE_P(Shares, BackupWorkerPacingTest,
                         ::testing::Values(std::make_pair(1e-6, 1), std::make_pair(1.0, 2)));

}  // namespace
}  // namespace raftkv::server
