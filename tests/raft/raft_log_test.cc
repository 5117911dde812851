// RaftLog: the stable/unstable split, conflict handling and the commit/apply cursors.
#include "raft/raft_log.h"

#include <gtest/gtest.h>

#include "raft/memory_storage.h"
#include "raft_harness.h"

namespace raftkv::raft {
namespace {

using testing::MakeEntry;

TEST(RaftLogTest, ReadsSpanStableAndUnstable) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({MakeEntry(1, 1), MakeEntry(2, 1)}).ok());
  RaftLog log(&s, 0);
  log.Append({MakeEntry(3, 2), MakeEntry(4, 2)});
  EXPECT_EQ(log.LastIndex(), 4u);
  EXPECT_EQ(log.TermOrZero(2), 1u);
  EXPECT_EQ(log.TermOrZero(4), 2u);
  auto all = log.Entries(1, 5, 1 << 20);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[3].index(), 4u);
  EXPECT_EQ(log.Entries(1, 5, 0)->size(), 1u);  // byte limit, but at least one
  EXPECT_FALSE(log.Entries(1, 6, 100).ok());
}

TEST(RaftLogTest, MaybeAppendTruncatesConflictAndStableToIgnoresReplaced) {
  MemoryStorage s;
  RaftLog log(&s, 0);
  log.Append({MakeEntry(1, 1), MakeEntry(2, 1), MakeEntry(3, 1)});
  // The caller persists 1..3 but before Advance a leader of term 2 replaces 3.
  std::vector<raftpb::Entry> persisted = log.UnstableEntries();
  ASSERT_TRUE(s.Append(persisted).ok());
  auto last = log.MaybeAppend(2, 1, 0, {MakeEntry(3, 2), MakeEntry(4, 2)});
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, 4u);
  log.StableTo(3, 1);  // the persisted entry 3 was of term 1: no longer ours
  EXPECT_EQ(log.TermOrZero(3), 2u);
  EXPECT_EQ(log.UnstableEntries().front().index(), 1u);
  // A mismatch at the preceding index is refused.
  EXPECT_FALSE(log.MaybeAppend(4, 1, 0, {MakeEntry(5, 2)}).has_value());
}

TEST(RaftLogTest, FindConflictByTermSkipsNewerTerms) {
  MemoryStorage s;
  RaftLog log(&s, 0);
  log.Append({MakeEntry(1, 1), MakeEntry(2, 1), MakeEntry(3, 3), MakeEntry(4, 3),
              MakeEntry(5, 4)});
  EXPECT_EQ(log.FindConflictByTerm(5, 2), 2u);
  EXPECT_EQ(log.FindConflictByTerm(5, 3), 4u);
  EXPECT_EQ(log.FindConflictByTerm(5, 4), 5u);
  EXPECT_EQ(log.FindConflictByTerm(5, 0), 0u);
}

TEST(RaftLogTest, CommittedEntriesComeFromStableAndUnstableInOrder) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({MakeEntry(1, 1)}).ok());
  RaftLog log(&s, 0);
  log.Append({MakeEntry(2, 1), MakeEntry(3, 1)});
  log.CommitTo(3);
  auto ents = log.NextCommittedEntries(1 << 20);
  ASSERT_EQ(ents.size(), 3u);
  log.AppliedTo(2);
  EXPECT_EQ(log.NextCommittedEntries(1 << 20).size(), 1u);
  log.CommitTo(1);  // never goes down
  EXPECT_EQ(log.committed(), 3u);
}

TEST(RaftLogTest, RestoreReplacesLogWithSnapshot) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({MakeEntry(1, 1), MakeEntry(2, 1)}).ok());
  RaftLog log(&s, 0);
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(10);
  snap.mutable_metadata()->set_term(3);
  log.Restore(snap);
  EXPECT_EQ(log.FirstIndex(), 11u);
  EXPECT_EQ(log.LastIndex(), 10u);
  EXPECT_EQ(log.TermOrZero(10), 3u);
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_FALSE(log.HasNextCommittedEntries());
  ASSERT_TRUE(s.ApplySnapshot(snap.metadata()).ok());
  log.StableSnapTo(10);
  log.AppliedTo(10);
  EXPECT_FALSE(log.UnstableSnapshot().has_value());
  EXPECT_EQ(log.StableLastIndex(), 10u);
}

}  // namespace
}  // namespace raftkv::raft
