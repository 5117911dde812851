#include "raft/memory_storage.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/membership.h"

namespace raftkv::raft {

MemoryStorage::MemoryStorage(bool track_durable) : track_durable_(track_durable) {
  if (track_durable_) durable_ = std::make_unique<MemoryStorage>(false);
}

MemoryStorage::~MemoryStorage() = default;

uint64_t MemoryStorage::FirstIndex() const { return snapshot_.index() + 1; }

uint64_t MemoryStorage::LastIndex() const { return snapshot_.index() + entries_.size(); }

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t index) const {
  if (index == snapshot_.index()) return snapshot_.term();
  if (index < snapshot_.index()) {
    return absl::OutOfRangeError(absl::StrCat("term of compacted index ", index));
  }
  if (index > LastIndex()) {
    return absl::OutOfRangeError(
        absl::StrCat("term of index ", index, " past last index ", LastIndex()));
  }
  return entries_[Offset(index)].term();
}

absl::StatusOr<std::vector<raftpb::Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                                 uint64_t max_bytes) const {
  if (absl::Status s = CheckEntriesBounds(lo, hi, FirstIndex(), LastIndex()); !s.ok()) return s;
  std::vector<raftpb::Entry> out;
  uint64_t bytes = 0;
  AppendEntriesLimited(entries_, Offset(lo), Offset(hi), max_bytes, &bytes, &out);
  return out;
}

absl::Status MemoryStorage::Append(const std::vector<raftpb::Entry>& entries) {
  if (absl::Status s = CheckAppend(entries, FirstIndex(), LastIndex()); !s.ok()) return s;
  if (entries.empty()) return absl::OkStatus();
  const uint64_t first = entries.front().index();
  // A conflicting (or merely overlapping) suffix is replaced.
  entries_.resize(Offset(first));
  entries_.insert(entries_.end(), entries.begin(), entries.end());
  if (track_durable_) pending_.push_back({PendingOp::kAppend, entries, {}, 0});
  return absl::OkStatus();
}

absl::Status MemoryStorage::SetHardState(const raftpb::HardState& hs) {
  hard_state_ = hs;
  if (track_durable_) pending_.push_back({PendingOp::kHardState, {}, hs, 0});
  return absl::OkStatus();
}

absl::Status MemoryStorage::Sync() {
  ++sync_count_;
  if (!track_durable_) return absl::OkStatus();
  for (const PendingOp& op : pending_) {
    absl::Status s;
    switch (op.kind) {
      case PendingOp::kAppend:
        s = durable_->Append(op.entries);
        break;
      case PendingOp::kHardState:
        s = durable_->SetHardState(op.hard_state);
        break;
      case PendingOp::kCompact:
        s = durable_->Compact(op.index);
        break;
    }
    // The ops succeeded on the live state, which the durable state is a prefix of.
    RAFTKV_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::Status MemoryStorage::Compact(uint64_t index) {
  if (index <= snapshot_.index()) return absl::OkStatus();  // already compacted
  if (index > LastIndex()) {
    return absl::InvalidArgumentError(
        absl::StrCat("compact to ", index, " past last index ", LastIndex()));
  }
  const uint64_t term = entries_[Offset(index)].term();
  // Keep the configuration in force at `index` (storage.h): the newest ENTRY_CONF dropped.
  for (size_t i = Offset(index) + 1; i-- > 0;) {
    if (entries_[i].type() != raftpb::ENTRY_CONF) continue;
    absl::StatusOr<raftpb::ConfState> cs = ConfStateOfEntry(entries_[i]);
    if (!cs.ok()) return cs.status();
    *snapshot_.mutable_conf_state() = std::move(*cs);
    break;
  }
  entries_.erase(entries_.begin(), entries_.begin() + Offset(index) + 1);
  snapshot_.set_index(index);
  snapshot_.set_term(term);
  if (track_durable_) pending_.push_back({PendingOp::kCompact, {}, {}, index});
  return absl::OkStatus();
}

absl::Status MemoryStorage::ApplySnapshot(const raftpb::SnapshotMetadata& meta) {
  // Durable on return: like the WAL, make earlier writes durable first, then the snapshot.
  if (track_durable_) {
    absl::Status s = Sync();
    if (!s.ok()) return s;
    s = durable_->ApplySnapshot(meta);
    if (!s.ok()) return s;
  }
  entries_.clear();
  snapshot_ = meta;
  return absl::OkStatus();
}

std::unique_ptr<MemoryStorage> MemoryStorage::CrashCopy(size_t keep_records) const {
  RAFTKV_CHECK(track_durable_);
  auto copy = std::make_unique<MemoryStorage>(true);
  copy->hard_state_ = durable_->hard_state_;
  copy->snapshot_ = durable_->snapshot_;
  copy->entries_ = durable_->entries_;
  // The kept records, replayed in order onto the durable state.
  for (const PendingOp& op : pending_) {
    if (keep_records == 0) break;
    absl::Status s;
    switch (op.kind) {
      case PendingOp::kAppend: {
        const size_t n = std::min(keep_records, op.entries.size());
        s = copy->Append(std::vector<raftpb::Entry>(op.entries.begin(), op.entries.begin() + n));
        keep_records -= n;
        break;
      }
      case PendingOp::kHardState:
        s = copy->SetHardState(op.hard_state);
        --keep_records;
        break;
      case PendingOp::kCompact:
        s = copy->Compact(op.index);
        --keep_records;
        break;
    }
    RAFTKV_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
  }
  // What the crash left is all durable: nothing is pending in the copy.
  copy->pending_.clear();
  copy->durable_->hard_state_ = copy->hard_state_;
  copy->durable_->snapshot_ = copy->snapshot_;
  copy->durable_->entries_ = copy->entries_;
  return copy;
}

size_t MemoryStorage::unsynced_records() const {
  size_t n = 0;
  for (const PendingOp& op : pending_) n += op.kind == PendingOp::kAppend ? op.entries.size() : 1;
  return n;
}

}  // namespace raftkv::raft
