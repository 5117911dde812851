// The replicated state machine: applies committed commands to RocksDB.
//
// On-disk layout (RocksDB in <data-dir>/db/, one column family each):
//   "default": user key -> KeyRecord{value, create_revision, mod_revision, version}
//   "meta":    applied_index, applied_term, revision, session records
// Every applied entry (or every batch of entries, ApplyBatch) is ONE WriteBatch holding the
// data change, the applied index and term, the new store revision and any session record, so
// the store is always at an entry boundary. RocksDB writes are not fsynced here (and with
// disable_wal not even logged): the Raft WAL is the source of truth and the caller replays
// the log after applied_index() on start-up (docs/architecture.md, "Start-up").
//
// Revisions follow etcd: the store revision starts at 1 and grows by one for every entry
// that changes at least one key; every key changed by that entry gets mod_revision = the new
// revision; create_revision is the revision of the put that created the key (since its last
// delete) and version counts puts since creation (1 for a new key).
//
// Threading: Apply* from one thread only (the apply thread); reads (Get/Range/accessors)
// from any thread, concurrently with Apply.
//
// The exact apply rules (multi-op commands, sessions, replays, range deletes) are written
// down in kv/rocksdb_state_machine.h and implemented once, in kv/command_eval.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv.pb.h"

namespace raftkv::kv {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
};

// Outcome of one op of a command, in op order.
struct OpResult {
  // Put: whether the key existed before (and its previous record, for etcd's prev_kv).
  // Delete: number of keys deleted.
  int64_t deleted = 0;
  std::optional<KeyValue> prev;
};

struct ApplyResult {
  int64_t revision = 0;          // store revision after the entry
  // The session table showed this (client_id, sequence) applied before: the ops were not
  // applied again, and revision/ops are those of the FIRST application.
  bool duplicate = false;
  // The command's sequence is below its session's window (already acknowledged by the
  // client, or evicted from the window): not applied now, no first result to give.
  bool session_refused = false;
  std::vector<OpResult> ops;
};

struct RangeResult {
  std::vector<KeyValue> kvs;     // in key order, at most `limit` (0 = no limit)
  int64_t count = 0;             // number of keys in the range, ignoring limit
  bool more = false;             // true if limit cut the result
  int64_t revision = 0;          // store revision the read saw
};

// One row of the client-session table (exactly-once retries, see kvpb::Command).
struct SessionEntry {
  uint64_t client_id = 0;
  uint64_t last_sequence = 0;    // highest sequence applied for this client
  uint64_t last_index = 0;       // log index of the last entry that applied one of its commands
  // The whole record as stored (kv/record_coding.h, SessionRecord: the two fields above, the
  // window and the first result of every sequence in it). Opaque to snapshot code.
  std::string record;
};

// Receives a point-in-time copy of the whole store from StateMachine::Export (snapshots).
// Any error a callback returns stops the export and is returned by Export.
class ExportSink {
 public:
  virtual ~ExportSink() = default;
  // Called once, first: the entry boundary the copy is at.
  virtual absl::Status OnBegin(uint64_t applied_index, uint64_t applied_term,
                               int64_t revision) = 0;
  // Every key, in ascending (unsigned bytewise) key order.
  virtual absl::Status OnKeyValue(const KeyValue& kv) = 0;
  // Every session, after the last key.
  virtual absl::Status OnSession(const SessionEntry& session) = 0;
};

struct EntryEffect;  // kv/command_eval.h

// One committed entry for StateMachine::ApplyBatch: its command, or null for an entry that
// carries none (what ApplyEmpty records).
struct BatchEntry {
  uint64_t index = 0;
  uint64_t term = 0;
  const kvpb::Command* cmd = nullptr;
};

struct StateMachineOptions {
  std::string db_path;           // RocksDB directory, created if missing
  // true: every Apply/ApplyEmpty fsyncs RocksDB's WAL before returning, so an acknowledged
  // write survives a machine crash without any other log (the single-node path before Raft).
  // false (default): the Raft WAL is the source of truth; RocksDB writes reach the OS but are
  // not fsynced, and the caller replays the log after applied_index() on start-up.
  bool sync_writes = false;
  // true: applied entries skip RocksDB's own WAL; what is not flushed to SST files yet is lost
  // in any crash, the process's included, and the applied index falls back to the last
  // flush. Only for a caller that replays its log after applied_index() and never discards
  // the log past an index it has not Flush()ed (kvd: the Raft log, CompactionBound).
  // Excludes sync_writes.
  bool disable_wal = false;
  // Memory for the records (3/4) and sessions (1/4) of recently used keys that evaluating a
  // write reads (kv/record_cache.h); 0: every evaluation reads the store.
  size_t record_cache_bytes = 16 << 20;
  // All memtables together (RocksDB's db_write_buffer_size): past it RocksDB flushes them.
  // Bounds the store's write memory when nothing else flushes it for a while (the caller's
  // Flush() before log compaction, which snapshots space out on a large store); 0: RocksDB's
  // per-table limit only (64 MiB per column family).
  size_t memtable_bytes = 16 << 20;
};

class StateMachine {
 public:
  // Opens (or creates) the store. Errors: kDataLoss if the store is corrupt,
  // kInternal/kUnavailable for other RocksDB failures (message says which path).
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(const StateMachineOptions& options);
  virtual ~StateMachine() = default;

  // Applies the command of committed entry (index, term). If index <= applied_index() this
  // is a no-op returning an OK result with duplicate=true and no ops.
  // REQUIRES: index == applied_index() + 1 when not a replay (entries apply in order).
  virtual absl::StatusOr<ApplyResult> Apply(uint64_t index, uint64_t term,
                                            const kvpb::Command& cmd) = 0;
  // Records an entry that carries no command (leader no-op, config change) as applied.
  virtual absl::Status ApplyEmpty(uint64_t index, uint64_t term) = 0;

  // Applies consecutive committed entries in order, each exactly as Apply (or, for a null
  // cmd, ApplyEmpty) would: results[i] is entries[i]'s ApplyResult (an entry without a
  // command gets an empty one). The RocksDB store writes them all
  // in one write (one WriteBatch), published together: readers see none or all of them. On
  // an error nothing of the batch is applied there; this default (one Apply after another,
  // for decorators) may have applied a prefix. Either way the caller must stop.
  virtual absl::StatusOr<std::vector<ApplyResult>> ApplyBatch(
      const std::vector<BatchEntry>& entries) {
    std::vector<ApplyResult> results;
    results.reserve(entries.size());
    for (const BatchEntry& e : entries) {
      if (e.cmd == nullptr) {
        if (absl::Status s = ApplyEmpty(e.index, e.term); !s.ok()) return s;
        results.emplace_back();
        continue;
      }
      absl::StatusOr<ApplyResult> r = Apply(e.index, e.term, *e.cmd);
      if (!r.ok()) return r.status();
      results.push_back(*std::move(r));
    }
    return results;
  }

  // ApplyBatch, and the effect of each entry as the store evaluated it (kv/command_eval.h),
  // for a follower of the store that applies effects instead of evaluating the commands
  // again (the SQLite backup). On success (*effects)[i] is entries[i]'s, null for an entry
  // without a command or a replay; or *effects is left empty, by a store that does not
  // evaluate (this default: a decorator's). The results are not in the effects.
  virtual absl::StatusOr<std::vector<ApplyResult>> ApplyBatchWithEffects(
      const std::vector<BatchEntry>& entries, std::vector<std::unique_ptr<EntryEffect>>* effects) {
    return ApplyBatch(entries);
  }

  virtual absl::StatusOr<std::optional<KeyValue>> Get(std::string_view key) const = 0;
  // etcd Range semantics: range_end empty = just `key`; range_end == "\0" = every key >= key;
  // otherwise [key, range_end). limit 0 = no limit. keys_only / count_only as in etcd.
  virtual absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view range_end,
                                            int64_t limit, bool keys_only = false,
                                            bool count_only = false) const = 0;

  virtual uint64_t applied_index() const = 0;
  virtual uint64_t applied_term() const = 0;
  virtual int64_t revision() const = 0;

  // Flushes memtables so everything applied so far survives a crash (before log compaction).
  virtual absl::Status Flush() = 0;

  // About how many bytes the store takes (on disk and in memory tables): etcd's dbSize.
  // Cheap (no I/O); 0 when unknown. Any thread.
  virtual uint64_t ApproximateSizeBytes() const { return 0; }

  // The record cache (StateMachineOptions::record_cache_bytes) since the store opened: the
  // reads of a record or session that evaluating an entry served from memory (the cache, or
  // what earlier entries of its batch wrote) or had to make from the store, and the bytes the
  // cache holds now. Any thread.
  struct RecordCacheStats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t bytes = 0;
  };
  virtual RecordCacheStats record_cache_stats() const { return {}; }

  // Replaces the whole state (data, applied index/term, revision, sessions) with the snapshot
  // file at `path` (kv/sqlite_snapshot.h), e.g. after Raft InstallSnapshot. The file is
  // verified row by row before anything changes; readers see the old state or the new one;
  // a crash leaves the old or the new store for the next Open. Apply thread only, or a thread
  // it hands the install to while it applies nothing (kvd's raft loop: its install thread).
  // Errors: the file's (RestoreSnapshot: kNotFound, kInvalidArgument, kDataLoss, ...) with the
  // store unchanged; an I/O error during the swap may leave the store closed (every later
  // call returns kFailedPrecondition): the caller must stop and restart.
  virtual absl::Status InstallSnapshot(const std::string& path) {
    return absl::UnimplementedError("this state machine cannot install snapshots");
  }

  // Streams one consistent copy of the applied state (data, applied index/term, revision and
  // session table, all at one entry boundary) into sink. May run on any thread; concurrent
  // Applies are neither blocked nor seen. Used by the SQLite snapshot writer (sqlite_snapshot.h).
  virtual absl::Status Export(ExportSink& sink) const {
    return absl::UnimplementedError("this state machine cannot export");
  }
};

}  // namespace raftkv::kv
