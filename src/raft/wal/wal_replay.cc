#include "raft/wal/wal_replay.h"

#include "absl/strings/str_cat.h"

namespace raftkv::raft::wal {
namespace {

absl::Status Bad(const std::string& file, const Record& r, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("wal: corrupt segment ", file, " at offset ", r.offset, ": ", why));
}

}  // namespace

absl::Status LogReplayer::Apply(const Record& r, uint64_t seq, const std::string& file) {
  switch (r.type) {
    case RecordType::kEntry: {
      raftpb::Entry e;
      if (!e.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) {
        return Bad(file, r, "entry does not parse");
      }
      const uint64_t index = e.index();
      if (index <= snapshot_.index()) {
        return Bad(file, r, absl::StrCat("entry ", index, " at or below the log start ",
                                         snapshot_.index()));
      }
      if (!entries_.empty() && index >= first_index_ && index <= LastIndex() + 1) {
        // A conflicting suffix was replaced: drop index and everything after it.
        entries_.resize(index - first_index_);
      } else {
        // Not adjacent to what we hold (or nothing held): the entry starts the log, possibly
        // above a gap whose entries were in deleted segments; a later kCompact must cover the
        // gap (checked by Finish).
        entries_.clear();
        first_index_ = index;
      }
      entries_.push_back(EntryLocation{e.term(), seq, r.offset,
                                       static_cast<uint32_t>(r.payload.size()),
                                       e.type() == raftpb::ENTRY_CONF});
      return absl::OkStatus();
    }
    case RecordType::kHardState:
      if (!hard_state_.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) {
        return Bad(file, r, "hard state does not parse");
      }
      return absl::OkStatus();
    case RecordType::kCompact: {
      raftpb::SnapshotMetadata m;
      if (!m.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) {
        return Bad(file, r, "compaction marker does not parse");
      }
      if (m.index() <= snapshot_.index()) return absl::OkStatus();  // already that far
      if (!entries_.empty() && m.index() >= first_index_ && m.index() <= LastIndex()) {
        const EntryLocation& at = entries_[m.index() - first_index_];
        if (at.term != m.term()) {
          return Bad(file, r, absl::StrCat("compaction marker term ", m.term(), " at index ",
                                           m.index(), " but the entry has term ", at.term));
        }
        entries_.erase(entries_.begin(), entries_.begin() + (m.index() - first_index_ + 1));
        first_index_ = m.index() + 1;
      } else if (m.index() > LastIndex()) {
        entries_.clear();
      }
      // Otherwise m.index() lies below a gap: the gap stays, and Finish() reports it.
      snapshot_ = std::move(m);
      return absl::OkStatus();
    }
    case RecordType::kSnapshot: {
      raftpb::SnapshotMetadata m;
      if (!m.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) {
        return Bad(file, r, "snapshot marker does not parse");
      }
      entries_.clear();
      snapshot_ = std::move(m);
      return absl::OkStatus();
    }
    case RecordType::kSeal:
      return absl::OkStatus();
  }
  return Bad(file, r, "unknown record type");
}

absl::Status LogReplayer::Finish() const {
  if (!entries_.empty() && first_index_ != snapshot_.index() + 1) {
    return absl::DataLossError(absl::StrCat("wal: entries [", snapshot_.index() + 1, ", ",
                                            first_index_,
                                            ") are missing (a deleted or lost segment)"));
  }
  return absl::OkStatus();
}

}  // namespace raftkv::raft::wal
