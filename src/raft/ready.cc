// Raft (raft.h), the caller's side: what leaves in a Ready and what Advance reports back
// (etcd's RawNode), snapshot and transport reports, and Status.
#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace raftkv::raft {

using raftpb::Message;

namespace {

// Whether what the hard state promises changed: term, vote, voter state or incarnation (the
// commit index alone need not be synced, as in etcd).
bool PersistedPartChanged(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.term() != b.term() || a.vote() != b.vote() || a.voter_state() != b.voter_state() ||
         a.incarnation() != b.incarnation();
}

}  // namespace

bool Raft::MayLeaveBeforePersist(const Message& m) const {
  // Only a leader's replication of its current term may overtake its own fsync: it promises
  // nothing about the leader's disk (the leader counts itself only for entries Advance
  // reported durable). A vote or vote answer promises the persisted term and vote, an append
  // or heartbeat answer the persisted log, and anything queued before a step-down belongs to
  // a term this node no longer leads: all of those wait for the persist step.
  if (role_ != Role::kLeader || m.term() != term_) return false;
  return m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT ||
         m.type() == raftpb::MSG_SNAP;
}

raftpb::HardState Raft::CurrentHardState() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  hs.set_voter_state(voter_state_);
  hs.set_incarnation(incarnation_);
  return hs;
}

bool Raft::HasReady() const {
  if (ready_outstanding_) return false;
  const raftpb::HardState hs = CurrentHardState();
  return broadcast_pending_ || !msgs_.empty() || !read_states_.empty() ||
         !log_.UnstableEntries().empty() || log_.UnstableSnapshot().has_value() ||
         (!apply_paused_ && log_.HasNextCommittedEntries()) ||
         PersistedPartChanged(hs, prev_hard_state_) || hs.commit() != prev_hard_state_.commit();
}

Ready Raft::GetReady() {
  RAFTKV_CHECK_MSG(!ready_outstanding_, "GetReady before Advance of the previous Ready");
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    if (role_ == Role::kLeader) BroadcastAppend();
  }
  Ready rd;
  rd.entries = log_.UnstableEntries();
  rd.snapshot = log_.UnstableSnapshot();
  if (!apply_paused_) rd.committed_entries = log_.NextCommittedEntries(config_.max_apply_bytes);
  for (Message& m : msgs_) {
    (MayLeaveBeforePersist(m) ? rd.messages_before_persist : rd.messages).push_back(std::move(m));
  }
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  const raftpb::HardState hs = CurrentHardState();
  const bool promise_changed = PersistedPartChanged(hs, prev_hard_state_);
  if (promise_changed || hs.commit() != prev_hard_state_.commit()) rd.hard_state = hs;
  rd.must_sync = !rd.entries.empty() || promise_changed || rd.snapshot.has_value();
  ready_outstanding_ = true;
  return rd;
}

void Raft::Advance(const Ready& rd) {
  RAFTKV_CHECK_MSG(ready_outstanding_, "Advance without GetReady");
  ready_outstanding_ = false;
  if (rd.hard_state) {
    prev_hard_state_ = *rd.hard_state;
    if (rd.hard_state->voter_state() == raftpb::RECOVERING) voter_state_durable_ = true;
  }
  if (rd.snapshot) {
    log_.StableSnapTo(rd.snapshot->metadata().index());
    log_.AppliedTo(rd.snapshot->metadata().index());
  }
  if (!rd.entries.empty()) log_.StableTo(rd.entries.back().index(), rd.entries.back().term());
  if (!rd.committed_entries.empty()) log_.AppliedTo(rd.committed_entries.back().index());
  for (const raftpb::Entry& e : rd.committed_entries) {
    uncommitted_bytes_ -= std::min<uint64_t>(uncommitted_bytes_, e.data().size());
  }
  if (role_ == Role::kLeader) {
    // The caller has persisted our own entries: now they count toward the quorum.
    if (progress_.at(config_.id).MaybeUpdate(log_.StableLastIndex()) && MaybeCommit()) {
      BroadcastAppend();
    }
  }
  MaybeApplyConf();
  MaybeStepDownRemoved();
  MaybeFinishRecovery();
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------- snapshots, status

void Raft::SetSnapshot(const raftpb::Snapshot& snap) {
  RAFTKV_CHECK_MSG(snap.metadata().index() <= log_.applied(),
                   "SetSnapshot beyond the applied index");
  if (!snapshot_ || snapshot_->metadata().index() <= snap.metadata().index()) {
    snapshot_ = snap;
    // The configuration travels with the snapshot (a follower installing it learns it); the
    // core knows it at every index the caller can snapshot, the caller need not.
    *snapshot_->mutable_metadata()->mutable_conf_state() = log_.ConfAt(snap.metadata().index());
  }
}

void Raft::ReportSnapshot(uint64_t id, bool ok) {
  Message m;
  m.set_type(raftpb::MSG_SNAP_STATUS);
  m.set_from(id);
  m.set_reject(!ok);
  Step(m);
}

void Raft::ReportUnreachable(uint64_t id) {
  Message m;
  m.set_type(raftpb::MSG_UNREACHABLE);
  m.set_from(id);
  Step(m);
}

RaftStatus Raft::Status() const {
  RaftStatus s;
  s.id = config_.id;
  s.role = role_;
  s.term = term_;
  s.vote = vote_;
  s.lead = lead_;
  s.commit = log_.committed();
  s.applied = log_.applied();
  s.last_index = log_.LastIndex();
  s.voter_state = voter_state_;
  s.incarnation = incarnation_;
  s.rejoin_detail = RejoinDetail();
  s.conf_state = log_.conf();
  s.conf_index = log_.LastConfIndex();
  s.lead_transferee = lead_transferee_;
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : progress_) {
      s.progress.push_back(ProgressStatus{id, pr.match(), pr.next(),
                                          Progress::StateName(pr.state()), pr.recent_active(),
                                          pr.inflight(), IsLearnerIn(log_.conf(), id)});
    }
  }
  return s;
}

}  // namespace raftkv::raft
