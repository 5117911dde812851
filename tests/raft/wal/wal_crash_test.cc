// Crash consistency. An in-memory file system (CrashEnv) tracks, per file, what has been
// fsynced and, per directory, which names have been made durable by a directory fsync. At
// every fsync the WAL issues, the test "crashes" a copy of the file system: names not yet
// made durable vanish (or removed ones come back), and each file keeps its synced bytes plus
// a random prefix of its unsynced ones (a torn write). Reopening that copy must succeed and
// yield exactly the state after some prefix of the operations issued since the last
// acknowledged Sync() -- never less than what was acknowledged, never corruption.
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/memory_storage.h"
#include "raft/wal/wal_env.h"
#include "raft/wal/wal_storage.h"
#include "raft/wal/wal_test_util.h"
#include "raft/wal/crash_env.h"

namespace raftkv::raft::wal {
namespace {

using testing::CrashEnv;
using testing::MakeEntry;
using testing::MakeHardState;

struct LogImage {
  std::string hard_state, snapshot;
  uint64_t first = 0, last = 0;
  std::vector<std::string> entries;
  bool operator==(const LogImage&) const = default;
};

LogImage Capture(const LogStorage& s) {
  LogImage img{s.hard_state().SerializeAsString(), s.snapshot_metadata().SerializeAsString(),
               s.FirstIndex(), s.LastIndex(), {}};
  auto e = s.Entries(s.FirstIndex(), s.LastIndex() + 1, ~0ull);
  if (e.ok()) {
    for (const raftpb::Entry& x : *e) img.entries.push_back(x.SerializeAsString());
  }
  return img;
}

// One operation of a batch; appends are split into single entries because each entry is one
// record and a crash can keep any prefix of the records.
struct Op {
  enum Kind { kEntry, kHardState, kCompact, kSnapshot } kind;
  raftpb::Entry entry;
  raftpb::HardState hs;
  uint64_t index = 0;
  raftpb::SnapshotMetadata meta;
};

absl::Status ApplyOp(LogStorage* s, const Op& op) {
  switch (op.kind) {
    case Op::kEntry: return s->Append({op.entry});
    case Op::kHardState: return s->SetHardState(op.hs);
    case Op::kCompact: return s->Compact(op.index);
    case Op::kSnapshot: return s->ApplySnapshot(op.meta);
  }
  return absl::InternalError("unreachable");
}

// A random operation that is valid against `model` (the log as the WAL should hold it):
// mostly appends (some over a conflicting suffix, which raise *term), hard states,
// compactions and, rarely, a snapshot. nullopt when the draw is a compaction of an empty log.
std::optional<Op> RandomOp(std::mt19937& rng, const LogStorage& model, uint64_t* term) {
  const int r = static_cast<int>(rng() % 100);
  Op op{};
  if (r < 70) {
    uint64_t at = model.LastIndex() + 1;
    if (r < 10 && model.LastIndex() >= model.FirstIndex()) {
      at = model.FirstIndex() + rng() % (model.LastIndex() - model.FirstIndex() + 1);
      ++*term;
    }
    op.kind = Op::kEntry;
    op.entry = MakeEntry(at, *term, std::string(rng() % 300, 'e'));
  } else if (r < 85) {
    op.kind = Op::kHardState;
    op.hs = MakeHardState(*term, rng() % 3, model.LastIndex() / 2);
  } else if (r < 97) {
    if (model.LastIndex() < model.FirstIndex()) return std::nullopt;
    op.kind = Op::kCompact;
    op.index = model.FirstIndex() + rng() % (model.LastIndex() - model.FirstIndex() + 1);
  } else {
    op.kind = Op::kSnapshot;
    op.meta.set_index(model.LastIndex() + rng() % 10);
    op.meta.set_term(++*term);
  }
  return op;
}

// The options of one seeded run: small segments (many rollovers and deletions), a write
// buffer that on even seeds writes records before Sync, and an entry cache that holds
// nothing, a few entries or everything (so reads also go through the crashed files).
WalOptions SeededOptions(uint32_t seed, WalEnv* env) {
  WalOptions opts;
  opts.env = env;
  opts.max_segment_bytes = 4096;
  opts.max_buffer_bytes = seed % 2 == 0 ? 64 : 4 << 20;
  opts.max_cached_bytes = seed % 3 == 0 ? 0 : seed % 3 == 1 ? 1500 : 64 << 20;
  return opts;
}

TEST(WalCrashTest, EveryFsyncPointRecoversToAnAcknowledgedPrefix) {
  int crashes_checked = 0;
  int torn_recoveries = 0;
  for (uint32_t seed = 1; seed <= 25; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    CrashEnv env;
    const WalOptions opts = SeededOptions(seed, &env);
    auto wal_or = WalStorage::Open("/wal", opts);
    ASSERT_TRUE(wal_or.ok()) << wal_or.status();
    std::unique_ptr<WalStorage> wal = std::move(*wal_or);
    MemoryStorage model;
    uint64_t term = 1;

    // States a crash may legally recover to: after ops [0, j) of the current batch, j >= 0.
    std::vector<LogImage> allowed;
    env.on_sync = [&] {
      auto crashed = env.Crash([&](size_t unsynced) { return rng() % (unsynced + 1); });
      WalOptions copts = opts;
      copts.env = crashed.get();
      auto r = WalStorage::Open("/wal", copts);
      ASSERT_TRUE(r.ok()) << r.status();
      ++crashes_checked;
      if ((*r)->recovery_report().truncated_torn_tail) ++torn_recoveries;
      const LogImage got = Capture(**r);
      bool found = false;
      for (const LogImage& a : allowed) found = found || a == got;
      ASSERT_TRUE(found) << "recovered to a state no operation prefix produces: last="
                         << got.last << " first=" << got.first;
    };

    for (int batch = 0; batch < 30; ++batch) {
      std::vector<Op> ops;
      const int n = 1 + static_cast<int>(rng() % 12);
      for (int k = 0; k < n; ++k) {
        const std::optional<Op> op = RandomOp(rng, model, &term);
        if (!op) continue;
        ops.push_back(*op);
        ASSERT_TRUE(ApplyOp(&model, *op).ok());
      }
      // Allowed crash states: the acknowledged state and every prefix of this batch.
      allowed.clear();
      allowed.push_back(Capture(*wal));  // nothing of this batch issued yet
      {
        // Rebuild prefixes from the acknowledged state by applying ops to a fresh model.
        MemoryStorage prefix;
        const LogImage base = allowed[0];
        // Recreate `base` in `prefix`: snapshot start, entries, hard state.
        raftpb::SnapshotMetadata sm;
        ASSERT_TRUE(sm.ParseFromString(base.snapshot));
        ASSERT_TRUE(prefix.ApplySnapshot(sm).ok());
        std::vector<raftpb::Entry> es;
        for (const std::string& s : base.entries) {
          es.emplace_back();
          ASSERT_TRUE(es.back().ParseFromString(s));
        }
        ASSERT_TRUE(prefix.Append(es).ok());
        raftpb::HardState hs;
        ASSERT_TRUE(hs.ParseFromString(base.hard_state));
        ASSERT_TRUE(prefix.SetHardState(hs).ok());
        ASSERT_EQ(base, Capture(prefix));
        for (const Op& op : ops) {
          ASSERT_TRUE(ApplyOp(&prefix, op).ok());
          allowed.push_back(Capture(prefix));
        }
      }
      for (const Op& op : ops) {
        ASSERT_TRUE(ApplyOp(wal.get(), op).ok());
        if (::testing::Test::HasFatalFailure()) return;
      }
      ASSERT_TRUE(wal->Sync().ok());
      if (::testing::Test::HasFatalFailure()) return;
      ASSERT_EQ(Capture(model), Capture(*wal));
    }
  }
  // The test must actually have crashed many times, some of them on a torn tail.
  EXPECT_GT(crashes_checked, 500);
  EXPECT_GT(torn_recoveries, 50);
  std::printf("crash points checked: %d, with a torn tail: %d\n", crashes_checked,
              torn_recoveries);
}


// Issue 9, item 3. A crash of the process (not of the machine) leaves written but unsynced
// records in the page cache, so the restarted WAL reads them back. If recovery reports them
// without making them durable, the restarted node treats them as stable (a follower acks
// them when the leader re-sends them, a leader counts itself for them) and a power loss then
// takes them away: an acknowledged entry lost on that node.
TEST(WalCrashTest, UnsyncedEntriesReadBackAfterAProcessCrashAreMadeDurable) {
  CrashEnv machine;
  WalOptions opts;
  opts.env = &machine;
  opts.max_buffer_bytes = 64;  // every record reaches the file (the page cache) before Sync
  {
    auto w = WalStorage::Open("/wal", opts);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append({MakeEntry(1, 1), MakeEntry(2, 1), MakeEntry(3, 1)}).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    ASSERT_TRUE((*w)->Append({MakeEntry(4, 1), MakeEntry(5, 1), MakeEntry(6, 1)}).ok());
    ASSERT_TRUE((*w)->SetHardState(MakeHardState(1, 1, 3)).ok());
  }  // the process dies: entries 4..6 and the hard state were written, never synced

  LogImage reported;
  {
    auto restarted = WalStorage::Open("/wal", opts);
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    ASSERT_EQ(6u, (*restarted)->LastIndex());  // read back from the page cache
    reported = Capture(**restarted);
  }  // the restarted process stops (or is killed) without writing anything

  // Then the machine loses power: only what was fsynced survives.
  std::unique_ptr<CrashEnv> after_power_loss = machine.Crash([](size_t) { return 0; });
  WalOptions popts = opts;
  popts.env = after_power_loss.get();
  auto r = WalStorage::Open("/wal", popts);
  ASSERT_TRUE(r.ok()) << r.status();
  const LogImage survived = Capture(**r);
  EXPECT_EQ(reported.last, survived.last)
      << "the restarted WAL reported entries up to " << reported.last
      << " as stable, but after a power loss only up to " << survived.last << " remain";
  EXPECT_EQ(reported.hard_state, survived.hard_state);
  EXPECT_TRUE(reported == survived);
}

// The same rule at every fsync (of a file or the directory) of a random workload: the process
// dies there, restarts, and then the machine loses power with each file keeping a random part
// of its unsynced bytes. What the restart reported must be exactly what the power loss
// leaves. (The dying process may have a sealed but unsynced segment, a segment renamed into
// place but not yet in a durable directory, or an unsynced tail.)
TEST(WalCrashTest, RecoveryAfterAProcessCrashReportsOnlyWhatSurvivesAPowerLoss) {
  int crash_points = 0;
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    CrashEnv machine;
    const WalOptions opts = SeededOptions(seed, &machine);
    auto wal_or = WalStorage::Open("/wal", opts);
    ASSERT_TRUE(wal_or.ok()) << wal_or.status();
    std::unique_ptr<WalStorage> wal = std::move(*wal_or);
    MemoryStorage model;
    uint64_t term = 1;

    auto crash_here = [&] {
      std::unique_ptr<CrashEnv> restarted_machine = machine.ProcessCrash();
      WalOptions ropts = opts;
      ropts.env = restarted_machine.get();
      LogImage reported;
      {
        auto r = WalStorage::Open("/wal", ropts);
        ASSERT_TRUE(r.ok()) << r.status();
        reported = Capture(**r);
      }
      std::unique_ptr<CrashEnv> after_power_loss =
          restarted_machine->Crash([&](size_t unsynced) { return rng() % (unsynced + 1); });
      WalOptions popts = opts;
      popts.env = after_power_loss.get();
      auto p = WalStorage::Open("/wal", popts);
      ASSERT_TRUE(p.ok()) << p.status();
      const LogImage survived = Capture(**p);
      ++crash_points;
      ASSERT_TRUE(reported == survived)
          << "the restart reported log [" << reported.first << ", " << reported.last
          << "]; after a power loss: [" << survived.first << ", " << survived.last
          << "] (hard state " << (reported.hard_state == survived.hard_state ? "same" : "lost")
          << ")";
    };
    machine.on_sync = crash_here;
    machine.on_sync_dir = crash_here;

    for (int batch = 0; batch < 25; ++batch) {
      const int n = 1 + static_cast<int>(rng() % 12);
      for (int k = 0; k < n; ++k) {
        const std::optional<Op> op = RandomOp(rng, model, &term);
        if (!op) continue;
        ASSERT_TRUE(ApplyOp(&model, *op).ok());
        ASSERT_TRUE(ApplyOp(wal.get(), *op).ok());
        if (::testing::Test::HasFatalFailure()) return;
      }
      ASSERT_TRUE(wal->Sync().ok());
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  EXPECT_GT(crash_points, 500);
  std::printf("process-crash points checked: %d\n", crash_points);
}

// Issue 9, item 2: a follower installing a snapshot records the snapshot marker and its
// commit (raised to the snapshot index) together: a power loss at any fsync of the install
// leaves the old log with its old commit, or the marker with the raised commit, never the
// marker alone.
TEST(WalCrashTest, SnapshotMarkerAndItsCommitAreDurableTogether) {
  int points = 0;
  for (int crash_at = 0;; ++crash_at) {
    CrashEnv machine;
    WalOptions opts;
    opts.env = &machine;
    opts.max_segment_bytes = 4096;
    auto w = WalStorage::Open("/wal", opts);
    ASSERT_TRUE(w.ok()) << w.status();
    for (uint64_t i = 1; i <= 20; ++i) {
      ASSERT_TRUE((*w)->Append({MakeEntry(i, 1, std::string(300, 'q'))}).ok());
    }
    ASSERT_TRUE((*w)->SetHardState(MakeHardState(1, 1, 5)).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    std::unique_ptr<CrashEnv> crashed;
    int syncs = 0;
    auto maybe_crash = [&] {
      if (syncs++ == crash_at && !crashed) crashed = machine.Crash([](size_t) { return 0; });
    };
    machine.on_sync = maybe_crash;
    machine.on_sync_dir = maybe_crash;
    raftpb::SnapshotMetadata meta;
    meta.set_index(100);
    meta.set_term(2);
    raftpb::HardState hs = MakeHardState(2, 1, 100);
    ASSERT_TRUE((*w)->ApplySnapshot(meta, hs).ok());
    machine.on_sync = nullptr;
    machine.on_sync_dir = nullptr;
    const bool done = !crashed;
    if (done) crashed = machine.Crash([](size_t) { return 0; });  // after the return
    WalOptions copts = opts;
    copts.env = crashed.get();
    auto r = WalStorage::Open("/wal", copts);
    ASSERT_TRUE(r.ok()) << r.status();
    ++points;
    if ((*r)->snapshot_metadata().index() == 100) {
      EXPECT_EQ(100u, (*r)->hard_state().commit()) << "crash at sync " << crash_at;
      EXPECT_EQ(2u, (*r)->hard_state().term()) << "crash at sync " << crash_at;
    } else {
      EXPECT_FALSE(done) << "ApplySnapshot returned but its marker was not durable";
      EXPECT_EQ(5u, (*r)->hard_state().commit()) << "crash at sync " << crash_at;
      EXPECT_EQ(20u, (*r)->LastIndex()) << "crash at sync " << crash_at;
    }
    if (done) break;
  }
  EXPECT_GE(points, 3);
}

}  // namespace
}  // namespace raftkv::raft::wal
