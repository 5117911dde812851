// Progress: the per-follower flow control of the leader.
#include "raft/progress.h"

#include <gtest/gtest.h>

namespace raftkv::raft {
namespace {

TEST(ProgressTest, ProbeSendsOneMessageAtATime) {
  Progress p(/*next=*/5, /*max_inflight=*/4);
  EXPECT_FALSE(p.IsPaused());
  p.SentEntries(6);
  EXPECT_TRUE(p.IsPaused());
  p.OnHeartbeatResponse();
  EXPECT_FALSE(p.IsPaused());
}

TEST(ProgressTest, ReplicateWindowIsBounded) {
  Progress p(1, 2);
  ASSERT_TRUE(p.MaybeUpdate(3));
  p.BecomeReplicate();
  EXPECT_EQ(p.next(), 4u);
  p.SentEntries(5);
  p.SentEntries(7);
  EXPECT_EQ(p.next(), 8u);
  EXPECT_TRUE(p.IsPaused());
  p.MaybeUpdate(5);  // frees the first message
  EXPECT_FALSE(p.IsPaused());
  EXPECT_EQ(p.inflight(), 1u);
}

TEST(ProgressTest, RejectionsBackOffToHintAndStaleOnesAreIgnored) {
  Progress p(11, 4);  // probing at 10
  EXPECT_FALSE(p.MaybeDecrTo(7, 3));  // not the outstanding probe
  EXPECT_TRUE(p.MaybeDecrTo(10, 3));
  EXPECT_EQ(p.next(), 4u);
  p.MaybeUpdate(6);
  p.BecomeReplicate();
  p.SentEntries(9);
  EXPECT_FALSE(p.MaybeDecrTo(5, 0));  // at or below match: stale
  EXPECT_TRUE(p.MaybeDecrTo(9, 0));
  EXPECT_EQ(p.next(), 7u);
}

TEST(ProgressTest, SnapshotStatePausesAndProbesAfter) {
  Progress p(1, 4);
  p.BecomeSnapshot(20);
  EXPECT_TRUE(p.IsPaused());
  p.BecomeProbe();
  EXPECT_EQ(p.next(), 21u);
  p.BecomeSnapshot(30);
  p.SnapshotFailed();
  EXPECT_EQ(p.next(), 1u);
}

}  // namespace
}  // namespace raftkv::raft
