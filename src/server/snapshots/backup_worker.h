// BackupWorker: keeps <data-dir>/backup.db following the log and cuts Raft snapshots from it
// (design.md "Snapshots to SQLite"), on its own thread so the raft loop never waits for SQLite.
//
// The raft loop hands it every applied entry (Enqueue, cheap, never blocks). Every
// interval_ms the worker applies everything queued in ONE SQLite transaction (cost follows
// what changed). After an apply, when snapshot_entries entries have passed since the last
// snapshot (or one was requested), it copies the backup into snapshots/ (online backup API,
// fsync, rename, dir fsync), keeps the newest snapshots_retained, flushes the state machine
// (so RocksDB no longer needs the log before it), and reports the snapshot to the loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/sqlite_backup.h"
#include "kv/state_machine.h"

namespace raftkv::server {

// snap-<20-digit index>-<term>.db: the name of a snapshot file; names sort by index.
std::string SnapshotFileName(uint64_t index, uint64_t term);

struct BackupWorkerOptions {
  std::string backup_path;            // --backup-path (default <data-dir>/backup.db)
  std::string snapshot_dir;           // <data-dir>/snapshots
  uint32_t interval_ms = 2000;        // --backup-interval-ms
  uint64_t snapshot_entries = 10000;  // --snapshot-entries
  uint32_t snapshots_retained = 3;    // --snapshots-retained
  size_t max_queued_entries = 200000; // past this the worker applies at once
  std::string members;                // stored in meta "members"
};

// A snapshot the worker made. flushed_index: the state machine's applied index that RocksDB
// had made durable when the snapshot was reported (the log may be compacted up to
// min(meta.applied_index, flushed_index)).
struct SnapshotReport {
  kv::SnapshotMeta meta;
  std::string path;
  uint64_t flushed_index = 0;
};

class BackupWorker {
 public:
  // Opens (or creates) the backup. `first_log_index`: the first entry the Raft log still
  // holds; if the backup is older than that, it is rebuilt from the state machine (a full
  // copy). `on_snapshot` runs on the worker thread; it must not block (post to the loop).
  static absl::StatusOr<std::unique_ptr<BackupWorker>> Start(
      kv::StateMachine* sm, BackupWorkerOptions options, uint64_t first_log_index,
      std::function<void(SnapshotReport)> on_snapshot);
  ~BackupWorker();  // Stop()s.

  // The backup's durable applied index (entries after it must stay in the Raft log).
  uint64_t applied_index() const { return applied_index_.load(); }

  // Queues one applied entry (empty `command`: an entry without a command).
  void Enqueue(uint64_t index, uint64_t term, std::string command);
  // Asks for a snapshot at the next apply even if snapshot_entries have not passed.
  void RequestSnapshot();
  // Replaces the backup with a copy of the snapshot file at `path` (after the state machine
  // installed it); queued entries at or below its index are dropped. Blocks until done.
  absl::Status ResetFrom(const std::string& path);
  // Applies what is queued, then stops the thread. Idempotent.
  void Stop();

 private:
  BackupWorker(kv::StateMachine* sm, BackupWorkerOptions options,
               std::function<void(SnapshotReport)> on_snapshot);
  void Run();
  absl::Status ApplyQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  absl::Status MaybeSnapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  void PruneSnapshots();

  kv::StateMachine* const sm_;
  const BackupWorkerOptions options_;
  const std::function<void(SnapshotReport)> on_snapshot_;
  // Held while the backup is used (worker thread) or replaced (ResetFrom).
  absl::Mutex backup_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<kv::SqliteBackup> backup_ ABSL_GUARDED_BY(backup_mu_);
  uint64_t last_snapshot_index_ ABSL_GUARDED_BY(backup_mu_) = 0;

  struct Queued {
    uint64_t index;
    uint64_t term;
    std::string command;
  };
  absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool snapshot_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool apply_now_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> applied_index_{0};
  std::thread thread_;
};

}  // namespace raftkv::server
