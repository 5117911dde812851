// MemoryStorage: the in-memory twin of the WAL (storage.h), for unit tests, the simulator and
// benchmarks. It honours the LogStorage contract (tests/raft/storage_contract_test.cc).
//
// Durability model: Append/SetHardState/Compact are "written" at once but only "durable" after
// Sync(); ApplySnapshot is durable on return. Sync() costs nothing. With crash simulation
// enabled (constructor flag), the storage also keeps the durable state, and DurableCopy()
// returns a fresh storage holding exactly what a crash at this moment would leave behind.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "raft/storage.h"

namespace raftkv::raft {

class MemoryStorage final : public LogStorage {
 public:
  // track_durable: keep the state as of the last Sync() so DurableCopy() works. Costs one
  // replay of each batch at Sync(); off by default.
  explicit MemoryStorage(bool track_durable = false);
  ~MemoryStorage() override;

  raftpb::HardState hard_state() const override { return hard_state_; }
  raftpb::SnapshotMetadata snapshot_metadata() const override { return snapshot_; }
  uint64_t FirstIndex() const override;
  uint64_t LastIndex() const override;
  absl::StatusOr<uint64_t> Term(uint64_t index) const override;
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                    uint64_t max_bytes) const override;

  absl::Status Append(const std::vector<raftpb::Entry>& entries) override;
  absl::Status SetHardState(const raftpb::HardState& hs) override;
  absl::Status Sync() override;
  absl::Status Compact(uint64_t index) override;
  absl::Status ApplySnapshot(const raftpb::SnapshotMetadata& meta) override;

  // Test hook: what survives a crash now (everything up to the last Sync()). The copy tracks
  // durability too. REQUIRES: constructed with track_durable = true.
  std::unique_ptr<MemoryStorage> DurableCopy() const { return CrashCopy(0); }
  // Test hook: what a crash now may leave when the disk kept the first `keep_records` of the
  // unsynced records too (a prefix, as a log file written in order keeps: each entry of an
  // Append, each hard state and each compaction is one record), as after a torn write.
  // CrashCopy(0) is DurableCopy(); CrashCopy(unsynced_records()) keeps everything.
  // REQUIRES: constructed with track_durable = true.
  std::unique_ptr<MemoryStorage> CrashCopy(size_t keep_records) const;
  // Records written since the last Sync() (see CrashCopy). 0 if durability is not tracked.
  size_t unsynced_records() const;

  // Number of Sync() calls so far (for tests and benchmarks).
  uint64_t sync_count() const { return sync_count_; }

 private:
  // One write not yet covered by Sync(), replayed onto durable_ at Sync().
  struct PendingOp {
    enum Kind { kAppend, kHardState, kCompact } kind;
    std::vector<raftpb::Entry> entries;
    raftpb::HardState hard_state;
    uint64_t index = 0;
  };

  // Position of `index` in entries_. REQUIRES: FirstIndex() <= index <= LastIndex().
  size_t Offset(uint64_t index) const { return static_cast<size_t>(index - FirstIndex()); }

  raftpb::HardState hard_state_;
  raftpb::SnapshotMetadata snapshot_;  // the log starts after snapshot_.index()
  std::vector<raftpb::Entry> entries_;  // entries_[0].index() == snapshot_.index() + 1
  uint64_t sync_count_ = 0;

  const bool track_durable_;
  std::unique_ptr<MemoryStorage> durable_;  // state as of the last Sync(); null if untracked
  std::vector<PendingOp> pending_;
};

}  // namespace raftkv::raft
