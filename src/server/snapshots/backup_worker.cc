#include "server/snapshots/backup_worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "kv/sqlite_snapshot.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

BackupWorker::BackupWorker(kv::StateMachine* sm, BackupWorkerOptions options,
                           OnSnapshot on_snapshot)
    : sm_(sm),
      options_(std::move(options)),
      snapshots_(options_.snapshot_dir, options_.received_snapshot_dir),
      on_snapshot_(std::move(on_snapshot)),
      pacer_(options_.snapshot_time_share) {}

namespace {

// Snapshots are timed and spaced on a steady clock: a step of the wall clock must not hold
// them (and the log's compaction) back.
absl::Time SteadyNow() {
  return absl::UnixEpoch() +
         absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

}  // namespace

void SnapshotPacer::Took(absl::Time start, absl::Time end) {
  if (share_ >= 1) return;
  not_before_ = end + (end - start) * ((1 - share_) / share_);
}

absl::StatusOr<std::unique_ptr<BackupWorker>> BackupWorker::Start(
    kv::StateMachine* sm, BackupWorkerOptions options, uint64_t first_log_index,
    OnSnapshot on_snapshot) {
  std::unique_ptr<BackupWorker> w(
      new BackupWorker(sm, std::move(options), std::move(on_snapshot)));
  const BackupWorkerOptions& o = w->options_;
  if (absl::Status s = w->snapshots_.CreateDir(); !s.ok()) return s;
  const kv::BackupOptions backup_options = w->SqliteOptions();
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
    w->last_snapshot_index_ = w->snapshots_.NewestIndexByName();
  }
  BackupWorker* raw = w.get();
  w->thread_ = std::thread([raw] { raw->Run(); });
  return w;
}

BackupWorker::~BackupWorker() { Stop(); }

kv::BackupOptions BackupWorker::SqliteOptions() const {
  kv::BackupOptions o;
  o.path = options_.backup_path;
  o.members = options_.members;
  o.copy_busy_retries = options_.copy_busy_retries;
  return o;
}

BackupHealth BackupWorker::Health() const {
  BackupHealth h;
  h.applied_index = applied_index();
  absl::MutexLock lock(&health_mu_);
  h.error = error_;
  h.failing_since = failing_since_;
  h.failed_attempts = failed_attempts_;
  return h;
}

bool BackupWorker::Failing() const {
  absl::MutexLock lock(&health_mu_);
  return failed_attempts_ > 0;
}

void BackupWorker::RecordAttempt(const absl::Status& s) {
  absl::MutexLock lock(&health_mu_);
  if (s.ok()) {
    if (failed_attempts_ > 0) {
      spdlog::info("backup: working again after {} failed attempts", failed_attempts_);
    }
    error_ = absl::OkStatus();
    failed_attempts_ = 0;
    failing_since_ = absl::InfinitePast();
    return;
  }
  if (failed_attempts_ == 0) failing_since_ = absl::Now();
  ++failed_attempts_;
  error_ = s;
  // The first failure and then at powers of two: one a round would flood the log.
  if ((failed_attempts_ & (failed_attempts_ - 1)) == 0) {
    spdlog::error("backup: {} (failed attempt {}, retried every {} ms; the log is not "
                  "compacted past index {} meanwhile)",
                  s.ToString(), failed_attempts_, options_.interval_ms, applied_index());
  }
}

void BackupWorker::Enqueue(uint64_t index, uint64_t term, std::string command) {
  Push(Queued{index, term, std::move(command), nullptr});
}

void BackupWorker::Enqueue(uint64_t index, uint64_t term,
                           std::unique_ptr<kv::EntryEffect> effect) {
  Push(Queued{index, term, std::string(), std::move(effect)});
}

void BackupWorker::Push(Queued entry) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(entry));
  if (queue_.size() >= options_.max_queued_entries) apply_now_ = true;
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
    // After a failure wait the whole interval: a full queue must not make retries a busy loop.
    const bool failing = Failing();
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this, failing]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || (apply_now_ && !failing);
      };
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(options_.interval_ms));
      stopping = stopping_;
      apply_now_ = false;
    }
    absl::Status s;
    {
      absl::MutexLock lock(&backup_mu_);
      s = Round(stopping);
    }
    RecordAttempt(s);
    if (stopping) return;
  }
}

absl::Status BackupWorker::Round(bool stopping) {
  if (backup_ == nullptr) {
    spdlog::warn("backup: rebuilding {} from the state machine", options_.backup_path);
    auto rebuilt = kv::SqliteBackup::CreateFrom(*sm_, SqliteOptions());
    if (!rebuilt.ok()) return rebuilt.status();
    Adopt(*std::move(rebuilt));
  }
  absl::Status s = ApplyQueued();
  if (s.ok() && !stopping) s = MaybeSnapshot();
  return s;
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
    kv::BackupEntry e{batch[i].index, batch[i].term, nullptr, batch[i].effect.get()};
    if (e.effect == nullptr && !batch[i].command.empty() &&
        commands[i].ParseFromString(batch[i].command)) {
      e.command = &commands[i];
    }
    entries.push_back(e);
  }
  const uint64_t evaluated = backup_->evaluated_entries();
  const uint64_t rows = backup_->rows_written();
  absl::Status s = backup_->Apply(entries);
  // Counted even when the transaction failed: the work was done (and is done again).
  evaluated_entries_ += backup_->evaluated_entries() - evaluated;
  rows_written_ += backup_->rows_written() - rows;
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
  const uint64_t index = backup_->applied_index();
  if (index == 0 || index <= last_snapshot_index_) return absl::OkStatus();
  if (index - last_snapshot_index_ < options_.snapshot_entries) return absl::OkStatus();
  const absl::Time start = SteadyNow();
  if (!pacer_.Due(start)) return absl::OkStatus();  // the last one took long: a later round
  const std::string path = snapshots_.PathFor(index, backup_->applied_term());
  absl::StatusOr<kv::SnapshotMeta> meta = backup_->CopyTo(path);
  if (!meta.ok()) return meta.status();
  last_snapshot_index_ = index;
  snapshots_.Prune(options_.snapshots_retained, sm_->applied_index());
  // Everything applied before the flush is durable in RocksDB afterwards.
  const uint64_t flushed = sm_->applied_index();
  if (absl::Status s = sm_->Flush(); !s.ok()) return s;
  const absl::Time end = SteadyNow();
  pacer_.Took(start, end);
  spdlog::info("snapshot: {} at index {} ({} keys, {} ms; the next in {} entries and not "
               "before {} ms, --snapshot-time-share-pct)",
               path, meta->applied_index, meta->kv_count, absl::ToInt64Milliseconds(end - start),
               options_.snapshot_entries,
               absl::ToInt64Milliseconds(
                   std::max(absl::ZeroDuration(), pacer_.not_before() - end)));
  on_snapshot_(SnapshotReport{*meta, path, flushed});
  return absl::OkStatus();
}

absl::Status BackupWorker::ResetFrom(const std::string& path) {
  absl::MutexLock lock(&backup_mu_);
  backup_.reset();  // closes the file (and checkpoints its WAL)
  for (const char* suffix : {"-wal", "-shm"}) {
    ::unlink((options_.backup_path + suffix).c_str());  // must not be applied to the new file
  }
  absl::Status s = base::CopyFileDurably(path, options_.backup_path);
  if (s.ok()) {
    auto backup = kv::SqliteBackup::Open(SqliteOptions());
    if (backup.ok()) {
      Adopt(*std::move(backup));
      last_snapshot_index_ = backup_->applied_index();  // it is a copy of that snapshot
      return absl::OkStatus();
    }
    s = backup.status();
  }
  // backup_ stays null: the next round rebuilds it from the state machine.
  s = absl::Status(s.code(),
                   absl::StrCat("resetting the backup from snapshot ", path, ": ", s.message()));
  RecordAttempt(s);
  return s;
}

void BackupWorker::Adopt(std::unique_ptr<kv::SqliteBackup> backup) {
  backup_ = std::move(backup);
  applied_index_ = backup_->applied_index();
  absl::MutexLock qlock(&mu_);
  while (!queue_.empty() && queue_.front().index <= backup_->applied_index()) queue_.pop_front();
}

}  // namespace raftkv::server
