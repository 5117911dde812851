// Raft (raft.h): a node that starts with empty storage, and the leader's view of such nodes.
//
// A node that lost its data dir forgot what it promised: the vote it cast in its last term
// and the entries it acknowledged. Were it to vote as a fresh node, it could vote twice in a
// term, or help elect a leader that lacks writes it had acknowledged (a committed write lost).
// So a node with empty storage is not a voter until it has learned enough from its peers:
//
// UNDECIDED (empty storage, Config::kAskPeers): it probes every peer (MSG_STATE_PROBE; the
//   answer carries the peer's voter state, term and last index). If any peer holds a log, or
//   is itself RECOVERING, the cluster exists: become RECOVERING. If every peer answered and
//   none holds a log, nothing was ever committed (a commit needs a majority holding the
//   entry): this is a new cluster; set the term floor (below) from the answers and vote.
//   kNewCluster skips the question (the operator says so); kRejoin answers it with "exists".
//
// RECOVERING (persisted in the hard state before any entry is taken, so a crash mid-way
//   restarts still RECOVERING): it neither campaigns, nor grants votes, and a leader does not
//   count its acknowledgements for commit, reads or CheckQuorum. It still receives the log.
//   1. Term floor: it waits for probe answers from n - n/2 voters other than itself. Any
//      term T in which it voted, or acknowledged a leader, before the loss is known to at
//      least n/2 other voters (the rest of that election's majority, all of which persisted
//      T), and any n - n/2 of the n - 1 others include one of them: F = the highest term
//      answered is >= every term it ever took part in. It moves to term F with its vote
//      spent (on itself), so it never votes in a term <= F again.
//   2. Catch-up: it asks the leader of its term (>= F) for a read index: the leader answers
//      only once an entry of its own term committed, so the index covers every entry
//      committed before the loss (those of earlier terms lie below the leader's first entry
//      of its term; those of its own term below its commit index, which never decreases).
//      That leader was elected by intact voters only (this node did not vote).
//   3. Once its log holds that index, durably and committed, it becomes a VOTER (persisted).
//   Safety needs what Raft always needs, per moment: a majority of voters with their data.
//   Nodes that are not voters hold no promise, so losing the disks of a minority at a time
//   loses nothing acknowledged. Liveness needs n - n/2 voters up besides this node.
//
// Membership: every count above is over the voters of the configuration in force on this
//   node (membership.h). A node that lost its disk knows only what it is told at start-up
//   (Config::peers: kvd passes the bootstrap cluster) until a leader's log or snapshot
//   reaches it; the term floor is then taken over those voters. That is sound when they are
//   the voters of the configuration in force (a static cluster, or an operator who passes
//   the current members), and is NOT shown safe otherwise: if voters changed since, the
//   n - n/2 answers may miss the majority of the election it took part in. The safe way to
//   replace a lost disk in a cluster whose membership changed is the one the design names:
//   remove the old member, add the node afresh under a new id (a fresh id promised nothing).
//
// Incarnations: each start with empty storage picks a new incarnation (Config, persisted).
// Every message carries the sender's voter state and incarnation; a leader drops messages of
// an incarnation older than the latest it saw from that peer this term (sent before the loss:
// they acknowledge entries that are gone), and forgets the peer's match when a new one shows.
#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/raft.h"

namespace raftkv::raft {

using raftpb::Message;

namespace {

// A context no caller of ReadIndex can pass: callers' contexts never start with 0xff 'R'.
constexpr char kRejoinPrefix[] = "\xffRrejoin:";

// How many voters other than itself a RECOVERING node must hear from (see the top).
size_t OthersNeeded(size_t n) { return std::min(n - 1, n - n / 2); }

bool StorageIsEmpty(const LogStorage& s, const raftpb::HardState& hs) {
  return hs.voter_state() == raftpb::UNDECIDED ||
         (hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0 && hs.incarnation() == 0 &&
          s.LastIndex() == 0 && s.snapshot_metadata().index() == 0);
}

}  // namespace

void Raft::InitVoterState(const raftpb::HardState& hs) {
  if (!StorageIsEmpty(*storage_, hs)) {
    voter_state_ = hs.voter_state();
    incarnation_ = hs.incarnation();
    voter_state_durable_ = true;  // it was read back from storage
  } else {
    incarnation_ = config_.incarnation;
    switch (config_.empty_start) {
      case Config::EmptyStart::kNewCluster:
        voter_state_ = raftpb::VOTER;
        break;
      case Config::EmptyStart::kAskPeers:
        voter_state_ = raftpb::UNDECIDED;
        break;
      case Config::EmptyStart::kRejoin:
        voter_state_ = raftpb::RECOVERING;
        voter_state_durable_ = false;
        break;
    }
  }
  if (voter_state_ != raftpb::VOTER && Voters().size() == 1 && SelfIsVoter()) {
    // The only voter has no one to learn from: what it lost is lost; serve what it has.
    voter_state_ = raftpb::VOTER;
  }
  if (!IsVoter()) SendProbes();
}

bool Raft::AcceptsLog() const {
  return voter_state_ == raftpb::VOTER ||
         (voter_state_ == raftpb::RECOVERING && voter_state_durable_);
}

std::string Raft::RejoinContext(const char* what) const {
  std::string ctx = absl::StrCat(kRejoinPrefix, what, ":");
  const size_t at = ctx.size();
  ctx.resize(at + sizeof(incarnation_));
  std::memcpy(ctx.data() + at, &incarnation_, sizeof(incarnation_));
  return ctx;
}

void Raft::TickRejoin() {
  // Probes and recovery reads are resent at half an election timeout: quick enough for a
  // cluster whose nodes start a few hundred milliseconds apart, cheap for the peers.
  if (++rejoin_elapsed_ < std::max(1, config_.election_tick / 2)) return;
  rejoin_elapsed_ = 0;
  if (!term_floor_set_) {
    SendProbes();
  } else if (voter_state_ == raftpb::RECOVERING && !recovery_index_) {
    SendRecoveryRead();
  }
}

void Raft::SendProbes() {
  rejoin_elapsed_ = 0;
  for (uint64_t p : Voters()) {
    // Peers that answered as voters need not be asked again; the others may have become
    // voters since (a node is counted only once it is one).
    auto it = probe_answers_.find(p);
    if (p == config_.id || (it != probe_answers_.end() && it->second.state == raftpb::VOTER)) {
      continue;
    }
    Message m;
    m.set_type(raftpb::MSG_STATE_PROBE);
    m.set_to(p);
    m.set_context(RejoinContext("probe"));
    Send(std::move(m));
  }
}

void Raft::SendRecoveryRead() {
  rejoin_elapsed_ = 0;
  if (lead_ == 0) return;  // asked again at the next interval
  Message m;
  m.set_type(raftpb::MSG_READ_INDEX);
  m.set_to(lead_);
  m.set_context(RejoinContext("read"));
  Send(std::move(m));
}

void Raft::AnswerProbe(const Message& m) {
  Message resp;
  resp.set_type(raftpb::MSG_STATE_PROBE_RESP);
  resp.set_to(m.from());
  resp.set_context(m.context());
  resp.set_current_term(term_);
  resp.set_index(log_.LastIndex());
  Send(std::move(resp));
}

void Raft::HandleProbeAnswer(const Message& m) {
  if (IsVoter() || term_floor_set_ || m.context() != RejoinContext("probe")) return;
  // Only voters of the configuration in force count (see "Membership" above).
  if (!IsVoterIn(log_.conf(), m.from())) return;
  probe_answers_[m.from()] = ProbeAnswer{m.voter_state(), m.current_term(), m.index()};
  uint64_t max_term = 0;
  size_t voters = 0;
  bool any_log = false;
  for (const auto& [id, a] : probe_answers_) {
    max_term = std::max(max_term, a.term);
    if (a.state == raftpb::VOTER) ++voters;
    if (a.last_index > 0 || a.state == raftpb::RECOVERING) any_log = true;
  }
  const size_t n = Voters().size();
  const size_t others = n - (SelfIsVoter() ? 1 : 0);
  if (voter_state_ == raftpb::UNDECIDED) {
    if (any_log) {
      BecomeRecovering();
    } else if (probe_answers_.size() == others) {
      // Every peer answered and none holds a log: a new cluster.
      SetTermFloor(max_term);
      voter_state_ = raftpb::VOTER;
      return;
    } else {
      return;  // wait for every peer
    }
  }
  if (voters < OthersNeeded(std::max<size_t>(n, 1))) return;
  SetTermFloor(max_term);
  SendRecoveryRead();
}

void Raft::BecomeRecovering() {
  voter_state_ = raftpb::RECOVERING;
  voter_state_durable_ = false;  // set by Advance once the hard state saying so is synced
}

void Raft::SetTermFloor(uint64_t floor) {
  term_floor_set_ = true;
  if (term_ < floor) BecomeFollower(floor, 0);
  // Whatever this node voted in term `floor` before it lost its data, it votes no more there.
  if (term_ == floor && vote_ == 0) vote_ = config_.id;
}

bool Raft::HandleRecoveryReadAnswer(const Message& m) {
  if (m.context().rfind(kRejoinPrefix, 0) != 0) return false;
  if (voter_state_ == raftpb::RECOVERING && term_floor_set_ &&
      m.context() == RejoinContext("read")) {
    recovery_index_ = std::max(recovery_index_.value_or(0), m.index());
    MaybeFinishRecovery();
  }
  return true;
}

void Raft::MaybeFinishRecovery() {
  if (voter_state_ != raftpb::RECOVERING || !voter_state_durable_ || !term_floor_set_ ||
      !recovery_index_) {
    return;
  }
  // Durable and committed here: the log holds every entry committed before the loss.
  if (log_.committed() < *recovery_index_ || log_.StableLastIndex() < *recovery_index_) return;
  voter_state_ = raftpb::VOTER;  // persisted by the next Ready before any message says so
  recovery_index_.reset();
  probe_answers_.clear();
}

bool Raft::TrackVoterState(const Message& m, Progress& pr) {
  if (m.incarnation() < pr.incarnation()) return false;  // from before a data loss
  if (m.incarnation() > pr.incarnation()) {
    // A new incarnation: what the old one acknowledged may be gone.
    if (pr.incarnation() != 0 || pr.match() > 0) pr.ResetAfterDataLoss(0);
    pr.set_incarnation(m.incarnation());
  }
  pr.set_counts(m.voter_state() == raftpb::VOTER);
  return true;
}

std::string Raft::RejoinDetail() const {
  switch (voter_state_) {
    case raftpb::VOTER:
      return "";
    case raftpb::UNDECIDED:
      return absl::StrCat("empty data dir: asking every peer whether the cluster exists (",
                          probe_answers_.size(), " of ", Voters().size() - (SelfIsVoter() ? 1 : 0),
                          " answered)");
    case raftpb::RECOVERING:
      if (!term_floor_set_) {
        return absl::StrCat(
            "lost its data: not voting until ", OthersNeeded(std::max<size_t>(Voters().size(), 1)),
            " other voters answer (heard from ", probe_answers_.size(), ")");
      }
      if (!recovery_index_) return "lost its data: waiting for a leader to confirm its commit index";
      return absl::StrCat("lost its data: catching up to index ", *recovery_index_,
                          " (committed here: ", log_.committed(), ")");
    default:
      return "?";
  }
}

}  // namespace raftkv::raft
