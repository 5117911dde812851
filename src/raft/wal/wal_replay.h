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
  // Applies one valid record. Errors: kDataLoss (naming `file` and the record's offset) when
  // the payload does not parse or contradicts the log replayed so far.
  absl::Status Apply(const Record& record, const std::string& file);
  // Checks the final state (no gap between the log start and the first entry).
  absl::Status Finish() const;

  const raftpb::HardState& hard_state() const { return hard_state_; }
  const raftpb::SnapshotMetadata& snapshot() const { return snapshot_; }
  std::deque<raftpb::Entry>& entries() { return entries_; }

 private:
  uint64_t LastIndex() const {
    return entries_.empty() ? snapshot_.index() : entries_.back().index();
  }

  raftpb::HardState hard_state_;
  raftpb::SnapshotMetadata snapshot_;
  std::deque<raftpb::Entry> entries_;  // consecutive indexes; may start above snapshot+1
};

}  // namespace raftkv::raft::wal
