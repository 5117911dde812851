// Scenario tests of the Raft core: each test drives a small cluster by hand (raft_harness.h)
// through one classic situation and asserts what Raft requires.
#include "raft/raft.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "raft_harness.h"

namespace raftkv::raft {
namespace {

using testing::Harness;

size_t CountMessages(const std::vector<raftpb::Message>& msgs,
                     const std::function<bool(const raftpb::Message&)>& pred) {
  return std::count_if(msgs.begin(), msgs.end(), pred);
}

void NoPreVoteNoCheckQuorum(Config& c) {
  c.pre_vote = false;
  c.check_quorum = false;
}

TEST(ElectionTest, FirstCampaignerBecomesLeaderAndCommitsNoOp) {
  Harness h(3);
  h.Campaign(1);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  for (uint64_t id : {2, 3}) {
    EXPECT_EQ(h.raft(id).role(), Role::kFollower);
    EXPECT_EQ(h.raft(id).lead(), 1u);
    EXPECT_EQ(h.raft(id).term(), h.raft(1).term());
  }
  // The leader's no-op (empty data) of its term is committed and applied everywhere.
  for (uint64_t id : {1, 2, 3}) {
    ASSERT_EQ(h.node(id).applied.size(), 1u) << "node " << id;
    EXPECT_EQ(h.node(id).applied[0].data(), "");
    EXPECT_EQ(h.node(id).applied[0].term(), h.raft(1).term());
  }
}

TEST(ElectionTest, ElectionTimeoutsAreRandomizedPerNode) {
  // With all nodes ticking together, randomized timeouts make one node campaign first
  // and win, instead of split votes forever.
  Harness h(5);
  h.TickAll(40);
  const uint64_t leader = h.Leader();
  ASSERT_NE(leader, 0u);
  for (uint64_t id = 1; id <= 5; ++id) EXPECT_EQ(h.raft(id).lead(), leader);
}

TEST(ElectionTest, VoteIsInTheSameReadyAsTheAnswer) {
  // The caller persists a Ready's hard state before sending its messages, so the vote
  // must travel in the Ready that carries the answer, flagged must_sync.
  Harness h(3, [](Config& c) { c.pre_vote = false; });
  for (int i = 0; i < 100 && h.raft(1).role() == Role::kFollower; ++i) h.raft(1).Tick();
  ASSERT_EQ(h.raft(1).role(), Role::kCandidate);
  h.ProcessReady(1);
  for (const auto& m : h.TakeQueued()) {
    if (m.to() == 2) h.raft(2).Step(m);
  }
  Ready rd = h.raft(2).GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote(), 1u);
  EXPECT_EQ(rd.hard_state->term(), h.raft(1).term());
  EXPECT_TRUE(rd.must_sync);
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type(), raftpb::MSG_VOTE_RESP);
  EXPECT_FALSE(rd.messages[0].reject());
  h.raft(2).Advance(rd);
}

TEST(ProposeTest, FollowerRejectsWithLeaderHint) {
  Harness h(3);
  h.Campaign(1);
  absl::StatusOr<EntryId> r = h.raft(2).Propose("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(LeaderHint(r.status()), std::optional<uint64_t>(1));

  Harness lonely(3);
  r = lonely.raft(2).Propose("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(LeaderHint(r.status()), std::nullopt);
}

TEST(ProposeTest, LeaderCountsItselfOnlyAfterPersisting) {
  Harness h(3);
  h.Campaign(1);
  absl::StatusOr<EntryId> id = h.raft(1).Propose("x");
  ASSERT_TRUE(id.ok());
  // The leader hands out the entry and its MsgApps but does not report it persisted yet.
  Ready rd = h.raft(1).GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  for (const auto& m : rd.messages_before_persist) {
    if (m.to() == 2) h.DeliverNow(m);  // only follower 2 gets it
  }
  h.ProcessReady(2);
  for (const auto& m : h.TakeQueued()) h.DeliverNow(m);  // 2's ack reaches the leader
  // Leader (unpersisted) + follower 2 would be a quorum, but the leader may not count itself.
  EXPECT_LT(h.raft(1).log().committed(), id->index);
  ASSERT_TRUE(h.node(1).storage->Append(rd.entries).ok());
  ASSERT_TRUE(h.node(1).storage->Sync().ok());
  h.raft(1).Advance(rd);  // now persisted
  EXPECT_EQ(h.raft(1).log().committed(), id->index);
}

TEST(ProposeTest, UncommittedProposalsAreBounded) {
  Harness h(3, [](Config& c) { c.max_uncommitted_bytes = 100; });
  h.Campaign(1);
  h.Isolate(1);
  int accepted = 0;
  absl::StatusOr<EntryId> r;
  for (int i = 0; i < 20; ++i) {
    r = h.raft(1).Propose(std::string(30, 'x'));
    if (!r.ok()) break;
    ++accepted;
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  // Once they commit, proposals are accepted again.
  h.Heal();
  h.TickAll(2);
  EXPECT_TRUE(h.raft(1).Propose(std::string(30, 'x')).ok());
}

TEST(ProposeTest, SingleNodeCommitsAfterAdvance) {
  Harness h(1);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  ASSERT_EQ(h.node(1).applied.size(), 2u);
  EXPECT_EQ(h.node(1).applied[1].data(), "a");
}

// Issue 10, item 5 (as etcd): the only voter cannot lose an election, so it does not wait out
// a randomized election timeout (1-2 s in kvd) before serving, on start and after a restart.
TEST(ElectionTest, SoleVoterElectsItselfAtTheFirstTick) {
  Harness h(1);
  h.Tick(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  const uint64_t term = h.raft(1).term();
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();

  h.Restart(1);
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  h.Tick(1);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  EXPECT_EQ(h.raft(1).term(), term + 1);
  ASSERT_TRUE(h.raft(1).Propose("b").ok());
  h.Stabilize();
  ASSERT_EQ(h.node(1).applied.back().data(), "b");
}

// A node of a larger configuration still waits for its randomized election timeout.
TEST(ElectionTest, OneOfSeveralVotersDoesNotCampaignAtTheFirstTick) {
  Harness h(3);
  h.Tick(1);
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).term(), 0u);
}

TEST(PreVoteTest, PartitionedNodeDoesNotInflateTermOrDisruptOnRejoin) {
  Harness h(3);
  h.Campaign(1);
  const uint64_t term = h.raft(1).term();
  h.Isolate(3);
  h.TickAll(100);  // node 3 times out again and again, but only pre-votes
  EXPECT_EQ(h.raft(3).term(), term);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  h.Heal();
  h.TickAll(30);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  EXPECT_EQ(h.raft(1).term(), term);
  EXPECT_EQ(h.raft(3).lead(), 1u);
}

TEST(PreVoteTest, WithoutPreVoteTheRejoiningNodeDisruptsTheLeader) {
  // The contrast that shows what PreVote buys.
  Harness h(3, NoPreVoteNoCheckQuorum);
  h.Campaign(1);
  const uint64_t term = h.raft(1).term();
  h.Isolate(3);
  h.TickAll(100);
  EXPECT_GT(h.raft(3).term(), term + 2);
  h.Heal();
  h.TickAll(30);
  EXPECT_GT(h.raft(1).term(), term);  // the old leader was forced into a new term
}

TEST(PreVoteTest, BridgePartitionDoesNotCauseEndlessElections) {
  // 1 leads; 1 and 3 cannot see each other, 2 sees both. 3 keeps timing out, but its
  // pre-votes fail (2 hears the leader), so terms stay put and writes still commit via 2.
  Harness h(3);
  h.Campaign(1);
  const uint64_t term = h.raft(1).term();
  h.CutBoth(1, 3);
  h.TickAll(100);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(h.raft(id).term(), term) << id;
  ASSERT_TRUE(h.raft(1).Propose("via-bridge").ok());
  h.Stabilize();
  EXPECT_EQ(h.node(2).applied.back().data(), "via-bridge");
}

TEST(CheckQuorumTest, IsolatedLeaderStepsDown) {
  Harness h(3);
  h.Campaign(1);
  h.Isolate(1);
  h.Tick(1, 20);  // within two election timeouts without hearing from anyone
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).lead(), 0u);
}

TEST(CheckQuorumTest, WithoutCheckQuorumIsolatedLeaderStays) {
  Harness h(3, NoPreVoteNoCheckQuorum);
  h.Campaign(1);
  h.Isolate(1);
  h.Tick(1, 50);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
}

TEST(CheckQuorumTest, FollowerInLeaseIgnoresVotes) {
  Harness h(3, [](Config& c) { c.pre_vote = false; });
  h.Campaign(1);
  const uint64_t term = h.raft(1).term();
  // Node 3 cannot hear the leader (one-way cut) and starts elections; node 2 hears the
  // leader and must not help depose it.
  h.Cut(1, 3);
  h.TickAll(30);
  EXPECT_EQ(h.raft(1).role(), Role::kLeader);
  EXPECT_EQ(h.raft(2).lead(), 1u);
  EXPECT_GT(h.raft(3).term(), term);
}

TEST(CommitRuleTest, Figure8OldTermEntryOnMajorityIsNotCommitted) {
  // Raft paper Figure 8, with 5 nodes and one entry per MsgApp.
  Harness h(5, [](Config& c) {
    NoPreVoteNoCheckQuorum(c);
    c.max_msg_bytes = 1;
  });
  // (a) S1 leads; index 2 reaches S2 only.
  h.Campaign(1);
  const uint64_t t1 = h.raft(1).term();
  for (uint64_t id : {3, 4, 5}) h.CutBoth(1, id);
  ASSERT_TRUE(h.raft(1).Propose("a").ok());
  h.Stabilize();
  ASSERT_EQ(h.raft(2).log().LastIndex(), 2u);
  ASSERT_EQ(h.raft(3).log().LastIndex(), 1u);
  // (b) S1 is down; S5 wins with S3, S4 and writes index 2 of its term, which nobody gets.
  h.Heal();
  h.Isolate(1);
  h.CutBoth(2, 5);
  h.SetDropFilter([](const raftpb::Message& m) {
    return m.from() == 5 && m.type() == raftpb::MSG_APP;
  });
  h.Campaign(5);
  ASSERT_EQ(h.raft(5).role(), Role::kLeader);
  const uint64_t t2 = h.raft(5).term();
  ASSERT_GT(t2, t1);
  ASSERT_EQ(h.raft(5).log().TermOrZero(2), t2);
  // (c) S5 is down; S1 returns and wins term t3 with S2, S3, S4 (its last term t1 >= theirs).
  h.Heal();
  h.Isolate(5);
  h.Restart(1);  // S1 was down; it comes back as a follower
  h.SetDropFilter([&h](const raftpb::Message& m) {
    // Index 2 (term t1) reaches S3; the new term's no-op (index 3) is accepted by no one (a
    // follower without index 2 may see it: it rejects it).
    return m.type() == raftpb::MSG_APP && m.entries_size() > 0 &&
           m.entries(m.entries_size() - 1).index() >= 3 && h.raft(m.to()).log().LastIndex() >= 2;
  });
  // Its first campaign may be in S5's term, where S3 and S4 already voted: retry.
  for (int i = 0; i < 5 && h.raft(1).role() != Role::kLeader; ++i) h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  const uint64_t t3 = h.raft(1).term();
  h.TickAll(3);
  ASSERT_EQ(h.raft(3).log().TermOrZero(2), t1);  // index 2 is on S1, S2, S3: a majority
  EXPECT_EQ(h.raft(1).log().committed(), 1u)
      << "an entry of an old term must not commit by counting replicas";
  // (d) S1 is down; S5 (last term t2 > t1) can win and overwrite index 2: which is why.
  h.SetDropFilter(nullptr);
  h.Heal();
  h.Isolate(1);
  h.Restart(5);
  for (int i = 0; i < 5 && h.raft(5).role() != Role::kLeader; ++i) h.Campaign(5);
  ASSERT_EQ(h.raft(5).role(), Role::kLeader);
  EXPECT_GT(h.raft(5).term(), t3);
  for (uint64_t id : {2, 3, 4, 5}) EXPECT_EQ(h.raft(id).log().TermOrZero(2), t2) << id;
  h.Heal();
  h.TickAll(5);
  for (uint64_t id = 1; id <= 5; ++id) {
    EXPECT_EQ(h.raft(id).log().TermOrZero(2), t2) << id;
    EXPECT_EQ(h.raft(id).log().committed(), h.raft(5).log().committed()) << id;
  }
}

TEST(StaleLeaderTest, StaleLeaderCannotCommitAndStepsDownOnContact) {
  Harness h(3, NoPreVoteNoCheckQuorum);
  h.Campaign(1);
  h.Isolate(1);
  h.Campaign(2);
  ASSERT_EQ(h.raft(2).role(), Role::kLeader);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);  // does not know yet
  absl::StatusOr<EntryId> stale = h.raft(1).Propose("stale");
  ASSERT_TRUE(stale.ok());
  ASSERT_TRUE(h.raft(1).ReadIndex("stale-read").ok());
  ASSERT_TRUE(h.raft(2).Propose("fresh").ok());
  h.TickAll(5);
  EXPECT_LT(h.raft(1).log().committed(), stale->index);
  EXPECT_TRUE(h.node(1).read_states.empty()) << "a stale leader must not serve reads";
  h.Heal();
  h.TickAll(5);
  EXPECT_EQ(h.raft(1).role(), Role::kFollower);
  EXPECT_EQ(h.raft(1).lead(), 2u);
  // The stale entry was replaced by the new leader's log everywhere.
  for (uint64_t id : {1, 2, 3}) {
    const auto& applied = h.node(id).applied;
    EXPECT_TRUE(std::none_of(applied.begin(), applied.end(),
                             [](const raftpb::Entry& e) { return e.data() == "stale"; }));
    EXPECT_TRUE(std::any_of(applied.begin(), applied.end(),
                            [](const raftpb::Entry& e) { return e.data() == "fresh"; }));
  }
  EXPECT_TRUE(h.node(1).read_states.empty());
}

TEST(ReplicationTest, ConflictingSuffixIsSkippedInOneRoundTrip) {
  Harness h(5);
  h.Campaign(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.raft(1).Propose("common").ok());
  h.Stabilize();
  // Node 1 (leader) appends 50 entries nobody else gets.
  h.Isolate(1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(h.raft(1).Propose("old").ok());
  h.Stabilize();
  // A new leader writes 50 other entries; then a third leader takes over, so its probe for
  // node 1 starts far past where their logs diverge.
  h.TickAll(25);
  const uint64_t second = h.Leader();
  ASSERT_NE(second, 0u);
  ASSERT_NE(second, 1u);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(h.raft(second).Propose("new").ok());
  h.Stabilize();
  h.Isolate(second);
  h.Isolate(1);
  h.TickAll(25);
  const uint64_t third = h.Leader();
  ASSERT_NE(third, 0u);
  ASSERT_NE(third, second);
  ASSERT_NE(third, 1u);
  h.Heal();
  h.Isolate(second);
  h.ClearSent();
  h.TickAll(5);
  const size_t rejections = CountMessages(h.sent(), [](const raftpb::Message& m) {
    return m.type() == raftpb::MSG_APP_RESP && m.from() == 1 && m.reject();
  });
  EXPECT_GE(rejections, 1u);
  EXPECT_LE(rejections, 2u) << "backoff went one index at a time";
  EXPECT_EQ(h.raft(1).log().LastIndex(), h.raft(third).log().LastIndex());
  EXPECT_EQ(h.raft(1).log().committed(), h.raft(third).log().committed());
  EXPECT_EQ(h.node(1).applied_index, h.node(third).applied_index);
  EXPECT_EQ(h.node(1).applied[60].data(), "new");
}

TEST(ReplicationTest, BatchesAreBoundedByMaxMsgBytes) {
  Harness h(3, [](Config& c) { c.max_msg_bytes = 64; });
  h.Campaign(1);
  h.Isolate(3);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(h.raft(1).Propose(std::string(10, 'x')).ok());
  h.Stabilize();
  h.Heal();
  h.ClearSent();
  h.TickAll(3);
  size_t batches = 0;
  for (const auto& m : h.sent()) {
    if (m.type() != raftpb::MSG_APP || m.to() != 3 || m.entries_size() == 0) continue;
    ++batches;
    size_t bytes = 0;
    for (const auto& e : m.entries()) bytes += e.ByteSizeLong();
    EXPECT_TRUE(m.entries_size() == 1 || bytes <= 64) << bytes;
    EXPECT_GT(m.entries_size(), 1) << "entries should be batched";
  }
  EXPECT_GT(batches, 2u);
  EXPECT_EQ(h.node(3).applied_index, h.node(1).applied_index);
}

TEST(ReplicationTest, PipelineIsBoundedByMaxInflight) {
  Harness h(3, [](Config& c) {
    c.max_inflight_msgs = 3;
    c.max_msg_bytes = 1;  // one entry per MsgApp
  });
  h.Campaign(1);
  // Follower 2's acks are lost: the leader may have at most 3 MsgApps outstanding to it.
  h.Cut(2, 1);
  h.ClearSent();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(h.raft(1).Propose("p").ok());
    h.Stabilize();
  }
  EXPECT_EQ(CountMessages(h.sent(),
                          [](const raftpb::Message& m) {
                            return m.type() == raftpb::MSG_APP && m.to() == 2 &&
                                   m.entries_size() > 0;
                          }),
            3u);
  // Node 3 kept up, so everything committed anyway.
  EXPECT_EQ(h.raft(1).log().committed(), h.raft(1).log().LastIndex());
  h.Heal();
  h.TickAll(3);
  EXPECT_EQ(h.node(2).applied_index, h.node(1).applied_index);
}

TEST(ReadIndexTest, LeaderBatchesReadsIntoHeartbeatRounds) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("w").ok());
  h.Stabilize();
  const uint64_t commit = h.raft(1).log().committed();
  h.ClearSent();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.raft(1).ReadIndex("r" + std::to_string(i)).ok());
  h.Stabilize();
  ASSERT_EQ(h.node(1).read_states.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(h.node(1).read_states[i].context, "r" + std::to_string(i));
    EXPECT_EQ(h.node(1).read_states[i].index, commit);
  }
  // The first read starts a round; the nine that arrive while it is in flight share the next.
  EXPECT_LE(CountMessages(h.sent(),
                          [](const raftpb::Message& m) {
                            return m.type() == raftpb::MSG_HEARTBEAT;
                          }),
            4u);
}

TEST(ReadIndexTest, FollowerReadIsForwardedToTheLeader) {
  Harness h(3);
  h.Campaign(1);
  ASSERT_TRUE(h.raft(1).Propose("w").ok());
  h.Stabilize();
  ASSERT_TRUE(h.raft(2).ReadIndex("f").ok());
  h.Stabilize();
  ASSERT_EQ(h.node(2).read_states.size(), 1u);
  EXPECT_EQ(h.node(2).read_states[0].context, "f");
  EXPECT_EQ(h.node(2).read_states[0].index, h.raft(1).log().committed());
  EXPECT_TRUE(h.node(1).read_states.empty());
}

TEST(ReadIndexTest, NoLeaderKnownIsUnavailable) {
  Harness h(3);
  EXPECT_EQ(h.raft(2).ReadIndex("x").code(), absl::StatusCode::kUnavailable);
}

TEST(ReadIndexTest, NewLeaderWaitsForItsFirstCommit) {
  Harness h(3);
  h.Campaign(1);
  // The no-op cannot commit: followers do not answer appends.
  h.SetDropFilter([](const raftpb::Message& m) { return m.type() == raftpb::MSG_APP_RESP; });
  h.Isolate(1);
  h.TickAll(12);
  h.Heal();
  const uint64_t leader = h.Leader();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(h.raft(leader).ReadIndex("early").ok());
  h.Stabilize();
  EXPECT_TRUE(h.node(leader).read_states.empty());
  h.SetDropFilter(nullptr);
  h.TickAll(2);
  ASSERT_EQ(h.node(leader).read_states.size(), 1u);
  EXPECT_EQ(h.node(leader).read_states[0].index, h.raft(leader).log().committed());
}

TEST(SnapshotTest, LaggingFollowerWithConflictingLogGetsSnapshot) {
  Harness h(3);
  h.Campaign(3);
  // Node 3 (leader) appends entries nobody gets, then falls behind while 1 and 2 go on.
  h.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(3).Propose("conflict").ok());
  h.Stabilize();
  h.TickAll(12);
  const uint64_t leader = h.Leader();
  ASSERT_TRUE(leader == 1 || leader == 2);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(h.raft(leader).Propose("v" + std::to_string(i)).ok());
  h.Stabilize();
  for (uint64_t id : {1, 2}) h.SnapshotAndCompact(id);
  const uint64_t snap_index = h.node(leader).storage->FirstIndex() - 1;
  ASSERT_GT(snap_index, 6u);
  h.Heal();
  h.ClearSent();
  h.TickAll(5);
  EXPECT_EQ(CountMessages(h.sent(),
                          [](const raftpb::Message& m) { return m.type() == raftpb::MSG_SNAP; }),
            1u);
  EXPECT_EQ(h.node(3).snapshots_installed, 1u);
  EXPECT_EQ(h.node(3).storage->FirstIndex(), snap_index + 1);
  // The conflicting entries are gone; node 3 follows and applies new entries.
  ASSERT_TRUE(h.raft(leader).Propose("after").ok());
  h.Stabilize();
  EXPECT_EQ(h.node(3).applied_index, h.node(leader).applied_index);
  EXPECT_EQ(h.node(3).applied.back().data(), "after");
  for (uint64_t i = h.node(3).storage->FirstIndex(); i <= h.raft(leader).log().LastIndex(); ++i) {
    EXPECT_EQ(h.raft(3).log().TermOrZero(i), h.raft(leader).log().TermOrZero(i)) << i;
  }
}

TEST(SnapshotTest, FailedSnapshotIsRetried) {
  Harness h(3);
  h.Campaign(1);
  h.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(1).Propose("v").ok());
  h.Stabilize();
  h.SnapshotAndCompact(1);
  h.Heal();
  int snaps_dropped = 0;
  h.SetDropFilter([&](const raftpb::Message& m) {
    return m.type() == raftpb::MSG_SNAP && snaps_dropped++ == 0;
  });
  h.TickAll(5);
  EXPECT_EQ(snaps_dropped, 2);
  EXPECT_EQ(h.node(3).snapshots_installed, 1u);
  EXPECT_EQ(h.node(3).applied_index, h.node(1).applied_index);
}

TEST(SnapshotTest, WipedFollowerIsDetectedAndCatchesUpBySnapshot) {
  Harness h(3);
  h.Campaign(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.raft(1).Propose("v" + std::to_string(i)).ok());
  h.Stabilize();
  h.SnapshotAndCompact(1);
  ASSERT_GT(h.node(1).storage->FirstIndex(), 1u);
  ASSERT_EQ(h.raft(1).Status().progress.size(), 3u);
  // Node 3 acknowledged everything, then lost its whole data dir.
  h.Wipe(3);
  ASSERT_EQ(h.raft(3).log().LastIndex(), 0u);
  h.ClearSent();
  // Node 3 answers as a new incarnation that is RECOVERING: the leader forgets its match
  // (and does not count it) and sends the snapshot.
  h.TickAll(3);
  EXPECT_TRUE(std::any_of(h.sent().begin(), h.sent().end(), [](const raftpb::Message& m) {
    return m.type() == raftpb::MSG_HEARTBEAT_RESP && m.from() == 3 &&
           m.voter_state() == raftpb::RECOVERING && m.incarnation() > 0;
  }));
  EXPECT_EQ(h.node(3).snapshots_installed, 1u);
  EXPECT_EQ(h.node(3).applied_index, h.node(1).applied_index);
  ASSERT_TRUE(h.raft(1).Propose("after").ok());
  h.Stabilize();
  EXPECT_EQ(h.node(3).applied.back().data(), "after");
  h.TickAll(10);
  EXPECT_EQ(h.raft(3).Status().voter_state, raftpb::VOTER);
}

TEST(SnapshotTest, FollowerWhoseLogWasTruncatedSaysSoInItsHeartbeatAnswer) {
  // Same incarnation, shorter log (an operator truncated it): heartbeats name a commit index
  // the follower no longer has; it says so instead of aborting, and is caught up again.
  Harness h(3);
  h.Campaign(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(1).Propose("v").ok());
  h.Stabilize();
  raftpb::HardState hs = h.node(3).storage->hard_state();
  h.node(3).storage = std::make_unique<MemoryStorage>(/*track_durable=*/true);
  hs.set_commit(0);
  ASSERT_TRUE(h.node(3).storage->SetHardState(hs).ok());
  ASSERT_TRUE(h.node(3).storage->Sync().ok());
  h.Restart(3);
  h.ClearSent();
  h.TickAll(3);
  EXPECT_TRUE(std::any_of(h.sent().begin(), h.sent().end(), [](const raftpb::Message& m) {
    return m.type() == raftpb::MSG_HEARTBEAT_RESP && m.reject() && m.from() == 3;
  }));
  EXPECT_EQ(h.node(3).applied_index, h.node(1).applied_index);
}

TEST(RestartTest, RestartedNodeRecoversCommittedLog) {
  Harness h(3);
  h.Campaign(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.raft(1).Propose("v").ok());
  h.Stabilize();
  const uint64_t commit = h.raft(1).log().committed();
  h.Restart(1);
  EXPECT_EQ(h.raft(1).log().committed(), commit);
  h.ProcessReady(1);
  EXPECT_EQ(h.node(1).applied_index, commit);  // replayed from its own log
  h.TickAll(30);
  ASSERT_NE(h.Leader(), 0u);
  ASSERT_TRUE(h.raft(h.Leader()).Propose("after").ok());
  h.Stabilize();
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(h.node(id).applied.back().data(), "after");
}

TEST(ConfigTest, ValidateRejectsBadConfigs) {
  Config c;
  c.id = 1;
  c.peers = {1, 2, 3};
  EXPECT_TRUE(c.Validate().ok());
  Config bad = c;
  bad.peers = {};
  EXPECT_FALSE(bad.Validate().ok());
  // A node joining an existing cluster is not among the bootstrap voters (membership.h).
  Config joiner = c;
  joiner.id = 4;
  EXPECT_TRUE(joiner.Validate().ok());
  bad = c;
  bad.peers = {1, 2, 2};
  EXPECT_FALSE(bad.Validate().ok());
  bad = c;
  bad.election_tick = 1;
  EXPECT_FALSE(bad.Validate().ok());
  bad = c;
  bad.max_inflight_msgs = 0;
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace raftkv::raft
