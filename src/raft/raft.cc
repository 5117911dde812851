#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "raft/quorum.h"

namespace raftkv::raft {

using raftpb::Message;
using raftpb::MessageType;

namespace {

MessageType VoteResponseType(MessageType t) {
  return t == raftpb::MSG_PRE_VOTE ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP;
}

absl::Status NotLeader(uint64_t lead) {
  absl::Status s = absl::UnavailableError(
      lead == 0 ? std::string("not leader; no leader known")
                : absl::StrCat("not leader; leader is ", lead));
  if (lead != 0) s.SetPayload(kLeaderHintPayload, absl::Cord(absl::StrCat(lead)));
  return s;
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

std::optional<uint64_t> LeaderHint(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kLeaderHintPayload);
  uint64_t id = 0;
  if (!p || !absl::SimpleAtoi(std::string(*p), &id) || id == 0) return std::nullopt;
  return id;
}

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(const Config& config,
                                                   const LogStorage* storage) {
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  const raftpb::HardState hs = storage->hard_state();
  if (hs.commit() > storage->LastIndex()) {
    return absl::InvalidArgumentError(absl::StrCat("hard state commit ", hs.commit(),
                                                   " past last index ", storage->LastIndex()));
  }
  if (config.applied > std::max(hs.commit(), storage->FirstIndex() - 1)) {
    return absl::InvalidArgumentError("config.applied is past the commit index");
  }
  return std::unique_ptr<Raft>(new Raft(config, storage));
}

Raft::Raft(const Config& config, const LogStorage* storage)
    : config_(config),
      storage_(storage),
      log_(storage, config.applied),
      rng_(config.seed * 0x9e3779b97f4a7c15ULL + config.id) {
  const raftpb::HardState hs = storage->hard_state();
  term_ = hs.term();
  vote_ = hs.vote();
  prev_hard_state_ = hs;
  BecomeFollower(term_, 0);
  inv_term_ = term_;
  inv_vote_ = vote_;
  inv_commit_ = log_.committed();
  inv_applied_ = log_.applied();
}

// ---------------------------------------------------------------- roles

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_tick + static_cast<int>(rng_() % config_.election_tick);
}

void Raft::Reset(uint64_t term) {
  if (term != term_) {
    term_ = term;
    vote_ = 0;  // a new term: no vote cast yet
  }
  lead_ = 0;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  uncommitted_bytes_ = 0;
  ResetRandomizedElectionTimeout();
  votes_.clear();
  progress_.clear();
  for (uint64_t p : config_.peers) {
    auto [it, _] = progress_.emplace(p, Progress(log_.LastIndex() + 1, config_.max_inflight_msgs));
    if (p == config_.id) it->second.set_recent_active(true);
  }
  // Pending reads die with the leadership that would have confirmed them (callers time out).
  reads_.Reset();
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  role_ = Role::kFollower;
  lead_ = lead;
}

void Raft::BecomePreCandidate() {
  RAFTKV_CHECK(role_ != Role::kLeader);
  // Neither term nor vote changes: a pre-vote is only a question.
  role_ = Role::kPreCandidate;
  votes_.clear();
  lead_ = 0;
}

void Raft::BecomeCandidate() {
  RAFTKV_CHECK(role_ != Role::kLeader);
  Reset(term_ + 1);
  vote_ = config_.id;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  RAFTKV_CHECK(role_ == Role::kCandidate);
  Reset(term_);
  role_ = Role::kLeader;
  lead_ = config_.id;
  Progress& self = progress_.at(config_.id);
  self.BecomeReplicate();
  // The leader counts itself only for what it has persisted.
  self.MaybeUpdate(log_.StableLastIndex());
  // A no-op of the new term lets earlier-term entries commit (Raft §5.4.2, §8).
  AppendEntry(raftpb::Entry());
  BroadcastAppend();
}

bool Raft::Promotable() const {
  // A node with a snapshot not yet installed may not lead: its log is in flux.
  return progress_.count(config_.id) > 0 && !log_.UnstableSnapshot().has_value();
}

void Raft::Campaign(bool pre_vote) {
  MessageType type;
  uint64_t term;
  if (pre_vote) {
    BecomePreCandidate();
    type = raftpb::MSG_PRE_VOTE;
    term = term_ + 1;  // the term we would campaign in; ours stays unchanged
  } else {
    BecomeCandidate();
    type = raftpb::MSG_VOTE;
    term = term_;
  }
  if (Poll(config_.id, true) == quorum::VoteResult::kWon) {
    // Single-node cluster: won already.
    if (pre_vote) {
      Campaign(false);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t p : config_.peers) {
    if (p == config_.id) continue;
    Message m;
    m.set_type(type);
    m.set_to(p);
    m.set_term(term);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    Send(std::move(m));
  }
}

quorum::VoteResult Raft::Poll(uint64_t id, bool granted) {
  votes_.emplace(id, granted);  // the first answer of a voter counts
  return quorum::TallyVotes(config_.peers, [this](uint64_t voter) -> std::optional<bool> {
    auto it = votes_.find(voter);
    if (it == votes_.end()) return std::nullopt;
    return it->second;
  });
}

// ---------------------------------------------------------------- inputs

void Raft::Tick() {
  if (role_ == Role::kLeader) {
    ++heartbeat_elapsed_;
    ++election_elapsed_;
    if (election_elapsed_ >= config_.election_tick) {
      election_elapsed_ = 0;
      if (config_.check_quorum) {
        // CheckQuorum: without contact with a quorum for an election timeout, a leader
        // steps down rather than serve (possibly stale) reads and accept doomed writes.
        if (!QuorumActive()) {
          BecomeFollower(term_, 0);
          if (config_.check_invariants) CheckInvariants();
          return;
        }
        for (auto& [id, pr] : progress_) {
          if (id != config_.id) pr.set_recent_active(false);
        }
      }
    }
    if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
      heartbeat_elapsed_ = 0;
      BroadcastHeartbeat();
    }
  } else {
    ++election_elapsed_;
    if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
      election_elapsed_ = 0;
      Campaign(config_.pre_vote);
    }
  }
  if (config_.check_invariants) CheckInvariants();
}

void Raft::Step(const Message& m) {
  StepInner(m);
  if (config_.check_invariants) CheckInvariants();
}

void Raft::StepInner(const Message& m) {
  if (progress_.count(m.from()) == 0 && std::find(config_.peers.begin(), config_.peers.end(),
                                                  m.from()) == config_.peers.end()) {
    return;  // not a member
  }
  if (m.from() == config_.id) return;
  if (m.to() != 0 && m.to() != config_.id) return;  // misrouted

  if (m.term() == 0) {
    // Local messages and forwarded read requests carry no term.
  } else if (m.term() > term_) {
    if (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE) {
      // CheckQuorum lease: a follower that heard from a live leader within the minimum
      // election timeout does not help depose it (Raft thesis §4.2.3).
      const bool in_lease = config_.check_quorum && lead_ != 0 &&
                            election_elapsed_ < config_.election_tick;
      if (in_lease) return;
    }
    if (m.type() == raftpb::MSG_PRE_VOTE) {
      // Answering a pre-vote never changes our term.
    } else if (m.type() == raftpb::MSG_PRE_VOTE_RESP && !m.reject()) {
      // A granted pre-vote carries the term we asked about, not a newer leader's term.
    } else if (m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT ||
               m.type() == raftpb::MSG_SNAP) {
      BecomeFollower(m.term(), m.from());
    } else {
      BecomeFollower(m.term(), 0);
    }
  } else if (m.term() < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type() == raftpb::MSG_HEARTBEAT || m.type() == raftpb::MSG_APP)) {
      // A stale leader (e.g. healed from a partition) learns our term and steps down;
      // without this, with PreVote/CheckQuorum it could keep us from ever electing.
      Message resp;
      resp.set_type(raftpb::MSG_APP_RESP);
      resp.set_to(m.from());
      Send(std::move(resp));
    } else if (m.type() == raftpb::MSG_PRE_VOTE) {
      Message resp;
      resp.set_type(raftpb::MSG_PRE_VOTE_RESP);
      resp.set_to(m.from());
      resp.set_term(term_);
      resp.set_reject(true);
      Send(std::move(resp));
    }
    return;  // everything else from a stale term is ignored
  }

  if (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE) {
    HandleVoteRequest(m);
    return;
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
}

void Raft::HandleVoteRequest(const Message& m) {
  // We may vote if we already voted for this candidate (a retry), or have voted for no one
  // and know no leader of this term; a pre-vote for a later term is always answerable.
  const bool can_vote = vote_ == m.from() || (vote_ == 0 && lead_ == 0) ||
                        (m.type() == raftpb::MSG_PRE_VOTE && m.term() > term_);
  Message resp;
  resp.set_type(VoteResponseType(m.type()));
  resp.set_to(m.from());
  // Election restriction (Raft §5.4.1): only a candidate whose log is at least as up to date.
  if (can_vote && log_.IsUpToDate(m.index(), m.log_term())) {
    resp.set_term(m.term());
    if (m.type() == raftpb::MSG_VOTE) {
      election_elapsed_ = 0;
      vote_ = m.from();  // persisted (Ready::hard_state) before this answer is sent
    }
  } else {
    resp.set_term(term_);
    resp.set_reject(true);
  }
  Send(std::move(resp));
}

void Raft::StepLeader(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_READ_INDEX:
      LeaderReadIndex(m.context(), m.from());
      return;
    default:
      break;
  }
  auto it = progress_.find(m.from());
  if (it == progress_.end()) return;
  Progress& pr = it->second;
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
  ReadIndexTracker::AckResult acked =
      reads_.OnHeartbeatAck(config_.peers, config_.id, m.from(), m.context());
  for (const ReadIndexTracker::Read& r : acked.released) AnswerRead(r);
  if (acked.start_round) BroadcastHeartbeat();
}

void Raft::StepCandidate(const Message& m) {
  const MessageType my_resp =
      role_ == Role::kPreCandidate ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP;
  switch (m.type()) {
    // A leader of our term exists (we lost the election): follow it.
    case raftpb::MSG_APP:
      BecomeFollower(m.term(), m.from());
      HandleAppendEntries(m);
      return;
    case raftpb::MSG_HEARTBEAT:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      return;
    case raftpb::MSG_SNAP:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      return;
    default:
      break;
  }
  if (m.type() != my_resp) return;
  switch (Poll(m.from(), !m.reject())) {
    case quorum::VoteResult::kWon:
      // A won pre-election only earns the right to campaign for real.
      if (role_ == Role::kPreCandidate) {
        Campaign(false);
      } else {
        BecomeLeader();
      }
      break;
    case quorum::VoteResult::kLost:
      BecomeFollower(term_, 0);
      break;
    case quorum::VoteResult::kPending:
      break;
  }
}

void Raft::StepFollower(const Message& m) {
  switch (m.type()) {
    case raftpb::MSG_APP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppendEntries(m);
      break;
    case raftpb::MSG_HEARTBEAT:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      break;
    case raftpb::MSG_SNAP:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      break;
    case raftpb::MSG_READ_INDEX_RESP:
      read_states_.push_back(ReadState{m.context(), m.index()});
      break;
    default:
      break;
  }
}

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.set_type(raftpb::MSG_APP_RESP);
  resp.set_to(m.from());
  if (m.index() < log_.committed()) {
    // Everything up to commit already matches (Log Matching); say how far we are.
    resp.set_index(log_.committed());
    Send(std::move(resp));
    return;
  }
  std::vector<raftpb::Entry> entries(m.entries().begin(), m.entries().end());
  if (std::optional<uint64_t> last_new =
          log_.MaybeAppend(m.index(), m.log_term(), m.commit(), entries)) {
    resp.set_index(*last_new);
    Send(std::move(resp));
    return;
  }
  // Consistency check failed (Raft §5.3). Hint the largest index where we may agree with the
  // leader: at most our last index, and no entry of a term newer than the leader's there.
  uint64_t hint = std::min(m.index(), log_.LastIndex());
  hint = log_.FindConflictByTerm(hint, m.log_term());
  resp.set_index(m.index());
  resp.set_reject(true);
  resp.set_reject_hint(hint);
  resp.set_hint_term(log_.TermOrZero(hint));
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  Message resp;
  resp.set_type(raftpb::MSG_HEARTBEAT_RESP);
  resp.set_to(m.from());
  resp.set_context(m.context());
  // The leader sends min(our match, its commit), so every index it names is in our log --
  // unless this node lost entries it had acknowledged (data dir wiped, log truncated by an
  // operator). Then commit only what we have and tell the leader where our log ends, so it
  // replicates to us (or sends a snapshot) again instead of trusting the old match.
  if (m.commit() > log_.LastIndex()) {
    resp.set_reject(true);
    resp.set_reject_hint(log_.LastIndex());
  }
  log_.CommitTo(std::min(m.commit(), log_.LastIndex()));
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  const raftpb::SnapshotMetadata& meta = m.snapshot().metadata();
  Message resp;
  resp.set_type(raftpb::MSG_APP_RESP);
  resp.set_to(m.from());
  if (meta.index() <= log_.committed()) {
    // Old news: we already hold everything it covers.
    resp.set_index(log_.committed());
  } else if (log_.MatchTerm(meta.index(), meta.term())) {
    // Our log already contains the snapshot's last entry: keep the log, fast-forward commit.
    log_.CommitTo(meta.index());
    resp.set_index(log_.committed());
  } else {
    // Discard the whole (conflicting or too short) log; the caller installs the snapshot.
    log_.Restore(m.snapshot());
    snapshot_ = m.snapshot();
    resp.set_index(log_.LastIndex());
  }
  Send(std::move(resp));
}

// ---------------------------------------------------------------- replication

void Raft::AppendEntry(raftpb::Entry e) {
  e.set_term(term_);
  e.set_index(log_.LastIndex() + 1);
  log_.Append({std::move(e)});
  // The leader's own match advances when the caller reports the entry persisted (Advance).
}

absl::StatusOr<EntryId> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) return NotLeader(lead_);
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

bool Raft::MaybeCommit() {
  // The leader's own match counts only what Advance reported persisted.
  const uint64_t quorum_index = quorum::CommittedIndex(config_.peers, [this](uint64_t id) {
    auto it = progress_.find(id);
    return it == progress_.end() ? uint64_t{0} : it->second.match();
  });
  // Raft §5.4.2 (Figure 8): only an entry of the current term commits by counting replicas;
  // earlier entries commit with it.
  if (quorum_index <= log_.committed() || log_.TermOrZero(quorum_index) != term_) return false;
  log_.CommitTo(quorum_index);
  ReleaseReadsWaitingForCommit();
  return true;
}

bool Raft::QuorumActive() const {
  // Every voter "answers": yes when heard from this election timeout (the leader itself
  // always is).
  return quorum::TallyVotes(config_.peers, [this](uint64_t id) -> std::optional<bool> {
           if (id == config_.id) return true;
           auto it = progress_.find(id);
           return it != progress_.end() && it->second.recent_active();
         }) == quorum::VoteResult::kWon;
}

bool Raft::LeaderAloneIsQuorum() const {
  return quorum::TallyVotes(config_.peers, [this](uint64_t id) -> std::optional<bool> {
           if (id == config_.id) return true;
           return std::nullopt;
         }) == quorum::VoteResult::kWon;
}

bool Raft::CommittedInCurrentTerm() const { return log_.TermOrZero(log_.committed()) == term_; }

// ---------------------------------------------------------------- ReadIndex

absl::Status Raft::ReadIndex(std::string context) {
  absl::Status s;
  if (role_ == Role::kLeader) {
    LeaderReadIndex(std::move(context), config_.id);
  } else if (lead_ == 0) {
    s = NotLeader(0);
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

// ---------------------------------------------------------------- output

void Raft::Send(Message m) {
  m.set_from(config_.id);
  // Votes and their answers carry an explicit term; read requests are term-less like local
  // messages; everything else carries ours.
  if (m.term() == 0 && m.type() != raftpb::MSG_READ_INDEX) m.set_term(term_);
  msgs_.push_back(std::move(m));
}

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
  return hs;
}

bool Raft::HasReady() const {
  if (ready_outstanding_) return false;
  const raftpb::HardState hs = CurrentHardState();
  return broadcast_pending_ || !msgs_.empty() || !read_states_.empty() || !log_.UnstableEntries().empty() ||
         log_.UnstableSnapshot().has_value() || log_.HasNextCommittedEntries() ||
         hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote() ||
         hs.commit() != prev_hard_state_.commit();
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
  rd.committed_entries = log_.NextCommittedEntries(config_.max_apply_bytes);
  for (Message& m : msgs_) {
    (MayLeaveBeforePersist(m) ? rd.messages_before_persist : rd.messages).push_back(std::move(m));
  }
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  const raftpb::HardState hs = CurrentHardState();
  const bool term_or_vote_changed =
      hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote();
  if (term_or_vote_changed || hs.commit() != prev_hard_state_.commit()) rd.hard_state = hs;
  rd.must_sync = !rd.entries.empty() || term_or_vote_changed || rd.snapshot.has_value();
  ready_outstanding_ = true;
  return rd;
}

void Raft::Advance(const Ready& rd) {
  RAFTKV_CHECK_MSG(ready_outstanding_, "Advance without GetReady");
  ready_outstanding_ = false;
  if (rd.hard_state) prev_hard_state_ = *rd.hard_state;
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
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------- snapshots, status

void Raft::SetSnapshot(const raftpb::Snapshot& snap) {
  RAFTKV_CHECK_MSG(snap.metadata().index() <= log_.applied(),
                   "SetSnapshot beyond the applied index");
  if (!snapshot_ || snapshot_->metadata().index() <= snap.metadata().index()) snapshot_ = snap;
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
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : progress_) {
      s.progress.push_back(ProgressStatus{id, pr.match(), pr.next(),
                                          Progress::StateName(pr.state()), pr.recent_active(),
                                          pr.inflight()});
    }
  }
  return s;
}

}  // namespace raftkv::raft
