#include "server/backup_worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "kv/sqlite_snapshot.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

constexpr char kSnapshotPrefix[] = "snap-";
constexpr char kSnapshotSuffix[] = ".db";

}  // namespace

std::string SnapshotFileName(uint64_t index, uint64_t term) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%020llu-%llu%s", kSnapshotPrefix,
                static_cast<unsigned long long>(index), static_cast<unsigned long long>(term),
                kSnapshotSuffix);
  return buf;
}

BackupWorker::BackupWorker(kv::StateMachine* sm, BackupWorkerOptions options,
                           std::function<void(SnapshotReport)> on_snapshot)
    : sm_(sm), options_(std::move(options)), on_snapshot_(std::move(on_snapshot)) {}

absl::StatusOr<std::unique_ptr<BackupWorker>> BackupWorker::Start(
    kv::StateMachine* sm, BackupWorkerOptions options, uint64_t first_log_index,
    std::function<void(SnapshotReport)> on_snapshot) {
  std::unique_ptr<BackupWorker> w(
      new BackupWorker(sm, std::move(options), std::move(on_snapshot)));
  const BackupWorkerOptions& o = w->options_;
  if (absl::Status s = base::CreateDirIfMissing(o.snapshot_dir); !s.ok()) return s;
  kv::BackupOptions backup_options{o.backup_path, o.members};
  auto backup = kv::SqliteBackup::Open(backup_options);
  if (!backup.ok()) return backup.status();
  if ((*backup)->applied_index() + 1 < first_log_index) {
    // The log no longer holds what the backup lacks: rebuild it from the state machine.
    spdlog::info("backup {} is at index {} but the log starts at {}: rebuilding it from the "
                 "state machine", o.backup_path, (*backup)->applied_index(), first_log_index);
    backup->reset();
    backup = kv::SqliteBackup::CreateFrom(*sm, backup_options);
    if (!backup.ok()) return backup.status();
  }
  {
    absl::MutexLock lock(&w->backup_mu_);
    w->backup_ = *std::move(backup);
    w->applied_index_ = w->backup_->applied_index();
    // The newest snapshot on disk sets where the entry count starts.
    auto names = base::ListDir(o.snapshot_dir);
    if (names.ok()) {
      for (const std::string& n : *names) {
        if (!absl::StartsWith(n, kSnapshotPrefix) || !absl::EndsWith(n, kSnapshotSuffix)) continue;
        w->last_snapshot_index_ = std::max<uint64_t>(
            w->last_snapshot_index_, std::strtoull(n.c_str() + 5, nullptr, 10));
      }
    }
  }
  BackupWorker* raw = w.get();
  w->thread_ = std::thread([raw] { raw->Run(); });
  return w;
}

BackupWorker::~BackupWorker() { Stop(); }

void BackupWorker::Enqueue(uint64_t index, uint64_t term, std::string command) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Queued{index, term, std::move(command)});
  if (queue_.size() >= options_.max_queued_entries) apply_now_ = true;
}

void BackupWorker::RequestSnapshot() {
  absl::MutexLock lock(&mu_);
  snapshot_requested_ = true;
  apply_now_ = true;
}

void BackupWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void BackupWorker::Run() {
  for (;;) {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || apply_now_; };
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(options_.interval_ms));
      stopping = stopping_;
      apply_now_ = false;
    }
    absl::MutexLock lock(&backup_mu_);
    absl::Status s = ApplyQueued();
    if (s.ok() && !stopping) s = MaybeSnapshot();
    if (!s.ok()) {
      // The backup is a copy; the state machine and the log are unharmed. Keep trying (the
      // queue is retained), and the log is not compacted past the backup meanwhile.
      spdlog::error("backup: {}", s.ToString());
    }
    if (stopping) return;
  }
}

absl::Status BackupWorker::ApplyQueued() {
  std::deque<Queued> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(queue_);
  }
  if (batch.empty()) return absl::OkStatus();
  std::vector<kvpb::Command> commands(batch.size());
  std::vector<kv::BackupEntry> entries;
  entries.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    kv::BackupEntry e{batch[i].index, batch[i].term, nullptr};
    if (!batch[i].command.empty() && commands[i].ParseFromString(batch[i].command)) {
      e.command = &commands[i];
    }
    entries.push_back(e);
  }
  absl::Status s = backup_->Apply(entries);
  if (!s.ok()) {
    // Put the batch back in front so nothing is skipped on the next try.
    absl::MutexLock lock(&mu_);
    queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                  std::make_move_iterator(batch.end()));
    return s;
  }
  applied_index_ = backup_->applied_index();
  return absl::OkStatus();
}

absl::Status BackupWorker::MaybeSnapshot() {
  bool requested;
  {
    absl::MutexLock lock(&mu_);
    requested = snapshot_requested_;
    snapshot_requested_ = false;
  }
  const uint64_t index = backup_->applied_index();
  if (index == 0 || index <= last_snapshot_index_) return absl::OkStatus();
  if (!requested && index - last_snapshot_index_ < options_.snapshot_entries) {
    return absl::OkStatus();
  }
  const std::string path = absl::StrCat(options_.snapshot_dir, "/",
                                        SnapshotFileName(index, backup_->applied_term()));
  absl::StatusOr<kv::SnapshotMeta> meta = backup_->CopyTo(path);
  if (!meta.ok()) return meta.status();
  last_snapshot_index_ = index;
  PruneSnapshots();
  // Everything applied before the flush is durable in RocksDB afterwards.
  const uint64_t flushed = sm_->applied_index();
  if (absl::Status s = sm_->Flush(); !s.ok()) return s;
  spdlog::info("snapshot: {} at index {} ({} keys)", path, meta->applied_index, meta->kv_count);
  on_snapshot_(SnapshotReport{*meta, path, flushed});
  return absl::OkStatus();
}

void BackupWorker::PruneSnapshots() {
  auto names = base::ListDir(options_.snapshot_dir);
  if (!names.ok()) return;
  std::vector<std::string> snaps;
  for (const std::string& n : *names) {
    if (absl::StartsWith(n, kSnapshotPrefix) && absl::EndsWith(n, kSnapshotSuffix)) {
      snaps.push_back(n);
    }
  }
  std::sort(snaps.begin(), snaps.end());  // by index (zero-padded)
  bool removed = false;
  while (snaps.size() > options_.snapshots_retained) {
    const std::string path = absl::StrCat(options_.snapshot_dir, "/", snaps.front());
    if (::unlink(path.c_str()) == 0) removed = true;
    snaps.erase(snaps.begin());
  }
  if (removed) (void)base::SyncDir(options_.snapshot_dir);
}

absl::Status BackupWorker::ResetFrom(const std::string& path) {
  absl::MutexLock lock(&backup_mu_);
  backup_.reset();  // closes the file (and checkpoints its WAL)
  for (const char* suffix : {"-wal", "-shm"}) {
    ::unlink((options_.backup_path + suffix).c_str());  // must not be applied to the new file
  }
  if (absl::Status s = base::CopyFileDurably(path, options_.backup_path); !s.ok()) return s;
  auto backup = kv::SqliteBackup::Open(kv::BackupOptions{options_.backup_path, options_.members});
  if (!backup.ok()) return backup.status();
  backup_ = *std::move(backup);
  applied_index_ = backup_->applied_index();
  last_snapshot_index_ = backup_->applied_index();
  absl::MutexLock qlock(&mu_);
  while (!queue_.empty() && queue_.front().index <= backup_->applied_index()) queue_.pop_front();
  return absl::OkStatus();
}

}  // namespace raftkv::server
