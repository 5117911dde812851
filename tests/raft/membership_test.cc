// Scenario tests of membership changes and leadership transfer (raft.h, membership.h): one
// test per rule, each driving a small cluster by hand (raft_harness.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "raft/membership.h"
#include "raft/raft.h"
#include "raft_harness.h"

namespace raftkv::raft {
namespace {

using testing::Harness;

std::vector<uint64_t> Voters(const Raft& r) { return VotersOf(r.configuration()); }
std::vector<uint64_t> Learners(const Raft& r) {
  return {r.configuration().learners().begin(), r.configuration().learners().end()};
}
using Ids = std::vector<uint64_t>;

size_t Count(const std::vector<raftpb::Message>& msgs, raftpb::MessageType type, uint64_t to) {
  return std::count_if(msgs.begin(), msgs.end(), [&](const raftpb::Message& m) {
    return m.type() == type && (to == 0 || m.to() == to);
  });
}

// A 3-voter cluster led by 1 with learner 4 caught up.
void StartWithLearner(Harness& h) {
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  ASSERT_EQ(h.AddNode(), 4u);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 4).ok());
  h.Stabilize();
  ASSERT_EQ(Learners(h.raft(1)), Ids{4});
}

TEST(MembershipTest, LearnerReceivesTheLogButIsNeverCountedForCommit) {
  Harness h(3);
  StartWithLearner(h);
  ASSERT_EQ(h.AddNode(), 5u);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 5).ok());
  h.Stabilize();
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  EXPECT_EQ(h.node(4).applied.back().data(), "a");
  EXPECT_EQ(Learners(h.raft(4)), (Ids{4, 5}));  // the learner knows it is one
  // Without voters 2 and 3 nothing commits, though learners 4 and 5 (with the leader, three
  // of five members) acknowledge everything.
  h.CutBoth(1, 2);
  h.CutBoth(1, 3);
  const uint64_t commit = h.raft(1).log().committed();
  ASSERT_TRUE(h.raft(1).Propose("b").ok());
  h.Stabilize();
  EXPECT_EQ(h.raft(4).log().LastIndex(), h.raft(1).log().LastIndex());
  EXPECT_EQ(h.raft(1).log().committed(), commit);
}

TEST(MembershipTest, LearnerIsNotInTheCheckQuorumOrReadIndexQuorum) {
  Harness h(3);
  StartWithLearner(h);
  h.CutBoth(1, 2);
  h.CutBoth(1, 3);
  // ReadIndex: the learner echoes the heartbeat round, which confirms nothing.
  ASSERT_TRUE(h.raft(1).ReadIndex("r").ok());
  h.Stabilize();
  EXPECT_TRUE(h.node(1).read_states.empty());
  // CheckQuorum: hearing from the learner alone, the leader steps down.
  h.Tick(1, 2 * 10);
  EXPECT_NE(h.raft(1).role(), Role::kLeader);
}

TEST(MembershipTest, LearnerNeverCampaignsAndItsVoteIsNeverCounted) {
  Harness h(3);
  StartWithLearner(h);
  h.Isolate(4);
  const uint64_t term = h.raft(4).term();
  h.Tick(4, 100);
  EXPECT_EQ(h.raft(4).role(), Role::kFollower);
  EXPECT_EQ(h.raft(4).term(), term);
  h.Heal();
  // A candidate asks only voters; a grant from the learner does not make it win.
  h.ClearSent();
  h.Isolate(2);
  h.Campaign(2);
  EXPECT_EQ(Count(h.sent(), raftpb::MSG_PRE_VOTE, 4) + Count(h.sent(), raftpb::MSG_VOTE, 4), 0u);
  const Role before = h.raft(2).role();
  ASSERT_NE(before, Role::kLeader);
  raftpb::Message grant;
  grant.set_type(before == Role::kPreCandidate ? raftpb::MSG_PRE_VOTE_RESP
                                               : raftpb::MSG_VOTE_RESP);
  grant.set_from(4);
  grant.set_to(2);
  grant.set_term(before == Role::kPreCandidate ? h.raft(2).term() + 1 : h.raft(2).term());
  h.raft(2).Step(grant);
  EXPECT_EQ(h.raft(2).role(), before);
}

TEST(MembershipTest, PromotionRefusedWhileTheLearnerLagsAndSaysHowFar) {
  Harness h(3, [](Config& c) { c.max_promote_lag_entries = 5; });
  StartWithLearner(h);
  h.CutBoth(1, 4);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.raft(1).Propose("x").ok());
  h.Stabilize();
  absl::StatusOr<EntryId> r = h.Change(1, raftpb::CONF_PROMOTE, 4);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("learner 4 is 10 entries behind"), std::string::npos)
      << r.status();
  EXPECT_EQ(Voters(h.raft(1)), (Ids{1, 2, 3}));
  h.Heal();
  h.TickAll(2);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_PROMOTE, 4).ok());
  h.Stabilize();
  for (uint64_t id : {1, 2, 3, 4}) EXPECT_EQ(Voters(h.raft(id)), (Ids{1, 2, 3, 4})) << id;
  // Now 4 counts: with 2 and 3 cut, 1 and 4 are no majority of four; with 3 cut, they and 2
  // are.
  h.CutBoth(1, 2);
  h.CutBoth(1, 3);
  const uint64_t commit = h.raft(1).log().committed();
  ASSERT_TRUE(h.raft(1).Propose("y").ok());
  h.Stabilize();
  EXPECT_EQ(h.raft(1).log().committed(), commit);
  h.Heal();
  h.CutBoth(1, 3);
  h.TickAll(1);
  EXPECT_GT(h.raft(1).log().committed(), commit);
}

// A learner that never answered (its process not started yet) is refused even when the
// leader's log is shorter than the allowed lag: "behind by at most N entries" says nothing of
// a node that holds nothing.
TEST(MembershipTest, PromotionRefusedForALearnerThatNeverAnswered) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_EQ(h.AddNode(), 4u);
  h.Isolate(4);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 4).ok());
  h.Stabilize();
  ASSERT_LT(h.raft(1).log().LastIndex(), Config{}.max_promote_lag_entries);
  absl::StatusOr<EntryId> r = h.Change(1, raftpb::CONF_PROMOTE, 4);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("learner 4 has not acknowledged any entry"),
            std::string::npos)
      << r.status();
  EXPECT_EQ(Voters(h.raft(1)), (Ids{1, 2, 3}));
  h.Heal();
  h.TickAll(2);
  h.Stabilize();
  ASSERT_TRUE(h.Change(1, raftpb::CONF_PROMOTE, 4).ok());
}

// CheckQuorum clears the "heard from" marks at the end of every election timeout; a promotion
// proposed after that and before any answer came back found every voter down and was
// refused ("the change would leave 2 of 4 voters up", seen in CI). The check counts the
// voters heard from in the last round too.
TEST(MembershipTest, APromotionRightAfterACheckQuorumRoundCountsTheVotersHeardInTheLastOne) {
  Harness h(3);
  StartWithLearner(h);
  // One election timeout of ticks with nothing delivered: a CheckQuorum round passes (every
  // voter answered in the one before) and clears the marks; no answer has come since.
  for (int i = 0; i < 10; ++i) h.raft(1).Tick();
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  absl::StatusOr<EntryId> r = h.Change(1, raftpb::CONF_PROMOTE, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  h.Stabilize();
  EXPECT_EQ(Voters(h.raft(1)), (Ids{1, 2, 3, 4}));
}

// A voter silent for two rounds does count as down: the change that needs it is refused.
TEST(MembershipTest, APromotionNeedingVotersSilentForTwoRoundsIsRefused) {
  Harness h(5);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  ASSERT_EQ(h.AddNode(), 6u);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 6).ok());
  h.Stabilize();
  h.Isolate(4);
  h.Isolate(5);
  h.Isolate(6);
  h.TickAll(2 * 10 + 1);  // two whole rounds without 4, 5 and 6
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  absl::StatusOr<EntryId> r = h.Change(1, raftpb::CONF_PROMOTE, 6);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("voters up with their data"), std::string::npos)
      << r.status();
}

TEST(MembershipTest, ConfigurationTakesEffectWhenAppendedAndRevertsWhenTruncated) {
  Harness h(5, [](Config& c) { c.check_quorum = false; });  // (no lease: 3 may campaign)
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  // Only node 2 receives the change, and no acknowledgement reaches the leader.
  for (uint64_t id : {3, 4, 5}) h.Cut(1, id);
  h.SetDropFilter([](const raftpb::Message& m) { return m.type() == raftpb::MSG_APP_RESP; });
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 6).ok());
  EXPECT_EQ(Learners(h.raft(1)), Ids{6});  // in force on the leader at once
  h.Stabilize();
  ASSERT_LT(h.raft(2).log().committed(), h.raft(2).log().LastIndex());
  EXPECT_EQ(Learners(h.raft(2)), Ids{6});  // and on a follower once appended, uncommitted
  EXPECT_TRUE(Learners(h.raft(3)).empty());
  // 3 leads without the entry and replaces it in 2's log: the configuration reverts.
  h.SetDropFilter(nullptr);
  h.Heal();
  h.Isolate(1);
  h.CutBoth(2, 3);
  h.CutBoth(2, 4);
  h.CutBoth(2, 5);
  h.Campaign(3);
  ASSERT_EQ(h.raft(3).role(), Role::kLeader);
  ASSERT_TRUE(h.raft(3).Propose("from 3").ok());
  h.Stabilize();
  h.Heal();
  h.TickAll(3);
  ASSERT_EQ(h.Leader(), 3u);
  for (uint64_t id : {1, 2}) {
    EXPECT_TRUE(Learners(h.raft(id)).empty()) << id;
    EXPECT_EQ(Voters(h.raft(id)), (Ids{1, 2, 3, 4, 5})) << id;
    EXPECT_EQ(h.raft(id).Status().conf_index, 0u) << id;
  }
}

TEST(MembershipTest, OneChangeAtATime) {
  Harness h(3, [](Config& c) {
    c.pre_vote = false;
    c.check_quorum = false;
  });
  h.Campaign(1);
  // A new leader first commits an entry of its term (an older uncommitted change in its log
  // would otherwise be undecided): refused before its no-op commits.
  h.SetDropFilter([](const raftpb::Message& m) { return m.type() == raftpb::MSG_APP_RESP; });
  h.Campaign(2);
  ASSERT_EQ(h.raft(2).role(), Role::kLeader);
  ASSERT_LT(h.raft(2).log().committed(), h.raft(2).log().LastIndex());
  absl::StatusOr<EntryId> early = h.Change(2, raftpb::CONF_ADD_LEARNER, 4);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition) << early.status();
  EXPECT_NE(early.status().message().find("not committed an entry of its term"),
            std::string::npos);
  h.SetDropFilter(nullptr);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  h.TickAll(2);
  ASSERT_EQ(h.raft(1).log().committed(), h.raft(1).log().LastIndex());
  // Followers cut: the first change stays uncommitted, so a second one is refused.
  h.Isolate(1);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 4).ok());
  absl::StatusOr<EntryId> second = h.Change(1, raftpb::CONF_ADD_LEARNER, 5);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().message().find("not committed yet"), std::string::npos);
  h.Heal();
  h.Stabilize();
  EXPECT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 5).ok());
}

TEST(MembershipTest, LeaderThatRemovesItselfLeadsUntilCommittedThenStepsDown) {
  Harness h(3);
  h.Campaign(1);
  h.Cut(1, 2);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_REMOVE, 1).ok());
  h.Stabilize();
  // 1 and 3 hold the entry, but 1 no longer counts: {2,3} need both.
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  EXPECT_LT(h.raft(1).log().committed(), h.raft(1).log().LastIndex());
  h.Heal();
  h.TickAll(1);
  EXPECT_NE(h.raft(1).role(), Role::kLeader);
  EXPECT_EQ(Voters(h.raft(2)), (Ids{2, 3}));
  // The removed node never campaigns; the others elect one of themselves.
  const uint64_t term = h.raft(1).term();
  h.Tick(1, 100);
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).term(), term);
  h.TickAll(40);
  const uint64_t leader = h.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
}

TEST(MembershipTest, NodeHoldingItsOwnUncommittedRemovalStillCampaigns) {
  // Thesis §4.2.2. Voters {1,2,3,4}; 1 removes 4, and only 4 gets the entry before 1 dies.
  // 2 and 3 (config {1,2,3,4}) need 4's vote, which 4 refuses (its log is longer); 4 must
  // lead: it wins {2,3} of its configuration {1,2,3}, commits its removal, steps down.
  Harness h(4);
  h.Campaign(1);
  h.Cut(1, 2);
  h.Cut(1, 3);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_REMOVE, 4).ok());
  h.Stabilize();
  ASSERT_EQ(Voters(h.raft(4)), (Ids{1, 2, 3}));
  ASSERT_EQ(Voters(h.raft(2)), (Ids{1, 2, 3, 4}));
  h.Heal();
  h.Isolate(1);
  h.TickAll(100);
  const uint64_t leader = h.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
  for (uint64_t id : {2, 3, 4}) EXPECT_EQ(Voters(h.raft(id)), (Ids{1, 2, 3})) << id;
  EXPECT_NE(h.raft(4).role(), Role::kLeader);
}

TEST(MembershipTest, RefusesChangesThatLeaveNoMajorityOfHealthyVoters) {
  Harness h(3);
  StartWithLearner(h);
  // 3 is cut off for two election timeouts (two CheckQuorum rounds without it): removing
  // healthy 2 would leave {1,3}, one of them up.
  h.Isolate(3);
  h.TickAll(2 * 10);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  absl::StatusOr<EntryId> r = h.Change(1, raftpb::CONF_REMOVE, 2);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("would leave 1 of 2 voters"), std::string::npos)
      << r.status();
  // Learner 4 lost its disk and is still recovering (it hears from 1 alone, it needs two
  // voters' terms): promoting it would make {1,2,3,4} with only 1 and 2 able to count.
  h.Wipe(4);
  h.CutBoth(4, 2);
  h.TickAll(10);
  ASSERT_EQ(h.raft(4).Status().voter_state, raftpb::RECOVERING);
  r = h.Change(1, raftpb::CONF_PROMOTE, 4);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("would leave 2 of 4 voters"), std::string::npos)
      << r.status();
}

TEST(MembershipTest, RemovedFollowerStopsReceivingAndNeverCampaigns) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_REMOVE, 3).ok());
  h.Stabilize();
  EXPECT_EQ(Voters(h.raft(3)), (Ids{1, 2}));
  h.ClearSent();
  ASSERT_TRUE(h.raft(1).Propose("after").ok());
  h.TickAll(30);
  EXPECT_EQ(Count(h.sent(), raftpb::MSG_APP, 3) + Count(h.sent(), raftpb::MSG_HEARTBEAT, 3), 0u);
  EXPECT_EQ(h.raft(3).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
}

TEST(TransferTest, TargetCampaignsAtOnceDespiteTheLease) {
  Harness h(3);  // PreVote and CheckQuorum on: followers would refuse an ordinary candidate
  h.Campaign(1);
  const uint64_t term = h.raft(1).term();
  h.ClearSent();
  ASSERT_TRUE(h.raft(1).TransferLeadership(2).ok());
  h.Stabilize();
  EXPECT_EQ(h.raft(2).role(), Role::kLeader);
  EXPECT_EQ(h.raft(2).term(), term + 1);
  EXPECT_EQ(h.raft(1).lead(), 2u);
  EXPECT_EQ(Count(h.sent(), raftpb::MSG_TIMEOUT_NOW, 2), 1u);
  EXPECT_EQ(Count(h.sent(), raftpb::MSG_PRE_VOTE, 0), 0u);
  for (const raftpb::Message& m : h.sent()) {
    if (m.type() == raftpb::MSG_VOTE) EXPECT_TRUE(m.leader_transfer());
  }
}

TEST(TransferTest, LeaderBringsALaggingTargetUpToDateAndRefusesProposalsMeanwhile) {
  Harness h(3);
  h.Campaign(1);
  h.CutBoth(1, 2);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(1).Propose("w").ok());
  h.Stabilize();
  const uint64_t last = h.raft(1).log().LastIndex();
  ASSERT_LT(h.raft(2).log().LastIndex(), last);
  h.ClearSent();
  ASSERT_TRUE(h.raft(1).TransferLeadership(2).ok());
  h.Stabilize();
  EXPECT_EQ(Count(h.sent(), raftpb::MSG_TIMEOUT_NOW, 0), 0u);  // not before it caught up
  absl::StatusOr<EntryId> refused = h.raft(1).Propose("during");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("transfer to 2"), std::string::npos);
  EXPECT_FALSE(LeaderHint(refused.status()).has_value());
  EXPECT_EQ(h.Change(1, raftpb::CONF_ADD_LEARNER, 4).status().code(),
            absl::StatusCode::kUnavailable);
  h.Heal();
  h.TickAll(2);
  EXPECT_EQ(h.Leader(), 2u);
  EXPECT_GE(h.raft(2).log().LastIndex(), last);
  EXPECT_TRUE(h.raft(2).Propose("after").ok());
}

TEST(TransferTest, AbortsAfterAnElectionTimeoutAndTheLeaderServesAgain) {
  Harness h(3);
  h.Campaign(1);
  h.CutBoth(1, 2);
  ASSERT_TRUE(h.raft(1).Propose("w").ok());
  h.Stabilize();
  ASSERT_TRUE(h.raft(1).TransferLeadership(2).ok());
  EXPECT_EQ(h.raft(1).Status().lead_transferee, 2u);
  h.Tick(1, 9);
  EXPECT_EQ(h.raft(1).Propose("x").status().code(), absl::StatusCode::kUnavailable);
  h.Tick(1, 1);
  EXPECT_EQ(h.raft(1).Status().lead_transferee, 0u);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  EXPECT_TRUE(h.raft(1).Propose("x").ok());
}

TEST(TransferTest, RefusesNonVotersAndPicksTheMostUpToDateVoter) {
  Harness h(3);
  StartWithLearner(h);
  EXPECT_EQ(h.raft(1).TransferLeadership(4).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.raft(1).TransferLeadership(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.raft(2).TransferLeadership(3).code(), absl::StatusCode::kUnavailable);
  h.CutBoth(1, 2);
  ASSERT_TRUE(h.raft(1).Propose("w").ok());
  h.Stabilize();
  ASSERT_TRUE(h.raft(1).TransferLeadership(0).ok());
  EXPECT_EQ(h.raft(1).Status().lead_transferee, 3u);
  h.Stabilize();
  EXPECT_EQ(h.raft(3).role(), Role::kLeader);
}

TEST(MembershipRestartTest, RestartRebuildsTheConfigurationFromSnapshotAndLog) {
  Harness h(3);
  StartWithLearner(h);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_PROMOTE, 4).ok());
  h.Stabilize();
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  // From the log alone (the bootstrap peers say {1,2,3}).
  h.Restart(2);
  EXPECT_EQ(Voters(h.raft(2)), (Ids{1, 2, 3, 4}));
  EXPECT_TRUE(Learners(h.raft(2)).empty());
  // From a snapshot that compacted both changes away.
  h.Stabilize();
  h.SnapshotAndCompact(2);
  ASSERT_GT(h.node(2).storage->FirstIndex(), h.raft(2).Status().conf_index);
  h.Restart(2);
  EXPECT_EQ(Voters(h.raft(2)), (Ids{1, 2, 3, 4}));
  // And a removal after the snapshot, from snapshot + log.
  h.Stabilize();
  ASSERT_TRUE(h.Change(1, raftpb::CONF_REMOVE, 3).ok());
  h.Stabilize();
  h.Restart(2);
  EXPECT_EQ(Voters(h.raft(2)), (Ids{1, 2, 4}));
}

TEST(MembershipRestartTest, NewMemberGetsTheConfigurationWithTheSnapshot) {
  Harness h(3);
  h.Campaign(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(1).Propose("x").ok());
  h.Stabilize();
  h.SnapshotAndCompact(1);
  ASSERT_EQ(h.AddNode(), 4u);
  ASSERT_TRUE(h.Change(1, raftpb::CONF_ADD_LEARNER, 4).ok());
  h.Stabilize();
  h.TickAll(3);
  EXPECT_EQ(h.node(4).snapshots_installed, 1u);
  EXPECT_EQ(Voters(h.raft(4)), (Ids{1, 2, 3}));
  EXPECT_EQ(Learners(h.raft(4)), Ids{4});
  EXPECT_EQ(h.raft(4).log().LastIndex(), h.raft(1).log().LastIndex());
  // The snapshot it installed carries the configuration of its index.
  EXPECT_EQ(h.node(4).storage->snapshot_metadata().conf_state().voters_size(), 3);
}

TEST(MembershipTest, ChangesValidated) {
  Harness h(3);
  h.Campaign(1);
  EXPECT_EQ(h.Change(1, raftpb::CONF_ADD_LEARNER, 2).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(h.Change(1, raftpb::CONF_PROMOTE, 7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.Change(1, raftpb::CONF_REMOVE, 7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.Change(2, raftpb::CONF_REMOVE, 3).status().code(), absl::StatusCode::kUnavailable);
  Harness one(1);
  one.Campaign(1);
  one.Stabilize();
  EXPECT_EQ(one.Change(1, raftpb::CONF_REMOVE, 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace raftkv::raft

namespace raftkv::raft {
namespace {

// CONF_UPDATE (the server's MemberUpdate: new addresses in the context) keeps the
// configuration and is refused for a non-member.
TEST(MembershipTest, UpdateKeepsTheConfigurationAndNeedsAMember) {
  raftpb::ConfState cs = ConfStateOf({1, 2, 3});
  cs.add_learners(4);
  raftpb::ConfChange update;
  update.set_type(raftpb::CONF_UPDATE);
  update.set_node_id(4);
  absl::StatusOr<raftpb::ConfState> next = ApplyConfChange(cs, update);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(DescribeConfState(*next), DescribeConfState(cs));
  update.set_node_id(9);
  EXPECT_EQ(ApplyConfChange(cs, update).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace raftkv::raft
