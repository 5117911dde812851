// Majority quorums (quorum.h): the committed index of a voter set given acknowledged
// indexes, and the result of a vote given answers, for sets of every small size.
#include "raft/quorum.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <vector>

namespace raftkv::raft::quorum {
namespace {

uint64_t Committed(const std::vector<uint64_t>& voters, const std::map<uint64_t, uint64_t>& acked) {
  return CommittedIndex(voters, [&](uint64_t id) {
    auto it = acked.find(id);
    return it == acked.end() ? uint64_t{0} : it->second;
  });
}

VoteResult Tally(const std::vector<uint64_t>& voters, const std::map<uint64_t, bool>& votes) {
  return TallyVotes(voters, [&](uint64_t id) -> std::optional<bool> {
    auto it = votes.find(id);
    if (it == votes.end()) return std::nullopt;
    return it->second;
  });
}

TEST(CommittedIndexTest, HighestIndexAMajorityHas) {
  EXPECT_EQ(Committed({1}, {{1, 7}}), 7u);
  EXPECT_EQ(Committed({1, 2}, {{1, 7}, {2, 5}}), 5u);  // two voters: both needed
  EXPECT_EQ(Committed({1, 2, 3}, {{1, 7}, {2, 5}, {3, 2}}), 5u);
  EXPECT_EQ(Committed({1, 2, 3}, {{1, 7}, {2, 7}, {3, 2}}), 7u);
  EXPECT_EQ(Committed({1, 2, 3, 4}, {{1, 9}, {2, 8}, {3, 4}, {4, 1}}), 4u);  // 3 of 4
  EXPECT_EQ(Committed({1, 2, 3, 4, 5}, {{1, 9}, {2, 8}, {3, 4}, {4, 1}, {5, 0}}), 4u);
}

TEST(CommittedIndexTest, MissingAcknowledgementCountsAsZero) {
  EXPECT_EQ(Committed({1, 2, 3}, {{1, 7}}), 0u);
  EXPECT_EQ(Committed({1, 2, 3}, {{1, 7}, {3, 4}}), 4u);
}

TEST(CommittedIndexTest, OnlyVotersCount) {
  // Node 9 is not a voter: its acknowledgement must not make a quorum.
  EXPECT_EQ(Committed({1, 2, 3}, {{1, 7}, {9, 7}, {2, 1}}), 1u);
}

TEST(CommittedIndexTest, EmptySetCommitsEverything) {
  // So that a joint configuration with an empty half is decided by the other half (min).
  EXPECT_EQ(Committed({}, {{1, 7}}), std::numeric_limits<uint64_t>::max());
}

TEST(CommittedIndexTest, MatchesCountingOnRandomInputs) {
  // Definition: the largest i such that at least a majority of voters acknowledged >= i.
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    const size_t n = 1 + rng() % 7;
    std::vector<uint64_t> voters;
    std::map<uint64_t, uint64_t> acked;
    for (uint64_t id = 1; id <= n; ++id) {
      voters.push_back(id * 3);  // ids need not be dense
      if (rng() % 5 != 0) acked[id * 3] = rng() % 10;
    }
    uint64_t want = 0;
    for (uint64_t i = 0; i <= 10; ++i) {
      size_t have = 0;
      for (uint64_t id : voters) have += acked.count(id) && acked[id] >= i;
      if (have >= n / 2 + 1) want = i;
    }
    EXPECT_EQ(Committed(voters, acked), want) << "round " << round;
  }
}

TEST(TallyVotesTest, WonLostPending) {
  EXPECT_EQ(Tally({1}, {}), VoteResult::kPending);
  EXPECT_EQ(Tally({1}, {{1, true}}), VoteResult::kWon);
  EXPECT_EQ(Tally({1}, {{1, false}}), VoteResult::kLost);

  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}, {2, false}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3}, {{1, false}, {2, false}}), VoteResult::kLost);
  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}, {2, false}, {3, false}}), VoteResult::kLost);

  // An even set needs more than half: 2 of 2, 3 of 4.
  EXPECT_EQ(Tally({1, 2}, {{1, true}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2}, {{1, true}, {2, false}}), VoteResult::kLost);
  EXPECT_EQ(Tally({1, 2, 3, 4}, {{1, true}, {2, true}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3, 4}, {{1, true}, {2, true}, {3, false}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3, 4}, {{1, true}, {2, false}, {3, false}}), VoteResult::kLost);
  EXPECT_EQ(Tally({1, 2, 3, 4}, {{1, true}, {2, true}, {4, true}}), VoteResult::kWon);

  EXPECT_EQ(Tally({1, 2, 3, 4, 5}, {{1, true}, {2, true}, {3, false}, {4, false}}),
            VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3, 4, 5}, {{1, false}, {2, false}, {3, false}}), VoteResult::kLost);
}

TEST(TallyVotesTest, OnlyVotersCount) {
  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}, {8, true}, {9, true}}), VoteResult::kPending);
  EXPECT_EQ(Tally({1, 2, 3}, {{1, true}, {8, false}, {9, false}}), VoteResult::kPending);
}

TEST(TallyVotesTest, EmptySetWins) {
  EXPECT_EQ(Tally({}, {}), VoteResult::kWon);
}

}  // namespace
}  // namespace raftkv::raft::quorum
