// State-machine snapshots as ordinary SQLite 3 files (docs/architecture.md, "Backup, snapshots and
// compaction"), so `sqlite3 snap.db 'select * from kv'` works.
//
// File format, version 2 (PRAGMA application_id = kSnapshotApplicationId, user_version = 2;
// version 1 lacked sessions.record and the index, and is still read: it held no sessions):
//   CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL,
//                    create_revision INTEGER, mod_revision INTEGER, version INTEGER);
//   CREATE TABLE meta (name TEXT PRIMARY KEY, value);
//   CREATE TABLE sessions (client_id INTEGER PRIMARY KEY, last_sequence INTEGER NOT NULL,
//                          last_index INTEGER NOT NULL, record BLOB NOT NULL DEFAULT x'');
//   CREATE INDEX sessions_by_last_index ON sessions (last_index, client_id);
//   (record: the session as the state machine stores it, kv/record_coding.h SessionRecord,
//   with the first result of each sequence in its window; last_sequence and last_index
//   repeat two of its fields for readers and for expiry.)
//   meta rows (INTEGER unless noted; uint64 values are stored as their int64 bit pattern):
//     format_version      2
//     applied_index       log index the copy is at
//     applied_term        term of that entry
//     revision            store revision at applied_index
//     members             TEXT, opaque to this module (the caller's cluster membership)
//     created_at          Unix time in milliseconds when the writer started
//     kv_count            rows in kv
//     kv_checksum         sum over kv rows of RowHash (row_hash.h), mod 2^64
//     sessions_count      rows in sessions
//     sessions_checksum   sum over sessions rows of SessionHash, mod 2^64
// The sessions table is beyond the two tables every snapshot reader knows: a follower
// restored from a snapshot must skip the same client retries as everyone else, or replicas
// diverge.
//
// Errors (all messages name the file): kNotFound if the file does not exist; kInvalidArgument
// if it is an SQLite file that is not a raftkv snapshot; kFailedPrecondition for a newer
// format_version; kDataLoss for anything unreadable, truncated or inconsistent (SQLite
// errors, failed quick_check, missing or mistyped meta rows, impossible revisions, count or
// checksum mismatch).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kv/state_machine.h"

namespace raftkv::kv {

inline constexpr int64_t kSnapshotFormatVersion = 2;
inline constexpr int32_t kSnapshotApplicationId = 0x7266746b;  // "rftk"

struct SnapshotMeta {
  int64_t format_version = 0;
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  int64_t revision = 0;
  std::string members;
  int64_t created_at_unix_ms = 0;
  int64_t kv_count = 0;
  uint64_t kv_checksum = 0;
  int64_t sessions_count = 0;
  uint64_t sessions_checksum = 0;
};

struct SnapshotWriteOptions {
  std::string members;  // stored as meta "members"
};

// Writes a consistent copy of `sm` (StateMachine::Export) to `path`: first to path + ".tmp"
// (replacing any leftover), fsynced, renamed to `path` (replacing it), then the directory is
// fsynced. On error `path` is untouched and the temporary file removed. Returns the meta
// written. Concurrent Applies continue; the copy is at the entry boundary Export saw.
absl::StatusOr<SnapshotMeta> WriteSnapshot(const StateMachine& sm, const std::string& path,
                                           const SnapshotWriteOptions& options = {});

// Reads and checks the meta table only (cheap; does not scan kv).
absl::StatusOr<SnapshotMeta> ReadSnapshotMeta(const std::string& path);

// Full check: SQLite quick_check, meta, every row, counts and checksums.
absl::StatusOr<SnapshotMeta> VerifySnapshot(const std::string& path);

struct RestoreOptions {
  // Rows are written to RocksDB in batches of at most about this many bytes.
  size_t batch_max_bytes = 4 << 20;
};

// Builds a new RocksDB state machine at `db_path` (which must not exist, or be an empty
// directory) from the snapshot at `path`. The store is built in db_path + ".restore-tmp",
// verified row by row against the snapshot's counts and checksums, flushed, and only then
// renamed to db_path (and the parent directory fsynced). On any error nothing exists at
// db_path afterwards that was not there before. Returns the snapshot's meta.
absl::StatusOr<SnapshotMeta> RestoreSnapshot(const std::string& path, const std::string& db_path,
                                             const RestoreOptions& options = {});

}  // namespace raftkv::kv
