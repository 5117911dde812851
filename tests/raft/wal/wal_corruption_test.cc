// Byte-level corruption of a small WAL (the recovery rules of docs/wal-format.md): at EVERY
// byte position, flip the byte, zero it, or cut the file there, reopen, and assert the exact
// outcome:
//   - damage in the segment header or the two start records: kDataLoss;
//   - damage inside the final record of the newest segment (a torn tail): Open succeeds, the
//     file is truncated (durably) to the end of the previous record, and the recovered state
//     is exactly the state after the records before it;
//   - damage to any record that is followed by a valid record: kDataLoss, naming the file;
//   - a cut at a record boundary is a clean shorter log (no truncation reported).
// Nothing that was followed by a valid record is ever dropped silently. A second suite does the
// same to a sealed (older) segment, where every change is kDataLoss.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/coding.h"
#include "gtest/gtest.h"
#include "raft/wal/wal_format.h"
#include "raft/wal/wal_storage.h"
#include "raft/wal/wal_test_util.h"

namespace raftkv::raft::wal {
namespace {

using testing::MakeEntries;
using testing::MakeEntry;
using testing::MakeHardState;
using testing::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Record boundaries of an undamaged segment, found by walking the length fields (independent
// of the parser under test): ends[i] is the end offset of record i.
std::vector<uint64_t> RecordEnds(const std::string& seg) {
  std::vector<uint64_t> ends;
  uint64_t off = kSegmentHeaderBytes;
  while (off < seg.size()) {
    off += kRecordHeaderBytes + base::DecodeFixed32(seg.data() + off);
    ends.push_back(off);
  }
  EXPECT_EQ(seg.size(), off);
  return ends;
}

// The state a reopen must produce, as a function of how many records survived.
struct Expected {
  uint64_t last_index;
  uint64_t hs_term;
  uint64_t hs_commit;
};

// The single-segment WAL under test. Records, in order:
//   0 hard state (start)   1 compact marker (start)   2 hs(1,1,0)
//   3 entry 1   4 entry 2   5 entry 3   6 hs(2,2,2)   7 entry 4 (term 2)   8 entry 5 (term 2)
// Entries 4 and 5 carry different payload sizes to vary the record layout.
constexpr int kRecords = 9;
const Expected kAfter[kRecords + 1] = {
    {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 1, 0}, {1, 1, 0},
    {2, 1, 0}, {3, 1, 0}, {3, 2, 2}, {4, 2, 2}, {5, 2, 2}};

class WalCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = WalStorage::Open(tmp_.wal(), {});
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->SetHardState(MakeHardState(1, 1, 0)).ok());
    ASSERT_TRUE((*w)->Append(MakeEntries(1, 4, 1)).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    ASSERT_TRUE((*w)->SetHardState(MakeHardState(2, 2, 2)).ok());
    ASSERT_TRUE((*w)->Append({MakeEntry(4, 2, "four"), MakeEntry(5, 2, "a longer fifth")}).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    path_ = tmp_.wal() + "/" + SegmentFileName(1);
    original_ = ReadAll(path_);
    ends_ = RecordEnds(original_);
    ASSERT_EQ(static_cast<size_t>(kRecords), ends_.size());
  }

  // Index of the record containing byte `pos` (-1: the segment header).
  int RecordAt(uint64_t pos) const {
    if (pos < kSegmentHeaderBytes) return -1;
    for (int i = 0; i < kRecords; ++i) {
      if (pos < ends_[i]) return i;
    }
    return kRecords;
  }

  // Writes `damaged`, reopens, and checks the outcome against the survivors model:
  // survivors < 0 means kDataLoss is expected; otherwise the first `survivors` records remain.
  void Check(const std::string& damaged, int survivors, const std::string& what) {
    SCOPED_TRACE(what);
    WriteAll(path_, damaged);
    absl::StatusOr<std::unique_ptr<WalStorage>> w = WalStorage::Open(tmp_.wal(), {});
    if (survivors < 0) {
      ASSERT_EQ(absl::StatusCode::kDataLoss, w.status().code()) << w.status();
      EXPECT_NE(std::string::npos, w.status().message().find(SegmentFileName(1)));
      EXPECT_EQ(damaged, ReadAll(path_)) << "a refused WAL must not be modified";
      return;
    }
    ASSERT_TRUE(w.ok()) << w.status();
    const Expected& e = kAfter[survivors];
    EXPECT_EQ(e.last_index, (*w)->LastIndex());
    EXPECT_EQ(1u, (*w)->FirstIndex());
    EXPECT_EQ(e.hs_term, (*w)->hard_state().term());
    EXPECT_EQ(e.hs_commit, (*w)->hard_state().commit());
    for (uint64_t i = 1; i <= (*w)->LastIndex(); ++i) {
      auto got = (*w)->Entries(i, i + 1, 0);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(i, (*got)[0].index());
      EXPECT_EQ(i <= 3 ? 1u : 2u, (*got)[0].term());
    }
    const uint64_t keep = ends_[survivors - 1];
    EXPECT_EQ(keep != damaged.size(), (*w)->recovery_report().truncated_torn_tail);
    EXPECT_EQ(original_.substr(0, keep), ReadAll(path_)) << "torn tail not cut exactly";
    // The repaired WAL accepts appends and reopens to the same state.
    ASSERT_TRUE((*w)->Append({MakeEntry(e.last_index + 1, 3)}).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    w->reset();
    auto again = WalStorage::Open(tmp_.wal(), {});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(e.last_index + 1, (*again)->LastIndex());
    EXPECT_FALSE((*again)->recovery_report().truncated_torn_tail);
  }

  // Survivors after damaging byte `pos` (a change that a CRC detects).
  int SurvivorsAfterDamageAt(uint64_t pos) const {
    const int rec = RecordAt(pos);
    if (rec < 2) return -1;                 // header or start records
    if (rec == kRecords - 1) return rec;    // torn final record: drop it
    return -1;                              // followed by valid records: corruption
  }

  TempDir tmp_;
  std::string path_;
  std::string original_;
  std::vector<uint64_t> ends_;
};

TEST_F(WalCorruptionTest, FlipEveryByte) {
  for (uint64_t pos = 0; pos < original_.size(); ++pos) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      std::string d = original_;
      d[pos] = static_cast<char>(d[pos] ^ mask);
      Check(d, SurvivorsAfterDamageAt(pos),
            "flip mask " + std::to_string(mask) + " at " + std::to_string(pos));
    }
  }
}

TEST_F(WalCorruptionTest, ZeroEveryByte) {
  for (uint64_t pos = 0; pos < original_.size(); ++pos) {
    std::string d = original_;
    const bool unchanged = d[pos] == '\0';
    d[pos] = '\0';
    Check(d, unchanged ? kRecords : SurvivorsAfterDamageAt(pos),
          "zero at " + std::to_string(pos));
  }
}

TEST_F(WalCorruptionTest, TruncateAtEveryPosition) {
  for (uint64_t size = 0; size < original_.size(); ++size) {
    // Records wholly before the cut survive; a cut inside the start records is header damage.
    int whole = 0;
    while (whole < kRecords && ends_[whole] <= size) ++whole;
    Check(original_.substr(0, size), whole < 2 ? -1 : whole, "cut at " + std::to_string(size));
  }
}

// Appending garbage (what a crash can leave after the last synced byte, e.g. zeroed blocks)
// loses nothing.
TEST_F(WalCorruptionTest, GarbageAfterTheEndIsTornTail) {
  for (size_t n : {1, 8, 9, 100, 5000}) {
    Check(original_ + std::string(n, '\0'), kRecords, "zeros " + std::to_string(n));
    Check(original_ + std::string(n, '\xa5'), kRecords, "a5 " + std::to_string(n));
  }
}

// Same damage to a sealed (older) segment: it was complete and fsynced before its successor
// was created, so every change is corruption -- including a cut at a record boundary, which
// the missing seal reveals.
TEST(WalSealedSegmentCorruptionTest, EveryChangeIsDataLoss) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  {
    auto w = WalStorage::Open(tmp.wal(), opts);
    ASSERT_TRUE(w.ok());
    for (uint64_t i = 1; i <= 12; ++i) {
      ASSERT_TRUE((*w)->Append({MakeEntry(i, 1, std::string(400, 's'))}).ok());
    }
    ASSERT_TRUE((*w)->Sync().ok());
    ASSERT_GE((*w)->segment_count(), 2u);
  }
  const std::string path = tmp.wal() + "/" + SegmentFileName(1);
  const std::string original = ReadAll(path);
  auto expect_data_loss = [&](const std::string& damaged, const std::string& what) {
    WriteAll(path, damaged);
    auto w = WalStorage::Open(tmp.wal(), opts);
    EXPECT_EQ(absl::StatusCode::kDataLoss, w.status().code()) << what << ": " << w.status();
  };
  // Every 7th position keeps the run short; the sealed segment is ~4 KiB.
  for (uint64_t pos = 0; pos < original.size(); pos += 7) {
    std::string d = original;
    d[pos] = static_cast<char>(d[pos] ^ 0x01);
    expect_data_loss(d, "flip at " + std::to_string(pos));
    expect_data_loss(original.substr(0, pos), "cut at " + std::to_string(pos));
  }
  expect_data_loss(original.substr(0, original.size() - 1), "cut last byte");
  expect_data_loss(original + std::string(1, '\0'), "byte after seal");
  WriteAll(path, original);
  auto w = WalStorage::Open(tmp.wal(), opts);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(12u, (*w)->LastIndex());
}

}  // namespace
}  // namespace raftkv::raft::wal
