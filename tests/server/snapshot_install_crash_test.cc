// Issue 9, item 2: a follower killed at any step of installing a snapshot from its leader
// starts again and rejoins. As tests/raft/wal/wal_crash_test.cc does for the WAL's fsyncs,
// the test enumerates the crash points: for k = 1, 2, ... a child process
// (install_crash_child.cc) runs the follower's RaftLoop on a prepared data dir, receives the
// snapshot and ends itself (_exit, as kill -9: what reached the OS stays, nothing else runs)
// at the k-th step of the install -- each step of RaftLoop::StartInstall and InstallStore,
// and every file operation of the WAL in between -- until the install completes before step
// k. After each kill the test starts the follower on that data dir in this process and
// checks that
//   - it starts (recovery accepts the data dir),
//   - its store is the old one or the snapshot's, never anything else,
//   - it rejoins: the leader resends the snapshot if needed and appends an entry after it,
//     which the follower applies, and the snapshot's data and the new entry are readable.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "etcd_spawn.h"
#include "gtest/gtest.h"
#include "install_crash_scenario.h"
#include "kv/sqlite_snapshot.h"
#include "kv/temp_dir.h"
#include "raft/wal/wal_storage.h"
#include "server/data_dir.h"
#include "server/replication/recovery.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::server {
namespace {

using kv::testing::TempDir;
using testing::AppendAfter;
using testing::FollowerLoopOptions;
using testing::PutCommand;
using testing::PutEntry;
using testing::SnapMessage;
using testing::WaitableStateMachine;

// The follower applied (and committed) 1..kApplied in term 1 and holds kStale more entries
// of term 1 that were never committed; the leader's log has 1..kApplied, then term 2 up to
// its snapshot at kSnapIndex.
constexpr uint64_t kApplied = 20;
constexpr uint64_t kStale = 3;
constexpr uint64_t kSnapIndex = 40;
constexpr uint64_t kSnapTerm = 2;
constexpr absl::Duration kApplyTimeout = absl::Seconds(30);

std::string Key(uint64_t i) { return absl::StrCat("key-", i); }
// ~560-byte values: the follower's log spans several 4 KiB WAL segments.
std::string Value(uint64_t i, uint64_t term) {
  return absl::StrCat("term-", term, "-", std::string(540, 'v'), "-", i);
}
// What the leader's log holds at index i.
uint64_t LeaderTerm(uint64_t i) { return i <= kApplied ? 1 : kSnapTerm; }

std::string ChildPath() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / "install_crash_child";
}

// A store applied through `last` with the leader's entries.
void ApplyLeaderEntries(kv::StateMachine* sm, uint64_t last) {
  for (uint64_t i = 1; i <= last; ++i) {
    auto r = sm->Apply(i, LeaderTerm(i), PutCommand(Key(i), Value(i, LeaderTerm(i))));
    ASSERT_TRUE(r.ok()) << r.status();
  }
}

// The follower's data dir before the install, and the leader's snapshot, already received
// into snapshots/received/ as SnapshotReceiver leaves it. Returns the snapshot's path.
std::string PrepareFollower(const TempDir& tmp, const DataDir& dir) {
  std::string snap_path;
  {
    kv::StateMachineOptions o;
    o.db_path = tmp.Sub("leader-db");
    auto leader = kv::StateMachine::Open(o);
    EXPECT_TRUE(leader.ok()) << leader.status();
    ApplyLeaderEntries(leader->get(), kSnapIndex);
    std::filesystem::create_directories(dir.received_snapshots());
    snap_path = SnapshotStore(dir.received_snapshots()).PathFor(kSnapIndex, kSnapTerm);
    auto meta = kv::WriteSnapshot(**leader, snap_path);
    EXPECT_TRUE(meta.ok()) << meta.status();
  }
  {
    kv::StateMachineOptions o;
    o.db_path = dir.db();
    auto sm = kv::StateMachine::Open(o);
    EXPECT_TRUE(sm.ok()) << sm.status();
    ApplyLeaderEntries(sm->get(), kApplied);
  }
  raft::wal::WalOptions wo;
  wo.max_segment_bytes = FollowerLoopOptions(dir.root()).wal_segment_bytes;
  auto wal = raft::wal::WalStorage::Open(dir.wal(), wo);
  EXPECT_TRUE(wal.ok()) << wal.status();
  std::vector<raftpb::Entry> entries;
  for (uint64_t i = 1; i <= kApplied; ++i) entries.push_back(PutEntry(i, 1, Key(i), Value(i, 1)));
  for (uint64_t i = kApplied + 1; i <= kApplied + kStale; ++i) {
    entries.push_back(PutEntry(i, 1, Key(i), "stale, never committed"));
  }
  EXPECT_TRUE((*wal)->Append(entries).ok());
  raftpb::HardState hs;
  hs.set_term(1);
  hs.set_vote(testing::kLeaderRaftId);
  hs.set_commit(kApplied);
  EXPECT_TRUE((*wal)->SetHardState(hs).ok());
  EXPECT_TRUE((*wal)->Sync().ok());
  EXPECT_GT((*wal)->segment_count(), 2u) << "the install should have segments to delete";
  return snap_path;
}

// Starts the follower on `dir` in this process; the leader resends its snapshot and appends
// one entry after it. Checks what the follower then holds.
void StartAndRejoin(const DataDir& dir, const std::string& snap_path, const std::string& point) {
  SCOPED_TRACE("restarted after a crash at " + point);
  auto opened = OpenStateMachine(dir, "");
  ASSERT_TRUE(opened.ok()) << opened.status();
  WaitableStateMachine sm(*std::move(opened));
  EXPECT_TRUE(sm.applied_index() == kApplied || sm.applied_index() == kSnapIndex)
      << "store at " << sm.applied_index() << ": neither the old store nor the snapshot";

  auto loop = RaftLoop::Start(&sm, dir, FollowerLoopOptions(dir.root()));
  ASSERT_TRUE(loop.ok()) << "the follower does not start: " << loop.status();
  (*loop)->Deliver(SnapMessage(snap_path, kSnapIndex, kSnapTerm));
  (*loop)->Deliver(AppendAfter(kSnapIndex, kSnapTerm, "after", "rejoined"));
  ASSERT_TRUE(sm.WaitApplied(kSnapIndex + 1, kApplyTimeout))
      << "the entry after the snapshot was not applied; store at " << sm.applied_index();
  for (uint64_t i : {uint64_t{1}, kApplied, kApplied + 1, kSnapIndex}) {
    auto kv = sm.Get(Key(i));
    ASSERT_TRUE(kv.ok()) << kv.status();
    ASSERT_TRUE(kv->has_value()) << Key(i) << " is missing";
    EXPECT_EQ((*kv)->value, Value(i, LeaderTerm(i))) << Key(i);
  }
  auto after = sm.Get("after");
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->value, "rejoined");
  (*loop)->Stop();
}

TEST(SnapshotInstallCrashTest, FollowerStartsAndRejoinsAfterACrashAtEveryStep) {
  int crashes = 0;
  for (uint64_t k = 1;; ++k) {
    SCOPED_TRACE(absl::StrCat("crash point ", k));
    TempDir tmp;
    DataDir dir(tmp.Sub("data"));
    const std::string snap_path = PrepareFollower(tmp, dir);

    testing::RunResult r =
        testing::RunProcess(ChildPath(), {dir.root(), snap_path, std::to_string(kSnapIndex),
                                          std::to_string(kSnapTerm), std::to_string(k)});
    if (r.exit_code == testing::kChildInstallDone) {
      // The install completed before step k: every step has been a crash point.
      StartAndRejoin(dir, snap_path, "no step (the install completed)");
      break;
    }
    ASSERT_EQ(r.exit_code, testing::kChildCrashed) << r.out << r.err;
    ++crashes;
    StartAndRejoin(dir, snap_path, r.out);  // on failure, go on: report every bad point
  }
  // Each install step and the WAL's file operations in between (seal, new segment, the
  // deletes): a test that stopped seeing them would prove nothing.
  EXPECT_GE(crashes, 12);
  RecordProperty("crash_points", crashes);
}

}  // namespace
}  // namespace raftkv::server
