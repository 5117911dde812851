#include "server/replication/recovery.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kv/sqlite_snapshot.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

// --restore-from: builds the store from `file` into a data dir that holds none yet.
absl::Status RestoreStore(const DataDir& dir, const std::string& file) {
  if (std::filesystem::exists(dir.db()) || std::filesystem::exists(dir.wal())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--restore-from needs a new data dir, but ", dir.root(), " already holds a store"));
  }
  spdlog::info("restoring from {}", file);
  auto meta = kv::RestoreSnapshot(file, dir.db());
  if (!meta.ok()) return meta.status();
  spdlog::info("restored {} keys at index {} (term {}, revision {})", meta->kv_count,
               meta->applied_index, meta->applied_term, meta->revision);
  return absl::OkStatus();
}

raftpb::SnapshotMetadata MetadataAt(uint64_t index, uint64_t term,
                                    const std::vector<uint64_t>& voters) {
  raftpb::SnapshotMetadata meta;
  meta.set_index(index);
  meta.set_term(term);
  for (uint64_t id : voters) meta.mutable_conf_state()->add_voters(id);
  return meta;
}

// A restored store: the log starts after it, as if it had installed a snapshot there.
absl::Status StartLogAfterRestoredStore(const kv::StateMachine& sm, const std::string& wal_dir,
                                        raft::wal::WalStorage* wal,
                                        const std::vector<uint64_t>& voters) {
  if (wal->LastIndex() != 0 || wal->hard_state().term() != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--restore-from needs a new data dir, but ", wal_dir, " holds a log"));
  }
  raftpb::HardState hs;
  hs.set_term(sm.applied_term());
  hs.set_commit(sm.applied_index());
  absl::Status s =
      wal->ApplySnapshot(MetadataAt(sm.applied_index(), sm.applied_term(), voters));
  if (s.ok()) s = wal->SetHardState(hs);
  if (s.ok()) s = wal->Sync();
  return s;
}

// The store lacks entries the log no longer has (it was lost, wiped or found corrupt, or a
// snapshot install was killed after the log restarted and before the store took the
// snapshot): load the newest snapshot, own or received, that reaches the log and is
// committed; the log after it is replayed by the core.
absl::Status LoadSnapshotReachingLog(kv::StateMachine* sm, const raft::wal::WalStorage& wal,
                                     const std::string& wal_dir,
                                     const SnapshotStore& snapshots) {
  std::optional<SnapshotFile> snap = snapshots.Newest(wal.hard_state().commit());
  if (!snap || snap->meta.applied_index + 1 < wal.FirstIndex()) {
    return absl::DataLossError(absl::StrFormat(
        "the state machine is at index %d, the log in %s starts at %d, and no snapshot in "
        "%s bridges the gap",
        sm->applied_index(), wal_dir, wal.FirstIndex(), snapshots.dir()));
  }
  spdlog::warn("raft: state machine at index {} but the log starts at {}: loading snapshot {}",
               sm->applied_index(), wal.FirstIndex(), snap->path);
  return sm->InstallSnapshot(snap->path);
}

// Everything before the log's first entry is committed: the log starts after a snapshot from
// the leader, a compaction of applied entries or a restored store. A snapshot install killed
// after the log restarted and before the raised commit was synced leaves a lower commit
// index on disk (RaftLoop::StartInstall): raise it, durably, as the install would have.
absl::Status CommitLogStart(raft::wal::WalStorage* wal, const std::string& wal_dir) {
  raftpb::HardState hs = wal->hard_state();
  const uint64_t log_start = wal->FirstIndex() - 1;
  if (hs.commit() >= log_start) return absl::OkStatus();
  spdlog::warn("raft: the log in {} starts after index {} but records commit {} (a snapshot "
               "install was interrupted): raising the commit index to {}",
               wal_dir, log_start, hs.commit(), log_start);
  hs.set_commit(log_start);
  absl::Status s = wal->SetHardState(hs);
  if (s.ok()) s = wal->Sync();
  return s;
}

// The store applied only committed entries, each after the log had synced it, but the raft
// loop does not sync a change of the commit index alone (raft_loop.h, PersistReady): after a
// crash the log's recorded commit may be behind what the store applied. Replay is bounded by
// the log, not by that commit: raise it, durably, to the store's applied index, once the log
// is known to hold the store's history there (the entry at the applied index, with the
// store's term). A store past the log's end or at an entry of another term is not this log's
// (the WAL was lost, replaced, or a pre-Raft data dir).
absl::Status CommitAppliedEntries(const kv::StateMachine& sm, raft::wal::WalStorage* wal,
                                  const std::string& wal_dir) {
  raftpb::HardState hs = wal->hard_state();
  const uint64_t applied = sm.applied_index();
  if (applied <= hs.commit()) return absl::OkStatus();
  if (applied > wal->LastIndex()) {
    return absl::DataLossError(absl::StrFormat(
        "state machine applied index %d is past the WAL's last index %d in %s (commit %d): "
        "the WAL does not belong to this store",
        applied, wal->LastIndex(), wal_dir, hs.commit()));
  }
  absl::StatusOr<uint64_t> term = wal->Term(applied);
  if (!term.ok()) return term.status();
  if (*term != sm.applied_term()) {
    return absl::DataLossError(absl::StrFormat(
        "state machine applied index %d has term %d but the WAL in %s holds term %d there: "
        "the WAL does not belong to this store",
        applied, sm.applied_term(), wal_dir, *term));
  }
  spdlog::info("raft: the store applied through index {}, past the log's recorded commit {} "
               "(not synced before a crash): raising the commit index to {}",
               applied, hs.commit(), applied);
  hs.set_commit(applied);
  absl::Status s = wal->SetHardState(hs);
  if (s.ok()) s = wal->Sync();
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<kv::StateMachine>> OpenStateMachine(
    const DataDir& dir, const std::string& restore_from, kv::StateMachineOptions tuning) {
  if (!restore_from.empty()) {
    if (absl::Status s = RestoreStore(dir, restore_from); !s.ok()) return s;
  }
  kv::StateMachineOptions options = std::move(tuning);
  options.db_path = dir.db();
  // No RocksDB fsync, and no RocksDB WAL: the Raft WAL is the source of truth and entries
  // after the store's applied index (what RocksDB last flushed to SST files, after a crash)
  // are replayed from it on start-up. The log is never compacted past the flushed index
  // (RaftLoop::OnSnapshotMade, CompactionBound).
  options.sync_writes = false;
  options.disable_wal = true;
  auto sm = kv::StateMachine::Open(options);
  if (!sm.ok() && sm.status().code() == absl::StatusCode::kDataLoss &&
      std::filesystem::exists(dir.wal())) {
    // A corrupt store is rebuilt from the newest snapshot plus the log (OpenLog loads the
    // snapshot when the store is behind the log). Keep the corrupt copy aside.
    const std::string aside = dir.db_aside(absl::ToUnixSeconds(absl::Now()));
    spdlog::error("{}; moving it to {} and rebuilding from snapshot + log",
                  sm.status().ToString(), aside);
    std::error_code ec;
    std::filesystem::rename(options.db_path, aside, ec);
    if (ec) return sm.status();
    sm = kv::StateMachine::Open(options);
  }
  if (!sm.ok()) return sm.status();
  if (!restore_from.empty()) {
    // This node's first snapshot, for peers that need one before it cuts its own. Written
    // from the restored store (the file given may be a live backup with a -wal companion).
    SnapshotStore snapshots(dir.snapshots());
    if (absl::Status s = snapshots.CreateDir(); !s.ok()) return s;
    auto written = kv::WriteSnapshot(
        **sm, snapshots.PathFor((*sm)->applied_index(), (*sm)->applied_term()));
    if (!written.ok()) return written.status();
  }
  return sm;
}

absl::StatusOr<std::unique_ptr<raft::wal::WalStorage>> OpenLog(
    kv::StateMachine* sm, const std::string& wal_dir, const raft::wal::WalOptions& options,
    const SnapshotStore& snapshots, bool restored, const std::vector<uint64_t>& voters) {
  auto wal = raft::wal::WalStorage::Open(wal_dir, options);
  if (!wal.ok()) return wal.status();
  if (restored) {
    absl::Status s = StartLogAfterRestoredStore(*sm, wal_dir, wal->get(), voters);
    if (!s.ok()) return s;
  }
  if (absl::Status s = CommitLogStart(wal->get(), wal_dir); !s.ok()) return s;
  if (sm->applied_index() + 1 < (*wal)->FirstIndex()) {
    absl::Status s = LoadSnapshotReachingLog(sm, **wal, wal_dir, snapshots);
    if (!s.ok()) return s;
  }
  if (absl::Status s = CommitAppliedEntries(*sm, wal->get(), wal_dir); !s.ok()) return s;
  return wal;
}

absl::Status CatchUpBackup(const kv::StateMachine& sm, const raft::wal::WalStorage& wal,
                           BackupWorker* backup) {
  if (backup->applied_index() >= sm.applied_index()) return absl::OkStatus();
  auto missing = wal.Entries(backup->applied_index() + 1, sm.applied_index() + 1, UINT64_MAX);
  if (!missing.ok()) return missing.status();
  for (const raftpb::Entry& e : *missing) backup->Enqueue(e.index(), e.term(), e.data());
  return absl::OkStatus();
}

std::optional<raftpb::Snapshot> SnapshotForCore(const SnapshotStore& snapshots,
                                                uint64_t applied_index,
                                                const std::vector<uint64_t>& voters) {
  std::optional<SnapshotFile> file = snapshots.Newest(applied_index);
  if (!file) return std::nullopt;
  raftpb::Snapshot snap;
  *snap.mutable_metadata() =
      MetadataAt(file->meta.applied_index, file->meta.applied_term, voters);
  snap.set_handle(file->path);
  return snap;
}

}  // namespace raftkv::server
