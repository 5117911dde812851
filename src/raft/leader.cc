// Raft (raft.h), the leader's side: proposals, replication to followers (MsgApp, snapshots,
// heartbeats) and their answers, the commit rule, CheckQuorum and serving ReadIndex.
// Elections, roles and the follower's side are in raft.cc; Ready/Advance in ready.cc.
#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/quorum.h"

namespace raftkv::raft {

using raftpb::Message;

namespace {

// `why`: what a node that is not a voter waits for (RejoinDetail), appended when no leader is
// known, since that is then the reason no request can be served here.
absl::Status NotLeader(uint64_t lead, const std::string& why = "") {
  absl::Status s = absl::UnavailableError(
      lead == 0 ? absl::StrCat("not leader; no leader known", why.empty() ? "" : "; this node ",
                               why)
                : absl::StrCat("not leader; leader is ", lead));
  if (lead != 0) s.SetPayload(kLeaderHintPayload, absl::Cord(absl::StrCat(lead)));
  if (lead == 0 && !why.empty()) s.SetPayload(kRejoinDetailPayload, absl::Cord(why));
  return s;
}

}  // namespace

// ---------------------------------------------------------------- proposals, replication

absl::StatusOr<EntryId> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) return NotLeader(lead_, RejoinDetail());
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > config_.max_uncommitted_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many uncommitted proposals (", uncommitted_bytes_, " bytes)"));
  }
  uncommitted_bytes_ += data.size();
  raftpb::Entry e;
  e.set_type(raftpb::ENTRY_NORMAL);
  e.set_data(std::move(data));
  AppendEntry(std::move(e));
  // Replication is sent at the next GetReady, so proposals made between two Readies travel
  // in one MsgApp per follower (batching; the caller drains its proposal queue first).
  broadcast_pending_ = true;
  if (config_.check_invariants) CheckInvariants();
  return EntryId{log_.LastIndex(), term_};
}

void Raft::AppendEntry(raftpb::Entry e) {
  e.set_term(term_);
  e.set_index(log_.LastIndex() + 1);
  log_.Append({std::move(e)});
  // The leader's own match advances when the caller reports the entry persisted (Advance).
}

bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.IsPaused()) return false;
  const uint64_t prev = pr.next() - 1;
  absl::StatusOr<uint64_t> prev_term = log_.Term(prev);
  absl::StatusOr<std::vector<raftpb::Entry>> entries =
      prev_term.ok() ? log_.Entries(pr.next(), log_.LastIndex() + 1, config_.max_msg_bytes)
                     : absl::StatusOr<std::vector<raftpb::Entry>>(prev_term.status());
  Message m;
  m.set_to(to);
  if (prev_term.ok() && entries.ok()) {
    if (entries->empty() && !send_if_empty) return false;
    m.set_type(raftpb::MSG_APP);
    m.set_index(prev);
    m.set_log_term(*prev_term);
    m.set_commit(log_.committed());
    if (!entries->empty()) {
      pr.SentEntries(entries->back().index());
    } else if (pr.state() == Progress::State::kProbe) {
      pr.PauseProbe();
    }
    for (raftpb::Entry& e : *entries) *m.add_entries() = std::move(e);
    Send(std::move(m));
    return true;
  }
  // The follower needs entries we compacted: send a snapshot instead.
  if (!pr.recent_active()) return false;  // don't stream to a node that seems down
  raftpb::Snapshot snap;
  const raftpb::SnapshotMetadata stored = storage_->snapshot_metadata();
  if (snapshot_ && snapshot_->metadata().index() >= stored.index()) {
    snap = *snapshot_;
  } else {
    // No SetSnapshot covering the compaction point (e.g. just restarted): name the storage's
    // snapshot with an empty handle; the transport locates it by index.
    *snap.mutable_metadata() = stored;
  }
  RAFTKV_CHECK_MSG(snap.metadata().index() > 0, "log compacted without a snapshot");
  pr.BecomeSnapshot(snap.metadata().index());
  m.set_type(raftpb::MSG_SNAP);
  *m.mutable_snapshot() = std::move(snap);
  Send(std::move(m));
  return true;
}

void Raft::BroadcastAppend() {
  for (const auto& [id, _] : progress_) {
    if (id != config_.id) MaybeSendAppend(id, true);
  }
}

void Raft::BroadcastHeartbeat() {
  for (const auto& [id, _] : progress_) {
    if (id != config_.id) SendHeartbeat(id);
  }
}

void Raft::SendHeartbeat(uint64_t to) {
  Message m;
  m.set_type(raftpb::MSG_HEARTBEAT);
  m.set_to(to);
  // Only what the follower is known to hold may be committed on it.
  m.set_commit(std::min(progress_.at(to).match(), log_.committed()));
  // An unconfirmed read round rides along; the echo confirms our leadership for it.
  m.set_context(reads_.RoundContext());
  Send(std::move(m));
}

// ---------------------------------------------------------------- answers from followers

void Raft::StepLeader(const Message& m) {
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  const bool from_peer = m.type() == raftpb::MSG_READ_INDEX ||
                         m.type() == raftpb::MSG_APP_RESP ||
                         m.type() == raftpb::MSG_HEARTBEAT_RESP;
  if (from_peer && !TrackVoterState(m, pr)) return;
  if (m.type() == raftpb::MSG_READ_INDEX) {
    LeaderReadIndex(m.context(), m.from());
    return;
  }
  switch (m.type()) {
    case raftpb::MSG_APP_RESP:
      HandleAppendResponse(m, pr);
      break;
    case raftpb::MSG_HEARTBEAT_RESP:
      HandleHeartbeatResponse(m, pr);
      break;
    case raftpb::MSG_SNAP_STATUS:
      if (pr.state() != Progress::State::kSnapshot) return;
      if (m.reject()) {
        pr.SnapshotFailed();
      } else {
        // Wait for the follower's answer (or a heartbeat response) before sending more.
        pr.BecomeProbe();
        pr.PauseProbe();
      }
      break;
    case raftpb::MSG_UNREACHABLE:
      // Pipelined messages were probably lost; probe until it answers again.
      if (pr.state() == Progress::State::kReplicate) pr.BecomeProbe();
      break;
    default:
      break;
  }
}

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  pr.set_recent_active(true);
  if (m.reject()) {
    // Fast backoff: skip every entry of a term the follower cannot match in one round trip.
    uint64_t hint = m.reject_hint();
    if (m.hint_term() > 0) hint = log_.FindConflictByTerm(m.reject_hint(), m.hint_term());
    if (pr.MaybeDecrTo(m.index(), hint)) {
      if (pr.state() == Progress::State::kReplicate) pr.BecomeProbe();
      MaybeSendAppend(m.from(), true);
    }
    return;
  }
  const bool old_paused = pr.IsPaused();
  if (pr.MaybeUpdate(m.index()) ||
      (pr.match() == m.index() && pr.state() == Progress::State::kProbe)) {
    if (pr.state() == Progress::State::kProbe) {
      pr.BecomeReplicate();
    } else if (pr.state() == Progress::State::kSnapshot && pr.match() + 1 >= log_.FirstIndex()) {
      // The follower has caught up past what we compacted: replicate normally.
      pr.BecomeProbe();
      pr.BecomeReplicate();
    }
    if (MaybeCommit()) {
      BroadcastAppend();  // tell followers the new commit index
    } else if (old_paused) {
      MaybeSendAppend(m.from(), true);
    }
    while (MaybeSendAppend(m.from(), false)) {
    }
  }
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.set_recent_active(true);
  if (m.reject() && m.reject_hint() < pr.match()) pr.ResetAfterDataLoss(m.reject_hint());
  pr.OnHeartbeatResponse();
  if (pr.match() < log_.LastIndex()) MaybeSendAppend(m.from(), true);
  // The echo of a read round may confirm our leadership for the reads waiting on it.
  // A node that lost its data confirms nothing (rejoin.cc).
  if (!pr.counts()) return;
  ReadIndexTracker::AckResult acked =
      reads_.OnHeartbeatAck(config_.peers, config_.id, m.from(), m.context());
  for (const ReadIndexTracker::Read& r : acked.released) AnswerRead(r);
  if (acked.start_round) BroadcastHeartbeat();
}

// ---------------------------------------------------------------- commit, CheckQuorum

bool Raft::MaybeCommit() {
  // The leader's own match counts only what Advance reported persisted.
  const uint64_t quorum_index = quorum::CommittedIndex(config_.peers, [this](uint64_t id) {
    auto it = progress_.find(id);
    return it == progress_.end() || !it->second.counts() ? uint64_t{0} : it->second.match();
  });
  // Raft §5.4.2 (Figure 8): only an entry of the current term commits by counting replicas;
  // earlier entries commit with it.
  if (quorum_index <= log_.committed() || log_.TermOrZero(quorum_index) != term_) return false;
  log_.CommitTo(quorum_index);
  ReleaseReadsWaitingForCommit();
  return true;
}

bool Raft::CommittedInCurrentTerm() const { return log_.TermOrZero(log_.committed()) == term_; }

bool Raft::QuorumActive() const {
  // Every voter "answers": yes when heard from this election timeout (the leader itself
  // always is).
  return quorum::TallyVotes(config_.peers, [this](uint64_t id) -> std::optional<bool> {
           if (id == config_.id) return true;
           auto it = progress_.find(id);
           return it != progress_.end() && it->second.recent_active() && it->second.counts();
         }) == quorum::VoteResult::kWon;
}

bool Raft::LeaderAloneIsQuorum() const {
  return quorum::TallyVotes(config_.peers, [this](uint64_t id) -> std::optional<bool> {
           if (id == config_.id) return true;
           return std::nullopt;
         }) == quorum::VoteResult::kWon;
}

// ---------------------------------------------------------------- ReadIndex

absl::Status Raft::ReadIndex(std::string context) {
  absl::Status s;
  if (role_ == Role::kLeader) {
    LeaderReadIndex(std::move(context), config_.id);
  } else if (lead_ == 0) {
    s = NotLeader(0, RejoinDetail());
  } else {
    Message m;
    m.set_type(raftpb::MSG_READ_INDEX);
    m.set_to(lead_);
    m.set_context(std::move(context));
    Send(std::move(m));
  }
  if (config_.check_invariants) CheckInvariants();
  return s;
}

void Raft::LeaderReadIndex(std::string context, uint64_t from) {
  // Until an entry of our term commits we may not know the true commit index (Raft §8).
  if (!CommittedInCurrentTerm()) {
    reads_.WaitForCommit(std::move(context), from);
    return;
  }
  ReadIndexTracker::Read r{std::move(context), from, log_.committed()};
  if (LeaderAloneIsQuorum()) {
    // No one else's acknowledgement is needed to confirm the leadership.
    AnswerRead(r);
    return;
  }
  if (reads_.Admit(std::move(r))) BroadcastHeartbeat();
}

void Raft::AnswerRead(const ReadIndexTracker::Read& r) {
  if (r.from == config_.id) {
    read_states_.push_back(ReadState{r.context, r.index});
    return;
  }
  Message m;
  m.set_type(raftpb::MSG_READ_INDEX_RESP);
  m.set_to(r.from);
  m.set_index(r.index);
  m.set_context(r.context);
  Send(std::move(m));
}

void Raft::ReleaseReadsWaitingForCommit() {
  if (!reads_.HasWaitingForCommit() || !CommittedInCurrentTerm()) return;
  for (ReadIndexTracker::Read& r : reads_.TakeWaitingForCommit()) {
    LeaderReadIndex(std::move(r.context), r.from);
  }
}

}  // namespace raftkv::raft
