// RaftLog: the core's view of its log = what LogStorage holds (stable) + what the core has
// appended or received but the caller has not yet persisted (unstable), plus the commit and
// applied indexes. Modelled on etcd's raftLog/unstable.
//
// Unstable part: entries [offset_, offset_ + unstable_.size()) and possibly a snapshot to
// install. For index < offset_ the storage is authoritative; at or after offset_ the unstable
// entries are (the storage may still hold a stale suffix there until the caller persists).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "raft.pb.h"
#include "raft/storage.h"

namespace raftkv::raft {

class RaftLog {
 public:
  // `storage` must outlive this object. The log starts with everything in storage stable and
  // committed up to storage->hard_state().commit(); applied = max(applied, snapshot index).
  // `bootstrap` is the configuration before any snapshot or ENTRY_CONF entry (Config::peers);
  // the storage's snapshot conf_state and its ENTRY_CONF entries override it (membership.h).
  // Aborts on an ENTRY_CONF entry that does not parse (the configuration is then unknowable).
  RaftLog(const LogStorage* storage, uint64_t applied, raftpb::ConfState bootstrap = {});

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const { return TermOrZero(LastIndex()); }
  // Term of `index` for index in [FirstIndex()-1, LastIndex()]; kOutOfRange otherwise.
  absl::StatusOr<uint64_t> Term(uint64_t index) const;
  // Term(index), or 0 when unknown (compacted or past the end).
  uint64_t TermOrZero(uint64_t index) const;
  bool MatchTerm(uint64_t index, uint64_t term) const;
  // Raft §5.4.1: a candidate's log is at least as up to date as ours.
  bool IsUpToDate(uint64_t last_index, uint64_t last_term) const;

  // Entries [lo, hi) bounded by max_bytes (at least one when lo < hi).
  // Errors: kOutOfRange if lo < FirstIndex() (compacted) or hi > LastIndex()+1.
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                    uint64_t max_bytes) const;

  // Follower side of AppendEntries: if our entry at `index` has `log_term`, append `entries`
  // (replacing a conflicting suffix), advance commit to min(committed, last new index) and
  // return the last new index; otherwise nullopt. Never truncates committed entries (CHECK).
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<raftpb::Entry>& entries);
  // Appends unstable entries; entries[0].index() must be in [committed+1, LastIndex()+1].
  // Returns the new last index.
  uint64_t Append(const std::vector<raftpb::Entry>& entries);
  // Largest index <= `index` whose term is <= `term` (or whose term is unknown): where a
  // leader and follower logs may last agree (fast backoff, Raft thesis §5.3 / etcd).
  uint64_t FindConflictByTerm(uint64_t index, uint64_t term) const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  // Commit never goes down; REQUIRES: index <= LastIndex() when it raises commit.
  void CommitTo(uint64_t index);
  void AppliedTo(uint64_t index);

  // ---- The Ready side ----
  const std::vector<raftpb::Entry>& UnstableEntries() const { return unstable_; }
  const std::optional<raftpb::Snapshot>& UnstableSnapshot() const { return unstable_snapshot_; }
  // Committed entries not yet applied, bounded by max_bytes (at least one if any).
  std::vector<raftpb::Entry> NextCommittedEntries(uint64_t max_bytes) const;
  bool HasNextCommittedEntries() const;
  // The caller persisted entries up to (index, term): they leave the unstable part unless the
  // entry at `index` was replaced since (its term differs).
  void StableTo(uint64_t index, uint64_t term);
  // The caller installed the unstable snapshot at `index`.
  void StableSnapTo(uint64_t index);
  // Last index the caller has persisted (the leader counts itself in the quorum only up to
  // here).
  uint64_t StableLastIndex() const;

  // Follower: replace the log by `snap` (pending in the unstable part); commit = its index.
  // The configuration becomes the snapshot's conf_state (the bootstrap one if it has none).
  void Restore(const raftpb::Snapshot& snap);

  // ---- Membership (membership.h): the configuration follows the log ----
  // The configuration in force: the newest ENTRY_CONF entry's, committed or not.
  const raftpb::ConfState& conf() const;
  // The configuration in force once the log ends at `index` (index >= FirstIndex() - 1 of
  // the storage the log started from; earlier indexes give the oldest configuration known).
  raftpb::ConfState ConfAt(uint64_t index) const;
  // Index of the newest ENTRY_CONF entry in the log, 0 when there is none after the snapshot.
  uint64_t LastConfIndex() const;
  // How many ENTRY_CONF entries lie above the commit index (a leader allows at most one).
  size_t UncommittedConfCount() const;
  // Changes whenever conf() may have changed (an ENTRY_CONF appended or truncated, a
  // snapshot restored): the core compares it to react (progress trackers, step-down).
  uint64_t conf_version() const { return conf_version_; }

 private:
  // Term from the unstable part, if it knows `index`.
  std::optional<uint64_t> UnstableTerm(uint64_t index) const;
  void TruncateAndAppend(const std::vector<raftpb::Entry>& entries);
  // Records the ENTRY_CONF entries among `entries` (appended after any truncation).
  void TrackConf(const std::vector<raftpb::Entry>& entries);

  const LogStorage* storage_;
  std::optional<raftpb::Snapshot> unstable_snapshot_;
  std::vector<raftpb::Entry> unstable_;
  uint64_t offset_;      // index of unstable_[0] (or where the next one would go)
  uint64_t committed_;   // highest index known committed
  uint64_t applied_;     // highest index handed to the caller and acknowledged by Advance

  raftpb::ConfState bootstrap_conf_;  // Config::peers, for snapshots without a conf_state
  raftpb::ConfState base_conf_;       // in force at the snapshot the log starts after
  // The ENTRY_CONF entries in the log: index -> the configuration it establishes. Entries
  // truncated away are erased (their configuration reverts); compacted ones stay, which is
  // harmless (ConfAt of a later index finds the newest) and bounded by the number of changes.
  std::map<uint64_t, raftpb::ConfState> conf_entries_;
  uint64_t conf_version_ = 0;
};

}  // namespace raftkv::raft
