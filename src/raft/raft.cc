// Raft (raft.h): construction, roles and elections, Tick, Step and the follower's side.
// The leader's side is in leader.cc, the caller's (Ready/Advance, reports, Status) in
// ready.cc, the invariant checks in invariants.cc.
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

std::optional<std::string> RejoinDetailOf(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kRejoinDetailPayload);
  if (!p || p->empty()) return std::nullopt;
  return std::string(*p);
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
      log_(storage, config.applied, ConfStateOf(config.peers)),
      rng_(config.seed * 0x9e3779b97f4a7c15ULL + config.id) {
  const raftpb::HardState hs = storage->hard_state();
  term_ = hs.term();
  vote_ = hs.vote();
  prev_hard_state_ = hs;
  BecomeFollower(term_, 0);
  InitVoterState(hs);
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
  AbortTransfer();
  for (uint64_t p : Tracked()) {
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
  // Only a voter campaigns (never a learner, nor a node whose removal committed). A node that
  // holds its own removal uncommitted still does (thesis §4.2.2): its vote does not count
  // (Poll tallies the configuration in force), but the others may need it elected to commit
  // the removal -- it may hold the longest log, and refuse its vote to everyone else.
  const bool voter =
      SelfIsVoter() || (log_.LastConfIndex() > log_.committed() &&
                        IsVoterIn(log_.ConfAt(log_.committed()), config_.id));
  // A node with a snapshot not yet installed may not lead: its log is in flux. A node that
  // lost its data may not either until it is a voter again (rejoin.cc).
  return voter && !log_.UnstableSnapshot().has_value() && IsVoter();
}

void Raft::Campaign(bool pre_vote, bool transfer) {
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
  // Only voters are asked: a learner's answer would count for nothing.
  for (uint64_t p : Voters()) {
    if (p == config_.id) continue;
    Message m;
    m.set_type(type);
    m.set_to(p);
    m.set_term(term);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    m.set_leader_transfer(transfer);
    Send(std::move(m));
  }
}

quorum::VoteResult Raft::Poll(uint64_t id, bool granted) {
  votes_.emplace(id, granted);  // the first answer of a voter counts
  // Tallied among the voters of our configuration: a learner's (or stranger's) grant is
  // recorded but never counts.
  return quorum::TallyVotes(Voters(), [this](uint64_t voter) -> std::optional<bool> {
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
    // A transfer that did not finish within an election timeout is abandoned: the target is
    // down or too slow, and this leader serves again (Raft thesis §3.10).
    if (lead_transferee_ != 0 && ++transfer_elapsed_ >= config_.election_tick) AbortTransfer();
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
          if (id != config_.id) pr.StartActivityRound();
        }
      }
    }
    if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
      heartbeat_elapsed_ = 0;
      BroadcastHeartbeat();
    }
  } else {
    ++election_elapsed_;
    if (!IsVoter()) TickRejoin();
    // The only voter cannot lose an election: it campaigns at its first tick instead of
    // waiting out a randomized timeout (as etcd), so a restarted one-node cluster serves
    // at once.
    const bool sole_voter = log_.conf().voters_size() == 1 && SelfIsVoter();
    if (Promotable() && (sole_voter || election_elapsed_ >= randomized_election_timeout_)) {
      election_elapsed_ = 0;
      Campaign(config_.pre_vote);
    }
  }
  if (config_.check_invariants) CheckInvariants();
}

void Raft::Step(const Message& m) {
  StepInner(m);
  MaybeApplyConf();
  MaybeStepDownRemoved();
  MaybeFinishRecovery();
  if (config_.check_invariants) CheckInvariants();
}

void Raft::StepInner(const Message& m) {
  // Messages from nodes outside our configuration are taken as from anyone else, as in
  // etcd: a node that lags may not know yet of the member that now leads or campaigns
  // (dropping them could leave it behind for good). A leader ignores answers of nodes it does
  // not track (StepLeader); a removed node is kept from disrupting by PreVote and the lease.
  if (m.from() == 0 || m.from() == config_.id) return;
  if (m.to() != 0 && m.to() != config_.id) return;  // misrouted

  if (m.term() == 0) {
    // Local messages and forwarded read requests carry no term.
  } else if (m.term() > term_) {
    if (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE) {
      // CheckQuorum lease: a follower that heard from a live leader within the minimum
      // election timeout does not help depose it (Raft thesis §4.2.3).
      // A leadership transfer is the leader's own wish: no lease protects it from that.
      const bool in_lease = config_.check_quorum && lead_ != 0 &&
                            election_elapsed_ < config_.election_tick && !m.leader_transfer();
      if (in_lease) return;
    }
    if (m.type() == raftpb::MSG_PRE_VOTE) {
      // Answering a pre-vote never changes our term.
    } else if (m.type() == raftpb::MSG_PRE_VOTE_RESP && !m.reject()) {
      // A granted pre-vote carries the term we asked about, not a newer leader's term.
    } else if (m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT ||
               m.type() == raftpb::MSG_SNAP) {
      BecomeFollower(m.term(), m.from());
    } else if (m.type() == raftpb::MSG_VOTE) {
      // A newer term, but the election timer runs on unless we grant the vote (Raft §5.2,
      // Figure 2): else candidates whose logs are too old to win, campaigning in turn, could
      // keep the one node that can win from ever timing out (with PreVote off, and few
      // voters left to split the vote, e.g. while others recover a lost disk).
      const int elapsed = election_elapsed_;
      BecomeFollower(m.term(), 0);
      election_elapsed_ = elapsed;
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
  if (m.type() == raftpb::MSG_STATE_PROBE) {
    AnswerProbe(m);
    return;
  }
  if (m.type() == raftpb::MSG_STATE_PROBE_RESP) {
    HandleProbeAnswer(m);
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
  // A node that lost its data votes for no one until it is a voter again (rejoin.cc).
  const bool can_vote = IsVoter() && (vote_ == m.from() || (vote_ == 0 && lead_ == 0) ||
                                      (m.type() == raftpb::MSG_PRE_VOTE && m.term() > term_));
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
  const bool from_leader = m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT ||
                           m.type() == raftpb::MSG_SNAP;
  if (from_leader && !AcceptsLog()) {
    // A leader exists, so the cluster does: an undecided node rejoins. Its log waits until
    // the RECOVERING state is durable (the leader resends).
    election_elapsed_ = 0;
    lead_ = m.from();
    if (voter_state_ == raftpb::UNDECIDED) BecomeRecovering();
    return;
  }
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
      if (HandleRecoveryReadAnswer(m)) break;
      read_states_.push_back(ReadState{m.context(), m.index()});
      break;
    case raftpb::MSG_TIMEOUT_NOW:
      // Leadership transfer (§3.10): our leader handed over; campaign now, skipping PreVote
      // (the leader agreed, and its followers would refuse a pre-vote while it is alive).
      // Not if we cannot lead (a learner, a removed node, a node recovering a lost disk).
      if (Promotable()) {
        election_elapsed_ = 0;
        Campaign(/*pre_vote=*/false, /*transfer=*/true);
      }
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
  // A node that lost its data takes commit indexes only from MsgApps, whose consistency
  // check proves its log matches the leader's: a heartbeat may name a match the leader still
  // holds from this node's previous incarnation, over entries a stale leader gave it since.
  if (IsVoter()) log_.CommitTo(std::min(m.commit(), log_.LastIndex()));
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

// ---------------------------------------------------------------- messages out

void Raft::Send(Message m) {
  m.set_from(config_.id);
  // Votes and their answers carry an explicit term; read requests and state probes are
  // term-less like local messages; everything else carries ours.
  const bool termless = m.type() == raftpb::MSG_READ_INDEX ||
                        m.type() == raftpb::MSG_STATE_PROBE ||
                        m.type() == raftpb::MSG_STATE_PROBE_RESP;
  if (m.term() == 0 && !termless) m.set_term(term_);
  m.set_voter_state(voter_state_);
  m.set_incarnation(incarnation_);
  msgs_.push_back(std::move(m));
}

}  // namespace raftkv::raft
