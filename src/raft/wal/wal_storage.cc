#include "raft/wal/wal_storage.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/membership.h"
#include "raft/wal/wal_replay.h"

namespace raftkv::raft::wal {
namespace {

constexpr absl::string_view kTmpSuffix = ".tmp";

std::string Serialize(const google::protobuf::MessageLite& m) {
  std::string out;
  RAFTKV_CHECK(m.SerializeToString(&out));
  return out;
}

bool SameHardState(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.SerializeAsString() == b.SerializeAsString();  // every field, present and future
}

}  // namespace

absl::Status WalOptions::Validate() const {
  if (max_segment_bytes < 4096) {
    return absl::InvalidArgumentError("wal: max_segment_bytes must be >= 4096");
  }
  if (max_record_bytes < 1024 || max_record_bytes > (1ull << 31)) {
    return absl::InvalidArgumentError("wal: max_record_bytes must be in [1 KiB, 2 GiB]");
  }
  if (max_buffer_bytes == 0) {
    return absl::InvalidArgumentError("wal: max_buffer_bytes must be > 0");
  }
  return absl::OkStatus();
}

WalStorage::WalStorage(std::string dir, const WalOptions& options, WalEnv* env)
    : dir_(std::move(dir)), options_(options), env_(env) {}

WalStorage::~WalStorage() = default;

absl::StatusOr<std::unique_ptr<WalStorage>> WalStorage::Open(const std::string& dir,
                                                             const WalOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  WalEnv* env = options.env != nullptr ? options.env : WalEnv::Default();
  std::unique_ptr<WalStorage> wal(new WalStorage(dir, options, env));
  if (absl::Status s = wal->Recover(); !s.ok()) return s;
  return wal;
}

std::string WalStorage::PathOf(uint64_t seq) const {
  return absl::StrCat(dir_, "/", SegmentFileName(seq));
}

absl::Status WalStorage::Recover() {
  std::vector<uint64_t> seqs;
  std::vector<std::string> tmp_files;
  if (absl::Status s = LockAndList(&seqs, &tmp_files); !s.ok()) return s;
  // Replay everything first; nothing on disk changes unless the whole log is sound (a WAL
  // refused with kDataLoss is left exactly as found).
  NewestSegment newest;
  if (absl::Status s = ReplaySegments(seqs, &newest); !s.ok()) return s;
  // Repairs.
  if (absl::Status s = RemoveTmpFiles(tmp_files); !s.ok()) return s;
  if (seqs.empty()) {
    // A new log: empty hard state, starting after index 0.
    return RollSegment(RecordType::kCompact);
  }
  return ReopenNewestSegment(seqs.back(), newest);
}

absl::Status WalStorage::LockAndList(std::vector<uint64_t>* seqs,
                                     std::vector<std::string>* tmp_files) {
  if (absl::Status s = env_->CreateDirIfMissing(dir_); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<FileLock>> lock = env_->LockFile(absl::StrCat(dir_, "/LOCK"));
  if (!lock.ok()) return lock.status();
  lock_ = std::move(*lock);
  absl::StatusOr<std::vector<std::string>> names = env_->ListDir(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (absl::EndsWith(name, kTmpSuffix)) {
      tmp_files->push_back(name);
    } else if (std::optional<uint64_t> seq = ParseSegmentFileName(name)) {
      seqs->push_back(*seq);  // names are sorted and fixed-width, so seqs ascend
    }
  }
  return absl::OkStatus();
}

absl::Status WalStorage::ReplaySegments(const std::vector<uint64_t>& seqs,
                                        NewestSegment* newest) {
  LogReplayer replay;
  for (size_t i = 0; i < seqs.size(); ++i) {
    // Segments are created one seq after the other and deleted oldest first, so a hole in
    // the sequence means a segment was lost.
    if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
      return absl::DataLossError(absl::StrCat("wal: segment ", SegmentFileName(seqs[i - 1] + 1),
                                              " is missing (found ", SegmentFileName(seqs[i]),
                                              " after ", SegmentFileName(seqs[i - 1]), ")"));
    }
    const bool is_newest = i + 1 == seqs.size();
    if (absl::Status s = ReplaySegment(seqs[i], is_newest, &replay, newest); !s.ok()) return s;
  }
  if (absl::Status s = replay.Finish(); !s.ok()) return s;
  hard_state_ = replay.hard_state();
  snapshot_ = replay.snapshot();
  index_ = std::move(replay.entries());
  return absl::OkStatus();
}

absl::Status WalStorage::ReplaySegment(uint64_t seq, bool is_newest, LogReplayer* replay,
                                       NewestSegment* newest) {
  const std::string name = SegmentFileName(seq);
  absl::StatusOr<std::string> data = env_->ReadFile(PathOf(seq));
  if (!data.ok()) return data.status();
  // The parsed records' payloads point into `data`: use them before it goes.
  absl::StatusOr<ParsedSegment> seg = ParseSegment(*data, name, is_newest);
  if (!seg.ok()) return seg.status();
  if (seg->seq != seq) {
    return absl::DataLossError(absl::StrCat("wal: segment ", name, " has seq ", seg->seq,
                                            " in its header"));
  }
  uint64_t max_entry_index = 0;
  for (const Record& r : seg->records) {
    if (absl::Status s = replay->Apply(r, seq, name); !s.ok()) return s;
    if (r.type == RecordType::kEntry) {  // Apply just made it the last entry
      max_entry_index = std::max(max_entry_index, replay->LastIndex());
    }
  }
  segments_.push_back(Segment{seq, max_entry_index});
  ++recovery_.segments;
  recovery_.records += seg->records.size();
  if (is_newest) {
    *newest = NewestSegment{seg->valid_bytes, data->size(), seg->torn, seg->sealed};
  }
  return absl::OkStatus();
}

absl::Status WalStorage::RemoveTmpFiles(const std::vector<std::string>& names) {
  // A *.tmp file is a segment whose creation did not finish: it never held acknowledged data.
  // The directory fsync that ends recovery makes the removals durable.
  for (const std::string& name : names) {
    if (absl::Status s = env_->RemoveFile(absl::StrCat(dir_, "/", name)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status WalStorage::ReopenNewestSegment(uint64_t seq, const NewestSegment& newest) {
  if (newest.torn) {
    // The tail of the newest segment was being written when we stopped: never synced, never
    // acknowledged. Cut it off durably so the next append starts at a record boundary.
    if (absl::Status s = env_->TruncateFile(PathOf(seq), newest.valid_bytes); !s.ok()) return s;
    recovery_.truncated_torn_tail = true;
    recovery_.truncated_file = SegmentFileName(seq);
    recovery_.truncated_at_offset = newest.valid_bytes;
    recovery_.dropped_bytes = newest.file_bytes - newest.valid_bytes;
  }
  // Replay read the newest segment as the kernel holds it, which includes whatever the last
  // process wrote but did not fsync before it died (the page cache outlives the process).
  // Everything Open reports is stable: a follower acks it when the leader re-sends it, a
  // leader counts itself for it. So it must be durable before Open returns: fsync the segment,
  // then the directory (its name, and the removals above). Older segments were fsynced by
  // their seal before their successor was created.
  absl::StatusOr<std::unique_ptr<WalFile>> file = env_->OpenForAppend(PathOf(seq), false);
  if (!file.ok()) return file.status();
  ++fsync_count_;
  if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
  if (newest.sealed) {
    // Stopped between sealing the newest segment and creating the next: create it now
    // (RollSegment fsyncs the directory).
    return RollSegment(RecordType::kCompact);
  }
  if (absl::Status s = env_->SyncDir(dir_); !s.ok()) return s;
  file_ = std::move(*file);
  segment_bytes_ = newest.valid_bytes;
  DCheckInvariants();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> WalStorage::Term(uint64_t index) const {
  if (index == snapshot_.index()) return snapshot_.term();
  if (index < snapshot_.index()) {
    return absl::OutOfRangeError(absl::StrCat("term of compacted index ", index));
  }
  if (index > LastIndex()) {
    return absl::OutOfRangeError(
        absl::StrCat("term of index ", index, " past last index ", LastIndex()));
  }
  return index_[index - FirstIndex()].term;
}

absl::StatusOr<std::vector<raftpb::Entry>> WalStorage::Entries(uint64_t lo, uint64_t hi,
                                                              uint64_t max_bytes) const {
  if (absl::Status s = CheckEntriesBounds(lo, hi, FirstIndex(), LastIndex()); !s.ok()) return s;
  std::vector<raftpb::Entry> out;
  uint64_t bytes = 0;
  // Entries older than the cache: read back from their segments. The same size rule as
  // AppendEntriesLimited, decided from the index before reading.
  const uint64_t cache_first = CacheFirstIndex();
  SegmentReader reader;
  for (uint64_t i = lo; i < std::min(hi, cache_first); ++i) {
    const EntryLocation& loc = index_[i - FirstIndex()];
    bytes += loc.payload_bytes;
    if (!out.empty() && bytes > max_bytes) return out;
    absl::StatusOr<raftpb::Entry> e = ReadEntry(i, loc, &reader);
    if (!e.ok()) return e.status();
    out.push_back(*std::move(e));
  }
  if (hi > cache_first) {
    AppendEntriesLimited(cache_, std::max(lo, cache_first) - cache_first, hi - cache_first,
                         max_bytes, &bytes, &out);
  }
  return out;
}

absl::StatusOr<raftpb::Entry> WalStorage::ReadEntry(uint64_t index, const EntryLocation& loc,
                                                    SegmentReader* reader) const {
  const std::string name = SegmentFileName(loc.seq);
  const uint64_t record_bytes = RecordBytes(loc.payload_bytes);
  std::string data;
  const uint64_t written = segment_bytes_ - buffer_.size();  // of the newest segment
  if (loc.seq == segments_.back().seq && loc.offset >= written) {
    // Not written yet: the record is in the buffer (DecodeRecord rejects a short one).
    const uint64_t at = loc.offset - written;
    if (at <= buffer_.size()) data = buffer_.substr(at, record_bytes);
  } else {
    if (reader->file == nullptr || reader->seq != loc.seq) {
      absl::StatusOr<std::unique_ptr<WalReadableFile>> f = env_->OpenForRead(PathOf(loc.seq));
      if (!f.ok()) return Fail(f.status());
      reader->file = *std::move(f);
      reader->seq = loc.seq;
    }
    if (absl::Status s = reader->file->Read(loc.offset, record_bytes, &data); !s.ok()) {
      return Fail(s, s.code() == absl::StatusCode::kDataLoss ? s.code()
                                                              : absl::StatusCode::kInternal);
    }
  }
  absl::StatusOr<Record> rec = DecodeRecord(data, name, loc.offset);
  if (!rec.ok()) return Fail(rec.status(), absl::StatusCode::kDataLoss);
  raftpb::Entry e;
  if (rec->type != RecordType::kEntry ||
      !e.ParseFromArray(rec->payload.data(), static_cast<int>(rec->payload.size())) ||
      e.index() != index || e.term() != loc.term) {
    return Fail(absl::DataLossError(absl::StrCat(
                    "corrupt segment ", name, " at offset ", loc.offset, ": expected entry ",
                    index, " of term ", loc.term, ", found a record of type ",
                    static_cast<int>(rec->type), " (entry ", e.index(), ", term ", e.term(), ")")),
                absl::StatusCode::kDataLoss);
  }
  return e;
}

void WalStorage::CacheAppended(const std::vector<raftpb::Entry>& entries,
                               const std::vector<EntryLocation>& locs) {
  // Only the newest entries that fit are worth copying. If one of the batch does not fit,
  // nothing older does either: the cache is a suffix of the log.
  size_t from = entries.size();
  uint64_t bytes = 0;
  while (from > 0 && bytes + locs[from - 1].payload_bytes <= options_.max_cached_bytes) {
    bytes += locs[--from].payload_bytes;
  }
  if (from > 0) {
    cache_.clear();
    cached_bytes_ = 0;
  }
  cache_.insert(cache_.end(), entries.begin() + static_cast<ptrdiff_t>(from), entries.end());
  cached_bytes_ += bytes;
  while (cached_bytes_ > options_.max_cached_bytes) {
    cached_bytes_ -= cache_.front().ByteSizeLong();
    cache_.pop_front();
  }
}

void WalStorage::UncacheFrom(uint64_t index) {
  const uint64_t first = CacheFirstIndex();
  while (!cache_.empty() && first + cache_.size() > index) {
    cached_bytes_ -= cache_.back().ByteSizeLong();
    cache_.pop_back();
  }
}

void WalStorage::UncacheThrough(uint64_t index) {
  for (uint64_t first = CacheFirstIndex(); !cache_.empty() && first <= index; ++first) {
    cached_bytes_ -= cache_.front().ByteSizeLong();
    cache_.pop_front();
  }
}

void WalStorage::DCheckInvariants() const {
#ifndef NDEBUG
  // Append and Recover only build consecutive runs, so the ends decide it (O(1) per call).
  RAFTKV_CHECK(cache_.size() <= index_.size());
  RAFTKV_CHECK(cached_bytes_ <= options_.max_cached_bytes);
  if (!cache_.empty()) {
    RAFTKV_CHECK(cache_.front().index() == CacheFirstIndex());
    RAFTKV_CHECK(cache_.back().index() == LastIndex());
    RAFTKV_CHECK(cache_.back().term() == index_.back().term);
  } else {
    RAFTKV_CHECK(cached_bytes_ == 0);
  }
  RAFTKV_CHECK(!segments_.empty() && file_ != nullptr);
#endif
}

absl::Status WalStorage::Fail(const absl::Status& s, absl::StatusCode code) const {
  if (error_.ok()) {
    error_ = absl::Status(
        code, absl::StrCat(absl::StartsWith(s.message(), "wal: ") ? "" : "wal: ", s.message(),
                           "; the WAL is now read-only and the process must exit (recovery "
                           "happens at start)"));
  }
  return error_;
}

absl::Status WalStorage::FlushBuffer() {
  if (buffer_.empty()) return absl::OkStatus();
  absl::Status s = file_->Append(buffer_);
  buffer_.clear();
  if (!s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status WalStorage::AddRecord(RecordType type, const std::string& payload,
                                   EntryLocation* where) {
  if (segment_bytes_ >= options_.max_segment_bytes) {
    if (absl::Status s = RollSegment(RecordType::kCompact); !s.ok()) return s;
  }
  if (where != nullptr) {
    where->seq = segments_.back().seq;
    where->offset = segment_bytes_;
    where->payload_bytes = static_cast<uint32_t>(payload.size());
  }
  AppendRecord(&buffer_, type, payload);
  segment_bytes_ += RecordBytes(payload.size());
  unsynced_ = true;
  if (buffer_.size() >= options_.max_buffer_bytes) return FlushBuffer();
  return absl::OkStatus();
}

absl::Status WalStorage::RollSegment(RecordType marker) {
  const uint64_t seq = segments_.empty() ? 1 : segments_.back().seq + 1;
  if (file_ != nullptr) {
    // Seal the current segment and make all of it durable before its successor exists, so
    // that every non-newest segment is complete (recovery relies on this).
    AppendRecord(&buffer_, RecordType::kSeal, "");
    if (absl::Status s = FlushBuffer(); !s.ok()) return s;
    ++fsync_count_;
    if (absl::Status s = file_->Sync(); !s.ok()) return Fail(s);
    file_.reset();
  }
  std::string contents = EncodeSegmentHeader(seq);
  AppendRecord(&contents, RecordType::kHardState, Serialize(hard_state_));
  AppendRecord(&contents, marker, Serialize(snapshot_));

  // Create under a temporary name, make it durable, then give it its real name: a segment
  // with a final name always has its header and start records.
  const std::string path = PathOf(seq);
  const std::string tmp = absl::StrCat(path, kTmpSuffix);
  absl::StatusOr<std::unique_ptr<WalFile>> file = env_->OpenForAppend(tmp, /*truncate=*/true);
  if (!file.ok()) return Fail(file.status());
  if (absl::Status s = (*file)->Append(contents); !s.ok()) return Fail(s);
  ++fsync_count_;
  if (absl::Status s = (*file)->Sync(); !s.ok()) return Fail(s);
  if (absl::Status s = env_->RenameFile(tmp, path); !s.ok()) return Fail(s);
  if (absl::Status s = env_->SyncDir(dir_); !s.ok()) return Fail(s);

  file_ = std::move(*file);
  segments_.push_back(Segment{seq, 0});
  segment_bytes_ = contents.size();
  unsynced_ = false;
  return absl::OkStatus();
}

absl::Status WalStorage::RemoveOldestSegments(size_t count) {
  RAFTKV_CHECK(count < segments_.size());  // never the one being written
  // Oldest first, each removal made durable before the next: a crash can then only leave a
  // shorter prefix deleted, never a hole in the sequence (which recovery reports as a lost
  // segment). Costs one directory fsync per deleted segment; segments are large and rare.
  for (size_t i = 0; i < count; ++i) {
    if (absl::Status s = env_->RemoveFile(PathOf(segments_.front().seq)); !s.ok()) {
      return Fail(s);
    }
    segments_.pop_front();
    if (absl::Status s = env_->SyncDir(dir_); !s.ok()) return Fail(s);
  }
  return absl::OkStatus();
}

absl::Status WalStorage::Append(const std::vector<raftpb::Entry>& entries) {
  if (!error_.ok()) return error_;
  if (absl::Status s = CheckAppend(entries, FirstIndex(), LastIndex()); !s.ok()) return s;
  if (entries.empty()) return absl::OkStatus();
  const uint64_t first = entries.front().index();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (RecordBytes(entries[i].ByteSizeLong()) > options_.max_record_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("append: entry ", entries[i].index(), " is larger than max_record_bytes ",
                       options_.max_record_bytes));
    }
  }
  // Records first: replay applies the same truncation (an entry at index <= last replaces
  // the suffix), so the file and memory agree.
  std::vector<EntryLocation> locs(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& e = entries[i];
    if (absl::Status s = AddRecord(RecordType::kEntry, Serialize(e), &locs[i]); !s.ok()) {
      return s;
    }
    locs[i].term = e.term();
    locs[i].conf = e.type() == raftpb::ENTRY_CONF;
    Segment& seg = segments_.back();
    seg.max_entry_index = std::max(seg.max_entry_index, e.index());
  }
  UncacheFrom(first);
  index_.resize(first - FirstIndex());
  index_.insert(index_.end(), locs.begin(), locs.end());
  CacheAppended(entries, locs);
  DCheckInvariants();
  return absl::OkStatus();
}

absl::Status WalStorage::SetHardState(const raftpb::HardState& hs) {
  if (!error_.ok()) return error_;
  if (SameHardState(hs, hard_state_)) return absl::OkStatus();  // nothing new to persist
  if (absl::Status s = AddRecord(RecordType::kHardState, Serialize(hs)); !s.ok()) return s;
  hard_state_ = hs;
  return absl::OkStatus();
}

absl::Status WalStorage::Sync() {
  if (!error_.ok()) return error_;
  if (absl::Status s = FlushBuffer(); !s.ok()) return s;
  if (!unsynced_) return absl::OkStatus();
  ++fsync_count_;
  if (absl::Status s = file_->Sync(); !s.ok()) return Fail(s);
  unsynced_ = false;
  return absl::OkStatus();
}

absl::Status WalStorage::Compact(uint64_t index) {
  if (!error_.ok()) return error_;
  if (index <= snapshot_.index()) return absl::OkStatus();  // already compacted
  if (index > LastIndex()) {
    return absl::InvalidArgumentError(
        absl::StrCat("compact to ", index, " past last index ", LastIndex()));
  }
  // The marker keeps the configuration in force at `index`: the newest ENTRY_CONF entry
  // being dropped, else the last marker's (storage.h).
  raftpb::SnapshotMetadata marker = snapshot_;
  for (uint64_t i = index; i >= FirstIndex(); --i) {
    const EntryLocation& loc = index_[i - FirstIndex()];
    if (!loc.conf) continue;
    SegmentReader reader;
    absl::StatusOr<raftpb::Entry> e = ReadEntry(i, loc, &reader);
    if (!e.ok()) return e.status();
    absl::StatusOr<raftpb::ConfState> cs = ConfStateOfEntry(*e);
    if (!cs.ok()) return Fail(cs.status(), absl::StatusCode::kDataLoss);
    *marker.mutable_conf_state() = std::move(*cs);
    break;
  }
  marker.set_index(index);
  marker.set_term(index_[index - FirstIndex()].term);
  if (absl::Status s = AddRecord(RecordType::kCompact, Serialize(marker)); !s.ok()) return s;
  UncacheThrough(index);
  index_.erase(index_.begin(), index_.begin() + static_cast<ptrdiff_t>(index - FirstIndex() + 1));
  snapshot_ = std::move(marker);
  DCheckInvariants();

  // Whole segments holding only compacted entries can go, once the marker is durable (else a
  // crash could leave a log whose start is unknown).
  size_t removable = 0;
  while (removable + 1 < segments_.size() && segments_[removable].max_entry_index <= index) {
    ++removable;
  }
  if (removable == 0) return absl::OkStatus();
  if (absl::Status s = Sync(); !s.ok()) return s;
  return RemoveOldestSegments(removable);
}

absl::Status WalStorage::ApplySnapshot(const raftpb::SnapshotMetadata& meta) {
  return ApplySnapshot(meta, hard_state_);
}

absl::Status WalStorage::ApplySnapshot(const raftpb::SnapshotMetadata& meta,
                                       const raftpb::HardState& hs) {
  if (!error_.ok()) return error_;
  if (hs.commit() > meta.index()) {
    return absl::InvalidArgumentError(absl::StrCat("wal: hard state commit ", hs.commit(),
                                                   " past the snapshot at ", meta.index()));
  }
  hard_state_ = hs;
  index_.clear();
  cache_.clear();
  cached_bytes_ = 0;
  snapshot_ = meta;
  // The new segment starts with the snapshot marker and the current hard state; once it is
  // durable every older segment is obsolete.
  if (absl::Status s = RollSegment(RecordType::kSnapshot); !s.ok()) return s;
  return RemoveOldestSegments(segments_.size() - 1);
}

}  // namespace raftkv::raft::wal
