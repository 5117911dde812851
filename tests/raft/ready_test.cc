// The send-before-persist rule of Ready (raft.h): which messages the caller may send while it
// persists (messages_before_persist) and which must wait until the persist step is durable
// (messages). kvd's raft loop and the simulator both rely on the core drawing this line.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "raft/raft.h"
#include "raft_harness.h"

namespace raftkv::raft {
namespace {

using testing::Harness;
using testing::HarnessNode;

bool HasType(const std::vector<raftpb::Message>& msgs, raftpb::MessageType type) {
  return std::any_of(msgs.begin(), msgs.end(),
                     [type](const raftpb::Message& m) { return m.type() == type; });
}

// Persists `rd` on node `id` and advances, without sending anything.
void PersistAndAdvance(Harness& h, uint64_t id, const Ready& rd) {
  HarnessNode& n = h.node(id);
  ASSERT_TRUE(n.storage->Append(rd.entries).ok());
  if (rd.hard_state) {
    ASSERT_TRUE(n.storage->SetHardState(*rd.hard_state).ok());
  }
  ASSERT_TRUE(n.storage->Sync().ok());
  n.raft->Advance(rd);
}

// What the harness does, for a Ready a test took by hand: early messages, persist, the rest.
void FinishReady(Harness& h, uint64_t id, const Ready& rd) {
  for (const auto& m : rd.messages_before_persist) h.DeliverNow(m);
  PersistAndAdvance(h, id, rd);
  for (const auto& m : rd.messages) h.DeliverNow(m);
}

TEST(ReadyTest, LeaderAppendsAndHeartbeatsOfItsTermMayLeaveBeforePersist) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  ASSERT_TRUE(h.raft(1).Propose("x").ok());
  Ready rd = h.raft(1).GetReady();
  ASSERT_FALSE(rd.entries.empty());
  EXPECT_TRUE(rd.messages.empty());
  ASSERT_EQ(rd.messages_before_persist.size(), 2u);  // one MsgApp per follower
  for (const auto& m : rd.messages_before_persist) {
    EXPECT_EQ(m.type(), raftpb::MSG_APP);
    EXPECT_EQ(m.term(), h.raft(1).term());
  }
  FinishReady(h, 1, rd);
  h.Stabilize();

  h.raft(1).Tick();  // heartbeat_tick = 1
  rd = h.raft(1).GetReady();
  EXPECT_TRUE(HasType(rd.messages_before_persist, raftpb::MSG_HEARTBEAT));
  EXPECT_FALSE(HasType(rd.messages, raftpb::MSG_HEARTBEAT));
  FinishReady(h, 1, rd);
  h.Stabilize();
}

TEST(ReadyTest, FollowerAnswersWaitForPersist) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("x").ok());
  Ready rd = h.raft(1).GetReady();
  for (const auto& m : rd.messages_before_persist) {
    if (m.to() == 2) h.raft(2).Step(m);
  }
  // The append answer promises the entries are on the follower's disk.
  Ready f = h.raft(2).GetReady();
  ASSERT_FALSE(f.entries.empty());
  EXPECT_TRUE(f.must_sync);
  EXPECT_TRUE(f.messages_before_persist.empty());
  EXPECT_TRUE(HasType(f.messages, raftpb::MSG_APP_RESP));
  FinishReady(h, 2, f);
  FinishReady(h, 1, rd);
  h.Stabilize();

  // So does a heartbeat answer (it acknowledges the commit index and read rounds).
  h.raft(1).Tick();
  rd = h.raft(1).GetReady();
  for (const auto& m : rd.messages_before_persist) {
    if (m.to() == 2 && m.type() == raftpb::MSG_HEARTBEAT) h.raft(2).Step(m);
  }
  f = h.raft(2).GetReady();
  EXPECT_TRUE(f.messages_before_persist.empty());
  EXPECT_TRUE(HasType(f.messages, raftpb::MSG_HEARTBEAT_RESP));
  FinishReady(h, 2, f);
  FinishReady(h, 1, rd);
  h.Stabilize();
}

TEST(ReadyTest, VotesAndVoteAnswersWaitForPersist) {
  for (bool pre_vote : {false, true}) {
    SCOPED_TRACE(pre_vote ? "pre-vote" : "vote");
    Harness h(3, [pre_vote](Config& c) { c.pre_vote = pre_vote; });
    for (int i = 0; i < 100 && h.raft(1).role() == Role::kFollower; ++i) h.raft(1).Tick();
    ASSERT_NE(h.raft(1).role(), Role::kFollower);
    // A candidate's request follows its own durable vote (and term).
    Ready c = h.raft(1).GetReady();
    EXPECT_TRUE(c.messages_before_persist.empty());
    EXPECT_TRUE(HasType(c.messages, pre_vote ? raftpb::MSG_PRE_VOTE : raftpb::MSG_VOTE));
    for (const auto& m : c.messages) {
      if (m.to() == 2) h.raft(2).Step(m);
    }
    // The answer promises the voter's durable vote.
    Ready v = h.raft(2).GetReady();
    EXPECT_TRUE(v.messages_before_persist.empty());
    EXPECT_TRUE(
        HasType(v.messages, pre_vote ? raftpb::MSG_PRE_VOTE_RESP : raftpb::MSG_VOTE_RESP));
    PersistAndAdvance(h, 2, v);
    PersistAndAdvance(h, 1, c);
  }
}

TEST(ReadyTest, LeaderAnswersWaitForPersist) {
  // Only replication overtakes the persist step; a leader's other messages of its term wait.
  Harness h(3);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  // A late candidate of the leader's own term asks for a vote: the refusal waits.
  raftpb::Message vote;
  vote.set_type(raftpb::MSG_VOTE);
  vote.set_from(2);
  vote.set_to(1);
  vote.set_term(h.raft(1).term());
  vote.set_index(h.raft(1).log().LastIndex());
  vote.set_log_term(h.raft(1).log().LastTerm());
  h.raft(1).Step(vote);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  Ready rd = h.raft(1).GetReady();
  EXPECT_TRUE(rd.messages_before_persist.empty());
  ASSERT_TRUE(HasType(rd.messages, raftpb::MSG_VOTE_RESP));
  EXPECT_TRUE(rd.messages[0].reject());
  PersistAndAdvance(h, 1, rd);

  // A follower's read: the leader's heartbeat round may go early, its answer may not.
  ASSERT_TRUE(h.raft(2).ReadIndex("r").ok());
  h.ProcessReady(2);
  for (const auto& m : h.TakeQueued()) h.DeliverNow(m);  // MSG_READ_INDEX to the leader
  rd = h.raft(1).GetReady();
  EXPECT_TRUE(HasType(rd.messages_before_persist, raftpb::MSG_HEARTBEAT));
  FinishReady(h, 1, rd);
  h.ProcessReady(2);
  h.ProcessReady(3);
  for (const auto& m : h.TakeQueued()) h.DeliverNow(m);  // heartbeat answers: round confirmed
  rd = h.raft(1).GetReady();
  EXPECT_FALSE(HasType(rd.messages_before_persist, raftpb::MSG_READ_INDEX_RESP));
  EXPECT_TRUE(HasType(rd.messages, raftpb::MSG_READ_INDEX_RESP));
  FinishReady(h, 1, rd);
  h.Stabilize();
  ASSERT_EQ(h.node(2).read_states.size(), 1u);
}

TEST(ReadyTest, SteppedDownLeaderHoldsItsOldTermMessagesUntilPersisted) {
  // Heartbeats queued while leading, then a vote request of a newer term arrives before the
  // next Ready: the node is no longer the leader of the term those heartbeats carry.
  Harness h(3, [](Config& c) { c.check_quorum = false; });
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  const uint64_t term = h.raft(1).term();
  h.raft(1).Tick();  // queues heartbeats of `term`
  raftpb::Message vote;
  vote.set_type(raftpb::MSG_VOTE);
  vote.set_from(2);
  vote.set_to(1);
  vote.set_term(term + 1);
  vote.set_index(h.raft(1).log().LastIndex());
  vote.set_log_term(h.raft(1).log().LastTerm());
  h.raft(1).Step(vote);
  ASSERT_EQ(h.raft(1).role(), Role::kFollower);
  Ready rd = h.raft(1).GetReady();
  EXPECT_TRUE(rd.messages_before_persist.empty());
  EXPECT_TRUE(HasType(rd.messages, raftpb::MSG_HEARTBEAT));
  EXPECT_TRUE(HasType(rd.messages, raftpb::MSG_VOTE_RESP));
  PersistAndAdvance(h, 1, rd);
}

// Issue 10 item 4: kvd installs a received snapshot off its loop and pauses applying
// meanwhile (Raft::PauseApply); the follower must go on appending, acknowledging and
// committing, and hand out what committed meanwhile, in order, once resumed.
TEST(ReadyTest, PausedApplyAppendsAcknowledgesAndCommitsButHandsOutNoEntries) {
  Harness h(3);
  h.Campaign(1);
  h.Isolate(3);  // node 1 commits only with node 2's acknowledgements
  const uint64_t applied_before = h.node(2).applied_index;
  h.raft(2).PauseApply(true);
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  ASSERT_TRUE(h.raft(1).Propose("b").ok());
  h.Stabilize();
  h.Tick(1, 3);  // heartbeats, answered
  const uint64_t last = h.raft(1).log().LastIndex();
  EXPECT_EQ(h.node(1).applied_index, last) << "node 2 did not acknowledge while paused";
  EXPECT_EQ(h.raft(2).log().committed(), last);
  EXPECT_EQ(h.node(2).storage->hard_state().commit(), last) << "commit not persisted";
  EXPECT_EQ(h.node(2).applied_index, applied_before) << "entries handed out while paused";
  EXPECT_FALSE(h.raft(2).HasReady()) << "a Ready with nothing in it while paused";
  EXPECT_EQ(h.raft(2).role(), Role::kFollower);
  EXPECT_EQ(h.raft(2).lead(), 1u);

  h.raft(2).PauseApply(false);
  EXPECT_TRUE(h.raft(2).HasReady());
  h.Stabilize();
  EXPECT_EQ(h.node(2).applied_index, last);
  ASSERT_GE(h.node(2).applied.size(), 2u);
  EXPECT_EQ(h.node(2).applied[h.node(2).applied.size() - 2].data(), "a");
  EXPECT_EQ(h.node(2).applied.back().data(), "b");
}

}  // namespace
}  // namespace raftkv::raft
