// The narrow interface between the Raft core and its durable log.
//
// Two implementations honour one contract (tests/raft/storage_contract_test.cc):
//   MemoryStorage (memory_storage.h) for the simulator and unit tests;
//   WalStorage    (wal/wal_storage.h) for kvd: segmented files under <data-dir>/wal/.
//
// Index conventions (as in the Raft paper and etcd): the log holds entries
// [FirstIndex(), LastIndex()]; entry FirstIndex()-1 is the last one covered by the snapshot
// (or 0 for an empty log), and Term(FirstIndex()-1) is still answered. An empty log has
// FirstIndex() == LastIndex() + 1.
//
// Threading: not thread-safe. The raft loop owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "raft.pb.h"

namespace raftkv::raft {

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // ---- Read side (the core calls these) ----

  // The last persisted hard state (zero value for a new log).
  virtual raftpb::HardState hard_state() const = 0;
  // Metadata of the snapshot the log starts after (index 0, term 0 for none).
  virtual raftpb::SnapshotMetadata snapshot_metadata() const = 0;
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
  // Term of entry `index`, for index in [FirstIndex()-1, LastIndex()].
  // Errors: kOutOfRange if index < FirstIndex()-1 (compacted) or > LastIndex().
  virtual absl::StatusOr<uint64_t> Term(uint64_t index) const = 0;
  // Entries [lo, hi), stopping early once their encoded size would exceed max_bytes
  // (but always at least one entry when lo < hi).
  // Errors: kOutOfRange if lo < FirstIndex() or hi > LastIndex()+1.
  virtual absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                            uint64_t max_bytes) const = 0;

  // ---- Write side (the raft loop calls these with the contents of a Ready) ----

  // Appends entries; entries[0].index must be in [FirstIndex(), LastIndex()+1]. Any existing
  // entries at or after entries[0].index are discarded first (a conflicting suffix).
  // Indexes must be consecutive. Not durable until Sync().
  virtual absl::Status Append(const std::vector<raftpb::Entry>& entries) = 0;
  // Records a new hard state. Not durable until Sync().
  virtual absl::Status SetHardState(const raftpb::HardState& hs) = 0;
  // Makes everything appended or set so far durable (one fsync for the batch).
  // A failed sync is fatal to the caller: it must stop the process.
  virtual absl::Status Sync() = 0;
  // Drops entries up to and including `index` (which must be <= LastIndex() and already
  // covered by a snapshot the state machine holds); Term(index) stays answerable, and so does
  // the configuration: snapshot_metadata().conf_state() becomes the one in force at `index`
  // (that of the newest ENTRY_CONF entry dropped, else unchanged), so a restart rebuilds the
  // membership from the storage alone (membership.h).
  virtual absl::Status Compact(uint64_t index) = 0;
  // Discards the whole log and restarts it after the snapshot: FirstIndex() becomes
  // meta.index()+1. Durable on return.
  virtual absl::Status ApplySnapshot(const raftpb::SnapshotMetadata& meta) = 0;
};

// The bounds rule of LogStorage::Entries for a log holding [first, last]: OK iff
// first <= lo <= hi <= last + 1, else kOutOfRange saying which end.
inline absl::Status CheckEntriesBounds(uint64_t lo, uint64_t hi, uint64_t first, uint64_t last) {
  if (lo < first) return absl::OutOfRangeError(absl::StrCat("entries from compacted index ", lo));
  if (hi > last + 1 || lo > hi) {
    return absl::OutOfRangeError(
        absl::StrCat("entries [", lo, ",", hi, ") past last index ", last));
  }
  return absl::OkStatus();
}

// The precondition of LogStorage::Append for a log holding [first, last]: entries start in
// [first, last + 1] and their indexes are consecutive. kInvalidArgument otherwise.
inline absl::Status CheckAppend(const std::vector<raftpb::Entry>& entries, uint64_t first,
                                uint64_t last) {
  if (entries.empty()) return absl::OkStatus();
  const uint64_t start = entries.front().index();
  if (start < first || start > last + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("append at ", start, " outside [", first, ",", last + 1, "]"));
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index() != start + i) {
      return absl::InvalidArgumentError("append: entry indexes are not consecutive");
    }
  }
  return absl::OkStatus();
}

// Appends entries[from, to) of a random-access container to *out while their encoded size,
// counted from *bytes (updated), stays within max_bytes -- but always at least one entry in
// *out, so a single oversized entry still makes progress. Returns false if it stopped early.
template <typename Container>
bool AppendEntriesLimited(const Container& entries, size_t from, size_t to, uint64_t max_bytes,
                          uint64_t* bytes, std::vector<raftpb::Entry>* out) {
  for (size_t i = from; i < to; ++i) {
    *bytes += entries[i].ByteSizeLong();
    if (!out->empty() && *bytes > max_bytes) return false;
    out->push_back(entries[i]);
  }
  return true;
}

}  // namespace raftkv::raft
