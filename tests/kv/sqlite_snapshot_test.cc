// SQLite snapshots: write, verify, restore; consistency under concurrent applies; rejection
// of truncated, corrupted, tampered and foreign files.
#include "kv/sqlite_snapshot.h"

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "kv/row_hash.h"
#include "kv/sqlite_backup.h"
#include "kv/state_machine_test.h"

namespace raftkv::kv::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;

const std::string kAllKeys(1, '\0');

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// Runs one SQL statement on a snapshot file outside our code (as an operator or attacker would).
void RawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
  sqlite3_free(err);
  sqlite3_close(db);
}

int64_t RawCount(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, ("SELECT count(*) FROM " + table).c_str(), -1, &st, nullptr),
            SQLITE_OK);
  EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

class SqliteSnapshotTest : public StateMachineTest {
 protected:
  std::string SnapPath() const { return dir_.Sub("snap.db"); }
  std::string RestorePath() const { return dir_.Sub("restored"); }

  // 2000 keys with 100-byte values, a few deletes, two sessions, a no-op entry.
  void Populate() {
    for (int i = 0; i < 2000; i += 100) {
      kvpb::Command cmd;
      for (int j = i; j < i + 100; ++j) {
        std::string value = absl::StrFormat("MARKER-%05d-", j);
        value.resize(100, 'x');
        AddPut(cmd, absl::StrFormat("key/%05d", j), value);
      }
      Next(cmd);
    }
    Next(PutCmd("key/00007", "updated"));
    Next(DeleteCmd("key/00010", "key/00020"));
    Next(PutCmd("bin\0key"s, "\0\xff"s));
    kvpb::Command s1 = PutCmd("s", "1");
    s1.set_client_id(42);
    s1.set_sequence(9);
    Next(s1);
    kvpb::Command s2 = DeleteCmd("nothing");
    s2.set_client_id(0xffffffffffffffffULL);  // ids above 2^63 survive the int64 column
    s2.set_sequence(3);
    Next(s2, 2);
    ASSERT_TRUE(sm_->ApplyEmpty(sm_->applied_index() + 1, 3).ok());
  }

  SnapshotMeta MustWrite() {
    absl::StatusOr<SnapshotMeta> meta = WriteSnapshot(*sm_, SnapPath(), {.members = "[m]"});
    EXPECT_TRUE(meta.ok()) << meta.status();
    return meta.ok() ? *meta : SnapshotMeta{};
  }

  // Restore must fail with `code` and leave neither the target nor its scratch directory.
  void ExpectRestoreFails(absl::StatusCode code) {
    absl::StatusOr<SnapshotMeta> r = RestoreSnapshot(SnapPath(), RestorePath());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_FALSE(std::filesystem::exists(RestorePath()));
    EXPECT_FALSE(std::filesystem::exists(RestorePath() + ".restore-tmp"));
  }
};

TEST_F(SqliteSnapshotTest, WriteVerifyRestoreRoundTrip) {
  Populate();
  SnapshotMeta meta = MustWrite();
  EXPECT_EQ(meta.format_version, kSnapshotFormatVersion);
  EXPECT_EQ(meta.applied_index, sm_->applied_index());
  EXPECT_EQ(meta.applied_term, 3u);
  EXPECT_EQ(meta.revision, sm_->revision());
  EXPECT_EQ(meta.kv_count, 2000 - 10 + 2);
  EXPECT_EQ(meta.sessions_count, 2);
  EXPECT_EQ(meta.members, "[m]");
  EXPECT_GT(meta.created_at_unix_ms, 1'600'000'000'000);
  EXPECT_FALSE(std::filesystem::exists(SnapPath() + ".tmp"));

  absl::StatusOr<SnapshotMeta> read = ReadSnapshotMeta(SnapPath());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->kv_checksum, meta.kv_checksum);
  EXPECT_EQ(read->applied_index, meta.applied_index);
  absl::StatusOr<SnapshotMeta> verified = VerifySnapshot(SnapPath());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->sessions_checksum, meta.sessions_checksum);

  // The file is plain SQLite.
  EXPECT_EQ(RawCount(SnapPath(), "kv"), meta.kv_count);

  absl::StatusOr<SnapshotMeta> restored = RestoreSnapshot(SnapPath(), RestorePath(),
                                                          {.batch_max_bytes = 10'000});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_FALSE(std::filesystem::exists(RestorePath() + ".restore-tmp"));
  StateMachineOptions o;
  o.db_path = RestorePath();
  absl::StatusOr<std::unique_ptr<StateMachine>> copy = StateMachine::Open(o);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->applied_index(), sm_->applied_index());
  EXPECT_EQ((*copy)->applied_term(), sm_->applied_term());
  EXPECT_EQ((*copy)->revision(), sm_->revision());
  RangeResult want = MustRange(kAllKeys, kAllKeys);
  absl::StatusOr<RangeResult> got = (*copy)->Range(kAllKeys, kAllKeys, 0);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), want.kvs.size());
  for (size_t i = 0; i < want.kvs.size(); ++i) {
    EXPECT_EQ(got->kvs[i].key, want.kvs[i].key);
    EXPECT_EQ(got->kvs[i].value, want.kvs[i].value);
    EXPECT_EQ(got->kvs[i].create_revision, want.kvs[i].create_revision);
    EXPECT_EQ(got->kvs[i].mod_revision, want.kvs[i].mod_revision);
    EXPECT_EQ(got->kvs[i].version, want.kvs[i].version);
  }
  // Both replicas now behave the same: same dedup decisions, same next revision.
  kvpb::Command retry = PutCmd("s", "retry");
  retry.set_client_id(42);
  retry.set_sequence(9);
  const uint64_t next = sm_->applied_index() + 1;
  for (StateMachine* m : {sm_.get(), copy->get()}) {
    absl::StatusOr<ApplyResult> r = m->Apply(next, 3, retry);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->duplicate);
    // The first result came with the snapshot (issue 10: snapshots carry the sessions).
    EXPECT_EQ(r->revision, meta.revision);  // s1 was the last write that changed a key
    ASSERT_EQ(r->ops.size(), 1u);
    absl::StatusOr<ApplyResult> r2 = m->Apply(next + 1, 3, PutCmd("key/00007", "again"));
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->revision, meta.revision + 1);
    EXPECT_EQ(r2->ops[0].prev->version, 2);
  }
  // Restoring onto an existing store is refused.
  absl::StatusOr<SnapshotMeta> again = RestoreSnapshot(SnapPath(), RestorePath());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

// Format 1 files (no sessions.record, no expiry index; they never held a session) still
// verify and restore, and a format 1 backup is brought to the current format when opened.
TEST_F(SqliteSnapshotTest, FormatOneFilesAreStillRead) {
  Next(PutCmd("a", "1"));
  MustWrite();
  RawSql(SnapPath(), "DROP INDEX sessions_by_last_index; ALTER TABLE sessions DROP COLUMN record; "
                     "UPDATE meta SET value = 1 WHERE name = 'format_version'");
  absl::StatusOr<SnapshotMeta> v1 = VerifySnapshot(SnapPath());
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->format_version, 1);
  EXPECT_EQ(v1->kv_count, 1);
  absl::StatusOr<std::unique_ptr<SqliteBackup>> backup =
      SqliteBackup::Open({.path = SnapPath(), .members = "[m]"});
  ASSERT_TRUE(backup.ok()) << backup.status();
  kvpb::Command s = PutCmd("b", "2");
  s.set_client_id(5);
  s.set_sequence(1);
  ASSERT_TRUE((*backup)->Apply({{.index = 2, .term = 1, .command = &s}}).ok());
  backup->reset();
  absl::StatusOr<SnapshotMeta> v2 = VerifySnapshot(SnapPath());
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->format_version, kSnapshotFormatVersion);
  EXPECT_EQ(v2->sessions_count, 1);
}

TEST_F(SqliteSnapshotTest, EmptyStoreRoundTrip) {
  SnapshotMeta meta = MustWrite();
  EXPECT_EQ(meta.kv_count, 0);
  EXPECT_EQ(meta.kv_checksum, 0u);
  EXPECT_EQ(meta.revision, 1);
  ASSERT_TRUE(VerifySnapshot(SnapPath()).ok());
  std::filesystem::create_directory(RestorePath());  // an empty target directory is fine
  absl::StatusOr<SnapshotMeta> r = RestoreSnapshot(SnapPath(), RestorePath());
  ASSERT_TRUE(r.ok()) << r.status();
  StateMachineOptions o;
  o.db_path = RestorePath();
  absl::StatusOr<std::unique_ptr<StateMachine>> copy = StateMachine::Open(o);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->applied_index(), 0u);
  EXPECT_EQ((*copy)->revision(), 1);
}

TEST_F(SqliteSnapshotTest, ChecksumIsTheSumOfRowHashes) {
  Next(PutCmd("a", "1"));  // revision 2
  Next(PutCmd("b", ""));   // revision 3
  Next(PutCmd("a", "2"));  // revision 4
  SnapshotMeta meta = MustWrite();
  EXPECT_EQ(meta.kv_checksum, RowHash("a", "2", 2, 4, 2) + RowHash("b", "", 3, 3, 1));
  // Fields are length-prefixed: moving a byte between key and value changes the hash.
  EXPECT_NE(RowHash("ab", "c", 1, 1, 1), RowHash("a", "bc", 1, 1, 1));
  EXPECT_NE(RowHash("a", "b", 1, 1, 1), RowHash("a", "b", 1, 1, 2));
}

// Every entry rewrites all keys with its revision number, so a consistent copy has one value
// everywhere, equal to the revision in its meta.
TEST_F(SqliteSnapshotTest, SnapshotIsConsistentWhileApplying) {
  constexpr int kKeys = 200;
  auto entry = [&](int revision) {
    kvpb::Command cmd;
    for (int k = 0; k < kKeys; ++k) AddPut(cmd, "k" + std::to_string(k), std::to_string(revision));
    return cmd;
  };
  Next(entry(2));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int rev = 3; !done.load() && rev < 100000; ++rev) {
      absl::StatusOr<ApplyResult> r = sm_->Apply(sm_->applied_index() + 1, 1, entry(rev));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  });
  for (int i = 0; i < 5; ++i) {
    SnapshotMeta meta = MustWrite();
    std::string restore = dir_.Sub("r" + std::to_string(i));
    ASSERT_TRUE(RestoreSnapshot(SnapPath(), restore).ok());
    StateMachineOptions o;
    o.db_path = restore;
    absl::StatusOr<std::unique_ptr<StateMachine>> copy = StateMachine::Open(o);
    ASSERT_TRUE(copy.ok());
    absl::StatusOr<RangeResult> all = (*copy)->Range(kAllKeys, kAllKeys, 0);
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->count, kKeys);
    for (const KeyValue& kv : all->kvs) {
      ASSERT_EQ(kv.value, std::to_string(meta.revision)) << kv.key;
      ASSERT_EQ(kv.mod_revision, meta.revision);
    }
    EXPECT_EQ(meta.applied_index, static_cast<uint64_t>(meta.revision - 1));
  }
  done.store(true);
  writer.join();
}

TEST_F(SqliteSnapshotTest, TruncatedFileIsRejected) {
  Populate();
  MustWrite();
  const std::string data = ReadFile(SnapPath());
  ASSERT_GT(data.size(), 100'000u);
  for (size_t size : {data.size() / 2, data.size() - 4096, data.size() - 1, size_t{4096},
                      size_t{50}, size_t{0}}) {
    WriteFile(SnapPath(), data.substr(0, size));
    for (const absl::Status& s :
         {VerifySnapshot(SnapPath()).status(), ReadSnapshotMeta(SnapPath()).status()}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << "size " << size << ": " << s;
      EXPECT_THAT(std::string(s.message()), HasSubstr(SnapPath()));
      EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
    }
    ExpectRestoreFails(absl::StatusCode::kDataLoss);
  }
}

TEST_F(SqliteSnapshotTest, FlippedValueByteFailsTheChecksum) {
  Populate();
  MustWrite();
  std::string data = ReadFile(SnapPath());
  size_t pos = data.find("MARKER-01234-");
  ASSERT_NE(pos, std::string::npos);
  data[pos + 8] ^= 0x01;  // "01234" -> "00234" in one value: SQLite structure stays valid
  WriteFile(SnapPath(), data);
  EXPECT_TRUE(ReadSnapshotMeta(SnapPath()).ok());  // meta alone cannot see it
  absl::StatusOr<SnapshotMeta> v = VerifySnapshot(SnapPath());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss) << v.status();
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("checksum"));
  ExpectRestoreFails(absl::StatusCode::kDataLoss);
}

TEST_F(SqliteSnapshotTest, ZeroedOrGarbledPagesAreRejected) {
  Populate();
  MustWrite();
  const std::string data = ReadFile(SnapPath());
  const size_t pages = data.size() / 4096;
  ASSERT_GT(pages, 10u);
  for (size_t page : {size_t{1}, pages / 2, pages - 1}) {
    for (char fill : {'\0', '\xa5'}) {
      std::string bad = data;
      std::fill(bad.begin() + page * 4096, bad.begin() + (page + 1) * 4096, fill);
      WriteFile(SnapPath(), bad);
      absl::StatusOr<SnapshotMeta> v = VerifySnapshot(SnapPath());
      EXPECT_FALSE(v.ok()) << "page " << page << " fill " << int(fill);
      EXPECT_THAT(std::string(v.status().message()), HasSubstr(SnapPath()));
      ExpectRestoreFails(v.status().code());
    }
  }
}

TEST_F(SqliteSnapshotTest, TamperedMetaIsRejected) {
  Populate();
  MustWrite();
  const std::string good = ReadFile(SnapPath());

  RawSql(SnapPath(), "UPDATE meta SET value = value + 1 WHERE name = 'kv_count'");
  EXPECT_EQ(VerifySnapshot(SnapPath()).status().code(), absl::StatusCode::kDataLoss);

  WriteFile(SnapPath(), good);
  RawSql(SnapPath(), "DELETE FROM kv WHERE key = CAST('key/00500' AS BLOB)");
  EXPECT_EQ(VerifySnapshot(SnapPath()).status().code(), absl::StatusCode::kDataLoss);

  WriteFile(SnapPath(), good);
  RawSql(SnapPath(), "DELETE FROM meta WHERE name = 'applied_index'");
  absl::Status s = ReadSnapshotMeta(SnapPath()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("applied_index"));

  WriteFile(SnapPath(), good);
  RawSql(SnapPath(), "UPDATE meta SET value = 3 WHERE name = 'format_version'");
  EXPECT_EQ(VerifySnapshot(SnapPath()).status().code(), absl::StatusCode::kFailedPrecondition);
  ExpectRestoreFails(absl::StatusCode::kFailedPrecondition);

  WriteFile(SnapPath(), good);
  RawSql(SnapPath(), "UPDATE kv SET version = 0 WHERE key = CAST('key/00001' AS BLOB)");
  EXPECT_THAT(std::string(VerifySnapshot(SnapPath()).status().message()),
              HasSubstr("impossible revisions"));
}

TEST_F(SqliteSnapshotTest, ForeignAndMissingFilesAreRejected) {
  EXPECT_EQ(VerifySnapshot(SnapPath()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSnapshotMeta(SnapPath()).status().code(), absl::StatusCode::kNotFound);
  ExpectRestoreFails(absl::StatusCode::kNotFound);

  std::string junk(64 * 1024, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) % 251);
  WriteFile(SnapPath(), junk);
  absl::Status s = VerifySnapshot(SnapPath()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  ExpectRestoreFails(absl::StatusCode::kDataLoss);

  std::filesystem::remove(SnapPath());
  RawSql(SnapPath(), "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB)");
  s = VerifySnapshot(SnapPath()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a raftkv snapshot"));
  ExpectRestoreFails(absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteSnapshotTest, WriteReplacesOldSnapshotAndLeftoverTemp) {
  Next(PutCmd("a", "1"));
  MustWrite();
  WriteFile(SnapPath() + ".tmp", "half-written garbage from a crashed writer");
  Next(PutCmd("b", "2"));
  SnapshotMeta second = MustWrite();
  EXPECT_EQ(second.kv_count, 2);
  EXPECT_FALSE(std::filesystem::exists(SnapPath() + ".tmp"));
  absl::StatusOr<SnapshotMeta> v = VerifySnapshot(SnapPath());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->applied_index, 2u);
}

TEST_F(SqliteSnapshotTest, RestoreRemovesLeftoverScratchAndRefusesNonEmptyTarget) {
  Next(PutCmd("a", "1"));
  MustWrite();
  std::filesystem::create_directories(RestorePath() + ".restore-tmp/junk");
  ASSERT_TRUE(RestoreSnapshot(SnapPath(), RestorePath()).ok());
  EXPECT_FALSE(std::filesystem::exists(RestorePath() + ".restore-tmp"));

  std::string other = dir_.Sub("other");
  std::filesystem::create_directories(other);
  WriteFile(other + "/precious", "keep me");
  absl::StatusOr<SnapshotMeta> r = RestoreSnapshot(SnapPath(), other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(other + "/precious"), "keep me");
}

}  // namespace
}  // namespace raftkv::kv::testing
