// Rebuilds the log state from WAL records, in file order (the semantics of each record type
// are in wal_format.h). Used by WalStorage::Open; separate so it can be tested on its own.
//
// Replay may start at a segment whose predecessors were deleted after a compaction. Then the
// first entries replayed can lie above the start marker (a gap): the entries in the gap were
// in the deleted segments, so a later kCompact record must cover them. Finish() checks that
// it did: the final log must run without a gap from snapshot.index()+1.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "raft.pb.h"
#include "raft/wal/wal_format.h"

namespace raftkv::raft::wal {

class LogReplayer {
 public:
  // Applies one valid record of segment `seq` (named `file`). Errors: kDataLoss (naming
  // `file` and the record's offset) when the payload does not parse or contradicts the log
  // replayed so far.
  absl::Status Apply(const Record& record, uint64_t seq, const std::string& file);
  // Checks the final state (no gap between the log start and the first entry).
  absl::Status Finish() const;

  const raftpb::HardState& hard_state() const { return hard_state_; }
  const raftpb::SnapshotMetadata& snapshot() const { return snapshot_; }
  // Term and location of each entry replayed (payloads are not kept: a log can be far larger
  // than RAM); entries()[i] is entry first_index() + i.
  std::deque<EntryLocation>& entries() { return entries_; }
  uint64_t first_index() const { return first_index_; }
  uint64_t LastIndex() const {
    return entries_.empty() ? snapshot_.index() : first_index_ + entries_.size() - 1;
  }

 private:
  raftpb::HardState hard_state_;
  raftpb::SnapshotMetadata snapshot_;
  uint64_t first_index_ = 0;            // index of entries_[0] (when not empty)
  std::deque<EntryLocation> entries_;  // consecutive indexes; may start above snapshot+1
};

}  // namespace raftkv::raft::wal
