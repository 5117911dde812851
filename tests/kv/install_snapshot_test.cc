// StateMachine::InstallSnapshot: replaces the state atomically for readers, refuses bad files
// without changing anything, and a crash at any point of the directory swap reopens to the
// old or the new store.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "kv/rocksdb_state_machine.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine_test.h"

namespace raftkv::kv::testing {
namespace {

const std::string kAllKeys(1, '\0');

// Every entry rewrites keys k0..k(n-1) with `tag`, so any consistent read sees one value.
kvpb::Command Rewrite(const std::string& tag, int n = 10) {
  kvpb::Command cmd;
  for (int k = 0; k < n; ++k) AddPut(cmd, "k" + std::to_string(k), tag);
  return cmd;
}

class InstallSnapshotTest : public StateMachineTest {
 protected:
  // A snapshot of another store: `entries` entries that all write tag "new", plus a session.
  std::string MakeSnapshot(int entries) {
    StateMachineOptions o;
    o.db_path = dir_.Sub("other");
    auto other = StateMachine::Open(o);
    EXPECT_TRUE(other.ok());
    for (int i = 1; i <= entries; ++i) {
      kvpb::Command cmd = Rewrite("new");
      cmd.set_client_id(5);
      cmd.set_sequence(i);
      EXPECT_TRUE((*other)->Apply(i, 7, cmd).ok());
    }
    const std::string snap = dir_.Sub("snap.db");
    EXPECT_TRUE(WriteSnapshot(**other, snap).ok());
    return snap;
  }

  void ExpectAllValues(StateMachine& sm, const std::string& tag) {
    absl::StatusOr<RangeResult> r = sm.Range(kAllKeys, kAllKeys, 0);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->count, 10);
    for (const KeyValue& kv : r->kvs) EXPECT_EQ(kv.value, tag) << kv.key;
  }

  std::string DbPath() const { return dir_.Sub("db"); }
};

// The store keeps a floor under its live session-expiry keys, raised as its sessions expire,
// so the scan for idle sessions skips what lies below. An installed snapshot brings sessions
// of its own, older than that floor: they must still expire on time.
TEST_F(InstallSnapshotTest, TheSnapshotsSessionsExpireOnTimeAfterTheInstall) {
  constexpr uint64_t kExpiry = 10;
  auto put = [](uint64_t client, uint64_t seq) {
    kvpb::Command cmd = Rewrite("x", 1);
    cmd.set_client_id(client);
    cmd.set_sequence(seq);
    cmd.set_session_window(64);
    cmd.set_session_expiry_entries(kExpiry);
    return cmd;
  };
  for (uint64_t i = 1; i <= 200; ++i) ASSERT_TRUE(sm_->Apply(i, 1, put(9, i)).ok());
  const std::string snap = MakeSnapshot(20);  // session 5, last written at entry 20
  ASSERT_TRUE(sm_->InstallSnapshot(snap).ok());
  ASSERT_EQ(sm_->applied_index(), 20u);
  auto has_session = [&](uint64_t client) {
    auto s = static_cast<RocksDbStateMachine*>(sm_.get())->GetSession(client);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() && s->has_value();
  };
  for (uint64_t i = 21; i <= 20 + kExpiry; ++i) ASSERT_TRUE(sm_->Apply(i, 1, put(9, i)).ok());
  ASSERT_TRUE(has_session(5)) << "expired too early";
  ASSERT_TRUE(sm_->Apply(21 + kExpiry, 1, put(9, 21 + kExpiry)).ok());
  EXPECT_FALSE(has_session(5)) << "idle for more than " << kExpiry << " entries, still there";
}

TEST_F(InstallSnapshotTest, ReplacesEverythingAndSurvivesReopen) {
  for (int i = 0; i < 3; ++i) Next(Rewrite("old"));
  Next(PutCmd("only-old", "x"));
  const std::string snap = MakeSnapshot(20);
  ASSERT_TRUE(sm_->InstallSnapshot(snap).ok());
  EXPECT_EQ(sm_->applied_index(), 20u);
  EXPECT_EQ(sm_->applied_term(), 7u);
  EXPECT_EQ(sm_->revision(), 21);
  ExpectAllValues(*sm_, "new");
  EXPECT_EQ(MustGet("only-old"), std::nullopt);
  EXPECT_EQ(MustGet("k0")->version, 20);
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".install"));
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".old"));
  // The session table came with it.
  kvpb::Command retry = Rewrite("retry");
  retry.set_client_id(5);
  retry.set_sequence(20);
  EXPECT_TRUE(Next(retry, 7).duplicate);
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 21u);
  ExpectAllValues(*sm_, "new");
}

// The store keeps the records and sessions it last wrote in memory (kv/record_cache.h). An
// installed snapshot replaces them: writes after the install build on the snapshot's record
// and session, not on what the store held before (a stale session would apply a retry twice).
TEST_F(InstallSnapshotTest, WritesAfterTheInstallSeeTheSnapshotsRecordsAndSessions) {
  for (uint64_t i = 1; i <= 3; ++i) {
    kvpb::Command cmd = Rewrite("old");
    cmd.set_client_id(5);
    cmd.set_sequence(i);
    Next(cmd);  // k0 at version i, session 5 at sequence i
  }
  const std::string snap = MakeSnapshot(20);  // k0 at version 20, session 5 at sequence 20
  ASSERT_TRUE(sm_->InstallSnapshot(snap).ok());
  kvpb::Command retry = Rewrite("retry");
  retry.set_client_id(5);
  retry.set_sequence(20);
  EXPECT_TRUE(Next(retry, 7).duplicate) << "session 5 as it was before the install";
  ApplyResult put = Next(PutCmd("k0", "after"), 7);
  ASSERT_EQ(put.ops.size(), 1u);
  ASSERT_TRUE(put.ops[0].prev.has_value());
  EXPECT_EQ(put.ops[0].prev->value, "new");
  EXPECT_EQ(MustGet("k0")->version, 21) << "k0's version from before the install";
}

TEST_F(InstallSnapshotTest, BadFileChangesNothing) {
  Next(Rewrite("old"));
  std::string snap = MakeSnapshot(5);
  std::string data;
  {
    std::ifstream f(snap, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::ofstream(snap, std::ios::binary | std::ios::trunc) << data.substr(0, data.size() / 2);
  absl::Status s = sm_->InstallSnapshot(snap);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(sm_->InstallSnapshot(dir_.Sub("missing.db")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sm_->applied_index(), 1u);
  ExpectAllValues(*sm_, "old");
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".install"));
  EXPECT_EQ(Next(Rewrite("after")).revision, 3);
}

TEST_F(InstallSnapshotTest, ConcurrentReadersSeeOldOrNew) {
  for (int i = 0; i < 3; ++i) Next(Rewrite("old"));
  const std::string snap = MakeSnapshot(4);
  std::atomic<bool> done{false};
  std::atomic<int> saw_new{0};
  std::atomic<int> running{2};  // readers that have not returned (a failed ASSERT returns)
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      struct Exit {
        std::atomic<int>& n;
        ~Exit() { n.fetch_sub(1); }
      } exit{running};
      while (!done.load()) {
        absl::StatusOr<RangeResult> r = sm_->Range(kAllKeys, kAllKeys, 0);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_EQ(r->count, 10);
        const std::string& tag = r->kvs[0].value;
        for (const KeyValue& kv : r->kvs) ASSERT_EQ(kv.value, tag);
        ASSERT_EQ(r->revision, tag == "new" ? 5 : 4);
        if (tag == "new") saw_new.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(sm_->InstallSnapshot(snap).ok());
  // Let the readers see the new state at least once before stopping them; an install that
  // never shows the new state to readers fails here instead of hanging.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (saw_new.load() < 2 && running.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GE(saw_new.load(), 2) << "readers did not see the installed snapshot within 30 s";
  done.store(true);
  for (std::thread& t : readers) t.join();
}

// The states a crash can leave during the swap (see RecoverInterruptedInstall).
TEST_F(InstallSnapshotTest, CrashBetweenRenamesFinishesTheSwap) {
  Next(Rewrite("old"));
  const std::string snap = MakeSnapshot(3);
  sm_.reset();
  ASSERT_TRUE(RestoreSnapshot(snap, DbPath() + ".install").ok());
  std::filesystem::rename(DbPath(), DbPath() + ".old");  // first rename done, then crash
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 3u);
  ExpectAllValues(*sm_, "new");
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".old"));
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".install"));
}

TEST_F(InstallSnapshotTest, CrashBeforeSwapKeepsTheOldStore) {
  Next(Rewrite("old"));
  const std::string snap = MakeSnapshot(3);
  sm_.reset();
  // An install directory that may be complete or half-written: never swapped in.
  ASSERT_TRUE(RestoreSnapshot(snap, DbPath() + ".install").ok());
  std::filesystem::create_directories(DbPath() + ".install/partial");
  std::filesystem::create_directories(DbPath() + ".install.restore-tmp/partial");
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 1u);
  ExpectAllValues(*sm_, "old");
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".install"));
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".install.restore-tmp"));
}

TEST_F(InstallSnapshotTest, CrashAfterSwapRemovesTheOldStore) {
  Next(Rewrite("old"));
  const std::string snap = MakeSnapshot(3);
  sm_.reset();
  std::filesystem::rename(DbPath(), DbPath() + ".old");
  ASSERT_TRUE(RestoreSnapshot(snap, DbPath()).ok());  // second rename done, then crash
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 3u);
  ExpectAllValues(*sm_, "new");
  EXPECT_FALSE(std::filesystem::exists(DbPath() + ".old"));
}

}  // namespace
}  // namespace raftkv::kv::testing
