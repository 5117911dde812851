// BackupWorker: keeps <data-dir>/backup.db following the log and cuts Raft snapshots from it
// (docs/architecture.md, "Backup, snapshots and compaction"), on its own thread so the raft loop
// never waits for SQLite.
//
// The raft loop hands it every applied entry (Enqueue, cheap, never blocks). Every
// interval_ms the worker applies everything queued in ONE SQLite transaction (cost follows
// what changed). After an apply, when snapshot_entries entries have passed since the last
// snapshot and the SnapshotPacer (below) allows, it copies the backup into the SnapshotStore
// (online backup API, fsync, rename, dir fsync), keeps the newest snapshots_retained, flushes
// the state machine (so RocksDB no longer needs the log before it), and reports the snapshot
// to the loop.
//
// Failures: the backup is a copy; the state machine and the log are unharmed. A failed round
// keeps the queue and is retried every interval_ms (never sooner, however full the queue);
// Health() says since when it fails and why, and the raft loop turns that into an alarm and,
// past --max-backup-lag-entries, holds new writes and refuses them after --backup-lag-wait-ms
// (the log is not compacted past the backup, and the WAL holds it in memory). A backup left closed by a failed ResetFrom is rebuilt from the
// state machine by the next round. The first successful round ends it all.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv/sqlite_backup.h"
#include "kv/state_machine.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::server {

struct BackupWorkerOptions {
  std::string backup_path;            // --backup-path (default <data-dir>/backup.db)
  std::string snapshot_dir;           // <data-dir>/snapshots (a SnapshotStore)
  std::string received_snapshot_dir;  // <data-dir>/snapshots/received (pruned alike)
  uint32_t interval_ms = 2000;        // --backup-interval-ms
  uint64_t snapshot_entries = 10000;  // --snapshot-entries
  double snapshot_time_share = 0.1;   // --snapshot-time-share-pct / 100 (SnapshotPacer)
  uint32_t snapshots_retained = 3;    // --snapshots-retained
  size_t max_queued_entries = 200000; // past this the worker applies at once (unless failing)
  uint32_t copy_busy_retries = 10;    // --snapshot-copy-busy-retries (kv::BackupOptions)
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

// How the backup is doing, for status alarms and the write limit.
struct BackupHealth {
  uint64_t applied_index = 0;  // durable in the backup
  absl::Status error;          // of the last attempt; OK once an attempt succeeds
  absl::Time failing_since = absl::InfinitePast();  // when the current run of failures began
  uint64_t failed_attempts = 0;                      // in the current run
};

// When the next snapshot may be cut. A snapshot copies the whole backup and flushes the
// state machine: its cost follows the size of the store, not the number of entries since the
// last one, so at a fixed --snapshot-entries a large store under a steady load spends most of
// the worker's time copying, and the backup falls behind (writes then wait for it). After a
// snapshot that took d, the next waits d * (1 - share) / share: making snapshots takes at
// most `share` of the worker's time, whatever the size of the store. share >= 1: no wait.
// Times come from a steady clock (the worker's SteadyNow).
class SnapshotPacer {
 public:
  explicit SnapshotPacer(double share) : share_(share) {}
  bool Due(absl::Time now) const { return now >= not_before_; }
  // A snapshot was made from `start` to `end`.
  void Took(absl::Time start, absl::Time end);
  absl::Time not_before() const { return not_before_; }

 private:
  const double share_;
  absl::Time not_before_ = absl::InfinitePast();
};

class BackupWorker {
 public:
  using OnSnapshot = absl::AnyInvocable<void(SnapshotReport)>;

  // Opens (or creates) the backup. `first_log_index`: the first entry the Raft log still
  // holds; if the backup is older than that, it is rebuilt from the state machine (a full
  // copy). `on_snapshot` runs on the worker thread; it must not block (post to the loop).
  static absl::StatusOr<std::unique_ptr<BackupWorker>> Start(
      kv::StateMachine* sm, BackupWorkerOptions options, uint64_t first_log_index,
      OnSnapshot on_snapshot);
  ~BackupWorker();  // Stop()s.

  // The backup's durable applied index (entries after it must stay in the Raft log).
  uint64_t applied_index() const { return applied_index_.load(); }
  // Any thread.
  BackupHealth Health() const;

  // Queues one applied entry (empty `command`: an entry without a command).
  void Enqueue(uint64_t index, uint64_t term, std::string command);
  // Queues one applied entry by its effect as the state machine evaluated it
  // (StateMachine::ApplyBatchWithEffects): the backup writes it without evaluating it again.
  void Enqueue(uint64_t index, uint64_t term, std::unique_ptr<kv::EntryEffect> effect);
  // Since Start: entries the backup evaluated (queued by command, not effect), and rows it
  // wrote (the backup after a rebuild or reset counts from there).
  uint64_t evaluated_entries() const { return evaluated_entries_.load(); }
  uint64_t rows_written() const { return rows_written_.load(); }
  // Replaces the backup with a copy of the snapshot file at `path` (after the state machine
  // installed it); queued entries at or below its index are dropped. Blocks until done. On
  // an error the backup is closed and the worker's next round rebuilds it from the state
  // machine; Health() reports the error until then.
  absl::Status ResetFrom(const std::string& path);
  // Applies what is queued, then stops the thread. Idempotent.
  void Stop();

 private:
  BackupWorker(kv::StateMachine* sm, BackupWorkerOptions options, OnSnapshot on_snapshot);
  // The options of the SQLite backup file.
  kv::BackupOptions SqliteOptions() const;
  void Run();
  // One round: rebuild a closed backup, apply the queue, cut a snapshot if one is due.
  absl::Status Round(bool stopping) ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  absl::Status ApplyQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  absl::Status MaybeSnapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  // Makes `backup` the backup and drops the queued entries it already holds.
  void Adopt(std::unique_ptr<kv::SqliteBackup> backup) ABSL_EXCLUSIVE_LOCKS_REQUIRED(backup_mu_);
  // Records the outcome of a round (or of ResetFrom) in the health.
  void RecordAttempt(const absl::Status& s);
  bool Failing() const;

  kv::StateMachine* const sm_;
  const BackupWorkerOptions options_;
  const SnapshotStore snapshots_;
  OnSnapshot on_snapshot_;  // called on the worker thread only
  // Held while the backup is used (worker thread) or replaced (ResetFrom).
  absl::Mutex backup_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Null only after a failed ResetFrom, until the next round rebuilds it.
  std::unique_ptr<kv::SqliteBackup> backup_ ABSL_GUARDED_BY(backup_mu_);
  uint64_t last_snapshot_index_ ABSL_GUARDED_BY(backup_mu_) = 0;
  SnapshotPacer pacer_ ABSL_GUARDED_BY(backup_mu_);

  struct Queued {
    uint64_t index;
    uint64_t term;
    std::string command;                     // when effect is null
    std::unique_ptr<kv::EntryEffect> effect;
  };
  void Push(Queued entry);
  absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool apply_now_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> evaluated_entries_{0};
  std::atomic<uint64_t> rows_written_{0};
  mutable absl::Mutex health_mu_;
  absl::Status error_ ABSL_GUARDED_BY(health_mu_);
  absl::Time failing_since_ ABSL_GUARDED_BY(health_mu_) = absl::InfinitePast();
  uint64_t failed_attempts_ ABSL_GUARDED_BY(health_mu_) = 0;
  std::thread thread_;
};

}  // namespace raftkv::server
