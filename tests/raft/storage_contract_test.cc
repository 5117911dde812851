// The LogStorage contract (raft/storage.h), one typed suite run against both implementations:
// MemoryStorage (with crash simulation via DurableCopy) and WalStorage (crash = destroy
// without Sync, restart = Open the same directory). Then a randomized differential test drives
// both with the same operations, crashes and restarts, and compares every observable.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/memory_storage.h"
#include "raft/storage.h"
#include "raft/wal/wal_storage.h"
#include "raft/wal/wal_test_util.h"

namespace raftkv::raft {
namespace {

using wal::testing::MakeEntries;
using wal::testing::MakeEntry;
using wal::testing::MakeHardState;

class MemoryFactory {
 public:
  std::unique_ptr<LogStorage> Create() { return std::make_unique<MemoryStorage>(true); }
  // What a restart after a crash now would see.
  std::unique_ptr<LogStorage> CrashAndRestart(std::unique_ptr<LogStorage> s) {
    return static_cast<MemoryStorage*>(s.get())->DurableCopy();
  }
};

class WalFactory {
 public:
  // Small segments so that the suite also exercises rollover and segment deletion; at most
  // `max_cached_bytes` of entries in memory (older ones are read back from the files).
  explicit WalFactory(uint64_t max_cached_bytes = wal::WalOptions().max_cached_bytes) {
    opts_.max_segment_bytes = 4096;
    opts_.max_cached_bytes = max_cached_bytes;
  }
  std::unique_ptr<LogStorage> Create() { return Open(); }
  std::unique_ptr<LogStorage> CrashAndRestart(std::unique_ptr<LogStorage> s) {
    s.reset();  // drops the unsynced buffer, like a crash
    return Open();
  }

 private:
  std::unique_ptr<LogStorage> Open() {
    auto w = wal::WalStorage::Open(dir_.wal(), opts_);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }
  wal::testing::TempDir dir_;
  wal::WalOptions opts_;
};

// WalStorage that caches no entry (every read goes to the segment files), and one whose
// cache holds one or two small entries (reads straddle the files and the cache).
class WalNoCacheFactory : public WalFactory {
 public:
  WalNoCacheFactory() : WalFactory(0) {}
};
class WalSmallCacheFactory : public WalFactory {
 public:
  WalSmallCacheFactory() : WalFactory(300) {}
};

template <typename Factory>
class StorageContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = factory_.Create();
    ASSERT_NE(nullptr, s_);
  }
  void Restart() { s_ = factory_.CrashAndRestart(std::move(s_)); ASSERT_NE(nullptr, s_); }
  std::vector<uint64_t> Terms() {
    std::vector<uint64_t> out;
    for (uint64_t i = s_->FirstIndex(); i <= s_->LastIndex(); ++i) out.push_back(*s_->Term(i));
    return out;
  }

  Factory factory_;
  std::unique_ptr<LogStorage> s_;
};

using Implementations =
    ::testing::Types<MemoryFactory, WalFactory, WalNoCacheFactory, WalSmallCacheFactory>;
class Names {
 public:
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, MemoryFactory>) return "Memory";
    if (std::is_same_v<T, WalNoCacheFactory>) return "WalNoCache";
    if (std::is_same_v<T, WalSmallCacheFactory>) return "WalSmallCache";
    return "Wal";
  }
};
TYPED_TEST_SUITE(StorageContractTest, Implementations, Names);

TYPED_TEST(StorageContractTest, EmptyLog) {
  LogStorage& s = *this->s_;
  EXPECT_EQ(1u, s.FirstIndex());
  EXPECT_EQ(0u, s.LastIndex());
  EXPECT_EQ(0u, *s.Term(0));
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Term(1).status().code());
  auto e = s.Entries(1, 1, 100);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
  EXPECT_EQ(0u, s.hard_state().term());
  EXPECT_EQ(0u, s.snapshot_metadata().index());
}

TYPED_TEST(StorageContractTest, AppendAndReadBounds) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 6, 1)).ok());
  EXPECT_EQ(1u, s.FirstIndex());
  EXPECT_EQ(5u, s.LastIndex());
  EXPECT_EQ(1u, *s.Term(5));
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Term(6).status().code());
  auto e = s.Entries(2, 5, ~0ull);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(3u, e->size());
  EXPECT_EQ(2u, (*e)[0].index());
  EXPECT_EQ(MakeEntry(4, 1).data(), (*e)[2].data());
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Entries(0, 3, ~0ull).status().code());
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Entries(1, 7, ~0ull).status().code());
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Entries(4, 3, ~0ull).status().code());
  EXPECT_TRUE(s.Entries(6, 6, ~0ull).ok());
}

TYPED_TEST(StorageContractTest, AppendRejectsGapsAndNonConsecutive) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 4, 1)).ok());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, s.Append({MakeEntry(5, 1)}).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            s.Append({MakeEntry(4, 1), MakeEntry(6, 1)}).code());
  EXPECT_EQ(3u, s.LastIndex());
  EXPECT_TRUE(s.Append({}).ok());
  EXPECT_TRUE(s.Append({MakeEntry(4, 1)}).ok());
}

TYPED_TEST(StorageContractTest, ConflictingSuffixIsReplaced) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 6, 1)).ok());
  ASSERT_TRUE(s.Append(MakeEntries(3, 5, 2)).ok());
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 2, 2}), this->Terms());
  // Even with equal terms, entries after the appended ones are discarded.
  ASSERT_TRUE(s.Append(MakeEntries(2, 3, 1)).ok());
  EXPECT_EQ(2u, s.LastIndex());
  ASSERT_TRUE(s.Append(MakeEntries(1, 2, 3)).ok());  // replace everything
  EXPECT_EQ((std::vector<uint64_t>{3}), this->Terms());
}

TYPED_TEST(StorageContractTest, EntriesHonourMaxBytes) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 6, 1)).ok());
  const uint64_t one = MakeEntry(1, 1).ByteSizeLong();  // all five have the same size
  EXPECT_EQ(1u, s.Entries(1, 6, 0)->size());  // always at least one
  EXPECT_EQ(1u, s.Entries(1, 6, 2 * one - 1)->size());
  EXPECT_EQ(2u, s.Entries(1, 6, 2 * one)->size());
  EXPECT_EQ(5u, s.Entries(1, 6, ~0ull)->size());
  EXPECT_EQ(0u, s.Entries(3, 3, 0)->size());
}

TYPED_TEST(StorageContractTest, HardState) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.SetHardState(MakeHardState(3, 2, 1)).ok());
  EXPECT_EQ(3u, s.hard_state().term());
  EXPECT_EQ(2u, s.hard_state().vote());
  EXPECT_EQ(1u, s.hard_state().commit());
  ASSERT_TRUE(s.SetHardState(MakeHardState(4, 0, 1)).ok());
  EXPECT_EQ(0u, s.hard_state().vote());
}

TYPED_TEST(StorageContractTest, Compaction) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 4, 1)).ok());
  ASSERT_TRUE(s.Append(MakeEntries(4, 6, 2)).ok());
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(4u, s.FirstIndex());
  EXPECT_EQ(5u, s.LastIndex());
  EXPECT_EQ(1u, *s.Term(3));  // still answerable
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Term(2).status().code());
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Entries(3, 5, ~0ull).status().code());
  EXPECT_EQ(3u, s.snapshot_metadata().index());
  EXPECT_EQ(1u, s.snapshot_metadata().term());
  EXPECT_TRUE(s.Compact(2).ok());  // already compacted: no-op
  EXPECT_EQ(4u, s.FirstIndex());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, s.Compact(6).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, s.Append({MakeEntry(3, 2)}).code());
  ASSERT_TRUE(s.Compact(5).ok());  // everything: empty log after index 5
  EXPECT_EQ(6u, s.FirstIndex());
  EXPECT_EQ(5u, s.LastIndex());
  EXPECT_EQ(2u, *s.Term(5));
  ASSERT_TRUE(s.Append({MakeEntry(6, 2)}).ok());
  EXPECT_EQ(6u, s.LastIndex());
}

TYPED_TEST(StorageContractTest, ApplySnapshotRestartsTheLog) {
  LogStorage& s = *this->s_;
  ASSERT_TRUE(s.Append(MakeEntries(1, 11, 1)).ok());
  raftpb::SnapshotMetadata meta;
  meta.set_index(7);  // inside the log: the whole log is still discarded
  meta.set_term(3);
  meta.mutable_conf_state()->add_voters(1);
  meta.mutable_conf_state()->add_voters(3);
  ASSERT_TRUE(s.ApplySnapshot(meta).ok());
  EXPECT_EQ(8u, s.FirstIndex());
  EXPECT_EQ(7u, s.LastIndex());
  EXPECT_EQ(3u, *s.Term(7));
  EXPECT_EQ(2, s.snapshot_metadata().conf_state().voters_size());
  EXPECT_EQ(absl::StatusCode::kOutOfRange, s.Term(8).status().code());
  ASSERT_TRUE(s.Append(MakeEntries(8, 10, 3)).ok());
  EXPECT_EQ(9u, s.LastIndex());
  // Compaction afterwards keeps the snapshot's configuration.
  ASSERT_TRUE(s.Compact(8).ok());
  EXPECT_EQ(2, s.snapshot_metadata().conf_state().voters_size());
}

// Compaction keeps the configuration in force at the compaction point (the newest ENTRY_CONF
// entry dropped), durably: a node restarted from the storage alone knows its members.
TYPED_TEST(StorageContractTest, CompactKeepsTheConfigurationOfDroppedConfEntries) {
  auto conf_entry = [](uint64_t index, std::vector<uint64_t> voters,
                       std::vector<uint64_t> learners) {
    raftpb::ConfChange cc;
    for (uint64_t v : voters) cc.mutable_conf_state()->add_voters(v);
    for (uint64_t l : learners) cc.mutable_conf_state()->add_learners(l);
    raftpb::Entry e = MakeEntry(index, 1);
    e.set_type(raftpb::ENTRY_CONF);
    e.set_data(cc.SerializeAsString());
    return e;
  };
  std::vector<raftpb::Entry> log = MakeEntries(1, 11, 1);
  log[2] = conf_entry(3, {1, 2, 3}, {4});
  log[5] = conf_entry(6, {1, 2, 3, 4}, {});
  ASSERT_TRUE(this->s_->Append(log).ok());
  // No ENTRY_CONF dropped: the configuration is unchanged (none yet).
  ASSERT_TRUE(this->s_->Compact(2).ok());
  EXPECT_EQ(0, this->s_->snapshot_metadata().conf_state().voters_size());
  ASSERT_TRUE(this->s_->Compact(4).ok());
  EXPECT_EQ(3, this->s_->snapshot_metadata().conf_state().voters_size());
  EXPECT_EQ(1, this->s_->snapshot_metadata().conf_state().learners_size());
  // Two dropped at once: the newest wins.
  ASSERT_TRUE(this->s_->Compact(8).ok());
  ASSERT_TRUE(this->s_->Sync().ok());
  this->s_ = this->factory_.CrashAndRestart(std::move(this->s_));
  ASSERT_NE(nullptr, this->s_);
  EXPECT_EQ(8u, this->s_->FirstIndex() - 1);
  EXPECT_EQ(4, this->s_->snapshot_metadata().conf_state().voters_size());
  EXPECT_EQ(0, this->s_->snapshot_metadata().conf_state().learners_size());
  // An ENTRY_CONF read back at start-up (the WAL's replay) is known as one when compacted.
  ASSERT_TRUE(this->s_->Append({conf_entry(11, {1, 2}, {5})}).ok());
  ASSERT_TRUE(this->s_->Sync().ok());
  this->s_ = this->factory_.CrashAndRestart(std::move(this->s_));
  ASSERT_NE(nullptr, this->s_);
  ASSERT_TRUE(this->s_->Compact(11).ok());
  EXPECT_EQ(2, this->s_->snapshot_metadata().conf_state().voters_size());
  EXPECT_EQ(1, this->s_->snapshot_metadata().conf_state().learners_size());
}

TYPED_TEST(StorageContractTest, RestartKeepsSyncedStateOnly) {
  ASSERT_TRUE(this->s_->SetHardState(MakeHardState(2, 1, 4)).ok());
  ASSERT_TRUE(this->s_->Append(MakeEntries(1, 8, 1)).ok());
  ASSERT_TRUE(this->s_->Compact(2).ok());
  ASSERT_TRUE(this->s_->Sync().ok());
  // Unsynced: a conflicting suffix, a hard state and more entries.
  ASSERT_TRUE(this->s_->Append(MakeEntries(5, 10, 2)).ok());
  ASSERT_TRUE(this->s_->SetHardState(MakeHardState(3, 2, 4)).ok());
  this->Restart();
  LogStorage& s = *this->s_;
  EXPECT_EQ(3u, s.FirstIndex());
  EXPECT_EQ(7u, s.LastIndex());
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 1, 1, 1}), this->Terms());
  EXPECT_EQ(2u, s.hard_state().term());
  EXPECT_EQ(1u, *s.Term(2));
  // The synced conflict truncation survives too.
  ASSERT_TRUE(s.Append(MakeEntries(5, 6, 2)).ok());
  ASSERT_TRUE(s.Sync().ok());
  this->Restart();
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 2}), this->Terms());
}

TYPED_TEST(StorageContractTest, ApplySnapshotIsDurableWithoutSync) {
  ASSERT_TRUE(this->s_->Append(MakeEntries(1, 4, 1)).ok());
  ASSERT_TRUE(this->s_->Sync().ok());
  ASSERT_TRUE(this->s_->SetHardState(MakeHardState(5, 2, 20)).ok());
  raftpb::SnapshotMetadata meta;
  meta.set_index(20);
  meta.set_term(5);
  ASSERT_TRUE(this->s_->ApplySnapshot(meta).ok());
  this->Restart();
  LogStorage& s = *this->s_;
  EXPECT_EQ(21u, s.FirstIndex());
  EXPECT_EQ(20u, s.LastIndex());
  EXPECT_EQ(5u, *s.Term(20));
  EXPECT_EQ(20u, s.hard_state().commit());
}

// Many entries: for the WAL this crosses segment boundaries, so compaction deletes segments;
// the result must be the same for both.
TYPED_TEST(StorageContractTest, LongLogCompactRestart) {
  for (uint64_t i = 1; i <= 200; ++i) {
    ASSERT_TRUE(this->s_->Append({MakeEntry(i, 1 + i / 50, std::string(100, 'L'))}).ok());
    if (i % 10 == 0) {
      ASSERT_TRUE(this->s_->Sync().ok());
    }
    if (i % 40 == 0) {
      ASSERT_TRUE(this->s_->Compact(i - 15).ok());
    }
  }
  ASSERT_TRUE(this->s_->Sync().ok());
  this->Restart();
  LogStorage& s = *this->s_;
  EXPECT_EQ(186u, s.FirstIndex());
  EXPECT_EQ(200u, s.LastIndex());
  EXPECT_EQ(4u, *s.Term(185));
  EXPECT_EQ(std::string(100, 'L'), s.Entries(200, 201, 0)->front().data());
}

// Entries that are several segments back (for the WAL without a cache: read from the files),
// replaced by a conflicting suffix that starts in an old segment, compacted, restarted: every
// read gives back the exact entries.
TYPED_TEST(StorageContractTest, ReadsAcrossSegmentsAfterConflictCompactionAndRestart) {
  std::vector<raftpb::Entry> want;
  for (uint64_t i = 1; i <= 80; ++i) want.push_back(MakeEntry(i, 1, std::string(150 + i, 'r')));
  ASSERT_TRUE(this->s_->Append(want).ok());
  ASSERT_TRUE(this->s_->Sync().ok());
  // A new leader's entries replace 20..80 (spanning entries in several old segments).
  std::vector<raftpb::Entry> replacement;
  for (uint64_t i = 20; i <= 50; ++i) {
    replacement.push_back(MakeEntry(i, 2, std::string(100 + i, 's')));
  }
  ASSERT_TRUE(this->s_->Append(replacement).ok());
  want.resize(19);
  want.insert(want.end(), replacement.begin(), replacement.end());
  auto expect_log = [&](uint64_t first) {
    auto got = this->s_->Entries(first, this->s_->LastIndex() + 1, ~0ull);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(want.size() - (first - 1), got->size());
    for (size_t i = 0; i < got->size(); ++i) {
      ASSERT_EQ(want[first - 1 + i].SerializeAsString(), (*got)[i].SerializeAsString())
          << "entry " << first + i;
    }
    // Reads of one entry at a time and with a byte limit give the same entries.
    for (uint64_t i = first; i <= this->s_->LastIndex(); ++i) {
      auto one = this->s_->Entries(i, i + 1, 0);
      ASSERT_TRUE(one.ok()) << one.status();
      ASSERT_EQ(want[i - 1].data(), one->front().data());
      ASSERT_EQ(want[i - 1].term(), *this->s_->Term(i));
    }
    auto limited = this->s_->Entries(first, this->s_->LastIndex() + 1, 1000);
    ASSERT_TRUE(limited.ok());
    EXPECT_EQ(first, limited->front().index());
    EXPECT_LT(limited->size(), got->size());
  };
  expect_log(1);
  ASSERT_TRUE(this->s_->Sync().ok());
  ASSERT_TRUE(this->s_->Compact(25).ok());
  expect_log(26);
  ASSERT_TRUE(this->s_->Sync().ok());
  this->Restart();
  EXPECT_EQ(26u, this->s_->FirstIndex());
  EXPECT_EQ(50u, this->s_->LastIndex());
  expect_log(26);
  // And appending after the restart continues the log.
  want.push_back(MakeEntry(51, 2, std::string(500, 't')));
  ASSERT_TRUE(this->s_->Append({want.back()}).ok());
  expect_log(26);
}

// ---- Differential test: WalStorage behaves as MemoryStorage under random operations ----

void ExpectSame(const LogStorage& want, const LogStorage& got, const std::string& where) {
  SCOPED_TRACE(where);
  ASSERT_EQ(want.FirstIndex(), got.FirstIndex());
  ASSERT_EQ(want.LastIndex(), got.LastIndex());
  EXPECT_EQ(want.hard_state().SerializeAsString(), got.hard_state().SerializeAsString());
  EXPECT_EQ(want.snapshot_metadata().SerializeAsString(),
            got.snapshot_metadata().SerializeAsString());
  EXPECT_EQ(*want.Term(want.FirstIndex() - 1), *got.Term(got.FirstIndex() - 1));
  auto a = want.Entries(want.FirstIndex(), want.LastIndex() + 1, ~0ull);
  auto b = got.Entries(got.FirstIndex(), got.LastIndex() + 1, ~0ull);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    ASSERT_EQ((*a)[i].SerializeAsString(), (*b)[i].SerializeAsString()) << "entry " << i;
  }
}

TEST(StorageDifferentialTest, WalMatchesMemoryUnderRandomOpsAndCrashes) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    // The WAL's entry cache: everything, nothing, or about two entries.
    const uint64_t cache_bytes = seed % 3 == 0 ? 64ull << 20 : seed % 3 == 1 ? 0 : 1200;
    SCOPED_TRACE("seed " + std::to_string(seed) + " cache " + std::to_string(cache_bytes));
    std::mt19937 rng(seed);
    MemoryFactory mf;
    WalFactory wf(cache_bytes);
    std::unique_ptr<LogStorage> mem = mf.Create();
    std::unique_ptr<LogStorage> wal = wf.Create();
    uint64_t term = 1;
    for (int step = 0; step < 300; ++step) {
      const int op = static_cast<int>(rng() % 100);
      const std::string where = "step " + std::to_string(step) + " op " + std::to_string(op);
      if (op < 45) {  // append, sometimes over a conflicting suffix
        const uint64_t first = mem->FirstIndex();
        const uint64_t last = mem->LastIndex();
        uint64_t at = last + 1;
        if (op < 10 && last >= first) at = first + rng() % (last - first + 1);
        if (op < 10) ++term;
        std::vector<raftpb::Entry> batch;
        const uint64_t n = 1 + rng() % 8;
        for (uint64_t i = 0; i < n; ++i) {
          batch.push_back(MakeEntry(at + i, term, std::string(rng() % 600, 'a' + rng() % 26)));
        }
        ASSERT_TRUE(mem->Append(batch).ok()) << where;
        ASSERT_TRUE(wal->Append(batch).ok()) << where;
      } else if (op < 55) {
        const auto hs = MakeHardState(term, rng() % 4, mem->LastIndex() / 2);
        ASSERT_TRUE(mem->SetHardState(hs).ok());
        ASSERT_TRUE(wal->SetHardState(hs).ok());
      } else if (op < 75) {
        ASSERT_TRUE(mem->Sync().ok());
        ASSERT_TRUE(wal->Sync().ok());
      } else if (op < 85) {
        const uint64_t first = mem->FirstIndex();
        const uint64_t last = mem->LastIndex();
        if (last >= first) {
          const uint64_t to = first + rng() % (last - first + 1);
          ASSERT_TRUE(mem->Compact(to).ok()) << where;
          ASSERT_TRUE(wal->Compact(to).ok()) << where;
        }
      } else if (op < 88) {
        raftpb::SnapshotMetadata meta;
        meta.set_index(mem->LastIndex() + rng() % 20);
        meta.set_term(++term);
        meta.mutable_conf_state()->add_voters(1 + rng() % 5);
        ASSERT_TRUE(mem->ApplySnapshot(meta).ok());
        ASSERT_TRUE(wal->ApplySnapshot(meta).ok());
      } else {
        // Sync, crash and restart both. (A crash without Sync may keep more of the WAL than
        // of MemoryStorage -- a rollover fsyncs early -- which the contract allows; losing
        // unsynced writes is tested in RestartKeepsSyncedStateOnly instead.)
        ASSERT_TRUE(mem->Sync().ok());
        ASSERT_TRUE(wal->Sync().ok());
        mem = mf.CrashAndRestart(std::move(mem));
        wal = wf.CrashAndRestart(std::move(wal));
        ASSERT_NE(nullptr, wal);
      }
      ExpectSame(*mem, *wal, where);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace raftkv::raft
