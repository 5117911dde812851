// Start-up recovery's data-loss checks (replication/recovery.h, OpenLog): a store ahead of the
// log's durable commit index raises it when the log holds the store's entry, and is refused
// when the log ends before it or holds another term there; a store behind the log's first
// entry is loaded from the newest committed snapshot that reaches the log, and refused when
// none does (an older snapshot would leave a gap; a newer, uncommitted one is not the
// cluster's yet).
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/temp_dir.h"
#include "server/data_dir.h"
#include "server/replication/recovery.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::server {
namespace {

using ::testing::HasSubstr;
using kv::testing::TempDir;

kvpb::Command Put(uint64_t i) {
  kvpb::Command cmd;
  auto* put = cmd.add_ops()->mutable_put();
  put->set_key(absl::StrCat("k", i));
  put->set_value("v");
  return cmd;
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sm = OpenStateMachine(dir_, "");
    ASSERT_TRUE(sm.ok()) << sm.status();
    sm_ = *std::move(sm);
    ASSERT_TRUE(snapshots_.CreateDir().ok());
  }

  // Applies puts up to `last` to the node's own store.
  void ApplyThrough(kv::StateMachine* sm, uint64_t last) {
    for (uint64_t i = sm->applied_index() + 1; i <= last; ++i) {
      ASSERT_TRUE(sm->Apply(i, 1, Put(i)).ok());
    }
  }

  // Snapshots of another store (the cluster's history) at each of `indexes`, ascending.
  void SnapshotsAt(std::initializer_list<uint64_t> indexes) {
    kv::StateMachineOptions o;
    o.db_path = tmp_.Sub("source");
    auto source = kv::StateMachine::Open(o);
    ASSERT_TRUE(source.ok()) << source.status();
    for (uint64_t index : indexes) {
      ApplyThrough(source->get(), index);
      ASSERT_TRUE(kv::WriteSnapshot(**source, snapshots_.PathFor(index, 1)).ok());
    }
  }

  // A log that starts after `first - 1` (compacted there, or restarted by a snapshot
  // install) and records commit `commit`.
  void LogStartingAt(uint64_t first, uint64_t commit) {
    auto wal = raft::wal::WalStorage::Open(dir_.wal(), raft::wal::WalOptions{});
    ASSERT_TRUE(wal.ok()) << wal.status();
    raftpb::SnapshotMetadata meta;
    meta.set_index(first - 1);
    meta.set_term(1);
    raftpb::HardState hs;
    hs.set_term(1);
    hs.set_commit(commit);
    ASSERT_TRUE((*wal)->ApplySnapshot(meta, hs).ok());
    ASSERT_TRUE((*wal)->Sync().ok());
  }

  // A log of entries 1..`last`, all of term `term`, recording commit `commit`.
  void LogWithEntries(uint64_t last, uint64_t term, uint64_t commit) {
    auto wal = raft::wal::WalStorage::Open(dir_.wal(), raft::wal::WalOptions{});
    ASSERT_TRUE(wal.ok()) << wal.status();
    std::vector<raftpb::Entry> entries;
    for (uint64_t i = 1; i <= last; ++i) {
      raftpb::Entry e;
      e.set_index(i);
      e.set_term(term);
      entries.push_back(e);
    }
    ASSERT_TRUE((*wal)->Append(entries).ok());
    raftpb::HardState hs;
    hs.set_term(term);
    hs.set_commit(commit);
    ASSERT_TRUE((*wal)->SetHardState(hs).ok());
    ASSERT_TRUE((*wal)->Sync().ok());
  }

  absl::StatusOr<std::unique_ptr<raft::wal::WalStorage>> Open() {
    return OpenLog(sm_.get(), dir_.wal(), raft::wal::WalOptions{}, snapshots_,
                   /*restored=*/false, {1, 2, 3});
  }

  TempDir tmp_;
  DataDir dir_{tmp_.Sub("data")};
  SnapshotStore snapshots_{dir_.snapshots()};
  std::unique_ptr<kv::StateMachine> sm_;
};

// A store that applied entries the log never committed: the log is not this store's (a
// data dir whose wal/ was lost or replaced). Starting would let the core overwrite entries
// the store already holds.
TEST_F(RecoveryTest, AStoreAheadOfTheLogsCommitIsDataLoss) {
  ApplyThrough(sm_.get(), 5);
  auto wal = Open();  // a new, empty log: commit 0
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
  EXPECT_THAT(wal.status().message(), HasSubstr("does not belong to this store"));
}

// The raft loop does not sync a change of the commit index alone: after a crash the store
// may have applied entries past the log's durable commit. The log holds them (each was
// synced before it was applied), so the commit is raised to the store, durably.
TEST_F(RecoveryTest, AStoreAheadOfTheDurableCommitRaisesItWhenTheLogHoldsTheEntries) {
  LogWithEntries(/*last=*/5, /*term=*/1, /*commit=*/2);
  ApplyThrough(sm_.get(), 4);
  {
    auto wal = Open();
    ASSERT_TRUE(wal.ok()) << wal.status();
    EXPECT_EQ((*wal)->hard_state().commit(), 4u);
  }
  auto reopened = raft::wal::WalStorage::Open(dir_.wal(), raft::wal::WalOptions{});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->hard_state().commit(), 4u) << "the raised commit was not durable";
}

// A store past the log's end, or at an entry of another term, is not this log's store.
TEST_F(RecoveryTest, AStorePastTheLogsEndIsDataLoss) {
  LogWithEntries(/*last=*/3, /*term=*/1, /*commit=*/2);
  ApplyThrough(sm_.get(), 4);
  auto wal = Open();
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
  EXPECT_THAT(wal.status().message(), HasSubstr("does not belong to this store"));
}

TEST_F(RecoveryTest, AStoreAtAnEntryOfAnotherTermIsDataLoss) {
  LogWithEntries(/*last=*/5, /*term=*/2, /*commit=*/2);
  ApplyThrough(sm_.get(), 4);  // term 1
  auto wal = Open();
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
  EXPECT_THAT(wal.status().message(), HasSubstr("does not belong to this store"));
}

TEST_F(RecoveryTest, AStoreBehindTheLogWithNoSnapshotIsDataLoss) {
  LogStartingAt(/*first=*/11, /*commit=*/10);
  auto wal = Open();
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
  EXPECT_THAT(wal.status().message(), HasSubstr("bridges the gap"));
  EXPECT_EQ(sm_->applied_index(), 0u);
}

// A snapshot that ends before the log starts leaves entries nobody has.
TEST_F(RecoveryTest, ASnapshotThatDoesNotReachTheLogIsNotUsed) {
  SnapshotsAt({5});
  LogStartingAt(/*first=*/11, /*commit=*/10);
  auto wal = Open();
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
  EXPECT_EQ(sm_->applied_index(), 0u) << "loaded a snapshot that leaves a gap";
}

// The newest snapshot at or below the commit index is loaded; one past it is not committed
// (a received snapshot whose install was never recorded) and is passed over.
TEST_F(RecoveryTest, AStoreBehindTheLogLoadsTheNewestCommittedSnapshotThatReachesIt) {
  SnapshotsAt({5, 10, 12});
  LogStartingAt(/*first=*/11, /*commit=*/10);
  auto wal = Open();
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_EQ(sm_->applied_index(), 10u);
  EXPECT_EQ((*wal)->FirstIndex(), 11u);
}

// A store exactly at the log's start needs nothing; one inside the log is replayed by the
// core (nothing loaded either).
TEST_F(RecoveryTest, AStoreThatReachesTheLogNeedsNoSnapshot) {
  SnapshotsAt({12});
  ApplyThrough(sm_.get(), 10);
  LogStartingAt(/*first=*/11, /*commit=*/10);
  auto wal = Open();
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_EQ(sm_->applied_index(), 10u);
}

}  // namespace
}  // namespace raftkv::server
