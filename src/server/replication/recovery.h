// Recovery: everything kvd decides at start-up about its data, in one place and in this
// order (docs/architecture.md, "Start-up"):
//
//   1. OpenStateMachine: the store in <data-dir>/db. --restore-from builds it from a file first
//      (the data dir must be new) and cuts the node's first snapshot from it; a corrupt store
//      is moved aside, to be rebuilt from a snapshot plus the log, when a log exists.
//   2. OpenLog: the WAL, made to agree with the store. A restored store starts the log after
//      it; a commit index below the log's start (a snapshot install killed between restarting
//      the log and syncing its commit) is raised to it, durably; a store behind the log's
//      first entry (lost, wiped, moved aside, or an install killed before the store took the
//      snapshot) is loaded from the newest committed snapshot, own or received, that reaches
//      the log; a store ahead of the log's recorded commit index is normal after a crash (the
//      raft loop does not sync a commit-only change, raft_loop.h PersistReady): the commit is
//      raised to the store's applied index, durably, when the log holds that entry with the
//      store's term; a store past the log's end, or at an entry of another term, means the
//      log is not this store's: refused.
//   3. The raft loop then creates the core from the log, starts the backup worker (which
//      rebuilds a backup the log no longer reaches) and calls CatchUpBackup and
//      SnapshotForCore.
//
// Errors name the path: kFailedPrecondition (--restore-from into a used data dir), kDataLoss
// (no way to bring store and log together), and those of the store, the WAL and the files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/state_machine.h"
#include "raft.pb.h"
#include "raft/wal/wal_storage.h"
#include "server/data_dir.h"
#include "server/snapshots/backup_worker.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::server {

// Step 1. `restore_from`: --restore-from, empty for none. `tuning`: the store's memory limits
// (record_cache_bytes, memtable_bytes); its path and WAL settings are kvd's, set here.
absl::StatusOr<std::unique_ptr<kv::StateMachine>> OpenStateMachine(
    const DataDir& dir, const std::string& restore_from,
    kv::StateMachineOptions tuning = kv::StateMachineOptions{});

// Step 2. `restored`: step 1 restored the store from a file. `voters`: raft ids of the
// members, recorded in the restored log's starting point.
absl::StatusOr<std::unique_ptr<raft::wal::WalStorage>> OpenLog(
    kv::StateMachine* sm, const std::string& wal_dir, const raft::wal::WalOptions& options,
    const SnapshotStore& snapshots, bool restored, const std::vector<uint64_t>& voters);

// Queues into the backup the entries it lacks up to the store's applied index (still in the
// log: the log is never compacted past the backup).
absl::Status CatchUpBackup(const kv::StateMachine& sm, const raft::wal::WalStorage& wal,
                           BackupWorker* backup);

// The snapshot the core offers followers that need compacted entries after a restart: the
// newest snapshot file at or below the store's applied index, if any.
std::optional<raftpb::Snapshot> SnapshotForCore(const SnapshotStore& snapshots,
                                                uint64_t applied_index,
                                                const std::vector<uint64_t>& voters);

}  // namespace raftkv::server
