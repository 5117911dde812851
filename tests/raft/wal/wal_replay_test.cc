#include "raft/wal/wal_replay.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/wal/wal_test_util.h"

namespace raftkv::raft::wal {
namespace {

using testing::MakeEntry;

// Holds serialized payloads alive for the Records that point into them.
class Script {
 public:
  void Entry(uint64_t index, uint64_t term) { Add(RecordType::kEntry, MakeEntry(index, term)); }
  void Compact(uint64_t index, uint64_t term) { Add(RecordType::kCompact, Meta(index, term)); }
  void Snapshot(uint64_t index, uint64_t term) { Add(RecordType::kSnapshot, Meta(index, term)); }

  absl::Status Run(LogReplayer* r) {
    for (size_t i = 0; i < payloads_.size(); ++i) {
      if (absl::Status s = r->Apply(Record{types_[i], i, payloads_[i]}, /*seq=*/1, "test"); !s.ok()) {
        return s;
      }
    }
    return r->Finish();
  }

 private:
  static raftpb::SnapshotMetadata Meta(uint64_t index, uint64_t term) {
    raftpb::SnapshotMetadata m;
    m.set_index(index);
    m.set_term(term);
    return m;
  }
  void Add(RecordType t, const google::protobuf::MessageLite& m) {
    types_.push_back(t);
    payloads_.push_back(m.SerializeAsString());
  }
  std::vector<RecordType> types_;
  std::vector<std::string> payloads_;
};

std::vector<uint64_t> Terms(LogReplayer& r) {
  std::vector<uint64_t> out;
  for (const EntryLocation& e : r.entries()) out.push_back(e.term);
  return out;
}

TEST(WalReplayTest, LaterLowerIndexTruncatesSuffix) {
  Script s;
  s.Compact(0, 0);
  for (uint64_t i = 1; i <= 5; ++i) s.Entry(i, 1);
  s.Entry(3, 2);  // conflicting suffix from index 3
  LogReplayer r;
  ASSERT_TRUE(s.Run(&r).ok());
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 2}), Terms(r));
  EXPECT_EQ(3u, r.LastIndex());
}

TEST(WalReplayTest, GapCoveredByLaterCompactionIsFine) {
  // Replay starting at a segment whose predecessors (entries 1..10) were deleted.
  Script s;
  s.Compact(0, 0);  // start marker written when the segment was created
  s.Entry(11, 1);
  s.Entry(12, 1);
  s.Compact(10, 1);  // the compaction that allowed deleting the older segment
  LogReplayer r;
  ASSERT_TRUE(s.Run(&r).ok());
  EXPECT_EQ(10u, r.snapshot().index());
  EXPECT_EQ(2u, r.entries().size());
}

TEST(WalReplayTest, UncoveredGapIsDataLoss) {
  Script s;
  s.Compact(0, 0);
  s.Entry(11, 1);
  s.Compact(5, 1);  // does not reach 10
  LogReplayer r;
  EXPECT_EQ(absl::StatusCode::kDataLoss, s.Run(&r).code());
}

TEST(WalReplayTest, CompactionTermMismatchIsDataLoss) {
  Script s;
  s.Compact(0, 0);
  s.Entry(1, 1);
  s.Entry(2, 1);
  s.Compact(2, 7);
  LogReplayer r;
  EXPECT_EQ(absl::StatusCode::kDataLoss, s.Run(&r).code());
}

TEST(WalReplayTest, SnapshotRestartsLog) {
  Script s;
  s.Compact(0, 0);
  s.Entry(1, 1);
  s.Entry(2, 1);
  s.Snapshot(50, 3);
  s.Entry(51, 3);
  LogReplayer r;
  ASSERT_TRUE(s.Run(&r).ok());
  EXPECT_EQ(50u, r.snapshot().index());
  EXPECT_EQ(3u, r.snapshot().term());
  ASSERT_EQ(1u, r.entries().size());
  EXPECT_EQ(51u, r.first_index());
}

TEST(WalReplayTest, EntryBelowLogStartIsDataLoss) {
  Script s;
  s.Snapshot(10, 1);
  s.Entry(10, 1);
  LogReplayer r;
  EXPECT_EQ(absl::StatusCode::kDataLoss, s.Run(&r).code());
}

}  // namespace
}  // namespace raftkv::raft::wal
