// ApplyBatch (kv/state_machine.h): many committed entries in one RocksDB write give every
// entry exactly the result Apply / ApplyEmpty would have given it one by one, and leave the
// same store: each command sees the entries before it in the batch (same-key puts, range
// deletes, sessions and their duplicates, session expiry), replays are no-ops, and an entry
// out of order fails the whole batch with nothing written.
#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "kv/rocksdb_state_machine.h"
#include "kv/state_machine_test.h"
#include "rocksdb/perf_context.h"
#include "rocksdb/perf_level.h"

namespace raftkv::kv::testing {
namespace {

kvpb::Command Sessioned(kvpb::Command cmd, uint64_t client, uint64_t seq, uint64_t expiry = 0) {
  cmd.set_client_id(client);
  cmd.set_sequence(seq);
  cmd.set_session_window(64);
  cmd.set_session_expiry_entries(expiry);
  return cmd;
}

// The entries of one Ready: nullopt is an entry without a command (a leader's no-op).
std::vector<std::optional<kvpb::Command>> Workload() {
  std::vector<std::optional<kvpb::Command>> w;
  w.push_back(PutCmd("a", "1"));
  w.push_back(std::nullopt);
  w.push_back(PutCmd("a", "2"));                       // version 2, prev = "1"
  w.push_back(PutCmd("b", "1"));
  kvpb::Command both = PutCmd("c", "1");
  AddDelete(both, "a");                                // sees the put of entry 3
  w.push_back(both);
  w.push_back(DeleteCmd("missing"));                   // no revision bump
  w.push_back(Sessioned(PutCmd("s", "first"), 7, 1, /*expiry=*/3));
  w.push_back(Sessioned(PutCmd("s", "retry"), 7, 1, 3));   // duplicate: the first result
  w.push_back(DeleteCmd("a", std::string("\0", 1)));    // range delete: b, c, s
  w.push_back(std::nullopt);
  w.push_back(PutCmd("a", "3"));                       // a new generation of a
  w.push_back(Sessioned(PutCmd("t", "x"), 8, 1, 3));   // expires session 7 (idle > 3)
  w.push_back(Sessioned(PutCmd("s", "late"), 7, 1, 3));    // a new write: 7 expired
  for (int i = 0; i < 5; ++i) w.push_back(PutCmd(absl::StrCat("k", i % 2), "v"));
  return w;
}

void ExpectSameResult(const ApplyResult& got, const ApplyResult& want, size_t entry) {
  EXPECT_EQ(got.revision, want.revision) << "entry " << entry;
  EXPECT_EQ(got.duplicate, want.duplicate) << "entry " << entry;
  EXPECT_EQ(got.session_refused, want.session_refused) << "entry " << entry;
  ASSERT_EQ(got.ops.size(), want.ops.size()) << "entry " << entry;
  for (size_t i = 0; i < got.ops.size(); ++i) {
    EXPECT_EQ(got.ops[i].deleted, want.ops[i].deleted) << "entry " << entry << " op " << i;
    ASSERT_EQ(got.ops[i].prev.has_value(), want.ops[i].prev.has_value())
        << "entry " << entry << " op " << i;
    if (!got.ops[i].prev) continue;
    EXPECT_EQ(got.ops[i].prev->value, want.ops[i].prev->value) << "entry " << entry;
    EXPECT_EQ(got.ops[i].prev->version, want.ops[i].prev->version) << "entry " << entry;
    EXPECT_EQ(got.ops[i].prev->create_revision, want.ops[i].prev->create_revision);
    EXPECT_EQ(got.ops[i].prev->mod_revision, want.ops[i].prev->mod_revision);
  }
}

// Every key of `a` and `b`, with its value and revisions, is the same.
void ExpectSameKeys(StateMachine& a, StateMachine& b) {
  const std::string all(1, '\0');
  absl::StatusOr<RangeResult> mine = a.Range("", all, 0);
  absl::StatusOr<RangeResult> theirs = b.Range("", all, 0);
  ASSERT_TRUE(mine.ok() && theirs.ok());
  ASSERT_EQ(mine->kvs.size(), theirs->kvs.size());
  for (size_t i = 0; i < mine->kvs.size(); ++i) {
    EXPECT_EQ(mine->kvs[i].key, theirs->kvs[i].key);
    EXPECT_EQ(mine->kvs[i].value, theirs->kvs[i].value);
    EXPECT_EQ(mine->kvs[i].version, theirs->kvs[i].version);
    EXPECT_EQ(mine->kvs[i].create_revision, theirs->kvs[i].create_revision);
    EXPECT_EQ(mine->kvs[i].mod_revision, theirs->kvs[i].mod_revision);
  }
}

class ApplyBatchTest : public StateMachineTest {
 protected:
  std::unique_ptr<StateMachine> OpenTwin(const std::string& name) {
    StateMachineOptions o;
    o.db_path = dir_.Sub(name);
    auto sm = StateMachine::Open(o);
    EXPECT_TRUE(sm.ok()) << sm.status();
    return sm.ok() ? *std::move(sm) : nullptr;
  }
};

TEST_F(ApplyBatchTest, OneWriteGivesEveryEntryTheResultOfApplyingItAlone) {
  const std::vector<std::optional<kvpb::Command>> work = Workload();
  // One by one, on a twin store.
  std::unique_ptr<StateMachine> alone = OpenTwin("alone");
  ASSERT_NE(alone, nullptr);
  std::vector<ApplyResult> want;
  for (size_t i = 0; i < work.size(); ++i) {
    if (!work[i]) {
      ASSERT_TRUE(alone->ApplyEmpty(i + 1, 2).ok());
      want.emplace_back();
      continue;
    }
    absl::StatusOr<ApplyResult> r = alone->Apply(i + 1, 2, *work[i]);
    ASSERT_TRUE(r.ok()) << r.status();
    want.push_back(*r);
  }
  // All in one batch.
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < work.size(); ++i) {
    batch.push_back(BatchEntry{i + 1, 2, work[i] ? &*work[i] : nullptr});
  }
  auto* rocks = dynamic_cast<RocksDbStateMachine*>(sm_.get());
  ASSERT_NE(rocks, nullptr);
  const uint64_t writes_before = rocks->entry_writes();
  absl::StatusOr<std::vector<ApplyResult>> got = sm_->ApplyBatch(batch);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(rocks->entry_writes() - writes_before, 1u) << "not one RocksDB write";
  ASSERT_EQ(got->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ExpectSameResult((*got)[i], want[i], i + 1);

  // The same store: index, term, revision, every key with its revisions, the sessions.
  EXPECT_EQ(sm_->applied_index(), alone->applied_index());
  EXPECT_EQ(sm_->applied_term(), 2u);
  EXPECT_EQ(sm_->revision(), alone->revision());
  ExpectSameKeys(*sm_, *alone);
  auto* alone_rocks = dynamic_cast<RocksDbStateMachine*>(alone.get());
  for (uint64_t client : {7, 8}) {
    auto s_mine = rocks->GetSession(client);
    auto s_theirs = alone_rocks->GetSession(client);
    ASSERT_TRUE(s_mine.ok() && s_theirs.ok());
    ASSERT_EQ(s_mine->has_value(), s_theirs->has_value()) << "client " << client;
    if (s_mine->has_value()) {
      EXPECT_EQ((*s_mine)->last_sequence, (*s_theirs)->last_sequence);
      EXPECT_EQ((*s_mine)->last_index, (*s_theirs)->last_index);
    }
  }

  // A replay of the whole batch changes nothing and writes nothing.
  absl::StatusOr<std::vector<ApplyResult>> again = sm_->ApplyBatch(batch);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(rocks->entry_writes() - writes_before, 1u);
  EXPECT_TRUE((*again)[0].duplicate);
  EXPECT_EQ(sm_->revision(), alone->revision());
}

TEST_F(ApplyBatchTest, AnEntryOutOfOrderFailsTheBatchAndWritesNothing) {
  Next(PutCmd("a", "1"));
  kvpb::Command put = Sessioned(PutCmd("b", "1"), /*client=*/4, /*seq=*/1);
  std::vector<BatchEntry> batch = {{2, 1, &put}, {4, 1, &put}};
  absl::StatusOr<std::vector<ApplyResult>> got = sm_->ApplyBatch(batch);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << got.status();
  EXPECT_EQ(sm_->applied_index(), 1u);
  EXPECT_EQ(MustGet("b"), std::nullopt);
  // Nor does the next evaluation see it (the batch's writes were never cached): entry 2
  // applies afresh, not as a duplicate of its failed first try, and creates b.
  std::vector<BatchEntry> again = {{2, 1, &put}};
  got = sm_->ApplyBatch(again);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE((*got)[0].duplicate);
  ASSERT_EQ((*got)[0].ops.size(), 1u);
  EXPECT_FALSE((*got)[0].ops[0].prev.has_value());
  EXPECT_EQ(MustGet("b")->version, 1);
}

// Without RocksDB's WAL, a clean close flushes: everything applied is there after a reopen.
TEST_F(ApplyBatchTest, WithoutTheWalACleanCloseKeepsEverything) {
  StateMachineOptions o;
  o.db_path = dir_.Sub("nowal");
  o.disable_wal = true;
  {
    auto sm = StateMachine::Open(o);
    ASSERT_TRUE(sm.ok()) << sm.status();
    kvpb::Command put = PutCmd("k", "v");
    ASSERT_TRUE((*sm)->ApplyBatch({{1, 1, &put}, {2, 1, nullptr}}).ok());
  }
  auto sm = StateMachine::Open(o);
  ASSERT_TRUE(sm.ok()) << sm.status();
  EXPECT_EQ((*sm)->applied_index(), 2u);
  auto k = (*sm)->Get("k");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->value, "v");
  o.sync_writes = true;
  EXPECT_EQ(StateMachine::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// memtable_bytes bounds the memtables of a store nobody flushes (kvd without RocksDB's WAL,
// between the snapshots that flush it): 4 MiB of writes into a store limited to 1 MiB reach
// SST files on their own. With RocksDB's default (64 MiB per table) they all stayed in memory.
TEST_F(ApplyBatchTest, MemtablesPastMemtableBytesAreFlushedWithoutAFlushCall) {
  StateMachineOptions o;
  o.db_path = dir_.Sub("memtables");
  o.disable_wal = true;
  o.memtable_bytes = 1 << 20;
  auto sm = StateMachine::Open(o);
  ASSERT_TRUE(sm.ok()) << sm.status();
  auto sst_files = [&] {
    int n = 0;
    for (const auto& f : std::filesystem::directory_iterator(o.db_path)) {
      n += f.path().extension() == ".sst";
    }
    return n;
  };
  ASSERT_EQ(sst_files(), 0);
  const std::string value(10 << 10, 'v');
  for (uint64_t i = 1; i <= 400; ++i) {
    kvpb::Command put = PutCmd(absl::StrCat("k", i), value);
    ASSERT_TRUE((*sm)->ApplyBatch({{i, 1, &put}}).ok());
  }
  // RocksDB flushes on its own threads: wait for the first file, 30 s at most.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (sst_files() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GT(sst_files(), 0) << "4 MiB of writes stayed in memtables limited to 1 MiB";
}

// The record cache (kv/record_cache.h) and the batch's own view of its writes change nothing
// but where evaluation reads: a store applying entry by entry without a cache, and stores
// applying batches with no cache, a cache so small it evicts on every write and the default
// one give every entry of a random history the same result and end with the same keys and
// sessions.
TEST_F(ApplyBatchTest, EveryCacheSizeGivesTheSameResultsAndStore) {
  std::vector<std::unique_ptr<StateMachine>> stores;  // [0]: entry by entry
  for (size_t bytes : {size_t{0}, size_t{0}, size_t{2048},
                       StateMachineOptions{}.record_cache_bytes}) {
    StateMachineOptions o;
    o.db_path = dir_.Sub("cache" + std::to_string(stores.size()));
    o.record_cache_bytes = bytes;
    auto sm = StateMachine::Open(o);
    ASSERT_TRUE(sm.ok()) << sm.status();
    stores.push_back(*std::move(sm));
  }
  std::mt19937_64 rng(11);
  auto key = [&] { return absl::StrCat("k", rng() % 40); };
  std::map<uint64_t, uint64_t> seq;
  uint64_t index = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<kvpb::Command> cmds(1 + rng() % 8);
    for (kvpb::Command& cmd : cmds) {
      const int ops = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < ops; ++i) {
        switch (rng() % 6) {
          case 0: AddDelete(cmd, key()); break;
          case 1: AddDelete(cmd, key(), key()); break;  // a range, sometimes empty
          default: AddPut(cmd, key(), absl::StrCat("v", rng() % 1000)); break;
        }
      }
      if (rng() % 2 == 0) {
        const uint64_t client = 1 + rng() % 6;
        // Sometimes a retry of the last sequence: a duplicate.
        const uint64_t s = rng() % 5 == 0 && seq[client] > 0 ? seq[client] : ++seq[client];
        cmd = Sessioned(std::move(cmd), client, s, /*expiry=*/50);
      }
    }
    std::vector<BatchEntry> batch;
    for (const kvpb::Command& cmd : cmds) batch.push_back(BatchEntry{++index, 1, &cmd});
    std::vector<std::vector<ApplyResult>> got;
    got.emplace_back();
    for (const BatchEntry& e : batch) {
      absl::StatusOr<ApplyResult> r = stores[0]->Apply(e.index, e.term, *e.cmd);
      ASSERT_TRUE(r.ok()) << r.status();
      got[0].push_back(*std::move(r));
    }
    for (size_t i = 1; i < stores.size(); ++i) {
      absl::StatusOr<std::vector<ApplyResult>> r = stores[i]->ApplyBatch(batch);
      ASSERT_TRUE(r.ok()) << r.status();
      got.push_back(*std::move(r));
    }
    for (size_t i = 1; i < got.size(); ++i) {
      ASSERT_EQ(got[i].size(), got[0].size());
      for (size_t e = 0; e < got[0].size(); ++e) ExpectSameResult(got[i][e], got[0][e], e);
    }
  }
  const std::string all(1, '\0');
  absl::StatusOr<RangeResult> want = stores[0]->Range("", all, 0);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_GT(want->kvs.size(), 0u);
  for (size_t i = 1; i < stores.size(); ++i) {
    EXPECT_EQ(stores[i]->revision(), stores[0]->revision());
    ExpectSameKeys(*stores[i], *stores[0]);
    for (uint64_t client = 1; client <= 6; ++client) {
      auto a = static_cast<RocksDbStateMachine*>(stores[0].get())->GetSession(client);
      auto b = static_cast<RocksDbStateMachine*>(stores[i].get())->GetSession(client);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(*a, *b) << "client " << client;
    }
  }
}

// With the cache, writes that follow each other on one key and one session read the store
// once, not once per write. Counted with RocksDB's perf context (memtable lookups).
TEST_F(ApplyBatchTest, RepeatedWritesOfOneKeyReadTheStoreOnce) {
  auto memtable_gets = [&](size_t cache_bytes) -> uint64_t {
    StateMachineOptions o;
    o.db_path = dir_.Sub("gets" + std::to_string(cache_bytes));
    o.record_cache_bytes = cache_bytes;
    auto sm = StateMachine::Open(o);
    EXPECT_TRUE(sm.ok()) << sm.status();
    if (!sm.ok()) return 0;
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    rocksdb::get_perf_context()->Reset();
    for (uint64_t i = 1; i <= 100; ++i) {
      kvpb::Command cmd = Sessioned(PutCmd("k", absl::StrCat(i)), /*client=*/3, i);
      std::vector<BatchEntry> one = {{i, 1, &cmd}};
      EXPECT_TRUE((*sm)->ApplyBatch(one).ok());
    }
    const uint64_t gets = rocksdb::get_perf_context()->get_from_memtable_count;
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    // The counters INFO shows say the same.
    const StateMachine::RecordCacheStats stats = (*sm)->record_cache_stats();
    EXPECT_EQ(stats.hits + stats.misses, 200u);
    EXPECT_EQ(stats.misses, cache_bytes == 0 ? 200u : 2u);
    EXPECT_EQ(stats.bytes > 0, cache_bytes > 0);
    return gets;
  };
  // The key and the session per write (a Get on the still empty memtable is not counted).
  EXPECT_GE(memtable_gets(0), 199u);
  EXPECT_LE(memtable_gets(StateMachineOptions{}.record_cache_bytes), 2u);
}

// A batch writes each key and session once, however many of its commands changed it: a
// follower forwards a client's writes in lanes of up to 16 in flight, each a session
// command, and writing the lane's session record and its expiry keys for every command made
// four memtable inserts per write on every replica instead of one (a quarter of each node's
// CPU under forwarded load). An expiry key created and superseded within the batch is not
// written at all.
TEST_F(ApplyBatchTest, ABatchWritesEachSessionOnce) {
  auto* rocks = dynamic_cast<RocksDbStateMachine*>(sm_.get());
  ASSERT_NE(rocks, nullptr);
  // Before the batch: session 5 exists, with an expiry key in the store.
  kvpb::Command first = Sessioned(PutCmd("k0", "v"), /*client=*/5, /*seq=*/1, /*expiry=*/1000);
  std::vector<BatchEntry> one = {{1, 1, &first}};
  ASSERT_TRUE(sm_->ApplyBatch(one).ok());
  constexpr uint64_t kCommands = 100;
  std::vector<kvpb::Command> cmds;
  for (uint64_t i = 1; i <= kCommands; ++i) {
    cmds.push_back(Sessioned(PutCmd(absl::StrCat("k", i), "v"), 5, i + 1, 1000));
  }
  std::vector<BatchEntry> batch;
  for (uint64_t i = 0; i < kCommands; ++i) batch.push_back({i + 2, 1, &cmds[i]});
  const uint64_t before = rocks->keys_written();
  ASSERT_TRUE(sm_->ApplyBatch(batch).ok());
  // A record per command; the session record, its new expiry key and the old one's delete;
  // the applied record.
  EXPECT_EQ(rocks->keys_written() - before, kCommands + 3 + 1);
  // What the batch left is what one command at a time leaves.
  auto alone = OpenTwin("alone");
  ASSERT_TRUE(alone->Apply(1, 1, first).ok());
  for (uint64_t i = 0; i < kCommands; ++i) ASSERT_TRUE(alone->Apply(i + 2, 1, cmds[i]).ok());
  auto s_mine = rocks->GetSession(5);
  auto s_theirs = dynamic_cast<RocksDbStateMachine*>(alone.get())->GetSession(5);
  ASSERT_TRUE(s_mine.ok() && s_theirs.ok());
  EXPECT_EQ(*s_mine, *s_theirs);
  ExpectSameKeys(*sm_, *alone);
  // And the expiry keys: one left behind by an earlier command (indexes 1-100) would expire
  // session 5 a thousand entries after that command instead of after its last (index 101);
  // the session goes in both stores exactly then.
  for (StateMachine* sm : {sm_.get(), alone.get()}) {
    auto* r = dynamic_cast<RocksDbStateMachine*>(sm);
    uint64_t index = sm->applied_index();
    auto idle_until = [&](uint64_t last) {  // empty entries up to `last`, one write
      std::vector<BatchEntry> empties;
      while (index < last) empties.push_back({++index, 1, nullptr});
      ASSERT_TRUE(sm->ApplyBatch(empties).ok());
    };
    kvpb::Command other = Sessioned(PutCmd("other", "v"), /*client=*/6, 1, 1000);
    idle_until(1100);
    ASSERT_TRUE(sm->Apply(++index, 1, other).ok());  // 1101: 1,001 after index 100
    ASSERT_TRUE(r->GetSession(5).ok());
    EXPECT_TRUE(r->GetSession(5)->has_value()) << "expired by a stale expiry key";
    other.set_sequence(2);
    ASSERT_TRUE(sm->Apply(++index, 1, other).ok());  // 1102: 1,001 after index 101
    ASSERT_TRUE(r->GetSession(5).ok());
    EXPECT_FALSE(r->GetSession(5)->has_value()) << "idle for more than its expiry";
  }
}

// A batch inserts its keys into RocksDB's memtable in key order: the skiplist remembers
// where its last insert went, so a key just after it is placed from the lowest levels up
// instead of searched for from the top. A batch of writes to random keys, in arrival order,
// made the skiplist search (FindSpliceForLevel and its key comparisons) the largest single
// cost of the leader's raft loop under load. Counted with RocksDB's perf context (user key
// comparisons; the records come from the cache, so the batch reads nothing from the store).
TEST_F(ApplyBatchTest, ABatchInsertsItsKeysInKeyOrder) {
  constexpr int kKeys = 20000, kWrites = 1000;
  std::vector<kvpb::Command> cmds;
  for (int i = 0; i < kKeys; ++i) cmds.push_back(PutCmd(absl::StrFormat("key:%08d", i), "v"));
  std::vector<BatchEntry> load;
  for (int i = 0; i < kKeys; ++i) load.push_back({uint64_t(i) + 1, 1, &cmds[i]});
  ASSERT_TRUE(sm_->ApplyBatch(load).ok());
  std::mt19937 rng(7);
  std::vector<kvpb::Command> writes;
  for (int i = 0; i < kWrites; ++i) {
    writes.push_back(PutCmd(absl::StrFormat("key:%08d", rng() % kKeys), "w"));
  }
  std::vector<BatchEntry> batch;
  for (int i = 0; i < kWrites; ++i) batch.push_back({uint64_t(kKeys + i) + 1, 1, &writes[i]});
  const uint64_t misses = sm_->record_cache_stats().misses;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  ASSERT_TRUE(sm_->ApplyBatch(batch).ok());
  const uint64_t compares = rocksdb::get_perf_context()->user_key_comparison_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  EXPECT_EQ(sm_->record_cache_stats().misses, misses);
  // Measured over 20 runs each (skiplist heights are random): 94-119 per write in arrival
  // order, with the hint or without; 94-111 sorted without the hint; 63-68 sorted with it.
  EXPECT_LE(compares, uint64_t(kWrites) * 80) << double(compares) / kWrites << " per write";
}

}  // namespace
// Every command looks for idle sessions, and every session update deletes the session's old
// expiry key, which RocksDB keeps as a deleted key until a compaction. A scan that seeks to
// the start of the expiry keys walks all of them: a leader after a few hundred thousand
// forwarded writes served 50 writers at one client's rate. The scan must stop at its bound
// and start at the floor the previous scans proved (no live key below it), so one command
// steps over a handful of deleted keys, not thousands. And a scan that finds the next live key
// raises the floor to it, so the commands until that key goes idle need no iterator at all
// (an iterator and a seek per command were 5% of a busy leader's CPU). Counted, not timed:
// RocksDB's perf context counts the deleted keys an iterator skips and its memtable seeks.
class SessionScanTest : public ApplyBatchTest, public ::testing::WithParamInterface<bool> {
 protected:
  // Applies `cmd` at `index`, by ApplyBatch (param true) or Apply.
  void ApplyOne(uint64_t index, const kvpb::Command& cmd) {
    if (GetParam()) {
      std::vector<BatchEntry> one = {{index, 1, &cmd}};
      ASSERT_TRUE(sm_->ApplyBatch(one).ok()) << index;
    } else {
      ASSERT_TRUE(sm_->Apply(index, 1, cmd).ok()) << index;
    }
  }
  bool HasSession(uint64_t client) {
    auto s = static_cast<RocksDbStateMachine*>(sm_.get())->GetSession(client);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() && s->has_value();
  }
};

TEST_P(SessionScanTest, CommandsStepOverFewDeletedExpiryKeysAndRarelyScan) {
  constexpr uint64_t kUpdates = 3000, kExpiry = 1000, kMeasured = 2000;
  for (uint64_t i = 1; i <= kUpdates; ++i) {
    ApplyOne(i, Sessioned(PutCmd("k", "v"), /*client=*/9, /*seq=*/i, kExpiry));
  }
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  for (uint64_t i = kUpdates + 1; i <= kUpdates + kMeasured; ++i) {
    ApplyOne(i, Sessioned(PutCmd("k", "v"), 9, i, kExpiry));
  }
  const uint64_t skipped = rocksdb::get_perf_context()->internal_delete_skipped_count;
  const uint64_t seeks = rocksdb::get_perf_context()->seek_on_memtable_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  // Each scan finds session 9's key one entry back and raises the floor to it, so the next
  // scan comes kExpiry entries later and steps over the kExpiry keys deleted since: about
  // one deleted key per command. A scan from the start of the expiry keys with the bound
  // stepped over 2,011 per command; without the bound, 2,999.
  EXPECT_LE(skipped, 2 * kMeasured);
  // One scan per kExpiry commands; a seek per command before (2,000).
  EXPECT_LE(seeks, kMeasured / kExpiry + 1);
  EXPECT_GT(seeks, 0u) << "the count measures nothing (perf context off?)";
}

// The floor is only a shortcut: sessions still expire exactly when they did without it, the
// same on every replica, including a session much older than the sessions that raised it.
TEST_P(SessionScanTest, TheFloorNeverHidesAnIdleSession) {
  constexpr uint64_t kExpiry = 100;
  ApplyOne(1, Sessioned(PutCmd("old", "v"), /*client=*/5, /*seq=*/1, kExpiry));
  for (uint64_t i = 2; i <= kExpiry + 1; ++i) {
    ApplyOne(i, Sessioned(PutCmd("k", "v"), 9, i, kExpiry));
  }
  ASSERT_TRUE(HasSession(5)) << "expired one entry too early";
  ApplyOne(kExpiry + 2, Sessioned(PutCmd("k", "v"), 9, kExpiry + 2, kExpiry));
  EXPECT_FALSE(HasSession(5)) << "idle for more than the expiry";
  EXPECT_TRUE(HasSession(9));
}

// The same against a model, with sessions idle for every length: after each entry, exactly
// the sessions the model keeps are stored (the idlest at most kMaxSessionsExpiredPerEntry go
// per entry), whatever the floor skipped.
TEST_P(SessionScanTest, SessionsExpireAsTheModelSaysWhateverTheScansSkip) {
  constexpr uint64_t kClients = 40, kEntries = 3000;
  std::mt19937_64 rng(7);
  std::map<uint64_t, uint64_t> model;  // client -> last_index
  std::map<uint64_t, uint64_t> seq;
  uint64_t index = 0;
  while (index < kEntries) {
    // Batches of 1-8 entries (ApplyBatch) or one at a time (Apply).
    std::vector<kvpb::Command> cmds(GetParam() ? 1 + rng() % 8 : 1);
    for (kvpb::Command& cmd : cmds) {
      ++index;
      // Mostly a few busy clients, sometimes any of them: some sessions stay idle a long
      // time. Mostly a long expiry, sometimes a short one: more sessions idle at once than
      // one entry removes (kMaxSessionsExpiredPerEntry).
      const uint64_t client = 1 + (rng() % 4 == 0 ? rng() % kClients : rng() % 3);
      const uint64_t expiry = rng() % 50 == 0 ? 1 + rng() % 5 : 30;
      cmd = Sessioned(PutCmd("k", "v"), client, ++seq[client], expiry);
      if (index > expiry) {
        std::vector<std::pair<uint64_t, uint64_t>> idle;  // (last_index, client)
        for (const auto& [c, last] : model) {
          if (last < index - expiry) idle.emplace_back(last, c);
        }
        std::sort(idle.begin(), idle.end());
        if (idle.size() > kMaxSessionsExpiredPerEntry) idle.resize(kMaxSessionsExpiredPerEntry);
        for (const auto& [last, c] : idle) model.erase(c);
      }
      model[client] = index;
    }
    if (GetParam()) {
      std::vector<BatchEntry> batch;
      for (size_t i = 0; i < cmds.size(); ++i) {
        batch.push_back(BatchEntry{index - cmds.size() + 1 + i, 1, &cmds[i]});
      }
      ASSERT_TRUE(sm_->ApplyBatch(batch).ok()) << index;
    } else {
      ApplyOne(index, cmds[0]);
    }
    for (uint64_t c = 1; c <= kClients; ++c) {
      ASSERT_EQ(HasSession(c), model.contains(c)) << "client " << c << " after entry " << index;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ApplyOrBatch, SessionScanTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "ApplyBatch" : "Apply";
                         });

}  // namespace raftkv::kv::testing
