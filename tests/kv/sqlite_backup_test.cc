// The backup that follows the log: it must reach exactly the state machine's state from the
// same entries (checked by seeded random histories), survive reopen, skip replays, refuse gaps
// without committing anything, and produce snapshot copies that verify and restore.
#include "kv/sqlite_backup.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "kv/state_machine_test.h"

namespace raftkv::kv::testing {
namespace {

using namespace std::string_literals;

const std::string kAllKeys(1, '\0');

// A random history over a small key space so that keys are rewritten, deleted and recreated.
class History {
 public:
  explicit History(uint64_t seed) : rng_(seed) {}

  // nullopt: an entry without a command.
  std::optional<kvpb::Command> NextCommand() {
    if (Pick(10) == 0) return std::nullopt;
    kvpb::Command cmd;
    const int ops = 1 + Pick(4);
    for (int i = 0; i < ops; ++i) {
      switch (Pick(6)) {
        case 0:
        case 1:
        case 2:
          AddPut(cmd, Key(), "v" + std::to_string(Pick(1000)) + (Pick(5) == 0 ? "\0x"s : ""));
          break;
        case 3:
          AddDelete(cmd, Key());
          break;
        case 4: {
          std::string a = Key(), b = Key();
          AddDelete(cmd, a, b);  // empty when b <= a
          break;
        }
        case 5:
          AddDelete(cmd, Key(), kAllKeys);
          break;
      }
    }
    if (Pick(3) == 0) {
      cmd.set_client_id(1 + Pick(12));
      cmd.set_sequence(++sequence_ - Pick(3));  // sometimes a retry of an older sequence
      if (Pick(4) == 0) cmd.set_first_unacked(cmd.sequence() - Pick(2));
    }
    // Small limits, so that windows overflow and sessions expire within a short history
    // (both stores must drop exactly the same ones).
    cmd.set_session_expiry_entries(Pick(5) == 0 ? 0 : 12);
    cmd.set_session_window(2);
    cmd.set_session_keeps_prev(Pick(2) == 0);
    return cmd;
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::string Key() { return "k" + std::to_string(Pick(16)) + (Pick(8) == 0 ? "\0"s : ""); }

  std::mt19937_64 rng_;
  uint64_t sequence_ = 3;
};

class SqliteBackupTest : public StateMachineTest {
 protected:
  BackupOptions Options() const { return {.path = dir_.Sub("backup.db"), .members = "[1,2,3]"}; }

  std::unique_ptr<SqliteBackup> MustOpen() {
    absl::StatusOr<std::unique_ptr<SqliteBackup>> b = SqliteBackup::Open(Options());
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }

  // Applies `n` entries of `history` to the state machine and keeps them for the backup.
  void Generate(History& history, int n) {
    std::vector<std::optional<kvpb::Command>> cmds;
    for (int i = 0; i < n; ++i) cmds.push_back(history.NextCommand());
    ApplyToStateMachine(std::move(cmds));
  }

  // Applies `cmds` (nullopt: an entry without a command) to the state machine as the raft
  // loop does, in batches of 1 to 8 entries with their effects, and keeps commands and effects.
  void ApplyToStateMachine(std::vector<std::optional<kvpb::Command>> cmds) {
    const size_t first = commands_.size();
    for (auto& c : cmds) commands_.push_back(std::move(c));
    for (size_t begin = first; begin < commands_.size();) {
      const size_t end = std::min(commands_.size(), begin + 1 + batch_rng_() % 8);
      std::vector<BatchEntry> batch;
      for (size_t i = begin; i < end; ++i) {
        const auto& c = commands_[i];
        batch.push_back({.index = i + 1, .term = 2, .cmd = c.has_value() ? &*c : nullptr});
      }
      std::vector<std::unique_ptr<EntryEffect>> effects;
      absl::StatusOr<std::vector<ApplyResult>> r = sm_->ApplyBatchWithEffects(batch, &effects);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(effects.size(), batch.size());
      for (size_t i = begin; i < end; ++i) {
        EXPECT_EQ(effects[i - begin] != nullptr, commands_[i].has_value()) << i + 1;
        effects_.push_back(std::move(effects[i - begin]));
      }
      begin = end;
    }
  }

  // Entries [from, to] of the generated history, for SqliteBackup::Apply: by effect, by
  // command, or (mixed) by command where the index is a multiple of 3.
  std::vector<BackupEntry> Entries(uint64_t from, uint64_t to) const {
    std::vector<BackupEntry> out;
    for (uint64_t i = from; i <= to; ++i) {
      const auto& c = commands_[i - 1];
      const bool by_effect =
          source_ == Source::kEffects || (source_ == Source::kMixed && i % 3 != 0);
      if (by_effect) {
        out.push_back({.index = i, .term = 2, .effect = effects_[i - 1].get()});
      } else {
        out.push_back({.index = i, .term = 2, .command = c.has_value() ? &*c : nullptr});
      }
    }
    return out;
  }

  // The backup's snapshot copy and a snapshot of the state machine agree on everything.
  void ExpectSameState(const SqliteBackup& backup) {
    EXPECT_EQ(backup.applied_index(), sm_->applied_index());
    EXPECT_EQ(backup.revision(), sm_->revision());
    absl::StatusOr<SnapshotMeta> copy = backup.CopyTo(dir_.Sub("copy.db"));
    ASSERT_TRUE(copy.ok()) << copy.status();
    absl::StatusOr<SnapshotMeta> verified = VerifySnapshot(dir_.Sub("copy.db"));
    ASSERT_TRUE(verified.ok()) << verified.status();
    absl::StatusOr<SnapshotMeta> direct = WriteSnapshot(*sm_, dir_.Sub("direct.db"));
    ASSERT_TRUE(direct.ok()) << direct.status();
    EXPECT_EQ(verified->applied_index, direct->applied_index);
    EXPECT_EQ(verified->applied_term, direct->applied_term);
    EXPECT_EQ(verified->revision, direct->revision);
    EXPECT_EQ(verified->kv_count, direct->kv_count);
    EXPECT_EQ(verified->kv_checksum, direct->kv_checksum);
    EXPECT_EQ(verified->sessions_count, direct->sessions_count);
    EXPECT_EQ(verified->sessions_checksum, direct->sessions_checksum);
    EXPECT_EQ(verified->members, "[1,2,3]");
  }

  enum class Source { kCommands, kEffects, kMixed };
  Source source_ = Source::kCommands;
  std::vector<std::optional<kvpb::Command>> commands_;
  std::vector<std::unique_ptr<EntryEffect>> effects_;  // null: an entry without a command
  std::mt19937_64 batch_rng_{42};
};

// The tests of what the backup reaches, for entries handed to it by command, by effect, and
// both in one call.
class SqliteBackupSourceTest : public SqliteBackupTest,
                               public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    SqliteBackupTest::SetUp();
    source_ = static_cast<Source>(GetParam());
  }
};

INSTANTIATE_TEST_SUITE_P(Sources, SqliteBackupSourceTest, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::string(p.param == 0   ? "ByCommand"
                                              : p.param == 1 ? "ByEffect"
                                                             : "Mixed");
                         });

TEST_F(SqliteBackupTest, NewBackupIsEmptyAtIndexZero) {
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->applied_index(), 0u);
  EXPECT_EQ(b->revision(), 1);
  ExpectSameState(*b);
}

TEST_P(SqliteBackupSourceTest, RandomHistoriesReachTheStateMachineState) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    commands_.clear();
    effects_.clear();
    std::filesystem::remove_all(dir_.Sub("db"));
    std::filesystem::remove(Options().path);
    Reopen();
    History history(seed);
    std::unique_ptr<SqliteBackup> b = MustOpen();
    ASSERT_NE(b, nullptr);
    std::mt19937_64 rng(seed * 7919);
    for (int round = 0; round < 6; ++round) {
      Generate(history, 1 + static_cast<int>(rng() % 40));
      ASSERT_TRUE(b->Apply(Entries(b->applied_index() + 1, sm_->applied_index())).ok());
      ExpectSameState(*b);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST_F(SqliteBackupTest, OneApplyWritesEachRowItsEffectsChangeOnce) {
  // 1,000 entries of one session rewrite one key: by effect, one kv row and one session row.
  std::vector<std::optional<kvpb::Command>> cmds;
  for (uint64_t seq = 1; seq <= 1000; ++seq) {
    kvpb::Command cmd = PutCmd("hot", "v" + std::to_string(seq));
    cmd.set_client_id(7);
    cmd.set_sequence(seq);
    cmd.set_first_unacked(seq);
    cmds.push_back(std::move(cmd));
  }
  ApplyToStateMachine(std::move(cmds));
  source_ = Source::kEffects;
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->Apply(Entries(1, 1000)).ok());
  EXPECT_EQ(b->evaluated_entries(), 0u);
  EXPECT_EQ(b->rows_written(), 2u);
  ExpectSameState(*b);
  // By command, every entry is evaluated and written.
  b.reset();
  std::filesystem::remove(Options().path);
  std::filesystem::remove(Options().path + "-wal");
  b = MustOpen();
  ASSERT_NE(b, nullptr);
  source_ = Source::kCommands;
  ASSERT_TRUE(b->Apply(Entries(1, 1000)).ok());
  EXPECT_EQ(b->evaluated_entries(), 1000u);
  EXPECT_EQ(b->rows_written(), 2000u);
  ExpectSameState(*b);
}

TEST_F(SqliteBackupTest, AnEffectWithoutTheRowsPreviousRecordIsRefusedAndCommitsNothing) {
  EntryEffect effect;
  effect.store_revision = 2;
  effect.writes["k"] =
      coding::KeyRecord{.create_revision = 2, .mod_revision = 2, .version = 1, .value = "v"};
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_NE(b, nullptr);
  absl::Status s = b->Apply({{.index = 1, .term = 1, .effect = &effect}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_THAT(s.message(), ::testing::HasSubstr("previous record"));
  EXPECT_EQ(b->applied_index(), 0u);
  EXPECT_EQ(b->revision(), 1);
  effect.writes_before["k"] = std::nullopt;
  ASSERT_TRUE(b->Apply({{.index = 1, .term = 1, .effect = &effect}}).ok());
  EXPECT_EQ(b->meta().kv_count, 1);
}

TEST_P(SqliteBackupSourceTest, ReopenResumesAndReplaysAreSkipped) {
  History history(99);
  Generate(history, 50);
  {
    std::unique_ptr<SqliteBackup> b = MustOpen();
    ASSERT_TRUE(b->Apply(Entries(1, 30)).ok());
    EXPECT_EQ(b->applied_index(), 30u);
  }
  std::unique_ptr<SqliteBackup> b = MustOpen();
  EXPECT_EQ(b->applied_index(), 30u);
  const uint64_t checksum = b->meta().kv_checksum;
  ASSERT_TRUE(b->Apply(Entries(1, 30)).ok());  // all replays
  EXPECT_EQ(b->applied_index(), 30u);
  EXPECT_EQ(b->meta().kv_checksum, checksum);
  // Overlapping batch: 20..30 are skipped, 31..50 applied.
  ASSERT_TRUE(b->Apply(Entries(20, 50)).ok());
  ExpectSameState(*b);
}

TEST_P(SqliteBackupSourceTest, GapIsRefusedAndCommitsNothing) {
  History history(5);
  Generate(history, 20);
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_TRUE(b->Apply(Entries(1, 5)).ok());
  const SnapshotMeta before = b->meta();
  std::vector<BackupEntry> bad = Entries(6, 8);
  std::vector<BackupEntry> later = Entries(10, 12);
  bad.insert(bad.end(), later.begin(), later.end());  // 6 7 8 10 11 12: a gap after 8
  absl::Status s = b->Apply(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(b->applied_index(), 5u);
  EXPECT_EQ(b->meta().kv_checksum, before.kv_checksum);
  b.reset();
  b = MustOpen();
  EXPECT_EQ(b->applied_index(), 5u);  // entries 6..8 were rolled back too
  EXPECT_EQ(b->meta().kv_checksum, before.kv_checksum);
  ASSERT_TRUE(b->Apply(Entries(6, 20)).ok());
  ExpectSameState(*b);
}

TEST_P(SqliteBackupSourceTest, CreateFromStateMachineThenFollow) {
  History history(7);
  Generate(history, 40);
  {
    std::unique_ptr<SqliteBackup> stale = MustOpen();  // a stale backup with a WAL
    ASSERT_TRUE(stale->Apply(Entries(1, 3)).ok());
  }
  absl::StatusOr<std::unique_ptr<SqliteBackup>> b = SqliteBackup::CreateFrom(*sm_, Options());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->applied_index(), 40u);
  Generate(history, 25);
  ASSERT_TRUE((*b)->Apply(Entries(41, 65)).ok());
  ExpectSameState(**b);
}

TEST_F(SqliteBackupTest, ReadableBySqliteWhileOpenAndCopyRestores) {
  History history(11);
  Generate(history, 60);
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_TRUE(b->Apply(Entries(1, 60)).ok());
  // Another connection (as the sqlite3 shell would) sees the committed state.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(Options().path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM kv", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), b->meta().kv_count);
  sqlite3_finalize(st);
  sqlite3_close(db);

  const std::string snap = dir_.Sub("snap.db");
  ASSERT_TRUE(b->CopyTo(snap).ok());
  EXPECT_FALSE(std::filesystem::exists(snap + "-wal"));
  absl::StatusOr<SnapshotMeta> restored = RestoreSnapshot(snap, dir_.Sub("restored"));
  ASSERT_TRUE(restored.ok()) << restored.status();
  StateMachineOptions o;
  o.db_path = dir_.Sub("restored");
  absl::StatusOr<std::unique_ptr<StateMachine>> copy = StateMachine::Open(o);
  ASSERT_TRUE(copy.ok());
  absl::StatusOr<RangeResult> got = (*copy)->Range(kAllKeys, kAllKeys, 0);
  RangeResult want = MustRange(kAllKeys, kAllKeys);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), want.kvs.size());
  for (size_t i = 0; i < want.kvs.size(); ++i) {
    EXPECT_EQ(got->kvs[i].key, want.kvs[i].key);
    EXPECT_EQ(got->kvs[i].value, want.kvs[i].value);
    EXPECT_EQ(got->kvs[i].version, want.kvs[i].version);
  }
  EXPECT_EQ((*copy)->revision(), sm_->revision());
}

// Issue 9: sqlite3_backup_step's answer was ignored, so a copy that found the database busy
// could go on to be published. Now BUSY/LOCKED is retried a bounded number of times, then the
// copy fails and nothing is published.
int busy_steps_left = 0;  // BusyThenReal answers SQLITE_BUSY or SQLITE_LOCKED this many times
int step_calls = 0;
int BusyThenReal(sqlite3_backup* copy, int pages) {
  ++step_calls;
  if (busy_steps_left > 0) {
    --busy_steps_left;
    return step_calls % 2 ? SQLITE_BUSY : SQLITE_LOCKED;
  }
  return sqlite3_backup_step(copy, pages);
}

class SqliteBackupBusyCopyTest : public SqliteBackupTest {
 protected:
  // A backup of 20 entries whose copies step with BusyThenReal, 3 retries 1 ms apart; the
  // first `busy` steps of the next copy find the database busy or locked.
  std::unique_ptr<SqliteBackup> OpenWithBusySteps(int busy) {
    History history(17);
    Generate(history, 20);
    BackupOptions options = Options();
    options.backup_step = &BusyThenReal;
    options.copy_busy_retries = 3;
    options.copy_busy_retry_ms = 1;
    absl::StatusOr<std::unique_ptr<SqliteBackup>> b = SqliteBackup::Open(options);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return nullptr;
    EXPECT_TRUE((*b)->Apply(Entries(1, 20)).ok());
    busy_steps_left = busy;
    step_calls = 0;
    return *std::move(b);
  }
  void TearDown() override { busy_steps_left = 0; }
};

TEST_F(SqliteBackupBusyCopyTest, CopyRetriesWhileTheDatabaseIsBusy) {
  std::unique_ptr<SqliteBackup> b = OpenWithBusySteps(3);  // busy, locked, busy, then copies
  ASSERT_NE(b, nullptr);
  const std::string snap = dir_.Sub("snap.db");
  absl::StatusOr<SnapshotMeta> copied = b->CopyTo(snap);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(step_calls, 4);
  absl::StatusOr<SnapshotMeta> verified = VerifySnapshot(snap);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->applied_index, 20u);
}

TEST_F(SqliteBackupBusyCopyTest, CopyFailsAndPublishesNothingWhenTheDatabaseStaysBusy) {
  std::unique_ptr<SqliteBackup> b = OpenWithBusySteps(1000);
  ASSERT_NE(b, nullptr);
  const std::string snap = dir_.Sub("snap.db");
  absl::StatusOr<SnapshotMeta> copied = b->CopyTo(snap);
  EXPECT_FALSE(copied.ok());
  EXPECT_EQ(step_calls, 4) << "one try and copy_busy_retries retries";
  EXPECT_THAT(std::string(copied.status().message()), ::testing::HasSubstr("is locked"));
  EXPECT_THAT(std::string(copied.status().message()), ::testing::HasSubstr("3 retries"));
  EXPECT_FALSE(std::filesystem::exists(snap));
  EXPECT_FALSE(std::filesystem::exists(snap + ".tmp"));
}

// --restore-from accepts a snapshot or a backup file, live or closed.
TEST_F(SqliteBackupTest, BackupFileItselfVerifiesAndRestores) {
  History history(13);
  Generate(history, 30);
  std::unique_ptr<SqliteBackup> b = MustOpen();
  ASSERT_TRUE(b->Apply(Entries(1, 30)).ok());
  absl::StatusOr<SnapshotMeta> live = VerifySnapshot(Options().path);  // while open (WAL)
  ASSERT_TRUE(live.ok()) << live.status();
  EXPECT_EQ(live->applied_index, 30u);
  b.reset();
  absl::StatusOr<SnapshotMeta> closed = VerifySnapshot(Options().path);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->kv_checksum, live->kv_checksum);
  absl::StatusOr<SnapshotMeta> r = RestoreSnapshot(Options().path, dir_.Sub("restored"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->revision, sm_->revision());
}

TEST_F(SqliteBackupTest, ForeignFileIsRefused) {
  std::ofstream(Options().path) << std::string(8192, 'x');
  absl::StatusOr<std::unique_ptr<SqliteBackup>> b = SqliteBackup::Open(Options());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kDataLoss) << b.status();
}

}  // namespace
}  // namespace raftkv::kv::testing
