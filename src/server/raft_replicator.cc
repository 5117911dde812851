#include "server/raft_replicator.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "raft/raft.h"
#include "raft/wal/wal_storage.h"
#include "base/file_util.h"
#include "kv/sqlite_snapshot.h"
#include "server/backup_worker.h"
#include "server/forwarder.h"
#include "server/peer_transport.h"
#include "server/snapshot_transfer.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

absl::Status NotLeaderError(std::optional<uint64_t> hint) {
  if (!hint || *hint == 0) return absl::UnavailableError("no leader (election in progress)");
  return absl::UnavailableError(absl::StrCat("not the leader; the leader is node ", *hint - 1));
}

// A persisting failure leaves the on-disk state unknown: the process must stop (design.md,
// Write-ahead log). Never retried.
[[noreturn]] void FatalStorageError(const absl::Status& s) {
  spdlog::critical("WAL write failed, exiting: {}", s.ToString());
  spdlog::shutdown();
  std::_Exit(70);
}

std::string MembersJson(const std::vector<NodeAddress>& cluster) {
  std::string out = "[";
  for (size_t i = 0; i < cluster.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", "{\"ip\":\"", cluster[i].ip, "\",\"port\":",
                    cluster[i].port, ",\"grpc_port\":", cluster[i].grpc_port, "}");
  }
  return out + "]";
}

// The newest readable snapshot file in `dir` at or below `max_index`, if any.
std::optional<std::pair<kv::SnapshotMeta, std::string>> NewestSnapshot(const std::string& dir,
                                                                       uint64_t max_index) {
  auto names = base::ListDir(dir);
  if (!names.ok()) return std::nullopt;
  for (auto it = names->rbegin(); it != names->rend(); ++it) {
    if (it->rfind("snap-", 0) != 0 || it->size() < 3 ||
        it->compare(it->size() - 3, 3, ".db") != 0) {
      continue;
    }
    std::string path = absl::StrCat(dir, "/", *it);
    absl::StatusOr<kv::SnapshotMeta> meta = kv::ReadSnapshotMeta(path);
    if (meta.ok() && meta->applied_index <= max_index) return std::make_pair(*meta, path);
  }
  return std::nullopt;
}

}  // namespace

RaftReplicator::RaftReplicator(kv::StateMachine* sm, RaftReplicatorOptions options)
    : sm_(sm), options_(std::move(options)), self_id_(options_.node_index + 1) {}

absl::StatusOr<std::unique_ptr<RaftReplicator>> RaftReplicator::Start(
    kv::StateMachine* sm, RaftReplicatorOptions options) {
  std::unique_ptr<RaftReplicator> r(new RaftReplicator(sm, std::move(options)));
  const RaftReplicatorOptions& o = r->options_;

  raft::wal::WalOptions wal_options;
  wal_options.max_segment_bytes = o.wal_segment_bytes;
  auto wal = raft::wal::WalStorage::Open(o.wal_dir, wal_options);
  if (!wal.ok()) return wal.status();
  r->wal_ = *std::move(wal);

  if (o.restored) {
    if (r->wal_->LastIndex() != 0 || r->wal_->hard_state().term() != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("--restore-from needs a new data dir, but ", o.wal_dir, " holds a log"));
    }
    // The log starts after the restored store, as if it had installed a snapshot there.
    raftpb::SnapshotMetadata meta;
    meta.set_index(sm->applied_index());
    meta.set_term(sm->applied_term());
    for (size_t i = 0; i < o.cluster.size(); ++i) meta.mutable_conf_state()->add_voters(i + 1);
    raftpb::HardState hs;
    hs.set_term(sm->applied_term());
    hs.set_commit(sm->applied_index());
    absl::Status s = r->wal_->ApplySnapshot(meta);
    if (s.ok()) s = r->wal_->SetHardState(hs);
    if (s.ok()) s = r->wal_->Sync();
    if (!s.ok()) return s;
  }
  if (sm->applied_index() + 1 < r->wal_->FirstIndex()) {
    // The store lacks entries the log no longer has (it was lost, wiped or found corrupt):
    // load the newest snapshot that reaches the log, then replay the log after it.
    auto snap = NewestSnapshot(o.snapshot_dir, UINT64_MAX);
    if (!snap || snap->first.applied_index + 1 < r->wal_->FirstIndex()) {
      return absl::DataLossError(absl::StrFormat(
          "the state machine is at index %d, the log in %s starts at %d, and no snapshot in "
          "%s bridges the gap",
          sm->applied_index(), o.wal_dir, r->wal_->FirstIndex(), o.snapshot_dir));
    }
    spdlog::warn("raft: state machine at index {} but the log starts at {}: loading snapshot {}",
                 sm->applied_index(), r->wal_->FirstIndex(), snap->second);
    if (absl::Status s = sm->InstallSnapshot(snap->second); !s.ok()) return s;
  }
  const uint64_t commit = r->wal_->hard_state().commit();
  if (sm->applied_index() > commit) {
    // The state machine can only have applied what the WAL recorded as committed; more
    // means the WAL is not this store's (lost, replaced, or a pre-Raft data dir).
    return absl::DataLossError(absl::StrFormat(
        "state machine applied index %d is past the WAL's commit index %d in %s: the WAL "
        "does not belong to this store",
        sm->applied_index(), commit, o.wal_dir));
  }

  raft::Config config;
  config.id = r->self_id_;
  for (size_t i = 0; i < o.cluster.size(); ++i) config.peers.push_back(i + 1);
  config.election_tick = static_cast<int>(o.election_ticks);
  config.heartbeat_tick = static_cast<int>(o.heartbeat_ticks);
  config.max_msg_bytes = o.max_msg_bytes;
  config.max_inflight_msgs = o.max_inflight_msgs;
  config.applied = sm->applied_index();
  config.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^ r->self_id_;
#ifndef NDEBUG
  config.check_invariants = true;
#endif
  auto core = raft::Raft::Create(config, r->wal_.get());
  if (!core.ok()) return core.status();
  r->raft_ = *std::move(core);

  std::map<uint64_t, std::string> peers;
  for (size_t i = 0; i < o.cluster.size(); ++i) {
    if (i != o.node_index) peers[i + 1] = o.cluster[i].grpc_address();
  }
  PeerTransportOptions transport_options;
  transport_options.max_queue_msgs = o.peer_queue_msgs;
  RaftReplicator* self = r.get();
  r->transport_ = std::make_unique<PeerTransport>(
      r->self_id_, peers, transport_options,
      [self](uint64_t peer) { self->Post(UnreachableEvent{peer}); });
  r->forwarder_ = std::make_unique<Forwarder>(peers);
  SnapshotTransferOptions transfer_options;
  transfer_options.chunk_bytes = o.snapshot_chunk_bytes;
  transfer_options.rate_bytes_per_sec = o.snapshot_rate_bytes_per_sec;
  r->snapshot_sender_ = std::make_unique<SnapshotSender>(
      peers, transfer_options,
      [self](uint64_t peer, bool ok) { self->Post(SnapshotSentEvent{peer, ok}); });

  // The backup follows the state machine; entries the store applied but the backup lacks
  // are still in the log (it is never compacted past the backup).
  BackupWorkerOptions backup_options;
  backup_options.backup_path = o.backup_path;
  backup_options.snapshot_dir = o.snapshot_dir;
  backup_options.interval_ms = o.backup_interval_ms;
  backup_options.snapshot_entries = o.snapshot_entries;
  backup_options.snapshots_retained = o.snapshots_retained;
  backup_options.members = MembersJson(o.cluster);
  auto backup = BackupWorker::Start(
      sm, backup_options, r->wal_->FirstIndex(), [self](SnapshotReport report) {
        self->Post(SnapshotMadeEvent{std::make_shared<SnapshotReport>(std::move(report))});
      });
  if (!backup.ok()) return backup.status();
  r->backup_ = *std::move(backup);
  if (r->backup_->applied_index() < sm->applied_index()) {
    auto missing = r->wal_->Entries(r->backup_->applied_index() + 1, sm->applied_index() + 1,
                                    UINT64_MAX);
    if (!missing.ok()) return missing.status();
    for (const raftpb::Entry& e : *missing) r->backup_->Enqueue(e.index(), e.term(), e.data());
  }
  // Followers that need compacted entries get the newest snapshot this node holds.
  if (auto snap = NewestSnapshot(o.snapshot_dir, sm->applied_index())) {
    raftpb::Snapshot s;
    s.mutable_metadata()->set_index(snap->first.applied_index);
    s.mutable_metadata()->set_term(snap->first.applied_term);
    for (uint64_t id : config.peers) s.mutable_metadata()->mutable_conf_state()->add_voters(id);
    s.set_handle(snap->second);
    r->raft_->SetSnapshot(s);
  }

  spdlog::info("raft: node {} (core id {}) recovered: term {}, commit {}, log [{}, {}], "
               "applied {}",
               o.node_index, r->self_id_, r->raft_->term(), commit, r->wal_->FirstIndex(),
               r->wal_->LastIndex(), sm->applied_index());
  r->PublishStatus();
  r->loop_thread_ = std::thread([self] { self->Loop(); });
  return r;
}

RaftReplicator::~RaftReplicator() { Stop(); }

void RaftReplicator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (loop_thread_.joinable()) loop_thread_.join();
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
  const absl::Status down = absl::UnavailableError("node is shutting down");
  for (Event& e : rest) {
    if (auto* w = std::get_if<WriteEvent>(&e)) std::move(w->done)(down);
    if (auto* rd = std::get_if<ReadEvent>(&e)) std::move(rd->done)(down);
    if (auto* a = std::get_if<AppliedElsewhereEvent>(&e)) std::move(a->done)(down);
  }
}

void RaftReplicator::Post(Event e) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      inbox_.push_back(std::move(e));
      return;
    }
  }
  refused = absl::UnavailableError("node is shutting down");
  if (auto* w = std::get_if<WriteEvent>(&e)) std::move(w->done)(refused);
  if (auto* rd = std::get_if<ReadEvent>(&e)) std::move(rd->done)(refused);
  if (auto* a = std::get_if<AppliedElsewhereEvent>(&e)) std::move(a->done)(refused);
}

void RaftReplicator::Deliver(raftpb::Message m) { Post(std::move(m)); }

void RaftReplicator::Write(kvpb::Command cmd, WriteDone done) {
  if (outstanding_writes_.fetch_add(1) >= options_.max_pending_writes) {
    outstanding_writes_.fetch_sub(1);
    std::move(done)(absl::ResourceExhaustedError(absl::StrFormat(
        "too many pending writes (limit %d)", options_.max_pending_writes)));
    return;
  }
  WriteEvent w;
  w.cmd = std::move(cmd);
  w.done = [this, done = std::move(done)](absl::StatusOr<ForwardResult> r) mutable {
    outstanding_writes_.fetch_sub(1);
    if (!r.ok()) {
      std::move(done)(r.status());
    } else {
      std::move(done)(std::move(r->result));
    }
  };
  Post(std::move(w));
}

void RaftReplicator::WriteFromPeer(kvpb::Command cmd, LocalWriteDone done) {
  WriteEvent w;
  w.cmd = std::move(cmd);
  w.done = std::move(done);
  w.may_forward = false;
  Post(std::move(w));
}

void RaftReplicator::ReadBarrier(ReadDone done) { Post(ReadEvent{std::move(done)}); }

// ---------------------------------------------------------------------------------------
// The loop.

void RaftReplicator::Loop() {
  const absl::Duration tick = absl::Milliseconds(options_.tick_ms);
  absl::Time next_tick = absl::Now() + tick;
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
    std::vector<ReadDone> new_reads;
    for (Event& e : events) HandleEvent(e, &new_reads);
    if (!new_reads.empty()) StartRead(std::move(new_reads));

    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      raft_->Tick();
      ExpireRequests(now);
      next_tick += tick;
      if (next_tick < now) next_tick = now + tick;  // fell behind: don't tick in a burst
    }
    while (raft_->HasReady()) ProcessReady();
    if (raft_->term() != last_term_ || raft_->lead() != last_lead_) OnTermOrRoleChange();
    PublishStatus();
  }
  FailAll(absl::UnavailableError("node is shutting down"));
}

void RaftReplicator::HandleEvent(Event& e, std::vector<ReadDone>* new_reads) {
  if (auto* m = std::get_if<raftpb::Message>(&e)) {
    raft_->Step(*m);
  } else if (auto* w = std::get_if<WriteEvent>(&e)) {
    HandleWrite(*w);
  } else if (auto* r = std::get_if<ReadEvent>(&e)) {
    new_reads->push_back(std::move(r->done));
  } else if (auto* u = std::get_if<UnreachableEvent>(&e)) {
    raft_->ReportUnreachable(u->peer);
  } else if (auto* a = std::get_if<AppliedElsewhereEvent>(&e)) {
    if (sm_->applied_index() >= a->index) {
      std::move(a->done)(std::move(a->result));
    } else {
      writes_waiting_apply_.emplace(a->index, std::move(*a));
    }
  } else if (auto* made = std::get_if<SnapshotMadeEvent>(&e)) {
    OnSnapshotMade(*made->report);
  } else if (auto* sent = std::get_if<SnapshotSentEvent>(&e)) {
    raft_->ReportSnapshot(sent->peer, sent->ok);
  }
}

void RaftReplicator::HandleWrite(WriteEvent& w) {
  std::string data = w.cmd.SerializeAsString();
  absl::StatusOr<raft::EntryId> id = raft_->Propose(data);
  if (id.ok()) {
    pending_writes_[id->index] = PendingWrite{
        id->term, absl::Now() + absl::Milliseconds(options_.request_timeout_ms),
        std::move(w.done)};
    return;
  }
  std::optional<uint64_t> hint = raft::LeaderHint(id.status());
  if (!w.may_forward || !hint || *hint == 0 || *hint == self_id_) {
    std::move(w.done)(NotLeaderError(hint));
    return;
  }
  // A follower: the leader proposes and applies it; we answer once we applied it too.
  forwards_in_flight_.fetch_add(1);
  forwarder_->Forward(
      *hint, std::move(data), options_.request_timeout_ms,
      [this, done = std::make_shared<LocalWriteDone>(std::move(w.done))](
          absl::StatusOr<ForwardResult> r) mutable {
        if (!r.ok()) {
          std::move (*done)(r.status());
        } else {
          uint64_t index = r->index;
          Post(AppliedElsewhereEvent{
              index, std::move(r->result),
              [done](absl::StatusOr<kv::ApplyResult> applied) mutable {
                if (!applied.ok()) {
                  std::move(*done)(applied.status());
                } else {
                  std::move(*done)(ForwardResult{0, *std::move(applied)});
                }
              }});
        }
        forwards_in_flight_.fetch_sub(1);
      });
}

void RaftReplicator::StartRead(std::vector<ReadDone> reads) {
  // One ReadIndex request serves every read barrier that arrived in this iteration.
  std::string context(8, '\0');
  uint64_t id = next_read_id_++;
  std::memcpy(context.data(), &id, sizeof(id));
  absl::Status s = raft_->ReadIndex(context);
  if (!s.ok()) {
    absl::Status err = NotLeaderError(raft::LeaderHint(s));
    for (ReadDone& d : reads) std::move(d)(err);
    return;
  }
  pending_reads_[context] =
      PendingRead{absl::Now() + absl::Milliseconds(options_.request_timeout_ms),
                  std::move(reads)};
}

void RaftReplicator::ProcessReady() {
  raft::Ready rd = raft_->GetReady();

  // 1. What the core lets go before the persist step (a leader's replication of its term:
  //    its own fsync runs in parallel with the followers').
  SendMessages(std::move(rd.messages_before_persist));

  // 2. Persist: entries and hard state, one fsync for the whole batch.
  if (rd.snapshot) InstallSnapshot(*rd.snapshot);
  if (!rd.entries.empty()) {
    if (absl::Status s = wal_->Append(rd.entries); !s.ok()) FatalStorageError(s);
  }
  if (rd.hard_state) {
    if (absl::Status s = wal_->SetHardState(*rd.hard_state); !s.ok()) FatalStorageError(s);
  }
  if (rd.must_sync || rd.hard_state) {
    if (absl::Status s = wal_->Sync(); !s.ok()) FatalStorageError(s);
  }

  // 3. Send what depended on the persisted state (votes, acks).
  SendMessages(std::move(rd.messages));

  // 4. Apply, answer writers, release reads.
  for (const raftpb::Entry& e : rd.committed_entries) ApplyEntry(e);
  for (const raft::ReadState& rs : rd.read_states) {
    auto it = pending_reads_.find(rs.context);
    if (it == pending_reads_.end()) continue;  // expired meanwhile
    reads_waiting_apply_.emplace(rs.index,
                                 WaitingRead{it->second.deadline, std::move(it->second.dones)});
    pending_reads_.erase(it);
  }
  ReleaseApplied();

  // 5. Advance.
  raft_->Advance(rd);
}

void RaftReplicator::ApplyEntry(const raftpb::Entry& e) {
  absl::StatusOr<kv::ApplyResult> result = kv::ApplyResult{};
  if (e.data().empty()) {
    absl::Status s = sm_->ApplyEmpty(e.index(), e.term());
    if (!s.ok()) result = s;
  } else {
    kvpb::Command cmd;
    if (!cmd.ParseFromString(e.data())) {
      // Every node applies the same bytes: a command no node can parse is skipped by all.
      spdlog::error("raft: entry {} holds an unparseable command; recorded as empty",
                    e.index());
      absl::Status s = sm_->ApplyEmpty(e.index(), e.term());
      result = s.ok() ? absl::InvalidArgumentError("malformed command") : s;
    } else {
      result = sm_->Apply(e.index(), e.term(), cmd);
    }
  }
  if (!result.ok() && result.status().code() != absl::StatusCode::kInvalidArgument) {
    // The state machine could not record a committed entry: stopping is the only safe move.
    spdlog::critical("raft: applying entry {} failed: {}", e.index(),
                     result.status().ToString());
    spdlog::shutdown();
    std::_Exit(70);
  }
  backup_->Enqueue(e.index(), e.term(), e.data());
  auto it = pending_writes_.find(e.index());
  if (it == pending_writes_.end()) return;
  PendingWrite w = std::move(it->second);
  pending_writes_.erase(it);
  if (w.term != e.term()) {
    // Another leader's entry took this index: our proposal was never committed.
    std::move(w.done)(absl::UnavailableError(
        "leadership changed before the write committed; it was not applied"));
    return;
  }
  if (!result.ok()) {
    std::move(w.done)(result.status());
  } else {
    std::move(w.done)(ForwardResult{e.index(), *std::move(result)});
  }
}

void RaftReplicator::SendMessages(std::vector<raftpb::Message> msgs) {
  std::vector<raftpb::Message> plain;
  plain.reserve(msgs.size());
  for (raftpb::Message& m : msgs) {
    if (m.type() != raftpb::MSG_SNAP) {
      plain.push_back(std::move(m));
      continue;
    }
    // Snapshots are streamed as files (snapshot_transfer.h); the follower's core gets the
    // MSG_SNAP only once the file is complete and verified.
    if (m.snapshot().handle().empty()) {
      raft_->ReportSnapshot(m.to(), false);
    } else {
      snapshot_sender_->Start(m, m.snapshot().handle());  // false: one already running
    }
  }
  transport_->Send(std::move(plain));
}

void RaftReplicator::InstallSnapshot(const raftpb::Snapshot& snap) {
  const std::string& path = snap.handle();
  spdlog::info("raft: installing snapshot {} (index {}, term {})", path,
               snap.metadata().index(), snap.metadata().term());
  // The state machine first: if we crash after it, the WAL still describes an older log,
  // the store is ahead of it, and the leader resends; the reverse order could leave a log
  // that starts after a store that never got the snapshot.
  if (absl::Status s = sm_->InstallSnapshot(path); !s.ok()) {
    spdlog::critical("raft: installing snapshot {} failed: {}", path, s.ToString());
    spdlog::shutdown();
    std::_Exit(70);
  }
  if (absl::Status s = wal_->ApplySnapshot(snap.metadata()); !s.ok()) FatalStorageError(s);
  if (absl::Status s = backup_->ResetFrom(path); !s.ok()) {
    spdlog::error("backup: resetting from snapshot {} failed: {}", path, s.ToString());
  }
}

void RaftReplicator::OnSnapshotMade(const SnapshotReport& report) {
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(report.meta.applied_index);
  snap.mutable_metadata()->set_term(report.meta.applied_term);
  for (size_t i = 0; i < options_.cluster.size(); ++i) {
    snap.mutable_metadata()->mutable_conf_state()->add_voters(i + 1);
  }
  snap.set_handle(report.path);
  raft_->SetSnapshot(snap);
  // Compact: never past the snapshot, what RocksDB has flushed, or the backup; keep a tail
  // for followers that are only a little behind.
  uint64_t safe = std::min({report.meta.applied_index, report.flushed_index,
                            backup_->applied_index()});
  if (safe <= options_.log_retained_entries) return;
  uint64_t compact_to = safe - options_.log_retained_entries;
  if (compact_to < wal_->FirstIndex()) return;
  if (absl::Status s = wal_->Compact(compact_to); !s.ok()) FatalStorageError(s);
  spdlog::info("raft: log compacted through index {} (snapshot at {})", compact_to,
               report.meta.applied_index);
}

void RaftReplicator::ReleaseApplied() {
  const uint64_t applied = sm_->applied_index();
  while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= applied) {
    for (ReadDone& d : reads_waiting_apply_.begin()->second.dones) {
      std::move(d)(absl::OkStatus());
    }
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
  }
  while (!writes_waiting_apply_.empty() && writes_waiting_apply_.begin()->first <= applied) {
    AppliedElsewhereEvent& a = writes_waiting_apply_.begin()->second;
    std::move(a.done)(std::move(a.result));
    writes_waiting_apply_.erase(writes_waiting_apply_.begin());
  }
}

void RaftReplicator::ExpireRequests(absl::Time now) {
  const std::string after = absl::StrCat(" not answered within ", options_.request_timeout_ms,
                                         " ms (--request-timeout-ms)");
  for (auto it = pending_writes_.begin(); it != pending_writes_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    std::move(it->second.done)(
        absl::DeadlineExceededError(absl::StrCat("write", after, "; outcome unknown")));
    it = pending_writes_.erase(it);
  }
  for (auto it = pending_reads_.begin(); it != pending_reads_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    for (ReadDone& d : it->second.dones) {
      std::move(d)(absl::DeadlineExceededError(absl::StrCat("read", after)));
    }
    it = pending_reads_.erase(it);
  }
  for (auto it = reads_waiting_apply_.begin(); it != reads_waiting_apply_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    for (ReadDone& d : it->second.dones) {
      std::move(d)(absl::DeadlineExceededError(absl::StrCat("read", after)));
    }
    it = reads_waiting_apply_.erase(it);
  }
}

void RaftReplicator::OnTermOrRoleChange() {
  if (raft_->term() != last_term_) {
    // A read index requested in an older term may never be confirmed: fail fast so the
    // client retries against the new leader.
    for (auto& [ctx, read] : pending_reads_) {
      for (ReadDone& d : read.dones) {
        std::move(d)(absl::UnavailableError("leader changed while confirming the read; retry"));
      }
    }
    pending_reads_.clear();
  }
  if (raft_->lead() != last_lead_) {
    spdlog::info("raft: term {}, leader {}", raft_->term(),
                 raft_->lead() == 0 ? std::string("unknown")
                                    : absl::StrCat("node ", raft_->lead() - 1));
  }
  last_term_ = raft_->term();
  last_lead_ = raft_->lead();
}

void RaftReplicator::FailAll(const absl::Status& status) {
  for (auto& [index, w] : pending_writes_) std::move(w.done)(status);
  pending_writes_.clear();
  for (auto& [ctx, r] : pending_reads_) {
    for (ReadDone& d : r.dones) std::move(d)(status);
  }
  pending_reads_.clear();
  for (auto& [index, r] : reads_waiting_apply_) {
    for (ReadDone& d : r.dones) std::move(d)(status);
  }
  reads_waiting_apply_.clear();
  for (auto& [index, a] : writes_waiting_apply_) std::move(a.done)(status);
  writes_waiting_apply_.clear();
}

void RaftReplicator::PublishStatus() {
  raft::RaftStatus rs = raft_->Status();
  NodeStatus s;
  s.id = options_.node_index;
  s.role = raft::RoleName(rs.role);
  s.term = rs.term;
  s.leader_id = rs.lead == 0 ? -1 : static_cast<int64_t>(rs.lead - 1);
  s.commit_index = rs.commit;
  s.applied_index = sm_->applied_index();
  s.revision = sm_->revision();
  s.cluster_id = options_.cluster_id;
  absl::MutexLock lock(&status_mu_);
  status_ = s;
}

NodeStatus RaftReplicator::Status() const {
  absl::MutexLock lock(&status_mu_);
  return status_;
}

std::vector<PeerStatus> RaftReplicator::Members() const {
  NodeStatus s = Status();
  std::vector<PeerStatus> out;
  for (size_t i = 0; i < options_.cluster.size(); ++i) {
    PeerStatus p;
    p.id = i;
    p.address = options_.cluster[i].client_address();
    p.grpc_address = options_.cluster[i].grpc_address();
    if (i == options_.node_index) {
      p.role = s.role;
      p.term = s.term;
      p.commit_index = s.commit_index;
      p.applied_index = s.applied_index;
    } else {
      // Only what this node knows: whether it is the leader. Each node's own figures come
      // from asking it (kvctl status does).
      p.role = s.leader_id == static_cast<int64_t>(i) ? "leader" : "unknown";
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace raftkv::server
