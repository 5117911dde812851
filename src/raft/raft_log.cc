#include "raft/raft_log.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/membership.h"

namespace raftkv::raft {

RaftLog::RaftLog(const LogStorage* storage, uint64_t applied, raftpb::ConfState bootstrap)
    : storage_(storage),
      offset_(storage->LastIndex() + 1),
      committed_(storage->hard_state().commit()),
      applied_(std::max(applied, storage->FirstIndex() - 1)),
      bootstrap_conf_(std::move(bootstrap)) {
  // A snapshot is committed by definition; an old hard state may lag behind it.
  committed_ = std::max(committed_, storage->FirstIndex() - 1);
  RAFTKV_CHECK(applied_ <= committed_);
  RAFTKV_CHECK(committed_ <= storage->LastIndex());
  // The configuration is rebuilt from what is durable: the snapshot's, then every ENTRY_CONF
  // entry of the log (read in bounded batches).
  const raftpb::SnapshotMetadata meta = storage->snapshot_metadata();  // (a copy)
  base_conf_ = meta.conf_state().voters_size() > 0 ? meta.conf_state() : bootstrap_conf_;
  constexpr uint64_t kScanBytes = 4 << 20;
  for (uint64_t lo = storage->FirstIndex(); lo <= storage->LastIndex();) {
    absl::StatusOr<std::vector<raftpb::Entry>> batch =
        storage->Entries(lo, storage->LastIndex() + 1, kScanBytes);
    RAFTKV_CHECK_MSG(batch.ok() && !batch->empty(), "cannot read the log back at start-up");
    TrackConf(*batch);
    lo += batch->size();
  }
}

uint64_t RaftLog::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->metadata().index() + 1;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (!unstable_.empty()) return offset_ + unstable_.size() - 1;
  if (unstable_snapshot_) return unstable_snapshot_->metadata().index();
  // offset_ - 1 is the last stable index: the storage may still hold a stale suffix after a
  // truncation only while unstable_ is non-empty, so here it equals storage_->LastIndex().
  return storage_->LastIndex();
}

std::optional<uint64_t> RaftLog::UnstableTerm(uint64_t index) const {
  if (index < offset_) {
    if (unstable_snapshot_ && unstable_snapshot_->metadata().index() == index) {
      return unstable_snapshot_->metadata().term();
    }
    return std::nullopt;
  }
  if (index - offset_ >= unstable_.size()) return std::nullopt;
  return unstable_[index - offset_].term();
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t index) const {
  const uint64_t dummy = FirstIndex() - 1;
  if (index < dummy || index > LastIndex()) {
    return absl::OutOfRangeError(absl::StrCat("no term for index ", index, " outside [", dummy,
                                              ",", LastIndex(), "]"));
  }
  if (std::optional<uint64_t> t = UnstableTerm(index)) return *t;
  return storage_->Term(index);
}

uint64_t RaftLog::TermOrZero(uint64_t index) const {
  absl::StatusOr<uint64_t> t = Term(index);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t index, uint64_t term) const {
  absl::StatusOr<uint64_t> t = Term(index);
  return t.ok() && *t == term;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t last_term) const {
  const uint64_t our_term = LastTerm();
  return last_term > our_term || (last_term == our_term && last_index >= LastIndex());
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Entries(uint64_t lo, uint64_t hi,
                                                           uint64_t max_bytes) const {
  if (absl::Status s = CheckEntriesBounds(lo, hi, FirstIndex(), LastIndex()); !s.ok()) return s;
  std::vector<raftpb::Entry> out;
  if (lo == hi) return out;
  uint64_t bytes = 0;
  if (lo < offset_) {
    absl::StatusOr<std::vector<raftpb::Entry>> stable =
        storage_->Entries(lo, std::min(hi, offset_), max_bytes);
    if (!stable.ok()) return stable.status();
    out = std::move(*stable);
    for (const raftpb::Entry& e : out) bytes += e.ByteSizeLong();
    // Storage stopped early on the byte limit: done.
    if (out.size() < std::min(hi, offset_) - lo) return out;
  }
  if (hi > offset_) {
    AppendEntriesLimited(unstable_, std::max(lo, offset_) - offset_, hi - offset_, max_bytes,
                         &bytes, &out);
  }
  return out;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term,
                                             uint64_t committed,
                                             const std::vector<raftpb::Entry>& entries) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  const uint64_t last_new = index + entries.size();
  // The first entry that is new or conflicts; everything before it we already hold.
  size_t first_new = 0;
  while (first_new < entries.size() &&
         MatchTerm(entries[first_new].index(), entries[first_new].term())) {
    ++first_new;
  }
  if (first_new < entries.size()) {
    // Log Matching: a committed entry is never replaced.
    RAFTKV_CHECK(entries[first_new].index() > committed_);
    Append(std::vector<raftpb::Entry>(entries.begin() + first_new, entries.end()));
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(const std::vector<raftpb::Entry>& entries) {
  if (entries.empty()) return LastIndex();
  RAFTKV_CHECK(entries.front().index() > committed_);
  RAFTKV_CHECK(entries.front().index() <= LastIndex() + 1);
  TruncateAndAppend(entries);
  return LastIndex();
}

void RaftLog::TruncateAndAppend(const std::vector<raftpb::Entry>& entries) {
  const uint64_t after = entries.front().index();
  // A configuration takes effect when appended and reverts when its entry is truncated.
  if (auto it = conf_entries_.lower_bound(after); it != conf_entries_.end()) {
    conf_entries_.erase(it, conf_entries_.end());
    ++conf_version_;
  }
  TrackConf(entries);
  if (after == offset_ + unstable_.size()) {
    unstable_.insert(unstable_.end(), entries.begin(), entries.end());
  } else if (after <= offset_) {
    // Replaces the whole unstable part (and a stable suffix, which the caller's next
    // storage Append discards).
    offset_ = after;
    unstable_ = entries;
  } else {
    unstable_.resize(after - offset_);
    unstable_.insert(unstable_.end(), entries.begin(), entries.end());
  }
}

uint64_t RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  while (index > 0) {
    absl::StatusOr<uint64_t> t = Term(index);
    if (!t.ok() || *t <= term) break;
    --index;
  }
  return index;
}

void RaftLog::CommitTo(uint64_t index) {
  if (index <= committed_) return;  // commit never decreases
  RAFTKV_CHECK_MSG(index <= LastIndex(), "commit past the last index");
  committed_ = index;
}

void RaftLog::AppliedTo(uint64_t index) {
  if (index <= applied_) return;
  RAFTKV_CHECK(index <= committed_);
  applied_ = index;
}

std::vector<raftpb::Entry> RaftLog::NextCommittedEntries(uint64_t max_bytes) const {
  const uint64_t lo = std::max(applied_ + 1, FirstIndex());
  if (lo > committed_) return {};
  absl::StatusOr<std::vector<raftpb::Entry>> e = Entries(lo, committed_ + 1, max_bytes);
  RAFTKV_CHECK_MSG(e.ok(), std::string(e.status().message()).c_str());
  return std::move(*e);
}

bool RaftLog::HasNextCommittedEntries() const {
  return std::max(applied_ + 1, FirstIndex()) <= committed_;
}

void RaftLog::StableTo(uint64_t index, uint64_t term) {
  std::optional<uint64_t> t = UnstableTerm(index);
  // Only if the entry is still the one that was persisted (not replaced meanwhile).
  if (!t || *t != term || index < offset_) return;
  unstable_.erase(unstable_.begin(), unstable_.begin() + (index + 1 - offset_));
  offset_ = index + 1;
}

void RaftLog::StableSnapTo(uint64_t index) {
  if (unstable_snapshot_ && unstable_snapshot_->metadata().index() == index) {
    unstable_snapshot_.reset();
  }
}

uint64_t RaftLog::StableLastIndex() const {
  if (unstable_snapshot_) return 0;  // nothing we hold is known durable in its new form
  return offset_ - 1;
}

void RaftLog::Restore(const raftpb::Snapshot& snap) {
  const uint64_t index = snap.metadata().index();
  RAFTKV_CHECK(index > committed_);
  committed_ = index;
  offset_ = index + 1;
  unstable_.clear();
  unstable_snapshot_ = snap;
  const raftpb::ConfState& snap_conf = snap.metadata().conf_state();
  base_conf_ = snap_conf.voters_size() > 0 ? snap_conf : bootstrap_conf_;
  conf_entries_.clear();
  ++conf_version_;
}

void RaftLog::TrackConf(const std::vector<raftpb::Entry>& entries) {
  for (const raftpb::Entry& e : entries) {
    if (e.type() != raftpb::ENTRY_CONF) continue;
    absl::StatusOr<raftpb::ConfState> cs = ConfStateOfEntry(e);
    RAFTKV_CHECK_MSG(cs.ok(), std::string(cs.status().message()).c_str());
    conf_entries_[e.index()] = std::move(*cs);
    ++conf_version_;
  }
}

const raftpb::ConfState& RaftLog::conf() const {
  return conf_entries_.empty() ? base_conf_ : conf_entries_.rbegin()->second;
}

raftpb::ConfState RaftLog::ConfAt(uint64_t index) const {
  auto it = conf_entries_.upper_bound(index);
  if (it == conf_entries_.begin()) return base_conf_;
  return std::prev(it)->second;
}

uint64_t RaftLog::LastConfIndex() const {
  return conf_entries_.empty() ? 0 : conf_entries_.rbegin()->first;
}

size_t RaftLog::UncommittedConfCount() const {
  return std::distance(conf_entries_.upper_bound(committed_), conf_entries_.end());
}

}  // namespace raftkv::raft
