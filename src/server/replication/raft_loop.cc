#include "server/replication/raft_loop.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/check.h"
#include "kv/command_eval.h"
#include "raft/raft.h"
#include "raft/wal/wal_storage.h"
#include "server/peer/forwarder.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_transport.h"
#include "server/peer/snapshot_sender.h"
#include "server/replication/recovery.h"
#include "server/snapshots/backup_worker.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

// `core`: the core's kUnavailable answer to Propose/ReadIndex.
absl::Status NotLeaderError(const absl::Status& core) {
  std::optional<uint64_t> hint = raft::LeaderHint(core);
  if (!hint || *hint == 0) {
    // When this node itself is why (it lost its data and does not vote yet: raft/rejoin.cc),
    // the core says so; pass it on, it tells the operator what the cluster waits for.
    std::optional<std::string> why = raft::RejoinDetailOf(core);
    return absl::UnavailableError(absl::StrCat("no leader (election in progress)",
                                               why ? absl::StrCat("; this node ", *why) : ""));
  }
  return absl::UnavailableError(
      absl::StrCat("not the leader; the leader is ", NodeId::FromRaftId(*hint).ToString()));
}

// The raft loop could not make durable (or apply) what the core handed it: the on-disk state
// is unknown, so the process stops (docs/architecture.md, "The raft loop"). Never retried.
[[noreturn]] void ExitOnStorageFailure(const std::string& what, const absl::Status& s) {
  spdlog::critical("{} failed, exiting: {}", what, s.ToString());
  spdlog::shutdown();
  std::_Exit(70);
}

// Tests of real kvd processes (tests/integration/test_snapshots.py): with
// RAFTKV_CRASH_AFTER_INSTALL_STEP=<step name> in the environment, the process ends as a kill
// would (_exit, exit code kCrashedAtInstallStep) right after that step of a snapshot install.
constexpr int kCrashedAtInstallStep = 86;

// With RAFTKV_CRASH_AFTER_APPLYING_KEY=<key>, a LEADER ends the process as a kill would
// (_exit, kCrashedAfterApplying) right after applying the entry whose put creates <key>
// (not a duplicate, the key did not exist), before it answers anyone
// (tests/integration/test_sessions.py: the leader dies right after a commit).
constexpr int kCrashedAfterApplying = 87;

std::uint64_t RandomSessionId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return id;
}

std::optional<std::string> CrashKeyFromEnv() {
  const char* key = std::getenv("RAFTKV_CRASH_AFTER_APPLYING_KEY");
  if (key == nullptr || *key == '\0') return std::nullopt;
  return std::string(key);
}

std::function<void(std::string_view)> InstallCrashPointFromEnv() {
  const char* step = std::getenv("RAFTKV_CRASH_AFTER_INSTALL_STEP");
  if (step == nullptr || *step == '\0') return nullptr;
  return [crash_at = std::string(step)](std::string_view done) {
    if (done != crash_at) return;
    spdlog::critical("RAFTKV_CRASH_AFTER_INSTALL_STEP: ending the process after '{}'", done);
    spdlog::shutdown();
    std::_Exit(kCrashedAtInstallStep);
  };
}

}  // namespace

absl::Status RefusedProposal(const absl::Status& propose_error) {
  if (propose_error.code() == absl::StatusCode::kResourceExhausted) {
    // This node leads, but its uncommitted entries are over config.max_uncommitted_bytes
    // (followers lag or are down): nothing was appended.
    return absl::ResourceExhaustedError(absl::StrCat(
        "not applied: the leader's uncommitted log is over its limit (",
        propose_error.message(), "); retry later"));
  }
  return NotLeaderError(propose_error);
}

RaftLoop::RaftLoop(kv::StateMachine* sm, const DataDir& data_dir, RaftLoopOptions options)
    : sm_(sm),
      data_dir_(data_dir),
      options_(std::move(options)),
      self_(NodeId::FromPosition(options_.node_index)),
      snapshots_(data_dir.snapshots(), data_dir.received_snapshots()),
      pending_(absl::Milliseconds(options_.request_timeout_ms)),
      crash_after_applying_key_(CrashKeyFromEnv()),
      members_(options_.members ? *options_.members : MemberTable::Bootstrap(options_.cluster)) {}

std::vector<uint64_t> RaftLoop::Voters() const {
  if (!options_.bootstrap_voters.empty()) return options_.bootstrap_voters;
  std::vector<uint64_t> voters;
  for (size_t i = 0; i < options_.cluster.size(); ++i) {
    voters.push_back(NodeId::FromPosition(i).raft_id());
  }
  return voters;
}

absl::StatusOr<std::unique_ptr<RaftLoop>> RaftLoop::Start(kv::StateMachine* sm,
                                                          const DataDir& data_dir,
                                                          RaftLoopOptions options) {
  if (!options.install_crash_point) options.install_crash_point = InstallCrashPointFromEnv();
  std::unique_ptr<RaftLoop> r(new RaftLoop(sm, data_dir, std::move(options)));
  raft::wal::WalOptions wal_options;
  wal_options.max_segment_bytes = r->options_.wal_segment_bytes;
  wal_options.max_cached_bytes = r->options_.wal_cache_bytes;
  wal_options.env = r->options_.wal_env;
  auto wal = OpenLog(sm, data_dir.wal(), wal_options, r->snapshots_, r->options_.restored,
                     r->Voters());
  if (!wal.ok()) return wal.status();
  r->wal_ = *std::move(wal);
  if (absl::Status s = r->CreateCore(); !s.ok()) return s;
  r->readers_ = std::make_unique<ReaderPool>(r->options_.reader_threads);
  r->StartPeerLinks();
  if (absl::Status s = r->StartBackup(); !s.ok()) return s;

  spdlog::info("raft: {} (raft id {}) recovered: term {}, commit {}, log [{}, {}], applied {}",
               r->self_.ToString(), r->self_.raft_id(), r->raft_->term(),
               r->wal_->hard_state().commit(), r->wal_->FirstIndex(), r->wal_->LastIndex(),
               sm->applied_index());
  r->PublishStatus();
  RaftLoop* self = r.get();
  r->loop_thread_ = std::thread([self] { self->Loop(); });
  return r;
}

absl::Status RaftLoop::CreateCore() {
  raft::Config config;
  config.id = self_.raft_id();
  config.peers = Voters();
  config.election_tick = static_cast<int>(options_.election_ticks);
  config.heartbeat_tick = static_cast<int>(options_.heartbeat_ticks);
  config.max_msg_bytes = options_.max_msg_bytes;
  config.max_inflight_msgs = options_.max_inflight_msgs;
  config.applied = sm_->applied_index();
  config.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^ config.id;
  // Used only when the WAL is empty: this start's incarnation grows with the clock.
  config.incarnation = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  config.empty_start = options_.empty_start;
#ifndef NDEBUG
  config.check_invariants = true;
#endif
  auto core = raft::Raft::Create(config, wal_.get());
  if (!core.ok()) return core.status();
  raft_ = *std::move(core);
  return absl::OkStatus();
}

void RaftLoop::StartPeerLinks() {
  std::map<uint64_t, std::string> peers;
  {
    absl::MutexLock lock(&members_mu_);
    peers = members_.PeerAddresses(self_.raft_id());
    absl::MutexLock removed_lock(&removed_mu_);
    removed_ids_ = members_.removed();
  }
  channels_ = std::make_unique<PeerChannels>(std::move(peers), options_.peer);
  PeerTransportOptions transport_options;
  transport_options.max_queue_msgs = options_.peer_queue_msgs;
  transport_options.cluster_id = options_.cluster_id;
  transport_options.self_id = self_.raft_id();
  transport_ = std::make_unique<PeerTransport>(
      channels_.get(), transport_options,
      [this](uint64_t peer) { Post(UnreachableEvent{peer}); },
      [this](uint64_t peer, const std::string& why) {
        // The peer applied our removal, which is committed: our own log may never get it
        // (we were down, or the leader stopped sending to us before its commit reached us).
        StopRemoved(absl::StrCat("member ", peer, " says so: ", why));
      });
  forwarder_ = std::make_unique<Forwarder>(channels_.get());
  SnapshotTransferOptions transfer_options;
  transfer_options.chunk_bytes = options_.snapshot_chunk_bytes;
  transfer_options.rate_bytes_per_sec = options_.snapshot_rate_bytes_per_sec;
  snapshot_sender_ = std::make_unique<SnapshotSender>(
      channels_.get(), transfer_options,
      [this](uint64_t peer, bool ok) { Post(SnapshotSentEvent{peer, ok}); });
}

absl::Status RaftLoop::StartBackup() {
  // The backup follows the state machine; entries the store applied but the backup lacks
  // are still in the log (it is never compacted past the backup).
  BackupWorkerOptions backup_options;
  backup_options.backup_path = data_dir_.backup();
  backup_options.snapshot_dir = snapshots_.dir();
  backup_options.received_snapshot_dir = snapshots_.received_dir();
  backup_options.interval_ms = options_.backup_interval_ms;
  backup_options.snapshot_entries = options_.snapshot_entries;
  backup_options.snapshot_time_share = options_.snapshot_time_share_pct / 100.0;
  backup_options.snapshots_retained = options_.snapshots_retained;
  {
    absl::MutexLock lock(&members_mu_);
    backup_options.members = members_.Json();
  }
  backup_options.copy_busy_retries = options_.snapshot_copy_busy_retries;
  // Apply early enough that a healthy backup stays well inside --max-backup-lag-entries.
  backup_options.max_queued_entries =
      std::max<uint64_t>(1, std::min<uint64_t>(backup_options.max_queued_entries,
                                               options_.max_backup_lag_entries / 2));
  auto backup = BackupWorker::Start(sm_, backup_options, wal_->FirstIndex(),
                                    [this](SnapshotReport report) {
                                      Post(SnapshotMadeEvent{std::make_shared<SnapshotReport>(
                                          std::move(report))});
                                    });
  if (!backup.ok()) return backup.status();
  backup_ = *std::move(backup);
  if (absl::Status s = CatchUpBackup(*sm_, *wal_, backup_.get()); !s.ok()) return s;
  // Followers that need compacted entries get the newest snapshot this node holds.
  if (auto snap = SnapshotForCore(snapshots_, sm_->applied_index(), Voters())) {
    OfferSnapshot(*std::move(snap));
  }
  // What a crash left behind: partial transfers the node no longer needs, old snapshots.
  snapshots_.Prune(options_.snapshots_retained, sm_->applied_index());
  return absl::OkStatus();
}

RaftLoop::~RaftLoop() { Stop(); }

void RaftLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (loop_thread_.joinable()) loop_thread_.join();
  // An install in flight finishes its store and backup steps (a kill would leave what
  // start-up finishes; an orderly stop need not).
  if (install_thread_.joinable()) install_thread_.join();
  // Forward callbacks post into this object: wait until none can run any more (each has a
  // deadline of request_timeout_ms).
  while (forwards_in_flight_.load() > 0) absl::SleepFor(absl::Milliseconds(5));
  if (transport_) transport_->Stop();
  if (snapshot_sender_) snapshot_sender_->Stop();
  if (backup_) backup_->Stop();  // applies what it has queued
  // Anything posted after the loop ended (forward replies) fails now.
  std::vector<Event> rest;
  {
    absl::MutexLock lock(&mu_);
    rest.swap(inbox_);
  }
  for (Event& e : rest) Refuse(e, absl::UnavailableError("not applied: node is shutting down"));
  // Last: runs the read answers queued above (later ones run on their caller's thread).
  if (readers_) readers_->Stop();
}

void RaftLoop::Refuse(Event& e, const absl::Status& status) {
  if (auto* w = std::get_if<WriteEvent>(&e)) {
    // A write sent again after a broken Forward may have been applied the first time.
    std::move(w->done)(w->retry ? absl::UnknownError(absl::StrCat(
                                      "outcome unknown: forwarded before, then ", status.message()))
                                : status);
  }
  if (auto* b = std::get_if<WriteBatchEvent>(&e)) {
    for (WriteEvent& w : b->writes) {
      Event one(std::move(w));
      Refuse(one, status);
    }
  }
  if (auto* rd = std::get_if<ReadEvent>(&e)) std::move(rd->done)(status);
  if (auto* a = std::get_if<AppliedElsewhereEvent>(&e)) {
    // The leader applied it (committed): that is the answer, even if this node will not
    // apply it before it stops.
    std::move(a->done)(std::move(a->result));
  }
  if (auto* t = std::get_if<TransferEvent>(&e)) std::move(t->done)(status);
  if (auto* mc = std::get_if<MembershipEvent>(&e)) std::move(mc->done)(status);
}

void RaftLoop::Post(Event e) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      inbox_.push_back(std::move(e));
      return;
    }
  }
  Refuse(e, absl::UnavailableError("not applied: node is shutting down"));
}

void RaftLoop::Deliver(raftpb::Message m) { Post(std::move(m)); }

absl::Status RaftLoop::TakeWriteSlot() {
  if (outstanding_writes_.fetch_add(1) >= options_.max_pending_writes) {
    outstanding_writes_.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "too many pending writes (limit %d, --max-pending-writes); not applied",
        options_.max_pending_writes));
  }
  return absl::OkStatus();
}

void RaftLoop::Write(kvpb::Command cmd, WriteDone done) {
  PostWrite(std::move(cmd), /*may_forward=*/true,
            [done = std::move(done)](absl::StatusOr<ForwardResult> r) mutable {
              if (!r.ok()) {
                std::move(done)(r.status());
              } else {
                std::move(done)(std::move(r->result));
              }
            });
}

void RaftLoop::WriteBatch(std::vector<kvpb::Command> cmds, std::vector<WriteDone> dones) {
  std::vector<PendingRequests::WriteDone> wrapped;
  wrapped.reserve(dones.size());
  for (WriteDone& done : dones) {
    wrapped.push_back([done = std::move(done)](absl::StatusOr<ForwardResult> r) mutable {
      if (!r.ok()) {
        std::move(done)(r.status());
      } else {
        std::move(done)(std::move(r->result));
      }
    });
  }
  PostWrites(std::move(cmds), /*may_forward=*/true, std::move(wrapped));
}

void RaftLoop::WritesFromPeer(std::vector<kvpb::Command> cmds, std::vector<ForwardDone> dones) {
  PostWrites(std::move(cmds), /*may_forward=*/false, std::move(dones));
}

void RaftLoop::WriteFromPeer(kvpb::Command cmd, ForwardDone done) {
  // A forwarded write holds a slot of this node (and a gRPC thread) like a client's.
  PostWrite(std::move(cmd), /*may_forward=*/false, std::move(done));
}

absl::Status RaftLoop::CheckBackupLag() const {
  const uint64_t applied = sm_->applied_index();
  const uint64_t backup = backup_->applied_index();
  if (applied <= backup + options_.max_backup_lag_entries) return absl::OkStatus();
  const absl::Status error = backup_->Health().error;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "not applied: the backup is %d entries behind the state machine (limit %d, "
      "--max-backup-lag-entries), and the log is not compacted past it%s; retry later",
      applied - backup, options_.max_backup_lag_entries,
      error.ok() ? "" : absl::StrCat(" (backup error: ", error.message(), ")")));
}

absl::Duration RaftLoop::BackupLagWait() const {
  return absl::Milliseconds(
      std::min<uint64_t>(options_.backup_lag_wait_ms, options_.request_timeout_ms / 2));
}

void RaftLoop::ReleaseWritesHeldForBackup(absl::Time now) {
  const absl::Status lag = CheckBackupLag();
  if (lag.ok()) {
    std::vector<WriteEvent> held;
    held.swap(lag_held_writes_);
    lag_held_expiry_ = absl::InfiniteFuture();
    // In arrival order; HandleWrites holds them again, behind each other, should the backup
    // fall back past the limit meanwhile.
    HandleWriteGroups(held);
    return;
  }
  // Still behind: nothing to do before the first wait runs out (most iterations).
  if (now < lag_held_expiry_) return;
  // A group one of whose writes waited BackupLagWait() is refused whole; the others keep
  // waiting, in order.
  std::vector<WriteEvent> held;
  held.swap(lag_held_writes_);
  lag_held_expiry_ = absl::InfiniteFuture();
  const absl::Duration wait = BackupLagWait();
  for (size_t i = 0, j = 0; i < held.size(); i = j) {
    absl::Time first = held[i].taken;
    for (j = i + 1; j < held.size() && held[j].group == held[i].group; ++j) {
      first = std::min(first, held[j].taken);
    }
    if (now < first + wait) {
      lag_held_expiry_ = std::min(lag_held_expiry_, first + wait);
      for (size_t k = i; k < j; ++k) lag_held_writes_.push_back(std::move(held[k]));
      continue;
    }
    const absl::Status refused(
        lag.code(), absl::StrFormat("%s (waited %d ms; writes wait at most %d ms, "
                                    "--backup-lag-wait-ms)",
                                    lag.message(), absl::ToInt64Milliseconds(now - first),
                                    absl::ToInt64Milliseconds(wait)));
    for (size_t k = i; k < j; ++k) {
      Event e(std::move(held[k]));
      Refuse(e, refused);
    }
  }
}

std::vector<std::string> RaftLoop::Alarms() const {
  std::vector<std::string> alarms;
  const BackupHealth h = backup_->Health();
  if (!h.error.ok()) {
    alarms.push_back(absl::StrFormat(
        "backup %s failing since %s (%d attempts, retried every %d ms; %d entries behind; the "
        "log is not compacted past index %d): %s",
        data_dir_.backup(), absl::FormatTime(absl::RFC3339_sec, h.failing_since,
                                             absl::UTCTimeZone()),
        h.failed_attempts, options_.backup_interval_ms,
        sm_->applied_index() - std::min(sm_->applied_index(), h.applied_index), h.applied_index,
        h.error.message()));
  }
  if (absl::Status s = CheckBackupLag(); !s.ok()) {
    alarms.push_back(absl::StrFormat(
        "writes wait up to %d ms (--backup-lag-wait-ms), then are refused: %s",
        absl::ToInt64Milliseconds(BackupLagWait()), s.message()));
  }
  return alarms;
}

void RaftLoop::PostWrite(kvpb::Command cmd, bool may_forward, PendingRequests::WriteDone done) {
  // A backup lagging past --max-backup-lag-entries makes the loop hold the write (HandleWrites).
  if (absl::Status s = TakeWriteSlot(); !s.ok()) {
    std::move(done)(s);
    return;
  }
  WriteEvent w;
  w.cmd = std::move(cmd);
  w.may_forward = may_forward;
  w.group = next_group_.fetch_add(1);
  w.done = [this, done = std::move(done)](absl::StatusOr<ForwardResult> r) mutable {
    outstanding_writes_.fetch_sub(1);
    std::move(done)(std::move(r));
  };
  Post(std::move(w));
}

void RaftLoop::PostWrites(std::vector<kvpb::Command> cmds, bool may_forward,
                          std::vector<PendingRequests::WriteDone> dones) {
  RAFTKV_CHECK(cmds.size() == dones.size());
  const size_t n = cmds.size();
  if (outstanding_writes_.fetch_add(n) + n > options_.max_pending_writes) {
    outstanding_writes_.fetch_sub(n);
    const absl::Status refused = absl::ResourceExhaustedError(absl::StrFormat(
        "too many pending writes (limit %d, --max-pending-writes); not applied",
        options_.max_pending_writes));
    for (auto& done : dones) std::move(done)(refused);
    return;
  }
  WriteBatchEvent batch;
  batch.writes.reserve(cmds.size());
  const uint64_t group = next_group_.fetch_add(1);
  for (size_t i = 0; i < cmds.size(); ++i) {
    WriteEvent& w = batch.writes.emplace_back();
    w.cmd = std::move(cmds[i]);
    w.may_forward = may_forward;
    w.group = group;
    w.done = [this, done = std::move(dones[i])](absl::StatusOr<ForwardResult> r) mutable {
      outstanding_writes_.fetch_sub(1);
      std::move(done)(std::move(r));
    };
  }
  Post(std::move(batch));
}

void RaftLoop::TransferLeadership(std::optional<uint64_t> to, uint64_t timeout_ms,
                                  TransferDone done) {
  Post(TransferEvent{to, absl::Milliseconds(timeout_ms), /*drain=*/false, std::move(done)});
}

absl::Status RaftLoop::HandOverLeadership(absl::Duration timeout) {
  struct State {
    absl::Notification done;
    absl::StatusOr<uint64_t> result = absl::UnknownError("no answer");
  };
  auto state = std::make_shared<State>();
  Post(TransferEvent{std::nullopt, timeout, /*drain=*/true,
                     [state](absl::StatusOr<uint64_t> r) {
                       state->result = std::move(r);
                       state->done.Notify();
                     }});
  // The loop answers by the deadline (checked every tick); the margin covers a slow tick.
  if (!state->done.WaitForNotificationWithTimeout(timeout + absl::Seconds(1))) {
    return absl::DeadlineExceededError("the raft loop did not answer the hand-over");
  }
  if (state->result.ok()) {
    spdlog::info("raft: handed leadership over to {}",
                 NodeId::FromPosition(*state->result).ToString());
    return absl::OkStatus();
  }
  // Not leading: nothing to hand over.
  if (state->result.status().code() == absl::StatusCode::kUnavailable) return absl::OkStatus();
  return state->result.status();
}

void RaftLoop::ReadBarrier(ReadDone done) {
  // The loop only decides when a read may go ahead; the read itself (what `done` does: a
  // GET, a Range of 100,000 keys, a count of the whole keyspace) runs on the reader pool
  // (HandleEvent). Refused here (the node is stopping), `done` runs on this thread.
  Post(ReadEvent{std::move(done)});
}

RaftLoop::ReadDone RaftLoop::ReleaseToReaders(ReadDone done) {
  // Called on the loop thread only (PendingRequests is the loop's): the reads an iteration
  // releases (a ReadIndex round answers every read that arrived in one iteration) reach the
  // pool in one SubmitMany, which takes its lock once and wakes its threads once, instead
  // of once per read.
  return [this, done = std::move(done)](absl::Status s) mutable {
    released_reads_.push_back([done = std::move(done), s = std::move(s)]() mutable {
      std::move(done)(std::move(s));
    });
  };
}

void RaftLoop::SubmitReleasedReads() {
  if (released_reads_.empty()) return;
  std::vector<ReaderPool::Task> tasks;
  tasks.swap(released_reads_);
  read_barriers_released_.fetch_add(tasks.size(), std::memory_order_relaxed);
  read_handoffs_.fetch_add(1, std::memory_order_relaxed);
  readers_->SubmitMany(std::move(tasks));
}

// ---------------------------------------------------------------------------------------
// The loop.

namespace {

// Raises `max` (microseconds) to `d` if `d` is longer.
void RecordMax(std::atomic<uint64_t>& max, absl::Duration d) {
  const uint64_t us = static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(d)));
  if (us > max.load(std::memory_order_relaxed)) max.store(us, std::memory_order_relaxed);
}

}  // namespace

void RaftLoop::Loop() {
  const absl::Duration tick = absl::Milliseconds(options_.tick_ms);
  absl::Time last_tick = absl::Now();
  absl::Time next_tick = last_tick + tick;
  for (;;) {
    std::vector<Event> events;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !inbox_.empty();
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_tick);
      if (stopping_) break;
      events.swap(inbox_);
    }
    // One iteration: from here to the next wait (NodeStatus::loop_max_iteration_us).
    const absl::Time started = absl::Now();
    iteration_start_ = started;
    std::vector<ReadDone> new_reads;
    HandleEvents(events, &new_reads);
    if (!new_reads.empty()) StartRead(std::move(new_reads));

    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      std::vector<WriteEvent> due;
      due.swap(deferred_writes_);
      HandleWriteGroups(due);
      RecordMax(loop_max_tick_gap_us_, now - last_tick);
      last_tick = now;
      raft_->Tick();
      pending_.Expire(now);
      RefreshDbSize();
      next_tick += tick;
      if (next_tick < now) next_tick = now + tick;  // fell behind: don't tick in a burst
    }
    if (!lag_held_writes_.empty()) ReleaseWritesHeldForBackup(now);
    // Before the Ready: writes held for a transfer that just ended are proposed (or sent to
    // the new leader) in this iteration.
    if (!transfers_.empty() || !held_writes_.empty() || transfer_target_ != 0) {
      CheckTransfers(absl::Now());
    }
    // Reads refused by StartRead (not leader), expired by the tick or released by a
    // transfer: answered before the Ready's fsync.
    SubmitReleasedReads();
    while (raft_->HasReady()) {
      ProcessReady();
      // Before the next Ready's fsync: the reads this one released go now.
      SubmitReleasedReads();
    }
    if (deferred_snapshot_ && raft_->log().applied() >= deferred_snapshot_->meta.applied_index) {
      std::shared_ptr<SnapshotReport> report = std::move(deferred_snapshot_);
      spdlog::info("raft: deferred snapshot at index {} offered (applied {})",
                   report->meta.applied_index, raft_->log().applied());
      OnSnapshotMade(*report);
    }
    if (raft_->term() != last_term_ || raft_->lead() != last_lead_) OnTermOrRoleChange();
    PublishStatus();
    SubmitReleasedReads();  // released by a change of term or role
    RecordMax(loop_max_iteration_us_, absl::Now() - started);
  }
  // Proposed (or forwarded) and not answered: they may still commit.
  pending_.FailAll(absl::UnknownError("outcome unknown: node is shutting down after the write "
                                      "was proposed"),
                   absl::UnavailableError("node is shutting down"));
  for (WriteEvent& w : deferred_writes_) {
    std::move(w.done)(absl::UnknownError(
        "outcome unknown: node is shutting down; the write was forwarded before"));
  }
  deferred_writes_.clear();
  const absl::Status stopping = absl::UnavailableError("not applied: node is shutting down");
  for (std::vector<WriteEvent>* held : {&held_writes_, &lag_held_writes_}) {
    for (WriteEvent& w : *held) {
      Event e(std::move(w));
      Refuse(e, stopping);
    }
    held->clear();
  }
  lag_held_expiry_ = absl::InfiniteFuture();
  for (PendingTransfer& t : transfers_) {
    std::move(t.done)(absl::UnavailableError("node is shutting down"));
  }
  transfers_.clear();
  SubmitReleasedReads();  // failed by FailAll; Stop() stops the pool after this thread
}

void RaftLoop::HandleEvents(std::vector<Event>& events, std::vector<ReadDone>* new_reads) {
  // Consecutive single writes (each its own group, from any connection) are handled as one
  // run, so a follower forwards them in one call: one RPC per loop iteration instead of one
  // per write. Their order among themselves is kept; any other event ends the run first, so
  // the order of events is kept too. A run is cut at the batch limits.
  WriteRun run;
  for (Event& e : events) {
    auto* w = std::get_if<WriteEvent>(&e);
    if (w == nullptr || w->retry || w->held) {
      FlushRun(run);
      HandleEvent(e, new_reads);
      continue;
    }
    AddToRun(run, std::move(*w));
  }
  FlushRun(run);
}

void RaftLoop::AddToRun(WriteRun& run, WriteEvent w) {
  const uint64_t bytes = w.cmd.ByteSizeLong();
  if (run.writes.size() >= options_.max_forward_batch_writes ||
      (!run.writes.empty() && run.bytes + bytes > options_.max_forward_batch_bytes)) {
    FlushRun(run);
  }
  run.bytes += bytes;
  run.writes.push_back(std::move(w));
}

void RaftLoop::FlushRun(WriteRun& run) {
  if (run.writes.empty()) return;
  HandleWrites(run.writes);
  run.writes.clear();
  run.bytes = 0;
}

void RaftLoop::HandleEvent(Event& e, std::vector<ReadDone>* new_reads) {
  if (auto* m = std::get_if<raftpb::Message>(&e)) {
    if (installing_ && m->type() == raftpb::MSG_SNAP) {
      // One install at a time: the newest snapshot offered meanwhile waits for this one.
      held_snapshot_msg_ = std::move(*m);
      return;
    }
    if (m->from() != 0) last_heard_[m->from()] = iteration_start_;
    raft_->Step(*m);
  } else if (auto* w = std::get_if<WriteEvent>(&e)) {
    HandleWrite(*w);
  } else if (auto* b = std::get_if<WriteBatchEvent>(&e)) {
    HandleWrites(b->writes);
  } else if (auto* r = std::get_if<ReadEvent>(&e)) {
    new_reads->push_back(ReleaseToReaders(std::move(r->done)));
  } else if (auto* u = std::get_if<UnreachableEvent>(&e)) {
    raft_->ReportUnreachable(u->peer);
  } else if (auto* a = std::get_if<AppliedElsewhereEvent>(&e)) {
    pending_.AddAppliedElsewhere(a->index, std::move(a->result), a->taken, std::move(a->done));
    pending_.ReleaseApplied(sm_->applied_index());
  } else if (auto* made = std::get_if<SnapshotMadeEvent>(&e)) {
    if (made->report->meta.applied_index > raft_->log().applied()) {
      // The backup holds only committed entries, but it can be ahead of what this node knows
      // committed: after a restart the store replays the log up to the commit index the WAL
      // kept (a commit-only change is not synced), while the synced backup may hold later
      // entries. The core takes a snapshot only at an index it applied: this one waits, and
      // a newer one replaces it.
      if (!deferred_snapshot_) {
        spdlog::info("raft: snapshot at index {} waits until this node applied it (applied {}, "
                     "commit {})",
                     made->report->meta.applied_index, raft_->log().applied(),
                     raft_->log().committed());
      }
      deferred_snapshot_ = std::move(made->report);
    } else {
      if (deferred_snapshot_ &&
          deferred_snapshot_->meta.applied_index <= made->report->meta.applied_index) {
        deferred_snapshot_.reset();  // superseded
      }
      OnSnapshotMade(*made->report);
    }
  } else if (auto* sent = std::get_if<SnapshotSentEvent>(&e)) {
    raft_->ReportSnapshot(sent->peer, sent->ok);
  } else if (std::holds_alternative<InstallDoneEvent>(e)) {
    FinishInstall();
  } else if (auto* t = std::get_if<TransferEvent>(&e)) {
    HandleTransfer(*t);
  } else if (auto* mc = std::get_if<MembershipEvent>(&e)) {
    HandleMembership(*mc);
  }
}

void RaftLoop::HandleWrite(WriteEvent& w) {
  std::vector<WriteEvent> one;
  one.push_back(std::move(w));
  HandleWrites(one);
}

void RaftLoop::HandleWriteGroups(std::vector<WriteEvent>& ws) {
  WriteRun run;
  size_t i = 0;
  while (i < ws.size()) {
    size_t j = i + 1;
    while (j < ws.size() && ws[j].group == ws[i].group) ++j;
    if (j == i + 1 && !ws[i].retry) {
      // A single write (held ones released together, say): it joins its neighbours' run, so
      // a follower forwards them in one call, as HandleEvents does. Held writes may join
      // (HandleEvents never sees them): the run's Forward takes its deadline from its first
      // write, the oldest.
      AddToRun(run, std::move(ws[i]));
    } else {
      FlushRun(run);
      std::vector<WriteEvent> group(std::make_move_iterator(ws.begin() + i),
                                    std::make_move_iterator(ws.begin() + j));
      HandleWrites(group);
    }
    i = j;
  }
  FlushRun(run);
}

void RaftLoop::HandleWrites(std::vector<WriteEvent>& ws) {
  // A retried batch waits as a whole (its writes share not_before): none of it may go
  // ahead of the rest.
  if (!ws.empty() && ws.front().retry && absl::Now() < ws.front().not_before) {
    for (WriteEvent& w : ws) deferred_writes_.push_back(std::move(w));
    return;
  }
  // The backup lags too far (or writes before these wait for it): these wait too, in order,
  // rather than being refused at once (ReleaseWritesHeldForBackup).
  if (!ws.empty() && (!lag_held_writes_.empty() || !CheckBackupLag().ok())) {
    const absl::Time now = absl::Now();
    for (WriteEvent& w : ws) {
      if (!w.retry && !w.held && !w.lag_held) w.taken = now;
      w.lag_held = true;
      lag_held_expiry_ = std::min(lag_held_expiry_, w.taken + BackupLagWait());
      lag_held_writes_.push_back(std::move(w));
    }
    return;
  }
  std::vector<WriteEvent> run;  // consecutive writes for the leader `run_leader`
  uint64_t run_leader = 0;
  for (WriteEvent& w : ws) {
    std::optional<uint64_t> leader = ProposeOrRoute(w);
    if (!leader) continue;
    if (!run.empty() && *leader != run_leader) {
      ForwardWrites(std::move(run), run_leader);
      run.clear();
    }
    run_leader = *leader;
    run.push_back(std::move(w));
  }
  if (!run.empty()) ForwardWrites(std::move(run), run_leader);
}

std::optional<uint64_t> RaftLoop::ProposeOrRoute(WriteEvent& w) {
  const absl::Time now = absl::Now();
  if (w.retry) {
    if (now >= w.taken + absl::Milliseconds(options_.request_timeout_ms)) {
      std::move(w.done)(absl::DeadlineExceededError(absl::StrFormat(
          "outcome unknown: the forwarded write was not answered within %d ms "
          "(--request-timeout-ms)", options_.request_timeout_ms)));
      return std::nullopt;
    }
  } else if (!w.held && !w.lag_held) {
    w.taken = now;
  }
  // The session rules every replica must apply alike travel in the entry (the leader's
  // values: a forwarded command is stamped again by the leader).
  w.cmd.set_session_expiry_entries(options_.session_expiry_entries);
  w.cmd.set_session_window(options_.session_window);
  std::string data = w.cmd.SerializeAsString();
  absl::StatusOr<raft::EntryId> id = raft_->Propose(data);
  if (id.ok()) {
    // The deadline runs from when this node took the write, whichever try this is.
    pending_.AddWrite(id->index, id->term, w.taken, std::move(w.done));
    return std::nullopt;
  }
  if (id.status().code() == absl::StatusCode::kUnavailable && HoldingWrites()) {
    // Refused because this node is handing leadership over: held until that is decided
    // (CheckTransfers), not bounced to a client that would have to find the next leader.
    w.held = true;
    held_writes_.push_back(std::move(w));
    return std::nullopt;
  }
  std::optional<uint64_t> hint = raft::LeaderHint(id.status());
  // A held write of a follower is relayed: that follower still names this node as leader.
  if ((!w.may_forward && !w.held) || !hint || *hint == 0 || *hint == self_.raft_id()) {
    absl::Status refused = RefusedProposal(id.status());
    if (w.retry) {
      // Sent to a leader before: it may have been applied there.
      refused = absl::UnknownError(absl::StrCat(
          "outcome unknown: the write was forwarded before and cannot be sent again now (",
          refused.message(), ")"));
    }
    std::move(w.done)(refused);
    return std::nullopt;
  }
  return *hint;
}

void RaftLoop::ForwardWrites(std::vector<WriteEvent> ws, uint64_t leader) {
  // A follower: the leader proposes and applies them in order; we answer each once we
  // applied it too.
  RAFTKV_CHECK(!ws.empty());
  struct Sent {
    kvpb::Command cmd;
    absl::Time taken;
    PendingRequests::WriteDone answer;
  };
  auto sent = std::make_shared<std::vector<Sent>>();
  std::vector<std::string> wire;
  wire.reserve(ws.size());
  const bool retry = ws.front().retry;
  const absl::Time taken = ws.front().taken;
  const uint64_t group = ws.front().group;
  for (WriteEvent& w : ws) {
    size_t lane = SIZE_MAX;  // SIZE_MAX: the client's session (or none) is on the command
    {
      absl::MutexLock lock(&forward_mu_);
      if (w.cmd.client_id() == 0) {
        // The window every replica applies is the leader's (it stamps the entry); the
        // cluster's nodes are started with the same --session-window.
        const uint64_t span = std::max<uint64_t>(
            1, std::min(options_.session_window, options_.forward_lane_writes));
        for (size_t i = 0; i < forward_lanes_.size() && lane == SIZE_MAX; ++i) {
          if (forward_lanes_[i].next - forward_lanes_[i].floor() < span) lane = i;
        }
        if (lane == SIZE_MAX) {
          forward_lanes_.push_back(ForwardLane{RandomSessionId()});
          lane = forward_lanes_.size() - 1;
          forward_lanes_count_.store(forward_lanes_.size(), std::memory_order_relaxed);
        }
        ForwardLane& l = forward_lanes_[lane];
        w.cmd.set_client_id(l.session_id);
        w.cmd.set_sequence(l.next++);
        l.unanswered.insert(w.cmd.sequence());
        const uint64_t in_flight = l.next - l.floor();
        if (in_flight > forward_lane_max_span_.load(std::memory_order_relaxed)) {
          forward_lane_max_span_.store(in_flight, std::memory_order_relaxed);
        }
      } else {
        for (size_t i = 0; i < forward_lanes_.size(); ++i) {
          if (forward_lanes_[i].session_id == w.cmd.client_id()) lane = i;  // sent again
        }
      }
      if (lane != SIZE_MAX) w.cmd.set_first_unacked(forward_lanes_[lane].floor());
    }
    wire.push_back(w.cmd.SerializeAsString());
    // Called once with the final answer: the lane forgets the sequence.
    const uint64_t own_sequence = w.cmd.sequence();
    sent->push_back(Sent{std::move(w.cmd), w.taken,
                         [this, lane, own_sequence, done = std::move(w.done)](
                             absl::StatusOr<ForwardResult> r) mutable {
                           if (lane != SIZE_MAX) {
                             absl::MutexLock lock(&forward_mu_);
                             forward_lanes_[lane].unanswered.erase(own_sequence);
                           }
                           std::move(done)(std::move(r));
                         }});
  }
  forwards_in_flight_.fetch_add(1);
  forward_calls_.fetch_add(1, std::memory_order_relaxed);
  forwarded_writes_.fetch_add(wire.size(), std::memory_order_relaxed);
  // A try after a broken Forward gets what is left of the write's deadline.
  const int64_t left_ms = absl::ToInt64Milliseconds(
      taken + absl::Milliseconds(options_.request_timeout_ms) - absl::Now());
  forwarder_->ForwardBatch(
      leader, std::move(wire),
      static_cast<uint32_t>(std::clamp<int64_t>(left_ms, 1, options_.request_timeout_ms)),
      [this, sent, retry, group](std::vector<absl::StatusOr<ForwardResult>> results) mutable {
        WriteBatchEvent again;  // the writes to send again, in order
        for (size_t i = 0; i < sent->size(); ++i) {
          Sent& s = (*sent)[i];
          absl::StatusOr<ForwardResult>& r = results[i];
          if (!r.ok()) {
            if (retry && r.status().code() != absl::StatusCode::kUnknown) {
              // Sent before to a leader that may have applied it: whatever this try says
              // ("not applied" there, an unknown peer), the write's outcome is unknown.
              r = absl::UnknownError(absl::StrCat(
                  "outcome unknown: forwarded to a leader before, then: ", r.status().message()));
            }
            if (r.status().code() == absl::StatusCode::kUnknown && s.cmd.client_id() != 0) {
              // The Forward broke after it was sent (the leader died or stepped down): send
              // it again, under the same session, once a leader is known; a duplicate is
              // answered with the first result. The batch's broken writes go again together,
              // in order.
              WriteEvent& w = again.writes.emplace_back();
              w.cmd = std::move(s.cmd);
              w.done = std::move(s.answer);
              w.retry = true;
              w.taken = s.taken;
              w.not_before = absl::Now() + absl::Milliseconds(options_.tick_ms);
              w.group = group;
            } else {
              std::move(s.answer)(r.status());
            }
            continue;
          }
          // The index goes back too: a relayed write's follower waits for its own apply.
          Post(AppliedElsewhereEvent{
              r->index, std::move(r->result), s.taken,
              [answer = std::move(s.answer), index = r->index](
                  absl::StatusOr<kv::ApplyResult> applied) mutable {
                if (!applied.ok()) {
                  std::move(answer)(applied.status());
                } else {
                  std::move(answer)(ForwardResult{index, *std::move(applied)});
                }
              }});
        }
        if (!again.writes.empty()) Post(std::move(again));
        forwards_in_flight_.fetch_sub(1);
      });
}

namespace {

std::string NodeName(uint64_t raft_id) { return NodeId::FromRaftId(raft_id).ToString(); }

// "voters node 0, node 1, node 2; learners node 3", for errors.
std::string DescribeMembers(const raftpb::ConfState& conf) {
  auto names = [](const auto& ids) {
    std::vector<std::string> out;
    for (uint64_t id : ids) out.push_back(NodeName(id));
    return out.empty() ? std::string("none") : absl::StrJoin(out, ", ");
  };
  return absl::StrCat("voters ", names(conf.voters()), "; learners ", names(conf.learners()));
}

}  // namespace

void RaftLoop::HandleTransfer(TransferEvent& t) {
  const absl::Time now = absl::Now();
  if (raft_->role() != raft::Role::kLeader) {
    if (transfer_target_ != 0 &&
        (!t.to || NodeId::FromPosition(*t.to).raft_id() == transfer_target_)) {
      // This node just handed over and no leader is known yet: the request (a SIGTERM's
      // hand-over among them) waits for the outcome like one made before the step-down,
      // instead of finding "nothing to hand over" while writes are still held here.
      transfers_.push_back(PendingTransfer{t.to ? transfer_target_ : 0, now + t.timeout,
                                           t.timeout, t.drain, std::move(t.done)});
      return;
    }
    std::optional<NodeId> lead = NodeId::FromRaftIdOrNone(raft_->lead());
    std::move(t.done)(absl::UnavailableError(
        lead ? absl::StrCat("not the leader; the leader is ", lead->ToString(),
                            ": a leadership transfer must be asked of the leader")
             : std::string("no leader (election in progress): no leadership to transfer")));
    return;
  }
  uint64_t target = 0;
  if (t.to) {
    const NodeId to = NodeId::FromPosition(*t.to);
    target = to.raft_id();
    const raftpb::ConfState& conf = raft_->configuration();
    absl::Status bad;
    if (to == self_) {
      bad = absl::FailedPreconditionError(
          absl::StrCat(to.ToString(), " is this node, which already leads"));
    } else if (!raft::IsMemberIn(conf, target)) {
      bad = absl::NotFoundError(absl::StrCat(to.ToString(), " is not a member of the cluster (",
                                             DescribeMembers(conf), ")"));
    } else if (!raft::IsVoterIn(conf, target)) {
      bad = absl::FailedPreconditionError(absl::StrCat(
          to.ToString(), " is a learner, not a voter: only a voter can lead (promote it first)"));
    }
    if (!bad.ok()) {
      std::move(t.done)(bad);
      return;
    }
  }
  const absl::Time deadline = now + t.timeout;
  if (transfer_target_ != 0) {
    if (target != 0 && target != transfer_target_) {
      std::move(t.done)(absl::FailedPreconditionError(
          absl::StrCat("a leadership transfer to ", NodeName(transfer_target_),
                       " is in progress; retry once it is over")));
      return;
    }
    transfers_.push_back(PendingTransfer{t.to ? transfer_target_ : 0, deadline, t.timeout,
                                         t.drain, std::move(t.done)});
    return;
  }
  const bool named = target != 0;
  if (!named) target = PickTransferTarget(now);
  absl::Status s = raft_->TransferLeadership(target);
  if (!s.ok() && !named && target != 0) s = raft_->TransferLeadership(0);  // the core picks
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kUnavailable) {
      s = NotLeaderError(s);
    } else if (named) {
      s = absl::FailedPreconditionError(absl::StrCat(
          NodeName(target), " cannot lead now: it lost its data and is still recovering"));
    } else {
      s = absl::FailedPreconditionError(
          "no other voter to hand leadership over to (a one-voter cluster, or every other "
          "voter is recovering a lost disk)");
    }
    std::move(t.done)(s);
    return;
  }
  transfer_target_ = raft_->Status().lead_transferee;
  transfer_term_ = raft_->term();
  // Past this, a node that stepped down and knows no leader stops holding writes.
  transfer_give_up_ =
      now + 2 * absl::Milliseconds(options_.tick_ms) * static_cast<int>(options_.election_ticks);
  spdlog::info("raft: transferring leadership to {} (term {})", NodeName(transfer_target_),
               transfer_term_);
  // A named target must win; with none, any other leader is the hand-over done.
  transfers_.push_back(PendingTransfer{named ? transfer_target_ : 0, deadline, t.timeout,
                                       t.drain, std::move(t.done)});
}

uint64_t RaftLoop::PickTransferTarget(absl::Time now) const {
  // The voter with the highest match among those heard from within an election timeout (the
  // core's own choice, highest match alone, may pick a node that just went down).
  const absl::Duration recent =
      absl::Milliseconds(options_.tick_ms) * static_cast<int>(options_.election_ticks);
  const raftpb::ConfState& conf = raft_->configuration();
  uint64_t best = 0, best_match = 0;
  const raft::RaftStatus status = raft_->Status();
  for (const raft::ProgressStatus& p : status.progress) {
    if (p.id == self_.raft_id() || !raft::IsVoterIn(conf, p.id)) continue;
    auto heard = last_heard_.find(p.id);
    if (heard == last_heard_.end() || now - heard->second > recent) continue;
    if (best == 0 || p.match > best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  return best;
}

bool RaftLoop::HoldingWrites() const {
  return transfer_target_ != 0 &&
         (raft_->role() == raft::Role::kLeader || raft_->lead() == 0);
}

void RaftLoop::CheckTransfers(absl::Time now) {
  const bool leading = raft_->role() == raft::Role::kLeader;
  const uint64_t lead = raft_->lead();
  const bool moved = !leading && lead != 0;
  absl::Status aborted;
  if (transfer_target_ != 0) {
    if (leading && raft_->Status().lead_transferee == 0) {
      // The core gave up after an election timeout: this node serves again.
      aborted = absl::DeadlineExceededError(absl::StrFormat(
          "leadership transfer to %s aborted: it did not take over within an election "
          "timeout (%d ms): it is down, too far behind or lost the election; %s still leads",
          NodeName(transfer_target_), options_.tick_ms * options_.election_ticks,
          self_.ToString()));
      spdlog::warn("raft: {}", std::string(aborted.message()));
      transfer_target_ = 0;
      transfer_term_ = 0;
    } else if (moved) {
      spdlog::info("raft: leadership transfer done: {} leads (term {})", NodeName(lead),
                   raft_->term());
      transfer_target_ = 0;
    } else if (!leading && now >= transfer_give_up_) {
      transfer_target_ = 0;  // still no leader known: held writes are refused below
    }
  }
  std::vector<std::pair<TransferDone, absl::StatusOr<uint64_t>>> answers;
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    std::optional<absl::StatusOr<uint64_t>> answer;
    if (moved) {
      if (it->target != 0 && lead != it->target) {
        answer = absl::AbortedError(absl::StrCat("leadership went to ", NodeName(lead),
                                                 ", not to ", NodeName(it->target)));
      } else if (!it->drain || now >= it->deadline || WritesDrained()) {
        answer = NodeId::FromRaftId(lead).position();
      }
    } else if (leading && transfer_target_ == 0) {
      answer = !aborted.ok() ? aborted
                             : absl::AbortedError(absl::StrCat(
                                   "the leadership transfer ended and ", self_.ToString(),
                                   " still leads"));
    } else if (now >= it->deadline) {
      answer = absl::DeadlineExceededError(absl::StrFormat(
          "leadership transfer to %s not done within %d ms (no leader known yet)",
          NodeName(it->target), absl::ToInt64Milliseconds(it->timeout)));
    }
    if (!answer) {
      ++it;
      continue;
    }
    answers.emplace_back(std::move(it->done), *std::move(answer));
    it = transfers_.erase(it);
  }
  if (!answers.empty()) {
    PublishStatus();  // a client that asks Status next sees the new leader
    for (auto& [done, answer] : answers) std::move(done)(std::move(answer));
  }
  if (held_writes_.empty()) return;
  std::vector<WriteEvent> held;
  held.swap(held_writes_);
  if (!HoldingWrites()) {
    // Decided: proposed here (the transfer aborted) or sent to the new leader.
    spdlog::info("raft: {} write(s) held during the leadership transfer go to {}", held.size(),
                 leading ? std::string("this node") : NodeName(lead));
    HandleWriteGroups(held);
    return;
  }
  for (WriteEvent& w : held) {
    if (now < w.taken + absl::Milliseconds(options_.request_timeout_ms)) {
      held_writes_.push_back(std::move(w));
      continue;
    }
    Event e(std::move(w));
    Refuse(e, absl::UnavailableError(absl::StrFormat(
                  "not applied: no leader within %d ms (--request-timeout-ms) during a "
                  "leadership transfer",
                  options_.request_timeout_ms)));
  }
}

bool RaftLoop::WritesDrained() {
  if (pending_.writes() != 0 || pending_.writes_waiting_apply() != 0 || !held_writes_.empty() ||
      !lag_held_writes_.empty() || !deferred_writes_.empty() || forwards_in_flight_.load() != 0) {
    return false;
  }
  // A Forward's callback posts its answers (or the writes to send again) before it counts
  // itself out of forwards_in_flight_: with none in flight, they are handled or in the inbox.
  absl::MutexLock lock(&mu_);
  return std::none_of(inbox_.begin(), inbox_.end(), [](const Event& e) {
    if (std::holds_alternative<AppliedElsewhereEvent>(e)) return true;
    const auto* b = std::get_if<WriteBatchEvent>(&e);
    return b != nullptr && !b->writes.empty() && b->writes.front().retry;
  });
}

void RaftLoop::StartRead(std::vector<ReadDone> reads) {
  // One ReadIndex request serves every read barrier that arrived in this iteration.
  std::string context(8, '\0');
  uint64_t id = next_read_id_++;
  std::memcpy(context.data(), &id, sizeof(id));
  absl::Status s = raft_->ReadIndex(context);
  if (!s.ok()) {
    absl::Status err = NotLeaderError(s);
    for (ReadDone& d : reads) std::move(d)(err);
    return;
  }
  pending_.AddReads(std::move(context), absl::Now(), std::move(reads));
}

void ProcessReadyInOrder(raft::Raft& core,
                         absl::FunctionRef<void(std::vector<raftpb::Message>)> send,
                         absl::FunctionRef<void(const raft::Ready&)> persist,
                         absl::FunctionRef<void(const raft::Ready&)> apply) {
  raft::Ready rd = core.GetReady();

  // 1. What the core lets go before the persist step (a leader's replication of its term:
  //    its own fsync runs in parallel with the followers').
  send(std::move(rd.messages_before_persist));

  // 2. Persist: entries and hard state, one fsync for the whole batch.
  persist(rd);

  // 3. Send what depended on the persisted state (votes, acks).
  send(std::move(rd.messages));

  // 4. Apply, answer writers, release reads.
  apply(rd);

  // 5. Advance.
  core.Advance(rd);
}

void PersistReady(const raft::Ready& rd, raft::LogStorage& log) {
  if (!rd.entries.empty()) {
    if (absl::Status s = log.Append(rd.entries); !s.ok()) {
      ExitOnStorageFailure("WAL write", s);
    }
  }
  if (rd.hard_state) {
    if (absl::Status s = log.SetHardState(*rd.hard_state); !s.ok()) {
      ExitOnStorageFailure("WAL write", s);
    }
  }
  // Only what the core flags: entries, a snapshot, or a changed term, vote or voter state.
  // A hard state that differs only in its commit index is written but not synced (as
  // etcd): a crash may lose it, and start-up raises the commit index back to what the
  // store applied (recovery.h, OpenLog), which the log still holds.
  if (rd.must_sync) {
    if (absl::Status s = log.Sync(); !s.ok()) ExitOnStorageFailure("WAL write", s);
  }
}

void RaftLoop::ProcessReady() {
  ProcessReadyInOrder(
      *raft_, [this](std::vector<raftpb::Message> msgs) { SendMessages(std::move(msgs)); },
      [this](const raft::Ready& rd) { Persist(rd); },
      [this](const raft::Ready& rd) {
        if (installing_) {
          // Committed along with the snapshot being installed: applied after it
          // (FinishInstall); later ones the paused core holds back.
          entries_after_install_.insert(entries_after_install_.end(),
                                        rd.committed_entries.begin(),
                                        rd.committed_entries.end());
        } else {
          ApplyEntries(rd.committed_entries);
        }
        for (const raft::ReadState& rs : rd.read_states) {
          pending_.OnReadState(rs.context, rs.index);
        }
        pending_.ReleaseApplied(sm_->applied_index());
      });
}

void RaftLoop::Persist(const raft::Ready& rd) {
  if (rd.snapshot) {
    InstallStepDone("install: begin");
    StartInstall(*rd.snapshot, rd.hard_state.value_or(wal_->hard_state()));
  }
  PersistReady(rd, *wal_);
}

void RaftLoop::ApplyEntries(const std::vector<raftpb::Entry>& entries) {
  // Runs of commands go to the store as one write each (ApplyBatch); an ENTRY_CONF between
  // them is applied on its own, after the commands before it and before those after it, so
  // the member table is saved before the store records the entry as applied.
  size_t begin = 0;
  for (size_t i = 0; i <= entries.size(); ++i) {
    if (i < entries.size() && entries[i].type() != raftpb::ENTRY_CONF) continue;
    ApplyCommands(absl::MakeConstSpan(entries).subspan(begin, i - begin));
    if (i < entries.size()) ApplyConfEntry(entries[i]);
    begin = i + 1;
  }
}

void RaftLoop::ApplyConfEntry(const raftpb::Entry& e) {
  // Not a command: the core acted on it when it was appended; the server's member table
  // and peer links follow it now. For the store and the backup it is an empty entry.
  ApplyMembership(e);
  absl::Status s = sm_->ApplyEmpty(e.index(), e.term());
  if (!s.ok()) ExitOnStorageFailure(absl::StrCat("raft: applying entry ", e.index()), s);
  backup_->Enqueue(e.index(), e.term(), "");
  pending_.OnApplied(e.index(), e.term(), kv::ApplyResult{});
}

void RaftLoop::ApplyCommands(absl::Span<const raftpb::Entry> entries) {
  if (entries.empty()) return;
  // One store write for the whole run (kv::StateMachine::ApplyBatch): the commands are
  // parsed here, the results handed out only once the batch is written.
  std::vector<kvpb::Command> cmds(entries.size());
  std::vector<kv::BatchEntry> batch(entries.size());
  std::vector<bool> malformed(entries.size(), false);
  for (size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& e = entries[i];
    batch[i].index = e.index();
    batch[i].term = e.term();
    if (e.data().empty()) continue;
    if (!cmds[i].ParseFromString(e.data())) {
      // Every node applies the same bytes: a command no node can parse is skipped by all.
      spdlog::error("raft: entry {} holds an unparseable command; recorded as empty",
                    e.index());
      malformed[i] = true;
      continue;
    }
    batch[i].cmd = &cmds[i];
  }
  // The effects go to the backup, which writes them without evaluating the commands again.
  std::vector<std::unique_ptr<kv::EntryEffect>> effects;
  absl::StatusOr<std::vector<kv::ApplyResult>> results = sm_->ApplyBatchWithEffects(batch, &effects);
  if (!results.ok()) {
    // The state machine could not record committed entries: stopping is the only safe move.
    ExitOnStorageFailure(absl::StrCat("raft: applying entries ", entries.front().index(), "-",
                                      entries.back().index()),
                         results.status());
  }
  RAFTKV_CHECK(results->size() == entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& e = entries[i];
    if (batch[i].cmd != nullptr) MaybeCrashAfterApplying(e, cmds[i], (*results)[i]);
    if (i < effects.size() && effects[i] != nullptr) {
      backup_->Enqueue(e.index(), e.term(), std::move(effects[i]));
    } else {
      backup_->Enqueue(e.index(), e.term(), e.data());
    }
    if (malformed[i]) {
      pending_.OnApplied(e.index(), e.term(), absl::InvalidArgumentError("malformed command"));
    } else {
      pending_.OnApplied(e.index(), e.term(), std::move((*results)[i]));
    }
  }
}

void RaftLoop::MaybeCrashAfterApplying(const raftpb::Entry& e, const kvpb::Command& cmd,
                                       const kv::ApplyResult& result) {
  // Only the leader that proposed the entry (its term): a next leader that learns the commit
  // only from its own election (the crashed one's commit may not have left it) applies the
  // same put as a creation too.
  if (!crash_after_applying_key_ || raft_->role() != raft::Role::kLeader ||
      e.term() != raft_->term() || result.duplicate ||
      result.ops.size() != static_cast<size_t>(cmd.ops_size())) {
    return;
  }
  for (int i = 0; i < cmd.ops_size(); ++i) {
    const kvpb::Op& op = cmd.ops(i);
    // Only the put that creates the key: one crash per cluster.
    if (op.has_put() && op.put().key() == *crash_after_applying_key_ &&
        !result.ops[i].prev.has_value()) {
      spdlog::critical("RAFTKV_CRASH_AFTER_APPLYING_KEY: ending the process after "
                       "applying entry {}", e.index());
      spdlog::shutdown();
      std::_Exit(kCrashedAfterApplying);
    }
  }
}

void RaftLoop::SendMessages(std::vector<raftpb::Message> msgs) {
  std::vector<raftpb::Message> plain;
  plain.reserve(msgs.size());
  for (raftpb::Message& m : msgs) {
    if (m.type() != raftpb::MSG_SNAP) {
      plain.push_back(std::move(m));
      continue;
    }
    // Snapshots are streamed as files (peer/snapshot_sender.h); the follower's core gets
    // the MSG_SNAP only once the file is complete and verified.
    if (m.snapshot().handle().empty()) {
      raft_->ReportSnapshot(m.to(), false);
    } else {
      snapshot_sender_->Start(m, m.snapshot().handle());  // false: one already running
    }
  }
  transport_->Send(std::move(plain));
}

void RaftLoop::StartInstall(const raftpb::Snapshot& snap, raftpb::HardState hs) {
  RAFTKV_CHECK_MSG(!installing_, "a snapshot Ready while an install is in flight");
  const std::string& path = snap.handle();
  const uint64_t index = snap.metadata().index();
  spdlog::info("raft: installing snapshot {} (index {}, term {})", path, index,
               snap.metadata().term());
  // In this order, so that a kill after any step leaves a data dir that start-up
  // (recovery.h, OpenLog) finishes (docs/architecture.md, "Installing a snapshot"):
  // 1. (here, on the loop) The log restarts after the snapshot: its marker and the hard state
  //    with the commit raised to the snapshot index (the core's: it committed the snapshot)
  //    start the new segment, durable together on return. From here the data dir says
  //    "everything through `index` is committed"; a store still behind it is loaded at start
  //    from the received file, which retention keeps (SnapshotStore::Prune keeps snapshots
  //    above the applied index). Start-up still raises a commit below the log's start
  //    (recovery.h, OpenLog), for data dirs written before marker and commit were one write.
  //    (Entries after the snapshot in the same Ready, and a commit past it, follow in
  //    Persist's usual append and hard-state write; later ones as they come, while the store
  //    is restored: appending and acknowledging need only the log.)
  // 0. (here) The members the snapshot covers: the entries that changed them are not
  //    replayed here, so their addresses come with the snapshot (AdoptSnapshotMembers).
  AdoptSnapshotMembers(snap.metadata());
  hs.set_commit(index);
  if (absl::Status s = wal_->ApplySnapshot(snap.metadata(), hs); !s.ok()) {
    ExitOnStorageFailure("WAL write", s);
  }
  InstallStepDone("install: log restarted, commit durable");
  // 2-4 on the install thread (seconds for a large store): the loop goes on stepping,
  // persisting and sending, and applies nothing until FinishInstall.
  installing_ = true;
  raft_->PauseApply(true);
  install_thread_ = std::thread([this, path] { InstallStore(path); });
}

void RaftLoop::InstallStore(std::string path) {
  const absl::Time started = absl::Now();
  // 2. The store: built aside and swapped in; a kill leaves the old store or the new one.
  //    Nothing applies meanwhile (the core's apply is paused), so this thread is the
  //    store's only writer, as StateMachine::InstallSnapshot requires.
  if (absl::Status s = sm_->InstallSnapshot(path); !s.ok()) {
    ExitOnStorageFailure(absl::StrCat("raft: installing snapshot ", path), s);
  }
  InstallStepDone("install: store installed");
  const absl::Time store_done = absl::Now();
  // 3. The backup follows (a kill leaves the old one, which start-up rebuilds: the log no
  //    longer reaches it); a failure here is the backup worker's to retry. (It waits for the
  //    worker's round in progress, here rather than on the loop.)
  if (absl::Status s = backup_->ResetFrom(path); !s.ok()) {
    spdlog::error("backup: resetting from snapshot {} failed: {}", path, s.ToString());
  }
  InstallStepDone("install: backup reset");
  // 4. Snapshots and partial transfers the node no longer needs.
  snapshots_.Prune(options_.snapshots_retained, sm_->applied_index());
  spdlog::info("raft: snapshot {} installed off the loop: store {} ms, backup {} ms", path,
               absl::ToInt64Milliseconds(store_done - started),
               absl::ToInt64Milliseconds(absl::Now() - store_done));
  Post(InstallDoneEvent{});  // dropped if stopping: Stop() joins this thread
}

void RaftLoop::FinishInstall() {
  install_thread_.join();
  installing_ = false;
  ApplyEntries(entries_after_install_);
  entries_after_install_.clear();
  raft_->PauseApply(false);  // what committed meanwhile comes in the next Ready, in order
  pending_.ReleaseApplied(sm_->applied_index());
  InstallStepDone("install: done");
  if (held_snapshot_msg_) {
    raft_->Step(*held_snapshot_msg_);
    held_snapshot_msg_.reset();
  }
}

void RaftLoop::RefreshDbSize() {
  if (db_size_refreshing_.exchange(true)) return;  // the last one has not run yet
  readers_->Submit([this] {
    db_size_bytes_.store(sm_->ApproximateSizeBytes(), std::memory_order_relaxed);
    db_size_refreshing_.store(false);
  });
}

void RaftLoop::InstallStepDone(std::string_view step) const {
  if (options_.install_crash_point) options_.install_crash_point(step);
}

void RaftLoop::OnSnapshotMade(const SnapshotReport& report) {
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(report.meta.applied_index);
  snap.mutable_metadata()->set_term(report.meta.applied_term);
  for (uint64_t id : Voters()) snap.mutable_metadata()->mutable_conf_state()->add_voters(id);
  snap.set_handle(report.path);
  OfferSnapshot(std::move(snap));
  const uint64_t compact_to =
      CompactionBound(report.meta.applied_index, report.flushed_index,
                      backup_->applied_index(), options_.log_retained_entries);
  if (compact_to == 0 || compact_to < wal_->FirstIndex()) return;
  if (absl::Status s = wal_->Compact(compact_to); !s.ok()) ExitOnStorageFailure("WAL write", s);
  spdlog::info("raft: log compacted through index {} (snapshot at {})", compact_to,
               report.meta.applied_index);
}

uint64_t CompactionBound(uint64_t snapshot_index, uint64_t flushed_index,
                         uint64_t backup_index, uint64_t retained_entries) {
  const uint64_t safe = std::min({snapshot_index, flushed_index, backup_index});
  return safe <= retained_entries ? 0 : safe - retained_entries;
}

void RaftLoop::OnTermOrRoleChange() {
  if (raft_->term() != last_term_) {
    // A read index requested in an older term may never be confirmed: fail fast so the
    // client retries against the new leader.
    pending_.OnTermChange();
  }
  // Writes proposed under a leadership this node no longer holds: outcome unknown, at once;
  // except those of the term it handed over (they commit under the new leader).
  pending_.OnLeadership(raft_->role() == raft::Role::kLeader ? raft_->term() : 0,
                        transfer_term_);
  if (raft_->lead() != last_lead_) {
    std::optional<NodeId> lead = NodeId::FromRaftIdOrNone(raft_->lead());
    spdlog::info("raft: term {}, leader {}", raft_->term(),
                 lead ? lead->ToString() : std::string("unknown"));
  }
  last_term_ = raft_->term();
  last_lead_ = raft_->lead();
}

void RaftLoop::PublishStatus() {
  raft::RaftStatus rs = raft_->Status();
  NodeStatus s;
  s.id = self_.position();
  s.role = raft::RoleName(rs.role);
  s.term = rs.term;
  std::optional<NodeId> lead = NodeId::FromRaftIdOrNone(rs.lead);
  s.leader_id = lead ? static_cast<int64_t>(lead->position()) : -1;
  s.commit_index = rs.commit;
  s.applied_index = sm_->applied_index();
  s.revision = sm_->revision();
  s.cluster_id = options_.cluster_id;
  s.db_size_bytes = db_size_bytes_.load(std::memory_order_relaxed);
  s.backup_applied_index = backup_->applied_index();
  s.backup_evaluated_entries = backup_->evaluated_entries();
  s.backup_rows_written = backup_->rows_written();
  s.backup_waiting_writes = lag_held_writes_.size();
  const kv::StateMachine::RecordCacheStats cache = sm_->record_cache_stats();
  s.record_cache_hits = cache.hits;
  s.record_cache_misses = cache.misses;
  s.record_cache_bytes = cache.bytes;
  s.alarms = Alarms();
  if (!rs.rejoin_detail.empty()) s.alarms.push_back(rs.rejoin_detail);
  absl::MutexLock lock(&status_mu_);
  status_ = s;
}

NodeStatus RaftLoop::Status() const {
  NodeStatus s;
  {
    absl::MutexLock lock(&status_mu_);
    s = status_;
  }
  s.loop_max_iteration_us = loop_max_iteration_us_.load(std::memory_order_relaxed);
  s.loop_max_tick_gap_us = loop_max_tick_gap_us_.load(std::memory_order_relaxed);
  s.forward_calls = forward_calls_.load(std::memory_order_relaxed);
  s.forwarded_writes = forwarded_writes_.load(std::memory_order_relaxed);
  s.forward_lanes = forward_lanes_count_.load(std::memory_order_relaxed);
  s.forward_lane_max_span = forward_lane_max_span_.load(std::memory_order_relaxed);
  s.read_barriers_released = read_barriers_released_.load(std::memory_order_relaxed);
  s.read_handoffs = read_handoffs_.load(std::memory_order_relaxed);
  return s;
}

std::vector<PeerStatus> RaftLoop::Members() const {
  NodeStatus s = Status();
  std::vector<PeerStatus> out;
  absl::MutexLock lock(&members_mu_);
  for (const auto& [raft_id, m] : members_.members()) {
    const NodeId id = NodeId::FromRaftId(raft_id);
    PeerStatus p;
    p.id = id.position();
    p.address = m.address.port == 0 ? "" : m.address.client_address();
    p.grpc_address = m.address.grpc_address();
    p.learner = m.learner;
    p.client_port = m.address.port;
    if (id == self_) {
      p.role = s.role;
      p.term = s.term;
      p.commit_index = s.commit_index;
      p.applied_index = s.applied_index;
    } else {
      // Only what this node knows: whether it is the leader. Each node's own figures come
      // from asking it (kvctl status does).
      p.role = s.leader_id == static_cast<int64_t>(id.position()) ? "leader" : "unknown";
    }
    out.push_back(std::move(p));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Membership.

void RaftLoop::ChangeMembership(MembershipChange change, ChangeDone done) {
  Post(MembershipEvent{std::move(change), std::move(done)});
}

void RaftLoop::HandleMembership(MembershipEvent& m) {
  const MembershipChange& c = m.change;
  if (transfer_target_ != 0) {
    // The core refuses proposals meanwhile and would say "not the leader" (or "no leader"),
    // which is not why.
    std::move(m.done)(absl::UnavailableError(absl::StrCat(
        "a leadership transfer to ", NodeName(transfer_target_),
        " is in progress; retry the membership change once it is over")));
    return;
  }
  raftpb::ConfChange cc;
  uint64_t id = c.raft_id;
  {
    absl::MutexLock lock(&members_mu_);
    if (c.kind == MembershipChange::Kind::kAddLearner ||
        c.kind == MembershipChange::Kind::kUpdate) {
      if (c.ip.empty() || c.grpc_port == 0) {
        std::move(m.done)(absl::InvalidArgumentError("a member needs an ip and a gRPC port"));
        return;
      }
      const std::string grpc_address = absl::StrCat(c.ip, ":", c.grpc_port);
      for (const auto& [other, e] : members_.members()) {
        if (other != id && e.address.grpc_address() == grpc_address) {
          std::move(m.done)(absl::AlreadyExistsError(absl::StrCat(
              "peer URL http://", grpc_address, " is already member ", other, "'s (",
              NodeId::FromRaftId(other).ToString(), ")")));
          return;
        }
      }
    }
    if (c.kind == MembershipChange::Kind::kAddLearner && id == 0) {
      // The next id above every member this node knows and every id the log has used: ids
      // are never reused, so messages meant for a removed member never reach a new one.
      id = members_.members().empty() ? 1 : members_.members().rbegin()->first + 1;
      for (uint64_t v : raft::MembersOf(raft_->configuration())) id = std::max(id, v + 1);
      id = std::max(id, members_.max_id_seen() + 1);
    }
  }
  switch (c.kind) {
    case MembershipChange::Kind::kAddLearner: cc.set_type(raftpb::CONF_ADD_LEARNER); break;
    case MembershipChange::Kind::kPromote: cc.set_type(raftpb::CONF_PROMOTE); break;
    case MembershipChange::Kind::kRemove: cc.set_type(raftpb::CONF_REMOVE); break;
    case MembershipChange::Kind::kUpdate: cc.set_type(raftpb::CONF_UPDATE); break;
  }
  cc.set_node_id(id);
  if (c.kind == MembershipChange::Kind::kAddLearner ||
      c.kind == MembershipChange::Kind::kUpdate) {
    memberpb::MemberInfo info;
    info.set_ip(c.ip);
    info.set_port(c.port);
    info.set_grpc_port(c.grpc_port);
    cc.set_context(info.SerializeAsString());
  }
  absl::StatusOr<raft::EntryId> entry = raft_->ProposeConfChange(cc);
  if (!entry.ok()) {
    if (entry.status().code() == absl::StatusCode::kUnavailable) {
      std::move(m.done)(NotLeaderError(entry.status()));
    } else if (entry.status().GetPayload(raft::kRetryShortlyPayload)) {
      // Transient, and surely not made: UNAVAILABLE is what clients retry (kvctl does).
      std::move(m.done)(absl::UnavailableError(entry.status().message()));
    } else {
      std::move(m.done)(entry.status());
    }
    return;
  }
  spdlog::info("membership: proposed {} of member {} at index {}",
               raftpb::ConfChangeType_Name(cc.type()), id, entry->index);
  pending_.AddWrite(entry->index, entry->term, absl::Now(),
                    [id, done = std::move(m.done)](absl::StatusOr<ForwardResult> r) mutable {
                      if (!r.ok()) {
                        std::move(done)(r.status());
                      } else {
                        std::move(done)(id);
                      }
                    });
}

void RaftLoop::ApplyMembership(const raftpb::Entry& e) {
  bool removed_self = false;
  {
    absl::MutexLock lock(&members_mu_);
    absl::StatusOr<bool> changed = members_.Apply(e);
    if (!changed.ok()) {
      // Every node holds the same bytes: a context none can read changes no address.
      spdlog::error("membership: {}", changed.status().ToString());
      return;
    }
    if (!*changed) return;  // already in the table saved before a restart
    if (absl::Status s = members_.Save(data_dir_.members()); !s.ok()) {
      ExitOnStorageFailure("saving the member table", s);
    }
    spdlog::info("membership: entry {} applied; members {}", e.index(), members_.Json());
    removed_self = members_.Find(self_.raft_id()) == nullptr;
  }
  MembersChanged(removed_self);
}

void RaftLoop::OfferSnapshot(raftpb::Snapshot snap) {
  {
    absl::MutexLock lock(&members_mu_);
    snap.mutable_metadata()->set_context(members_.Serialize());
  }
  raft_->SetSnapshot(snap);
}

void RaftLoop::AdoptSnapshotMembers(const raftpb::SnapshotMetadata& meta) {
  if (meta.context().empty()) return;  // from a node that predates membership changes
  absl::StatusOr<MemberTable> theirs = MemberTable::Parse(meta.context());
  if (!theirs.ok()) {
    spdlog::error("membership: the snapshot at {} carries an unreadable member table: {}",
                  meta.index(), theirs.status().ToString());
    return;
  }
  {
    absl::MutexLock lock(&members_mu_);
    // The leader's table may be newer than the snapshot (it is taken when the snapshot is
    // offered): the ENTRY_CONF entries between are then skipped when they apply here, as
    // after a restart. An older one than ours changes nothing; one older than this node's
    // own membership keeps this node (MemberTable::AdoptIfNewer).
    if (!members_.AdoptIfNewer(*std::move(theirs), self_.raft_id())) return;
    if (absl::Status s = members_.Save(data_dir_.members()); !s.ok()) {
      ExitOnStorageFailure("saving the member table", s);
    }
    spdlog::info("membership: members from the snapshot at {} (table of entry {}): {}",
                 meta.index(), members_.index(), members_.Json());
  }
  SyncPeerLinks();
}

void RaftLoop::MembersChanged(bool removed_self) {
  SyncPeerLinks();
  if (removed_self) StopRemoved("its removal applied here");
}

void RaftLoop::StopRemoved(const std::string& how) {
  if (removed_.exchange(true)) return;
  spdlog::warn("membership: this node ({}) was removed from the cluster ({}); stopping",
               self_.ToString(), how);
  if (options_.on_removed) options_.on_removed();
}

bool RaftLoop::IsRemovedMember(uint64_t raft_id) {
  if (raft_id == self_.raft_id()) return false;
  // Only a removal this node applied (so committed), or took from a snapshot's table, counts:
  // an id merely missing from the table may be a member added since, or one a snapshot's
  // older table lacks. Ids are never reused. Not under members_mu_, which is held while the
  // table is saved (an fsync): every peer batch asks this.
  absl::MutexLock lock(&removed_mu_);
  return removed_ids_.count(raft_id) > 0;
}

void RaftLoop::SyncPeerLinks() {
  if (!channels_) return;
  std::map<uint64_t, std::string> peers;
  std::set<uint64_t> removed;
  {
    absl::MutexLock lock(&members_mu_);
    peers = members_.PeerAddresses(self_.raft_id());
    removed = members_.removed();
  }
  {
    absl::MutexLock lock(&removed_mu_);
    removed_ids_ = std::move(removed);
  }
  for (const auto& [id, address] : channels_->addresses()) {
    if (!peers.count(id)) channels_->RemovePeer(id);
  }
  for (const auto& [id, address] : peers) channels_->SetPeer(id, address);
  transport_->SyncPeers();
}

}  // namespace raftkv::server
