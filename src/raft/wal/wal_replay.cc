#include "raft/wal/wal_replay.h"

#include "absl/strings/str_cat.h"

namespace raftkv::raft::wal {
namespace {

absl::Status Bad(const std::string& file, const Record& r, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("wal: corrupt segment ", file, " at offset ", r.offset, ": ", why));
}

}  // namespace

absl::Status LogReplayer::Apply(const Record& r, const std::string& file) {
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
      if (!entries_.empty() && index >= entries_.front().index() && index <= LastIndex() + 1) {
        // A conflicting suffix was replaced: drop index and everything after it.
        entries_.resize(index - entries_.front().index());
      } else {
        // Not adjacent to what we hold (or nothing held): the entry starts the log, possibly
        // above a gap whose entries were in deleted segments; a later kCompact must cover the
        // gap (checked by Finish).
        entries_.clear();
      }
      entries_.push_back(std::move(e));
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
      if (!entries_.empty() && m.index() >= entries_.front().index() &&
          m.index() <= LastIndex()) {
        const raftpb::Entry& at = entries_[m.index() - entries_.front().index()];
        if (at.term() != m.term()) {
          return Bad(file, r, absl::StrCat("compaction marker term ", m.term(), " at index ",
                                           m.index(), " but the entry has term ", at.term()));
        }
        entries_.erase(entries_.begin(), entries_.begin() + (m.index() - entries_.front().index() + 1));
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
  if (!entries_.empty() && entries_.front().index() != snapshot_.index() + 1) {
    return absl::DataLossError(absl::StrCat("wal: entries [", snapshot_.index() + 1, ", ",
                                            entries_.front().index(),
                                            ") are missing (a deleted or lost segment)"));
  }
  return absl::OkStatus();
}

}  // namespace raftkv::raft::wal
