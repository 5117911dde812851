// Nodes that lose their whole data dir (rejoin.cc): they must not help elect a leader that
// lacks writes they acknowledged, must not vote twice in a term, and must not count in any
// quorum until they are caught up; fresh clusters of empty nodes still start by themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "raft/raft.h"
#include "raft_harness.h"

namespace raftkv::raft {
namespace {

using testing::Harness;

// The data `id` applied at `index`, or nullopt if it applied nothing there.
std::optional<std::string> AppliedAt(Harness& h, uint64_t id, uint64_t index) {
  for (const raftpb::Entry& e : h.node(id).applied) {
    if (e.index() == index) return e.data();
  }
  return std::nullopt;
}

void TickNodes(Harness& h, std::initializer_list<uint64_t> ids, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    for (uint64_t id : ids) h.Tick(id);
  }
}

// The scenario of issue 9, item 1: leader L=1, followers B=2 and C=3.
TEST(LostDiskTest, WipedNodeDoesNotHelpElectALeaderThatLacksAnAckedWrite) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("before").ok());
  h.Stabilize();
  // 1. B is down.
  h.Isolate(2);
  // 2. W is acknowledged: committed on L and C, applied on L.
  absl::StatusOr<EntryId> w = h.raft(1).Propose("acked");
  ASSERT_TRUE(w.ok());
  h.Stabilize();
  ASSERT_EQ(AppliedAt(h, 1, w->index), "acked");
  // 3. L and C are killed; C's data dir is lost. 4. B and C start (L stays down).
  h.Heal();
  h.Restart(2);
  h.Wipe(3);
  h.Isolate(1);
  TickNodes(h, {2, 3}, 100);
  // No leader lacking W may be elected, and nothing else may be applied at W's index.
  EXPECT_NE(h.raft(2).role(), Role::kLeader);
  EXPECT_NE(h.raft(3).role(), Role::kLeader);
  for (uint64_t id : {2, 3}) {
    std::optional<std::string> at = AppliedAt(h, id, w->index);
    EXPECT_TRUE(!at || *at == "acked") << "node " << id << " applied '" << *at << "' at "
                                       << w->index;
  }
  // A read on C fails, and says why.
  absl::Status read = h.raft(3).ReadIndex("r");
  EXPECT_TRUE(absl::IsUnavailable(read)) << read;
  EXPECT_NE(read.message().find("lost its data"), std::string::npos) << read;
  // 5. L is back: every node applies W, and the cluster serves writes.
  h.Heal();
  h.TickAll(60);
  const uint64_t leader = h.Leader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(h.raft(leader).Propose("after").ok());
  h.Stabilize();
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(AppliedAt(h, id, w->index), "acked") << "node " << id;
    EXPECT_EQ(h.node(id).applied.back().data(), "after") << "node " << id;
  }
  EXPECT_EQ(h.raft(3).Status().voter_state, raftpb::VOTER);
}

TEST(LostDiskTest, RecoveringNodeCountsInNoQuorumUntilCaughtUp) {
  // Without CheckQuorum, so that the leader stays and shows what it counts (with it, the
  // leader steps down: the recovering node does not make its quorum active either).
  Harness h(3, [](Config& c) { c.check_quorum = false; });
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("before").ok());
  h.Stabilize();
  // Node 2 is cut off, so node 3 cannot hear from n - n/2 = 2 other voters: it stays
  // RECOVERING, receives the log, but its acknowledgements do not commit anything.
  h.Isolate(2);
  h.Wipe(3);
  h.TickAll(30);
  ASSERT_EQ(h.raft(3).Status().voter_state, raftpb::RECOVERING);
  EXPECT_NE(h.raft(3).Status().rejoin_detail.find("not voting until 2 other voters"),
            std::string::npos)
      << h.raft(3).Status().rejoin_detail;
  const uint64_t commit_before = h.raft(1).log().committed();
  absl::StatusOr<EntryId> w = h.raft(1).Propose("needs a real quorum");
  ASSERT_TRUE(w.ok());
  h.TickAll(30);
  EXPECT_EQ(h.raft(3).log().LastIndex(), w->index) << "the recovering node gets the log";
  EXPECT_EQ(h.raft(1).log().committed(), commit_before) << "but its ack does not commit";
  // A read on the leader cannot be confirmed by the recovering node's heartbeat echo either.
  ASSERT_TRUE(h.raft(1).ReadIndex("r").ok());
  h.TickAll(5);
  EXPECT_TRUE(h.node(1).read_states.empty());
  // Node 2 is back: node 3 finishes recovery; the write and the read complete.
  h.Heal();
  h.TickAll(30);
  EXPECT_EQ(AppliedAt(h, 3, w->index), "needs a real quorum");
  EXPECT_EQ(h.raft(3).Status().voter_state, raftpb::VOTER);
}

TEST(LostDiskTest, RecoveredNodeVotesAgainAndTheClusterSurvivesAnotherFailure) {
  Harness h(3);
  h.Campaign(1);
  h.Wipe(3);
  h.TickAll(30);
  ASSERT_EQ(h.raft(3).Status().voter_state, raftpb::VOTER);
  ASSERT_TRUE(h.raft(1).Propose("x").ok());
  h.Stabilize();
  // With node 1 gone, 2 and 3 (the recovered node) elect a leader holding "x".
  h.Isolate(1);
  TickNodes(h, {2, 3}, 60);
  const uint64_t leader = h.raft(2).role() == Role::kLeader ? 2 : 3;
  ASSERT_EQ(h.raft(leader).role(), Role::kLeader);
  ASSERT_TRUE(h.raft(leader).Propose("y").ok());
  h.Stabilize();
  for (uint64_t id : {2, 3}) EXPECT_EQ(h.node(id).applied.back().data(), "y");
}

TEST(LostDiskTest, WipedNodeDoesNotVoteAgainInATermItMayHaveVotedIn) {
  Harness h(3);
  h.Campaign(1);  // node 3 voted for 1 in this term
  const uint64_t term = h.raft(1).term();
  // Node 3 loses its disk and recovers in the same term: it may have voted in it, so its
  // vote there is spent.
  h.Wipe(3);
  h.TickAll(20);
  ASSERT_EQ(h.raft(3).Status().voter_state, raftpb::VOTER);
  ASSERT_EQ(h.raft(3).term(), term);
  EXPECT_EQ(h.raft(3).vote(), 3u);
  // The leader is gone; node 3 knows no leader any more (a failed pre-vote) ...
  h.Isolate(1);
  h.Isolate(3);
  for (int i = 0; i < 40 && h.raft(3).role() != Role::kPreCandidate; ++i) h.Tick(3);
  ASSERT_EQ(h.raft(3).role(), Role::kPreCandidate);
  ASSERT_EQ(h.raft(3).term(), term);
  // ... and a candidate of that same term asks for its vote: refused.
  raftpb::Message vote;
  vote.set_type(raftpb::MSG_VOTE);
  vote.set_from(2);
  vote.set_to(3);
  vote.set_term(term);
  vote.set_index(h.raft(2).log().LastIndex());
  vote.set_log_term(h.raft(2).log().LastTerm());
  h.ClearSent();
  h.Heal();
  h.DeliverNow(vote);
  h.ProcessReady(3);
  const std::vector<raftpb::Message> queued = h.TakeQueued();
  const auto answer = std::find_if(queued.begin(), queued.end(), [](const raftpb::Message& m) {
    return m.type() == raftpb::MSG_VOTE_RESP && m.from() == 3;
  });
  ASSERT_NE(answer, queued.end());
  EXPECT_TRUE(answer->reject()) << "node 3 voted twice in term " << term;
}

TEST(LostDiskTest, EmptyNodesAskingPeersStartANewClusterOnceEveryPeerAnswered) {
  Harness h(3, [](Config& c) { c.empty_start = Config::EmptyStart::kAskPeers; });
  // Node 3 is not up yet: 1 and 2 cannot tell a new cluster from one whose other members
  // hold the data, so they do not vote.
  h.Isolate(3);
  for (int i = 0; i < 60; ++i) {
    h.Tick(1);
    h.Tick(2);
  }
  EXPECT_EQ(h.Leader(), 0u);
  EXPECT_EQ(h.raft(1).Status().voter_state, raftpb::UNDECIDED);
  EXPECT_NE(h.raft(1).Status().rejoin_detail.find("1 of 2 answered"), std::string::npos)
      << h.raft(1).Status().rejoin_detail;
  h.Heal();
  h.TickAll(40);
  const uint64_t leader = h.Leader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(h.raft(leader).Propose("first").ok());
  h.Stabilize();
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(h.node(id).applied.back().data(), "first");
    EXPECT_EQ(h.raft(id).Status().voter_state, raftpb::VOTER);
  }
}

TEST(LostDiskTest, RejoinModeNeverStartsANewCluster) {
  Harness h(3, [](Config& c) { c.empty_start = Config::EmptyStart::kRejoin; });
  h.TickAll(60);
  EXPECT_EQ(h.Leader(), 0u);
  EXPECT_EQ(h.raft(1).Status().voter_state, raftpb::RECOVERING);
}

TEST(LostDiskTest, MessagesOfAnEarlierIncarnationAreDropped) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  // An acknowledgement node 3 sent before it lost its data arrives after its new
  // incarnation spoke: it must not count.
  raftpb::Message old_ack;
  old_ack.set_type(raftpb::MSG_APP_RESP);
  old_ack.set_from(3);
  old_ack.set_to(1);
  old_ack.set_term(h.raft(1).term());
  old_ack.set_index(h.raft(1).log().LastIndex() + 5);
  h.Isolate(2);
  h.Wipe(3);
  h.TickAll(5);  // node 3's new incarnation (RECOVERING) has talked to the leader
  ASSERT_EQ(h.raft(3).Status().voter_state, raftpb::RECOVERING);
  absl::StatusOr<EntryId> w = h.raft(1).Propose("b");
  ASSERT_TRUE(w.ok());
  h.ProcessReady(1);
  old_ack.set_index(w->index);
  h.DeliverNow(old_ack);
  h.Stabilize();
  EXPECT_LT(h.raft(1).log().committed(), w->index);
}

}  // namespace
}  // namespace raftkv::raft
