// StateMachine over RocksDB (the only implementation; StateMachine::Open returns one).
// Record encodings: kv/record_coding.h.
//
// Apply semantics (one committed entry = one Command = one WriteBatch; ApplyBatch: the same
// per entry, many entries in one WriteBatch):
// - index <= applied_index(): replay, nothing is written, duplicate=true.
// - index != applied_index() + 1: kFailedPrecondition, nothing is written (entries must apply
//   in order; the caller has lost an entry and must stop).
// - Session: if client_id != 0 and the session table holds a sequence >= cmd.sequence for that
//   client, the ops are skipped and duplicate=true; the applied index/term still advance, the
//   revision does not. The original ApplyResult is NOT re-created (ops is empty): a retrying
//   client learns only that its command was applied before. Otherwise (client_id != 0) the
//   session record becomes {cmd.sequence, index}. Sequence numbers need not be contiguous.
// - Ops apply in order, each seeing the effect of the ones before it, all at the one new
//   revision R = revision() + 1 (etcd Txn-like, but etcd rejects duplicate keys in a Txn and we
//   define them):
//     Put k:    version = previous version + 1 (1 if k does not exist at that point, in which
//               case create_revision = R), mod_revision = R. prev = the record before this op.
//     Delete:   removes every key of the range that exists at that point; deleted = count;
//               prev is set for a single-key delete (range_end empty) that found the key.
//               Range rules as etcd: range_end empty = just key; "\0" = every key >= key;
//               otherwise [key, range_end) (empty if range_end <= key).
//     An Op with neither field set does nothing (OpResult is all zero).
//   So "Put k; Delete k" leaves k absent (delete reports 1) and "Delete k; Put k" leaves k with
//   version 1 and create_revision R.
// - The revision becomes R iff at least one op changed something (any Put, or a Delete with
//   deleted > 0), even if the net effect is nil (Put k; Delete k on a missing k). A command
//   whose ops change nothing (delete of missing keys, no ops) does not bump the revision.
// - Empty keys are accepted: key validation (non-empty, size limits) is the server's job, the
//   state machine must apply whatever was committed, deterministically.
//
// Errors from Apply/ApplyEmpty (kDataLoss for a record that does not decode, kUnavailable /
// kInternal for RocksDB write failures) leave the store and the accessors unchanged; the
// caller must not skip the entry.
//
// Reads: Range reads from one RocksDB snapshot and takes the revision from the "applied"
// record of that same snapshot, so kvs and revision always belong to one entry boundary.
// applied_index()/applied_term()/revision() are published right after the entry's write
// succeeded, so a read started after applied_index() returned X sees entry X or later (what a
// ReadIndex wait needs); a concurrent Range may be one entry ahead of the accessors.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/container/flat_hash_map.h"
#include "kv/command_eval.h"
#include "kv/record_cache.h"
#include "kv/record_coding.h"
#include "kv/state_machine.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch_base.h"

namespace raftkv::kv {

class RocksDbStateMachine final : public StateMachine {
 public:
  static absl::StatusOr<std::unique_ptr<RocksDbStateMachine>> OpenRocksDb(
      const StateMachineOptions& options);
  ~RocksDbStateMachine() override;

  absl::StatusOr<ApplyResult> Apply(uint64_t index, uint64_t term,
                                    const kvpb::Command& cmd) override;
  absl::Status ApplyEmpty(uint64_t index, uint64_t term) override;
  // One RocksDB write for the whole batch (each command is evaluated against the store plus
  // the batch so far, so it sees the entries before it).
  absl::StatusOr<std::vector<ApplyResult>> ApplyBatch(
      const std::vector<BatchEntry>& entries) override;
  absl::StatusOr<std::vector<ApplyResult>> ApplyBatchWithEffects(
      const std::vector<BatchEntry>& entries,
      std::vector<std::unique_ptr<EntryEffect>>* effects) override;

  absl::StatusOr<std::optional<KeyValue>> Get(std::string_view key) const override;
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view range_end,
                                    int64_t limit, bool keys_only = false,
                                    bool count_only = false) const override;

  uint64_t applied_index() const override { return applied_index_.load(std::memory_order_acquire); }
  uint64_t applied_term() const override { return applied_term_.load(std::memory_order_acquire); }
  int64_t revision() const override { return revision_.load(std::memory_order_acquire); }

  absl::Status Flush() override;
  uint64_t ApproximateSizeBytes() const override;
  absl::Status InstallSnapshot(const std::string& path) override;

  absl::Status Export(ExportSink& sink) const override;

  // RocksDB writes of applied entries since Open (Apply, ApplyEmpty, ApplyBatch: one each).
  uint64_t entry_writes() const { return entry_writes_.load(std::memory_order_relaxed); }
  // The keys (puts and deletes, the applied record included) those writes carried: each is a
  // memtable insert, on every replica.
  uint64_t keys_written() const { return keys_written_.load(std::memory_order_relaxed); }
  RecordCacheStats record_cache_stats() const override;

  // The session record of client_id, if any (tests and snapshots).
  absl::StatusOr<std::optional<coding::SessionRecord>> GetSession(uint64_t client_id) const;

  // Snapshot restore. REQUIRES: a store just created by OpenRocksDb (applied_index() == 0),
  // with no concurrent readers or appliers; the caller builds it in a scratch directory and
  // renames it into place only after FinishImport succeeded.
  // ImportBatch writes kvs and sessions as given (no revision logic, RocksDB WAL skipped);
  // FinishImport records (applied_index, applied_term, revision) and flushes everything to
  // SST files, so on success the store is durable and complete.
  absl::Status ImportBatch(const std::vector<KeyValue>& kvs,
                           const std::vector<SessionEntry>& sessions);
  absl::Status FinishImport(uint64_t applied_index, uint64_t applied_term, int64_t revision);

 private:
  class LiveView;
  class BatchView;

  explicit RocksDbStateMachine(StateMachineOptions options);

  // Opens options_.db_path into db_/handles_ and loads (or, for a new store, writes) the
  // format and applied records. REQUIRES: db_ closed; exclusive access.
  absl::Status OpenDb();
  absl::Status Init();
  // Closes db_ (no-op if closed). REQUIRES: exclusive access.
  void CloseDb();
  // kFailedPrecondition once a failed InstallSnapshot left the store closed.
  absl::Status CheckOpen() const;
  absl::StatusOr<std::optional<coding::SessionRecord>> GetSessionUnlocked(
      uint64_t client_id) const;
  absl::Status FlushUnlocked();
  // Adds `batch` the applied record, writes it, then publishes the new index/term/revision.
  absl::Status Commit(rocksdb::WriteBatch* batch, uint64_t index, uint64_t term,
                      int64_t revision);
  // What a write (one entry, or one batch of them) puts into the store, the last value of
  // each key and session, as stored (nullopt: deleted): what the entries after it in the
  // batch read before the store, and what the caches take once the write succeeded.
  using WrittenKeys = absl::flat_hash_map<std::string, std::optional<std::string>>;
  struct Written {
    WrittenKeys records;      // data keys
    WrittenKeys sessions;     // SessionKey(id)
    WrittenKeys expiry_keys;  // "" or deleted; one put and deleted again is not here
  };
  // Notes an evaluated entry's writes (data, expired and new sessions) in `written`, and adds
  // those to the data column family to `data_index`, the others to `meta_index` (a batch's
  // index of the families a scan needed, BatchView); any may be null.
  void AddEffect(const EntryEffect& effect, rocksdb::WriteBatchBase* data_index,
                 rocksdb::WriteBatchBase* meta_index, Written* written) const;
  // Adds what `written` holds to `batch`: each key once, with its last value.
  void AddWritten(const Written& written, rocksdb::WriteBatch* batch) const;
  // The record of `key` or session `session_key` as an entry being evaluated sees it: what
  // the batch before it wrote, else the cache, else the store (which the cache then keeps).
  // `written` may be null (no batch). Apply thread only.
  absl::StatusOr<std::optional<std::string>> ReadForEvaluation(rocksdb::ColumnFamilyHandle* cf,
                                                               const std::string& key,
                                                               const Written* written);
  absl::StatusOr<std::optional<coding::KeyRecord>> GetRecordForEvaluation(
      const std::string& key, const Written* written);
  absl::StatusOr<std::optional<coding::SessionRecord>> GetSessionForEvaluation(
      uint64_t client_id, const Written* written);
  // After a write succeeded: the caches take what it wrote.
  void Remember(Written written);
  absl::Status CheckNext(uint64_t index) const;

  const StateMachineOptions options_;
  // Shared by every operation that uses db_; exclusive while InstallSnapshot swaps the store.
  // (absl::Mutex, not std::shared_mutex: glibc's rwlock lets a steady stream of readers
  // starve the writer.)
  mutable absl::Mutex mu_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; closed in the destructor
  rocksdb::ColumnFamilyHandle* data_cf_ = nullptr;     // "default"
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;     // "meta"

  // Written only by the apply thread after a successful write; read by anyone.
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> applied_term_{0};
  std::atomic<int64_t> revision_{1};
  std::atomic<uint64_t> entry_writes_{0};
  std::atomic<uint64_t> keys_written_{0};
  // Apply thread only: every live session-expiry key has last_index >= expiry_floor_, so a
  // command's scan for idle sessions starts there (the deleted keys below it are not walked).
  // Raised after each written entry from what its scan found; 0 (scan from the start) after
  // OpenDb and imports. A lower bound only: a scan gives the same sessions with or without
  // it, so replicas stay identical.
  uint64_t expiry_floor_ = 0;
  // Apply thread only (or exclusive access): what ReadForEvaluation read or a write wrote,
  // cleared whenever the store is replaced or imported.
  RecordCache record_cache_;
  RecordCache session_cache_;
  // For record_cache_stats(); written by the apply thread.
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> cache_misses_{0};
  std::atomic<uint64_t> cache_bytes_{0};
};

}  // namespace raftkv::kv
