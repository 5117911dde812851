// WalStorage: the durable LogStorage (raft/storage.h) -- a segmented write-ahead log under one
// directory (<data-dir>/wal/). File format: wal_format.h and docs/wal-format.md.
//
// Memory: for every entry since the last compaction, its term and where its record lies
// (EntryLocation, 32 bytes); the entries themselves only for the newest ones, up to
// WalOptions::max_cached_bytes of encoded entries (kvd --wal-cache-bytes). Entries() reads
// older entries back from their segment file (one pread each, CRC checked); Term() never
// reads the disk. The cache starts empty at Open().
//
// Durability: Append/SetHardState/Compact only buffer records; Sync() writes the buffer and
// fsyncs the current segment once for everything since the previous Sync() (group commit).
// ApplySnapshot is durable on return. Destroying a WalStorage does NOT write or sync the
// buffer: unsynced writes are lost exactly as in a crash (tests rely on this).
//
// ERROR CONTRACT. Write-side calls (Append, SetHardState, Sync, Compact, ApplySnapshot) return:
//   - kInvalidArgument for a call that breaks the LogStorage contract (bad index); nothing is
//     changed and the storage stays usable;
//   - kInternal for a failed write, fsync, rename, remove or directory fsync. Then the on-disk
//     state is unknown (after a failed fsync the kernel may have dropped the dirty pages, so a
//     retry could falsely succeed): THE CALLER MUST STOP THE PROCESS. The storage becomes
//     read-only: every later write-side call returns the same error (LevelDB's sticky error).
//     Recovery by Open() at the next start is the only way back.
// Open() returns kDataLoss for corruption that is not a torn tail (the message names the file
// and the offset); the process must not start (an operator has to look), and kInternal for an
// I/O error.
// Entries() returns kDataLoss (naming the file and the offset) when an entry read back from
// its segment is not the record the index says (bad CRC, short file, another entry), and
// kInternal for a failed read; either also becomes the sticky error, so the next write-side
// call fails and the caller stops the process.
//
// Threading: not thread-safe; the raft loop owns it (storage.h).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/storage.h"
#include "raft/wal/wal_env.h"
#include "raft/wal/wal_format.h"

namespace raftkv::raft::wal {

class LogReplayer;

struct WalOptions {
  // Roll to a new segment once the current one has reached this size. Segments are the unit
  // of deletion after Compact, so this bounds the disk space compaction cannot yet reclaim.
  uint64_t max_segment_bytes = 64ull << 20;
  // Append rejects (kInvalidArgument) an entry whose encoded record would be larger.
  uint64_t max_record_bytes = 64ull << 20;
  // Records buffered in memory are written out (not synced) once the buffer reaches this size,
  // so an unsynced batch cannot grow without bound.
  uint64_t max_buffer_bytes = 4ull << 20;
  // Encoded entries kept in memory for Entries(), newest first (see "Memory" above); older
  // entries are read back from the segment files. 0 caches nothing; ~0 caches everything
  // (the behaviour before the bound). Entries of the current batch that is not yet written
  // are read from the write buffer, which max_buffer_bytes bounds.
  uint64_t max_cached_bytes = 32ull << 20;
  // File system access; null means WalEnv::Default(). Not owned; must outlive the storage.
  WalEnv* env = nullptr;

  // kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// What Open() found and repaired, for logging by the caller.
struct RecoveryReport {
  uint64_t segments = 0;           // segment files replayed
  uint64_t records = 0;            // valid records replayed
  bool truncated_torn_tail = false;
  std::string truncated_file;      // file name of the torn segment, if truncated
  uint64_t truncated_at_offset = 0;
  uint64_t dropped_bytes = 0;      // size of the torn tail that was cut off
};

class WalStorage final : public LogStorage {
 public:
  // Opens (creating if missing) the WAL in `dir` and recovers it: replays every segment,
  // truncates a torn tail of the newest segment, removes leftover *.tmp files, then fsyncs the
  // newest segment and the directory, so that everything it reports is durable (a killed
  // process leaves unsynced writes in the page cache, where replay reads them).
  // Holds an exclusive lock on <dir>/LOCK while open.
  // Errors: kInvalidArgument (options), kFailedPrecondition (the directory is locked by
  // another process or WalStorage), kDataLoss (corruption, see wal_format.h; the files are
  // left untouched), kInternal (I/O).
  static absl::StatusOr<std::unique_ptr<WalStorage>> Open(const std::string& dir,
                                                          const WalOptions& options);
  ~WalStorage() override;

  raftpb::HardState hard_state() const override { return hard_state_; }
  raftpb::SnapshotMetadata snapshot_metadata() const override { return snapshot_; }
  uint64_t FirstIndex() const override { return snapshot_.index() + 1; }
  uint64_t LastIndex() const override { return snapshot_.index() + index_.size(); }
  // O(1), from memory: never reads the disk.
  absl::StatusOr<uint64_t> Term(uint64_t index) const override;
  // Cached entries from memory; older ones read back from their segments (see "Memory").
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                    uint64_t max_bytes) const override;

  absl::Status Append(const std::vector<raftpb::Entry>& entries) override;
  absl::Status SetHardState(const raftpb::HardState& hs) override;
  absl::Status Sync() override;
  // Also deletes every whole segment holding only entries <= index (after making the
  // compaction marker durable with one fsync, and fsyncing the directory after).
  absl::Status Compact(uint64_t index) override;
  // Starts a new segment beginning with the snapshot marker (fsynced, renamed, directory
  // fsynced), then deletes all older segments.
  absl::Status ApplySnapshot(const raftpb::SnapshotMetadata& meta) override;
  // The same, with `hs` as the hard state the new segment starts with: the snapshot marker
  // and that hard state (a follower's commit raised to the snapshot index) are durable
  // together, in one fsync (a crash leaves both or neither).
  absl::Status ApplySnapshot(const raftpb::SnapshotMetadata& meta, const raftpb::HardState& hs);

  // ---- Observers for tests, metrics and benchmarks ----
  const RecoveryReport& recovery_report() const { return recovery_; }
  uint64_t fsync_count() const { return fsync_count_; }  // file fsyncs since Open
  size_t segment_count() const { return segments_.size(); }
  // Entries cached in memory (the newest ones) and their encoded bytes.
  size_t cached_entries() const { return cache_.size(); }
  uint64_t cached_bytes() const { return cached_bytes_; }
  // The sticky error (OK while the storage is writable).
  const absl::Status& error() const { return error_; }

 private:
  struct Segment {
    uint64_t seq;
    uint64_t max_entry_index;  // highest entry index recorded in it (0: none)
  };

  // What recovery keeps of the newest segment once its file data is gone.
  struct NewestSegment {
    uint64_t valid_bytes = 0;  // end of the last valid record
    uint64_t file_bytes = 0;   // size of the file as found
    bool torn = false;         // bytes after valid_bytes are a torn tail (wal_format.h)
    bool sealed = false;       // the last record is kSeal
  };

  WalStorage(std::string dir, const WalOptions& options, WalEnv* env);

  std::string PathOf(uint64_t seq) const;

  // ---- Recovery (Open), in this order ----
  absl::Status Recover();
  // Creates the directory if missing, locks it, and lists its segment seqs (ascending) and
  // leftover *.tmp files.
  absl::Status LockAndList(std::vector<uint64_t>* seqs, std::vector<std::string>* tmp_files);
  // Replays every segment into memory (hard state, snapshot, entries, segments_, the
  // report). Writes nothing. kDataLoss for a missing segment or any corruption.
  absl::Status ReplaySegments(const std::vector<uint64_t>& seqs, NewestSegment* newest);
  // Replays one segment into `replay`; fills *newest if `is_newest`.
  absl::Status ReplaySegment(uint64_t seq, bool is_newest, LogReplayer* replay,
                             NewestSegment* newest);
  // Deletes leftover *.tmp files (made durable by ReopenNewestSegment's directory fsync).
  absl::Status RemoveTmpFiles(const std::vector<std::string>& names);
  // Makes the newest segment durable and appendable: truncates its torn tail, fsyncs it, then
  // creates the next segment if it was sealed or reopens it for appending; fsyncs the
  // directory either way.
  absl::Status ReopenNewestSegment(uint64_t seq, const NewestSegment& newest);

  // Buffers one record, first rolling to a new segment if the current one is full. Sets
  // *where (if given) to where the record lies.
  absl::Status AddRecord(RecordType type, const std::string& payload,
                         EntryLocation* where = nullptr);
  // Writes the buffer to the current segment (no fsync).
  absl::Status FlushBuffer();
  // Seals and fsyncs the current segment (if any) and durably creates the next one, whose
  // start records are the current hard state and `marker` (kCompact or kSnapshot).
  absl::Status RollSegment(RecordType marker);
  // Deletes segments_[0, count), oldest first, fsyncing the directory after each.
  absl::Status RemoveOldestSegments(size_t count);
  // ---- The entry cache: cache_ holds entries [CacheFirstIndex(), LastIndex()] ----
  uint64_t CacheFirstIndex() const { return LastIndex() + 1 - cache_.size(); }
  // Caches the newest of the entries just appended (at locs) that fit, evicting the oldest.
  void CacheAppended(const std::vector<raftpb::Entry>& entries,
                     const std::vector<EntryLocation>& locs);
  // Drops cached entries >= index (a conflicting suffix) or <= index (compaction).
  void UncacheFrom(uint64_t index);
  void UncacheThrough(uint64_t index);

  // The segment file Entries() read from last; reads of consecutive entries reuse it.
  struct SegmentReader {
    uint64_t seq = 0;
    std::unique_ptr<WalReadableFile> file;
  };
  // Reads entry `index` back from its record at `loc` (from the write buffer if it is not
  // written yet) and checks it is that entry. Errors: see the error contract (Entries).
  absl::StatusOr<raftpb::Entry> ReadEntry(uint64_t index, const EntryLocation& loc,
                                          SegmentReader* reader) const;

  // Debug builds: the in-memory log is consecutive from FirstIndex(), and the cache is a
  // suffix of it within max_cached_bytes.
  void DCheckInvariants() const;
  // Records a failed I/O call as the sticky error (with `code`) and returns it.
  absl::Status Fail(const absl::Status& s,
                    absl::StatusCode code = absl::StatusCode::kInternal) const;

  const std::string dir_;
  const WalOptions options_;
  WalEnv* const env_;

  raftpb::HardState hard_state_;      // latest set (maybe not yet durable)
  raftpb::SnapshotMetadata snapshot_;  // the log starts after snapshot_.index()
  std::deque<EntryLocation> index_;    // index_[i]: entry snapshot_.index() + 1 + i
  std::deque<raftpb::Entry> cache_;    // the newest entries; back() is LastIndex()
  uint64_t cached_bytes_ = 0;          // encoded size of cache_, <= max_cached_bytes

  std::deque<Segment> segments_;    // oldest first; back() is the one being written
  std::unique_ptr<WalFile> file_;   // the open back() segment
  uint64_t segment_bytes_ = 0;      // size of back() including the unwritten buffer
  std::string buffer_;              // records not yet written to file_
  bool unsynced_ = false;           // bytes written or buffered since the last fsync

  std::unique_ptr<FileLock> lock_;  // on <dir>/LOCK: one WalStorage per directory
  // Sticky: set by the first failed I/O (a read in const Entries() too), returned by every
  // later write.
  mutable absl::Status error_;
  uint64_t fsync_count_ = 0;
  RecoveryReport recovery_;
};

}  // namespace raftkv::raft::wal
