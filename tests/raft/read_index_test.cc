// ReadIndexTracker (read_index.h): rounds, acknowledgements and release, without a cluster.
#include "raft/read_index.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace raftkv::raft {
namespace {

const std::vector<uint64_t> kVoters = {1, 2, 3};  // node 1 is the leader
constexpr uint64_t kSelf = 1;

std::vector<std::string> Contexts(const std::vector<ReadIndexTracker::Read>& reads) {
  std::vector<std::string> out;
  for (const auto& r : reads) out.push_back(r.context);
  return out;
}

TEST(ReadIndexTrackerTest, AReadStartsARoundThatAQuorumConfirms) {
  ReadIndexTracker t;
  EXPECT_EQ(t.RoundContext(), "");  // nothing in flight: heartbeats carry no round
  EXPECT_TRUE(t.Admit({"a", kSelf, 5}));
  const std::string round = t.RoundContext();
  ASSERT_EQ(round.size(), 8u);
  // The leader plus one follower of three is a quorum.
  ReadIndexTracker::AckResult r = t.OnHeartbeatAck(kVoters, kSelf, 2, round);
  ASSERT_EQ(r.released.size(), 1u);
  EXPECT_EQ(r.released[0].context, "a");
  EXPECT_EQ(r.released[0].from, kSelf);
  EXPECT_EQ(r.released[0].index, 5u);
  EXPECT_FALSE(r.start_round);
  EXPECT_EQ(t.RoundContext(), "");
  // A late echo of the same round changes nothing.
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 3, round).released.empty());
}

TEST(ReadIndexTrackerTest, AReadDuringARoundWaitsForTheNextOne) {
  ReadIndexTracker t;
  ASSERT_TRUE(t.Admit({"a", kSelf, 5}));
  const std::string first = t.RoundContext();
  // Heartbeats of the first round may have left before "b" arrived.
  EXPECT_FALSE(t.Admit({"b", 2, 6}));
  EXPECT_FALSE(t.Admit({"c", kSelf, 6}));
  ReadIndexTracker::AckResult r = t.OnHeartbeatAck(kVoters, kSelf, 3, first);
  EXPECT_EQ(Contexts(r.released), std::vector<std::string>{"a"});
  ASSERT_TRUE(r.start_round);  // one round for both waiting reads
  const std::string second = t.RoundContext();
  EXPECT_NE(second, first);
  r = t.OnHeartbeatAck(kVoters, kSelf, 2, second);
  EXPECT_EQ(Contexts(r.released), (std::vector<std::string>{"b", "c"}));
  EXPECT_FALSE(r.start_round);
}

TEST(ReadIndexTrackerTest, NeedsAQuorumOfVoters) {
  ReadIndexTracker t;
  const std::vector<uint64_t> five = {1, 2, 3, 4, 5};
  ASSERT_TRUE(t.Admit({"a", kSelf, 5}));
  const std::string round = t.RoundContext();
  EXPECT_TRUE(t.OnHeartbeatAck(five, kSelf, 2, round).released.empty());  // 2 of 5
  EXPECT_TRUE(t.OnHeartbeatAck(five, kSelf, 9, round).released.empty());  // not a voter
  EXPECT_EQ(t.OnHeartbeatAck(five, kSelf, 4, round).released.size(), 1u);  // 3 of 5
}

TEST(ReadIndexTrackerTest, IgnoresContextsThatNameNoStartedRound) {
  ReadIndexTracker t;
  ASSERT_TRUE(t.Admit({"a", kSelf, 5}));
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 2, "").released.empty());
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 2, "short").released.empty());
  std::string future = t.RoundContext();
  future[0] = static_cast<char>(future[0] + 1);  // a round not started yet
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 2, future).released.empty());
}

TEST(ReadIndexTrackerTest, ResetDropsReadsAndEarlierRoundsNeverConfirmLaterOnes) {
  ReadIndexTracker t;
  ASSERT_TRUE(t.Admit({"a", kSelf, 5}));
  const std::string old_round = t.RoundContext();
  t.WaitForCommit("w", 2);
  t.Reset();  // leadership lost
  EXPECT_FALSE(t.HasWaitingForCommit());
  EXPECT_EQ(t.RoundContext(), "");
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 2, old_round).released.empty());
  // Leading again: the new round has a higher number than any echo of the old leadership.
  ASSERT_TRUE(t.Admit({"b", kSelf, 9}));
  EXPECT_NE(t.RoundContext(), old_round);
  EXPECT_TRUE(t.OnHeartbeatAck(kVoters, kSelf, 2, old_round).released.empty());
  EXPECT_EQ(Contexts(t.OnHeartbeatAck(kVoters, kSelf, 2, t.RoundContext()).released),
            std::vector<std::string>{"b"});
}

TEST(ReadIndexTrackerTest, ReadsWaitingForCommitComeBackInOrder) {
  ReadIndexTracker t;
  t.WaitForCommit("x", kSelf);
  t.WaitForCommit("y", 3);
  ASSERT_TRUE(t.HasWaitingForCommit());
  std::vector<ReadIndexTracker::Read> w = t.TakeWaitingForCommit();
  EXPECT_EQ(Contexts(w), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(w[1].from, 3u);
  EXPECT_FALSE(t.HasWaitingForCommit());
}

}  // namespace
}  // namespace raftkv::raft
