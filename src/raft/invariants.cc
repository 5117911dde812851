// Raft::CheckInvariants (raft.h): the local safety invariants of one node, checked after
// every Step, Tick, Propose, ReadIndex and Advance when Config::check_invariants is set (the
// tests and the simulator always set it). A broken one is a bug in the core or its caller:
// abort with the rule that broke. What one node cannot see (one leader per term across
// nodes, log matching, state machine safety) is checked by the simulator (tests/raft/sim).
#include "raft/raft.h"

#include <algorithm>

#include "base/check.h"

namespace raftkv::raft {

void Raft::CheckInvariants() {
  RAFTKV_CHECK_MSG(term_ >= inv_term_, "term went down");
  if (term_ == inv_term_ && inv_vote_ != 0) {
    RAFTKV_CHECK_MSG(vote_ == inv_vote_, "vote changed within a term");
  }
  RAFTKV_CHECK_MSG(log_.committed() >= inv_commit_, "commit went down");
  RAFTKV_CHECK_MSG(log_.applied() >= inv_applied_, "applied went down");
  RAFTKV_CHECK(log_.applied() <= log_.committed());
  RAFTKV_CHECK(log_.committed() <= log_.LastIndex());
  if (role_ == Role::kLeader) {
    RAFTKV_CHECK(lead_ == config_.id);
    RAFTKV_CHECK_MSG(vote_ == config_.id, "a leader voted for itself in its term");
    RAFTKV_CHECK_MSG(progress_.at(config_.id).match() <= log_.StableLastIndex(),
                     "leader counts unpersisted entries");
    for (const auto& [id, pr] : progress_) RAFTKV_CHECK(pr.match() < pr.next());
    // Membership: the leader tracks exactly the members of its configuration in force and
    // of its committed one (and itself).
    const std::vector<uint64_t> tracked = Tracked();
    RAFTKV_CHECK_MSG(tracked.size() == progress_.size(), "the leader tracks the wrong nodes");
    for (uint64_t id : tracked) {
      RAFTKV_CHECK_MSG(progress_.count(id) == 1, "a member the leader does not track");
    }
    if (lead_transferee_ != 0) {
      RAFTKV_CHECK_MSG(IsVoterIn(log_.conf(), lead_transferee_),
                       "a leadership transfer to a node that is not a voter");
    }
    if (inv_role_ == Role::kLeader && inv_term_ == term_ && log_.committed() > inv_commit_) {
      RAFTKV_CHECK_MSG(log_.TermOrZero(log_.committed()) == term_,
                       "a leader committed an entry of an earlier term by counting replicas");
    }
  }
  inv_role_ = role_;
  inv_term_ = term_;
  inv_vote_ = vote_;
  inv_commit_ = log_.committed();
  inv_applied_ = log_.applied();
}

}  // namespace raftkv::raft
