// MemoryStorage specifics beyond the shared contract: the crash-simulation hook.
#include "raft/memory_storage.h"

#include <gtest/gtest.h>

namespace raftkv::raft {
namespace {

raftpb::Entry E(uint64_t index, uint64_t term) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data("x");
  return e;
}

TEST(MemoryStorageTest, AppendReplacesConflictingSuffix) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  ASSERT_TRUE(s.Append({E(2, 2)}).ok());
  EXPECT_EQ(s.LastIndex(), 2u);
  EXPECT_EQ(*s.Term(2), 2u);
  EXPECT_FALSE(s.Append({E(5, 2)}).ok());  // would leave a gap
}

TEST(MemoryStorageTest, EntriesRespectsMaxBytesButReturnsOne) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  auto one = s.Entries(1, 4, 0);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
  auto all = s.Entries(1, 4, 1 << 20);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
}

TEST(MemoryStorageTest, CompactKeepsTermOfLastCompactedEntry) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 2), E(3, 2)}).ok());
  ASSERT_TRUE(s.Compact(2).ok());
  EXPECT_EQ(s.FirstIndex(), 3u);
  EXPECT_EQ(*s.Term(2), 2u);
  EXPECT_EQ(s.Term(1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.Entries(2, 4, 100).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(MemoryStorageTest, DurableCopyLosesUnsyncedWrites) {
  MemoryStorage s(/*track_durable=*/true);
  raftpb::HardState hs;
  hs.set_term(1);
  ASSERT_TRUE(s.SetHardState(hs).ok());
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 1)}).ok());
  ASSERT_TRUE(s.Sync().ok());
  hs.set_term(2);
  ASSERT_TRUE(s.SetHardState(hs).ok());
  ASSERT_TRUE(s.Append({E(2, 2), E(3, 2)}).ok());

  std::unique_ptr<MemoryStorage> crashed = s.DurableCopy();
  EXPECT_EQ(crashed->hard_state().term(), 1u);
  EXPECT_EQ(crashed->LastIndex(), 2u);
  EXPECT_EQ(*crashed->Term(2), 1u);

  ASSERT_TRUE(s.Sync().ok());
  crashed = s.DurableCopy();
  EXPECT_EQ(crashed->hard_state().term(), 2u);
  EXPECT_EQ(crashed->LastIndex(), 3u);
  EXPECT_EQ(*crashed->Term(2), 2u);
  // The copy itself tracks durability.
  ASSERT_TRUE(crashed->Append({E(4, 2)}).ok());
  EXPECT_EQ(crashed->DurableCopy()->LastIndex(), 3u);
}

TEST(MemoryStorageTest, ApplySnapshotIsDurableAndDiscardsLog) {
  MemoryStorage s(/*track_durable=*/true);
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 1)}).ok());
  raftpb::SnapshotMetadata meta;
  meta.set_index(10);
  meta.set_term(3);
  ASSERT_TRUE(s.ApplySnapshot(meta).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 10u);
  EXPECT_EQ(*s.Term(10), 3u);
  std::unique_ptr<MemoryStorage> crashed = s.DurableCopy();
  EXPECT_EQ(crashed->FirstIndex(), 11u);
  EXPECT_EQ(*crashed->Term(10), 3u);
}

}  // namespace
}  // namespace raftkv::raft
