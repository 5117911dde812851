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

absl::Status RetryShortly(std::string message) {
  absl::Status s = absl::FailedPreconditionError(std::move(message));
  s.SetPayload(kRetryShortlyPayload, absl::Cord());
  return s;
}

absl::Status TransferInProgress(uint64_t to) {
  // Retryable, and no leader hint: the leader is about to change.
  return absl::UnavailableError(
      absl::StrCat("not accepting proposals: leadership transfer to ", to, " in progress"));
}

}  // namespace

// ---------------------------------------------------------------- proposals, replication

absl::StatusOr<EntryId> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) return NotLeader(lead_, RejoinDetail());
  // §3.10: proposals stop while leadership is handed over (else the target might never
  // catch up, and what it lacks would be lost with the old leader's term).
  if (lead_transferee_ != 0) return TransferInProgress(lead_transferee_);
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

absl::StatusOr<EntryId> Raft::ProposeConfChange(raftpb::ConfChange change) {
  if (role_ != Role::kLeader) return NotLeader(lead_, RejoinDetail());
  if (lead_transferee_ != 0) return TransferInProgress(lead_transferee_);
  // One change at a time (thesis §4.1): the next one only once the previous one committed,
  // so any two configurations in force at once differ by one server and their majorities
  // intersect.
  if (log_.LastConfIndex() > log_.committed()) {
    return RetryShortly(absl::StrCat("a configuration change (index ", log_.LastConfIndex(),
                                     ") is not committed yet; one change at a time: retry "
                                     "shortly"));
  }
  // A new leader may still hold an uncommitted change of an earlier term in its log whose
  // fate is undecided: committing an entry of its own term first settles it (the fix for
  // the single-server bug, raft-dev 2015 / thesis errata).
  if (!CommittedInCurrentTerm()) {
    return RetryShortly("this leader has not committed an entry of its term yet; retry shortly");
  }
  const raftpb::ConfState& cur = log_.conf();
  absl::StatusOr<raftpb::ConfState> next = ApplyConfChange(cur, change);
  if (!next.ok()) return next.status();
  if (change.type() == raftpb::CONF_PROMOTE) {
    // A voter that makes the quorum wait for it to catch up costs availability.
    const uint64_t match = progress_.at(change.node_id()).match();
    if (match == 0) {
      // Whatever the lag bound: a node that holds nothing yet (its process not started, or
      // unreachable since it was added) is no voter to count on.
      // (Also right after an election: a new leader knows no match until the first answer.)
      return RetryShortly(absl::StrCat(
          "learner ", change.node_id(),
          " has not acknowledged any entry to this leader yet (not running or not reachable, "
          "or this leader was just elected): retry shortly"));
    }
    const uint64_t behind = log_.LastIndex() - std::min(match, log_.LastIndex());
    if (behind > config_.max_promote_lag_entries) {
      return absl::FailedPreconditionError(absl::StrCat(
          "learner ", change.node_id(), " is ", behind, " entries behind the leader (match ",
          match, ", leader's last index ", log_.LastIndex(), "; at most ",
          config_.max_promote_lag_entries, " allowed): retry once it has caught up"));
    }
  }
  if (change.type() == raftpb::CONF_PROMOTE ||
      (change.type() == raftpb::CONF_REMOVE && IsVoterIn(cur, change.node_id()))) {
    // Availability (etcd's strict reconfiguration check): the new voter set must keep a
    // majority of voters that count now -- data intact by their latest incarnation and heard
    // from lately (this CheckQuorum round or the last: a change proposed just after a round
    // cleared the marks must not find every voter down), or this leader -- else the change
    // itself could leave the cluster unable to commit: promoting a learner that lost its
    // disk, removing a healthy voter while another is down or recovering.
    std::vector<uint64_t> healthy;
    for (uint64_t v : next->voters()) {
      auto it = progress_.find(v);
      if (v == config_.id ||
          (it != progress_.end() && it->second.counts() && it->second.active_lately())) {
        healthy.push_back(v);
      }
    }
    if (healthy.size() < static_cast<size_t>(next->voters_size()) / 2 + 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the change would leave ", healthy.size(), " of ", next->voters_size(),
          " voters up with their data (", DescribeConfState(*next),
          "): a majority is needed; bring the others back first"));
    }
  }
  *change.mutable_conf_state() = std::move(*next);
  raftpb::Entry e;
  e.set_type(raftpb::ENTRY_CONF);
  e.set_data(change.SerializeAsString());
  uncommitted_bytes_ += e.data().size();
  AppendEntry(std::move(e));
  MaybeApplyConf();  // in force here at once
  broadcast_pending_ = true;
  if (config_.check_invariants) CheckInvariants();
  return EntryId{log_.LastIndex(), term_};
}

std::vector<uint64_t> Raft::Tracked() const {
  std::vector<uint64_t> ids = MembersOf(log_.conf());
  for (uint64_t id : MembersOf(log_.ConfAt(log_.committed()))) ids.push_back(id);
  ids.push_back(config_.id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

void Raft::MaybeApplyConf() {
  // (Followers track no progress: Reset rebuilds it when one becomes leader.)
  if (role_ != Role::kLeader) return;
  // Until stable: a commit below may change the committed configuration (bounded: commit
  // only grows, up to the last index).
  while (true) {
    if (log_.conf_version() == seen_conf_version_ && log_.committed() == seen_commit_) return;
    seen_conf_version_ = log_.conf_version();
    seen_commit_ = log_.committed();
    const std::vector<uint64_t> tracked = Tracked();
    for (auto it = progress_.begin(); it != progress_.end();) {
      if (!std::binary_search(tracked.begin(), tracked.end(), it->first)) {
        it = progress_.erase(it);
      } else {
        ++it;
      }
    }
    for (uint64_t id : tracked) {
      if (progress_.count(id)) continue;
      Progress pr(log_.LastIndex() + 1, config_.max_inflight_msgs);
      pr.set_recent_active(true);  // a new member: give it a chance (snapshots included)
      progress_.emplace(id, std::move(pr));
    }
    if (lead_transferee_ != 0 && !IsVoterIn(log_.conf(), lead_transferee_)) AbortTransfer();
    // Fewer voters may make a smaller quorum that already holds more; then the committed
    // configuration may have changed too (the next round).
    if (MaybeCommit()) BroadcastAppend();
  }
}

void Raft::MaybeStepDownRemoved() {
  // Thesis §4.2.2: a leader not in its configuration manages the cluster until that
  // configuration commits (it does not count itself meanwhile), then steps down. It never
  // campaigns again (Promotable), so the remaining voters elect one of themselves.
  if (role_ == Role::kLeader && !SelfIsVoter() && log_.committed() >= log_.LastConfIndex()) {
    BecomeFollower(term_, 0);
  }
}

absl::Status Raft::TransferLeadership(uint64_t to) {
  if (role_ != Role::kLeader) return NotLeader(lead_, RejoinDetail());
  if (to == 0) {
    // The most up-to-date other voter: the one that needs least to catch up.
    uint64_t best_match = 0;
    for (uint64_t v : Voters()) {
      if (v == config_.id || !progress_.at(v).counts()) continue;
      if (to == 0 || progress_.at(v).match() > best_match) {
        to = v;
        best_match = progress_.at(v).match();
      }
    }
    if (to == 0) return absl::FailedPreconditionError("no other voter to transfer to");
  }
  if (to == config_.id) {
    return absl::FailedPreconditionError(absl::StrCat("node ", to, " already leads"));
  }
  if (!IsVoterIn(log_.conf(), to)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", to, " is not a voter (", DescribeConfState(log_.conf()), ")"));
  }
  if (!progress_.at(to).counts()) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", to, " lost its data and is recovering: it cannot lead yet"));
  }
  lead_transferee_ = to;
  transfer_elapsed_ = 0;
  if (progress_.at(to).match() == log_.LastIndex()) {
    SendTimeoutNow(to);
  } else {
    MaybeSendAppend(to, true);  // TimeoutNow follows once it acknowledges our last entry
  }
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

void Raft::SendTimeoutNow(uint64_t to) {
  Message m;
  m.set_type(raftpb::MSG_TIMEOUT_NOW);
  m.set_to(to);
  Send(std::move(m));
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
    // The transfer target now holds our whole log: it may campaign.
    if (m.from() == lead_transferee_ && pr.match() == log_.LastIndex()) {
      SendTimeoutNow(m.from());
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
      reads_.OnHeartbeatAck(Voters(), config_.id, m.from(), m.context());
  for (const ReadIndexTracker::Read& r : acked.released) AnswerRead(r);
  if (acked.start_round) BroadcastHeartbeat();
}

// ---------------------------------------------------------------- commit, CheckQuorum

bool Raft::MaybeCommit() {
  // The leader's own match counts only what Advance reported persisted.
  // Counted among the voters of the configuration in force (the newest in our log, even
  // uncommitted: thesis §4.1), never learners.
  const uint64_t quorum_index = quorum::CommittedIndex(Voters(), [this](uint64_t id) {
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
  return quorum::TallyVotes(Voters(), [this](uint64_t id) -> std::optional<bool> {
           if (id == config_.id) return true;
           auto it = progress_.find(id);
           return it != progress_.end() && it->second.recent_active() && it->second.counts();
         }) == quorum::VoteResult::kWon;
}

bool Raft::LeaderAloneIsQuorum() const {
  return quorum::TallyVotes(Voters(), [this](uint64_t id) -> std::optional<bool> {
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
