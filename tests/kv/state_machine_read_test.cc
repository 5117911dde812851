// Reads (Range rules, binary safety, consistency under concurrent applies), persistence across
// reopen and crashes, and corruption handling on open.
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "kv/record_coding.h"
#include "kv/state_machine_test.h"
#include "rocksdb/db.h"
#include "rocksdb/perf_context.h"
#include "rocksdb/perf_level.h"

namespace raftkv::kv::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::string_literals;

const std::string kAllKeys(1, '\0');

TEST_F(StateMachineTest, RangePrefixLimitCountMore) {
  for (const char* k : {"fo", "foo", "foo/a", "foo/b", "foo/c", "fop", "g"}) Next(PutCmd(k, k));
  // Prefix "foo" = [foo, fop).
  RangeResult prefix = MustRange("foo", "fop");
  EXPECT_THAT(Keys(prefix), ElementsAre("foo", "foo/a", "foo/b", "foo/c"));
  EXPECT_EQ(prefix.count, 4);
  EXPECT_FALSE(prefix.more);
  EXPECT_EQ(prefix.revision, 8);
  EXPECT_EQ(prefix.kvs[1].value, "foo/a");

  RangeResult limited = MustRange("foo", "fop", /*limit=*/2);
  EXPECT_THAT(Keys(limited), ElementsAre("foo", "foo/a"));
  EXPECT_EQ(limited.count, 4);
  EXPECT_TRUE(limited.more);

  RangeResult exact = MustRange("foo", "fop", /*limit=*/4);
  EXPECT_EQ(exact.kvs.size(), 4u);
  EXPECT_FALSE(exact.more);

  RangeResult keys_only = MustRange("foo", "fop", 0, /*keys_only=*/true);
  ASSERT_EQ(keys_only.kvs.size(), 4u);
  for (const KeyValue& kv : keys_only.kvs) {
    EXPECT_EQ(kv.value, "");
    EXPECT_GT(kv.mod_revision, 1);
    EXPECT_EQ(kv.version, 1);
  }

  RangeResult count_only = MustRange("foo", "fop", 1, false, /*count_only=*/true);
  EXPECT_TRUE(count_only.kvs.empty());
  EXPECT_EQ(count_only.count, 4);
  EXPECT_FALSE(count_only.more);

  // Single key, missing key, all keys, keys >= x, empty range.
  EXPECT_THAT(Keys(MustRange("foo", "")), ElementsAre("foo"));
  EXPECT_EQ(MustRange("fooo", "").count, 0);
  EXPECT_EQ(MustRange(kAllKeys, kAllKeys).count, 7);
  EXPECT_EQ(MustRange("", kAllKeys).count, 7);
  EXPECT_THAT(Keys(MustRange("fop", kAllKeys)), ElementsAre("fop", "g"));
  EXPECT_EQ(MustRange("g", "a").count, 0);
  EXPECT_EQ(MustRange("g", "g").count, 0);
}

TEST_F(StateMachineTest, KeysAndValuesAreBinarySafe) {
  const std::string k1 = "a\0b"s, k2 = "a\0c"s, k3 = "\xff\x00\x01"s, k4 = "\x7f"s;
  const std::string v1 = "\0\0\0"s, v2 = "x\0y\xff"s;
  Next(PutCmd(k1, v1));
  Next(PutCmd(k2, v2));
  Next(PutCmd(k3, ""));
  Next(PutCmd(k4, "\x80"));
  EXPECT_EQ(MustGet(k1)->value, v1);
  EXPECT_EQ(MustGet(k2)->value, v2);
  EXPECT_EQ(MustGet(k3)->value, "");
  EXPECT_EQ(MustGet("a"), std::nullopt);  // "a" is a prefix of k1, not k1
  // Bytes order as unsigned: "\x7f" < "\xff...".
  EXPECT_THAT(Keys(MustRange(kAllKeys, kAllKeys)), ElementsAre(k1, k2, k4, k3));
  EXPECT_THAT(Keys(MustRange("a\0"s, "a\0c"s)), ElementsAre(k1));
  Next(DeleteCmd("a\0"s, "a\0\xff"s));
  EXPECT_THAT(Keys(MustRange(kAllKeys, kAllKeys)), ElementsAre(k4, k3));
  Reopen();
  EXPECT_EQ(MustGet(k3)->value, "");
  EXPECT_EQ(MustGet(k4)->value, "\x80");
}

TEST_F(StateMachineTest, ReopenKeepsEverything) {
  Next(PutCmd("a", "1"), 2);                         // 2
  Next(PutCmd("a", "2"), 2);                         // 3
  Next(PutCmd("b", "x"), 3);                         // 4
  kvpb::Command s = PutCmd("c", "y");
  s.set_client_id(11);
  s.set_sequence(3);
  Next(s, 3);                                        // 5
  Next(DeleteCmd("b"), 3);                           // 6
  ASSERT_TRUE(sm_->ApplyEmpty(6, 4).ok());
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 6u);
  EXPECT_EQ(sm_->applied_term(), 4u);
  EXPECT_EQ(sm_->revision(), 6);
  std::optional<KeyValue> a = MustGet("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->value, "2");
  EXPECT_EQ(a->create_revision, 2);
  EXPECT_EQ(a->mod_revision, 3);
  EXPECT_EQ(a->version, 2);
  EXPECT_EQ(MustGet("b"), std::nullopt);
  EXPECT_EQ(MustRange(kAllKeys, kAllKeys).revision, 6);
  EXPECT_TRUE(Next(s, 4).duplicate);
  // Flushed to SSTs and reopened: the same.
  ASSERT_TRUE(sm_->Flush().ok());
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 7u);
  EXPECT_EQ(MustGet("a")->version, 2);
  EXPECT_EQ(Next(PutCmd("a", "3"), 4).revision, 7);
  EXPECT_EQ(MustGet("a")->version, 3);
}

// A process that dies without closing the store keeps every entry Apply acknowledged
// (sync_writes=true is what the single-node path uses). The child re-runs this test body
// (threadsafe death-test style), so the store path travels in an environment variable.
TEST(StateMachineCrashTest, AcknowledgedAppliesSurviveProcessDeath) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  constexpr char kEnv[] = "RAFTKV_KV_CRASH_TEST_DIR";
  std::optional<TempDir> dir;
  std::string path;
  if (const char* inherited = getenv(kEnv); inherited != nullptr) {
    path = inherited;
  } else {
    dir.emplace();
    path = dir->Sub("db");
    setenv(kEnv, path.c_str(), 1);
  }
  StateMachineOptions options;
  options.db_path = path;
  options.sync_writes = true;
  EXPECT_EXIT(
      {
        auto sm = StateMachine::Open(options);
        if (!sm.ok()) std::_Exit(1);
        for (uint64_t i = 1; i <= 50; ++i) {
          if (!(*sm)->Apply(i, 1, PutCmd("k" + std::to_string(i), "v")).ok()) std::_Exit(2);
        }
        std::_Exit(0);  // no destructor, no flush, no close
      },
      ::testing::ExitedWithCode(0), "");
  unsetenv(kEnv);
  absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(options);
  ASSERT_TRUE(sm.ok()) << sm.status();
  EXPECT_EQ((*sm)->applied_index(), 50u);
  EXPECT_EQ((*sm)->revision(), 51);
  absl::StatusOr<RangeResult> all = (*sm)->Range(kAllKeys, kAllKeys, 0, true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->count, 50);
}

// Readers on other threads see each Range at exactly one entry boundary: every entry rewrites
// all kKeys keys with its own number, so a consistent read sees one value everywhere, equal to
// the revision it reports.
TEST_F(StateMachineTest, ConcurrentReadsSeeOneRevision) {
  constexpr int kKeys = 20;
  constexpr int kEntries = 1000;
  auto entry = [&](int revision) {
    kvpb::Command cmd;
    for (int k = 0; k < kKeys; ++k) {
      AddPut(cmd, "key" + std::to_string(k), std::to_string(revision));
    }
    return cmd;
  };
  ASSERT_EQ(Next(entry(2)).revision, 2);

  std::atomic<bool> done{false};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      int64_t last_revision = 0;
      while (!done.load()) {
        // What the accessors publish is already readable: a read started after revision()
        // returned R sees R or later (what a ReadIndex wait relies on).
        const int64_t published = sm_->revision();
        absl::StatusOr<RangeResult> r = sm_->Range("key", "kez", 0);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_EQ(r->count, kKeys);
        ASSERT_GE(r->revision, published);
        ASSERT_GE(r->revision, last_revision);
        last_revision = r->revision;
        for (const KeyValue& kv : r->kvs) {
          ASSERT_EQ(kv.mod_revision, r->revision) << kv.key;
          ASSERT_EQ(kv.value, std::to_string(r->revision)) << kv.key;
          ASSERT_EQ(kv.version, r->revision - 1) << kv.key;
        }
        reads.fetch_add(1);
      }
    });
  }
  for (int rev = 3; rev < 3 + kEntries; ++rev) {
    ApplyResult r = Next(entry(rev));
    ASSERT_EQ(r.revision, rev);
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(sm_->revision(), 2 + kEntries);
}

// Point look-ups (every GET, and every write's read of its key's record) skip what cannot
// hold the key: a whole-key bloom filter in front of the memtable and in each SST. Counted
// with RocksDB's perf context: a key in neither of two SSTs whose key ranges cover it nor in
// the memtable is looked for in none of them; without the filters each is searched.
TEST_F(StateMachineTest, PointLookUpsSkipFilesAndMemtablesWithoutTheKey) {
  Next(PutCmd("a", "1"));
  Next(PutCmd("z", "1"));
  ASSERT_TRUE(sm_->Flush().ok());  // SST 1: a..z
  Next(PutCmd("b", "2"));
  Next(PutCmd("y", "2"));
  ASSERT_TRUE(sm_->Flush().ok());  // SST 2: b..y
  Next(PutCmd("m", "3"));          // the memtable
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::PerfContext* pc = rocksdb::get_perf_context();
  pc->Reset();
  EXPECT_FALSE(MustGet("c").has_value());
  const uint64_t memtable_misses = pc->bloom_memtable_miss_count;
  const uint64_t sst_misses = pc->bloom_sst_miss_count;
  pc->Reset();
  std::optional<KeyValue> a = MustGet("a");  // in SST 1, which its filter lets through
  const uint64_t a_sst_hits = pc->bloom_sst_hit_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  EXPECT_GE(memtable_misses, 1u) << "the memtable was searched for a key it does not hold";
  EXPECT_GE(sst_misses, 2u) << "both SSTs were searched for a key neither holds";
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->value, "1");
  EXPECT_GE(a_sst_hits, 1u);
}

// --- Corruption and foreign stores on open -------------------------------------------------

class StateMachineOpenTest : public ::testing::Test {
 protected:
  std::string Path() const { return dir_.Sub("db"); }

  void CreateStore() {
    StateMachineOptions o;
    o.db_path = Path();
    absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(o);
    ASSERT_TRUE(sm.ok()) << sm.status();
    for (uint64_t i = 1; i <= 10; ++i) {
      ASSERT_TRUE((*sm)->Apply(i, 1, PutCmd("k" + std::to_string(i), "v")).ok());
    }
    ASSERT_TRUE((*sm)->Flush().ok());
  }

  absl::Status OpenStatus() {
    StateMachineOptions o;
    o.db_path = Path();
    return StateMachine::Open(o).status();
  }

  // Writes records straight into the store's column families, bypassing the state machine.
  void RawWrite(const std::string& cf_name, const std::string& key, const std::string& value) {
    rocksdb::DBOptions db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"meta", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(db_options, Path(), cfs, &handles, &db).ok());
    ASSERT_TRUE(db->Put({}, cf_name == "meta" ? handles[1] : handles[0], key, value).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }

  TempDir dir_;
};

TEST_F(StateMachineOpenTest, GarbledCurrentFileIsDataLossNamingThePath) {
  CreateStore();
  std::ofstream(Path() + "/CURRENT", std::ios::trunc) << "garbage";
  absl::Status s = OpenStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Path()));
}

TEST_F(StateMachineOpenTest, GarbledManifestIsDataLoss) {
  CreateStore();
  int garbled = 0;
  for (const auto& entry : std::filesystem::directory_iterator(Path())) {
    if (entry.path().filename().string().rfind("MANIFEST-", 0) == 0) {
      std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(0);
      f << std::string(64, '\xa5');
      ++garbled;
    }
  }
  ASSERT_GT(garbled, 0);
  absl::Status s = OpenStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Path()));
}

// A flipped byte inside an SST data block: RocksDB's block checksum catches it on open or on
// the first read of that block, and we report kDataLoss naming the store.
TEST_F(StateMachineOpenTest, FlippedSstByteIsDataLoss) {
  {
    StateMachineOptions o;
    o.db_path = Path();
    absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(o);
    ASSERT_TRUE(sm.ok());
    for (uint64_t i = 1; i <= 200; ++i) {
      ASSERT_TRUE((*sm)->Apply(i, 1, PutCmd("k" + std::to_string(i), std::string(100, 'v'))).ok());
    }
    ASSERT_TRUE((*sm)->Flush().ok());
  }
  int flipped = 0;
  for (const auto& entry : std::filesystem::directory_iterator(Path())) {
    if (entry.path().extension() != ".sst") continue;
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);  // inside the first data block (blocks are about 4 KiB)
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c ^= 0x40;
    f.write(&c, 1);
    ++flipped;
  }
  ASSERT_GT(flipped, 0);
  StateMachineOptions o;
  o.db_path = Path();
  absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(o);
  absl::Status s = sm.status();
  if (sm.ok()) s = (*sm)->Range(kAllKeys, kAllKeys, 0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Path()));
}

TEST_F(StateMachineOpenTest, BadAppliedRecordIsDataLoss) {
  CreateStore();
  RawWrite("meta", std::string(coding::kMetaAppliedKey), "short");
  absl::Status s = OpenStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Path()));
}

TEST_F(StateMachineOpenTest, BadKeyRecordIsDataLossOnRead) {
  CreateStore();
  RawWrite("default", "k3", "xyz");
  StateMachineOptions o;
  o.db_path = Path();
  absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(o);
  ASSERT_TRUE(sm.ok()) << sm.status();
  EXPECT_EQ((*sm)->Get("k3").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string((*sm)->Get("k3").status().message()), HasSubstr("k3"));
  EXPECT_EQ((*sm)->Range("k", "l", 0).status().code(), absl::StatusCode::kDataLoss);
  // Applying a put over the bad record fails too, and changes nothing.
  EXPECT_EQ((*sm)->Apply(11, 1, PutCmd("k3", "new")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ((*sm)->applied_index(), 10u);
  EXPECT_TRUE((*sm)->Get("k1").ok());
}

TEST_F(StateMachineOpenTest, ForeignRocksDbIsRejected) {
  RawWrite("default", "somebody", "else's data");
  absl::Status s = OpenStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a raftkv store"));
}

TEST_F(StateMachineOpenTest, NewerStoreFormatIsRefused) {
  CreateStore();
  RawWrite("meta", std::string(coding::kMetaFormatKey), coding::EncodeStoreFormat(99));
  absl::Status s = OpenStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("99"));
}

TEST_F(StateMachineOpenTest, StoreIsLockedWhileOpen) {
  CreateStore();
  StateMachineOptions o;
  o.db_path = Path();
  absl::StatusOr<std::unique_ptr<StateMachine>> first = StateMachine::Open(o);
  ASSERT_TRUE(first.ok());
  absl::Status second = OpenStatus();
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.message()), HasSubstr(Path()));
}

// etcd's dbSize: grows with the data, in memory tables before a flush and in SST files after.
TEST_F(StateMachineTest, ApproximateSizeGrowsWithTheDataAndSurvivesAFlush) {
  const uint64_t empty = sm_->ApproximateSizeBytes();
  std::mt19937 rng(7);  // incompressible values, so the SST size reflects the data
  for (int i = 0; i < 200; ++i) {
    std::string value(1000, '\0');
    for (char& c : value) c = static_cast<char>('a' + rng() % 26);
    Next(PutCmd("key" + std::to_string(i), value));
  }
  EXPECT_GE(sm_->ApproximateSizeBytes(), empty + 200 * 1000);
  ASSERT_TRUE(sm_->Flush().ok());
  EXPECT_GE(sm_->ApproximateSizeBytes(), 200u * 1000 / 2);  // SSTs may be compressed
  Reopen();
  EXPECT_GE(sm_->ApproximateSizeBytes(), 200u * 1000 / 2);
}

}  // namespace
}  // namespace raftkv::kv::testing
