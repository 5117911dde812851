// The backup that follows the log (docs/architecture.md, "Backup, snapshots and compaction"): an
// SQLite file in the snapshot format of sqlite_snapshot.h, kept in WAL mode so `sqlite3` can read
// it while the node writes it, trailing the state machine by applying the same committed entries.
//
// Apply takes each entry's effect as the state machine evaluated it (EntryEffect, from
// StateMachine::ApplyBatchWithEffects: the rows it wrote and what they held before), or else
// its command, which it runs through EvaluateCommand (command_eval.h), the code the RocksDB
// state machine uses, so both stores compute the same effect. Effects are not evaluated
// again, nor are the backup's rows read for them: the rows an Apply call's effects change
// are written once each, with their last value (a key or session written by a thousand
// entries is one row write). Each Apply call is one SQLite transaction that also updates meta
// (applied index/term, revision, counts and checksums, maintained incrementally: subtract the
// old row's hash, add the new one), committed with synchronous=FULL: on return the backup's
// applied_index() is durable, so the caller may compact the Raft log up to it. Its cost
// follows the entries applied, not the data size.
//
// Threading: one thread at a time (the backup thread); other processes may read the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv.pb.h"
#include "kv/command_eval.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"

struct sqlite3;
struct sqlite3_backup;

namespace raftkv::kv {

struct BackupOptions {
  std::string path;     // the backup file, e.g. <data-dir>/backup.db
  std::string members;  // stored as meta "members" at every commit (opaque here)
  // CopyTo: a copy that finds a database busy or locked (SQLITE_BUSY / SQLITE_LOCKED from
  // sqlite3_backup_step: another connection's lock) is retried this many times,
  // copy_busy_retry_ms apart, then fails (--snapshot-copy-busy-retries).
  uint32_t copy_busy_retries = 10;
  uint32_t copy_busy_retry_ms = 50;
  // Tests only: stands in for sqlite3_backup_step (to inject BUSY/LOCKED). Null: the real one.
  int (*backup_step)(sqlite3_backup*, int) = nullptr;
};

// One committed log entry for the backup: its effect as the state machine evaluated it, or
// else its command. Neither: an entry that carries no command (leader no-op, configuration
// change): only the applied index/term move.
struct BackupEntry {
  uint64_t index = 0;
  uint64_t term = 0;
  const kvpb::Command* command = nullptr;
  const EntryEffect* effect = nullptr;  // preferred over command
};

class SqliteBackup {
 public:
  // Opens the backup at options.path, creating an empty one (applied index 0, revision 1) if
  // there is no file. Errors as ReadSnapshotMeta for a file that is not a valid backup.
  static absl::StatusOr<std::unique_ptr<SqliteBackup>> Open(const BackupOptions& options);
  // Replaces options.path with a copy of sm (WriteSnapshot) and opens it: for a node whose
  // log no longer holds the entries after the backup's applied index (first start on an
  // existing store, after InstallSnapshot). REQUIRES: no SqliteBackup open on options.path.
  static absl::StatusOr<std::unique_ptr<SqliteBackup>> CreateFrom(const StateMachine& sm,
                                                                  const BackupOptions& options);
  ~SqliteBackup();
  SqliteBackup(const SqliteBackup&) = delete;
  SqliteBackup& operator=(const SqliteBackup&) = delete;

  uint64_t applied_index() const { return meta_.applied_index; }
  uint64_t applied_term() const { return meta_.applied_term; }
  int64_t revision() const { return meta_.revision; }
  const SnapshotMeta& meta() const { return meta_; }
  // Since Open: entries whose command was evaluated here (they came without an effect), and
  // rows of kv and sessions inserted, replaced or deleted.
  uint64_t evaluated_entries() const { return evaluated_entries_; }
  uint64_t rows_written() const { return rows_written_; }

  // Applies entries in one transaction. Entries at or below applied_index() are skipped; the
  // others must be consecutive from applied_index() + 1 (kFailedPrecondition otherwise).
  // On any error nothing of the call is committed and applied_index() is unchanged.
  absl::Status Apply(const std::vector<BackupEntry>& entries);

  // A standalone snapshot file at `path` (SQLite online backup API, then journal_mode DELETE
  // and created_at set to now), written to path + ".tmp", fsynced, renamed, directory
  // fsynced: a Raft snapshot. Returns its meta.
  absl::StatusOr<SnapshotMeta> CopyTo(const std::string& path) const;

 private:
  class View;
  struct Statements;
  struct Changes;

  SqliteBackup(BackupOptions options, sqlite3* db, SnapshotMeta meta);
  absl::Status Prepare();
  // Adds what `effect` changes to `changes`, which points into it until WriteChanges.
  absl::Status AddEffect(const EntryEffect& effect, Changes& changes) const;
  // Writes `changes` into the open transaction, updates meta_'s counts and checksums, and
  // empties it.
  absl::Status WriteChanges(Changes& changes);

  const BackupOptions options_;
  sqlite3* db_;  // owned; closed in the destructor
  SnapshotMeta meta_;  // as last committed (restored from a copy if a transaction fails)
  std::unique_ptr<Statements> st_;
  uint64_t evaluated_entries_ = 0;
  uint64_t rows_written_ = 0;
};

}  // namespace raftkv::kv
