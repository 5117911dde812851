// Issue 10: every write gets exactly one honest answer. Scenarios driven with the Raft core
// harness (tests/raft/raft_harness.h); node 1's requests are kept in a PendingRequests fed the
// way RaftLoop feeds it: OnApplied for each applied entry, then OnLeadership when the term or
// the leader changed (RaftLoop::ProcessReady, RaftLoop::OnTermOrRoleChange).
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft_harness.h"
#include "server/replication/pending_requests.h"
#include "server/replication/raft_loop.h"

namespace raftkv::server {
namespace {

using raft::Role;
using raft::testing::Harness;

const absl::Time kT0 = absl::FromUnixSeconds(1000);
const absl::Duration kTimeout = absl::Milliseconds(5000);

struct WriteOutcome {
  int calls = 0;
  absl::StatusOr<ForwardResult> result = absl::UnknownError("never called");
  PendingRequests::WriteDone Callback() {
    return [this](absl::StatusOr<ForwardResult> r) {
      ++calls;
      result = std::move(r);
    };
  }
};

// The loop's side of one harness node: what RaftLoop does with PendingRequests.
class LoopModel {
 public:
  LoopModel(Harness* h, uint64_t id) : h_(h), id_(id), pending_(kTimeout) {}

  // Proposes `data` on the node and registers `w` as its writer, as HandleWrite does.
  absl::StatusOr<raft::EntryId> Write(const std::string& data, WriteOutcome* w) {
    absl::StatusOr<raft::EntryId> id = h_->raft(id_).Propose(data);
    if (id.ok()) pending_.AddWrite(id->index, id->term, kT0, w->Callback());
    return id;
  }

  // After the harness ran: apply what the node applied, then react to a term/leader change.
  void Sync() {
    const auto& applied = h_->node(id_).applied;
    for (; seen_ < applied.size(); ++seen_) {
      pending_.OnApplied(applied[seen_].index(), applied[seen_].term(), kv::ApplyResult{});
    }
    raft::Raft& r = h_->raft(id_);
    if (r.term() != last_term_ || r.lead() != last_lead_) {
      pending_.OnLeadership(r.role() == Role::kLeader ? r.term() : 0);
      last_term_ = r.term();
      last_lead_ = r.lead();
    }
  }

  PendingRequests& pending() { return pending_; }

 private:
  Harness* h_;
  uint64_t id_;
  PendingRequests pending_;
  size_t seen_ = 0;
  uint64_t last_term_ = 0;
  uint64_t last_lead_ = 0;
};

bool IsNotAppliedOrUnknown(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

// A leader with proposals pending steps down, the next leader truncates its log, it is
// re-elected and proposes at an index where one of its old writes still waited.
TEST(WriteAnswersTest, SteppedDownLeaderReElectedAnswersEveryOldWriteOnce) {
  // No CheckQuorum: the isolated leader learns of the new term only when healed.
  Harness h(3, [](raft::Config& c) { c.check_quorum = false; });
  LoopModel loop(&h, 1);
  h.Campaign(1);
  ASSERT_EQ(h.Leader(), 1u);
  loop.Sync();
  const uint64_t t1 = h.raft(1).term();
  const uint64_t last = h.raft(1).log().LastIndex();

  // Three writes on the old leader, cut off: never replicated.
  h.Isolate(1);
  WriteOutcome old_writes[3];
  for (int i = 0; i < 3; ++i) {
    auto id = loop.Write("old" + std::to_string(i), &old_writes[i]);
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_EQ(id->index, last + 1 + i);
  }
  h.Stabilize();
  loop.Sync();

  // Node 2 leads term t2 with a no-op at last+1; healed, node 1 truncates its three entries.
  h.Campaign(2);
  ASSERT_EQ(h.raft(2).role(), Role::kLeader);
  const uint64_t t2 = h.raft(2).term();
  ASSERT_GT(t2, t1);
  h.Heal();
  h.Tick(2);
  loop.Sync();
  ASSERT_EQ(h.raft(1).term(), t2);
  ASSERT_EQ(h.raft(1).log().LastIndex(), last + 1);
  // Leadership lost: every write of term t1 is answered at once.
  for (const WriteOutcome& w : old_writes) {
    EXPECT_EQ(w.calls, 1) << "an old write is still waiting after its leader stepped down";
  }

  // Node 1 leads term t3: no-op at last+2, a new client write at last+3, where the third
  // old write was proposed.
  h.Isolate(2);
  h.Campaign(1);
  ASSERT_EQ(h.raft(1).role(), Role::kLeader);
  loop.Sync();
  WriteOutcome fresh;
  auto id = loop.Write("new", &fresh);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(id->index, last + 3);
  h.Stabilize();
  loop.Sync();

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(old_writes[i].calls, 1) << "old write " << i;
    EXPECT_FALSE(old_writes[i].result.ok()) << "old write " << i;
    EXPECT_TRUE(IsNotAppliedOrUnknown(old_writes[i].result.status()))
        << "old write " << i << ": " << old_writes[i].result.status();
  }
  ASSERT_EQ(fresh.calls, 1);
  ASSERT_TRUE(fresh.result.ok()) << fresh.result.status();
  EXPECT_EQ(fresh.result->index, last + 3);
  EXPECT_EQ(loop.pending().writes(), 0u);
}

// Issue 10, item 5: a leader over its uncommitted-bytes limit is not "no leader".
TEST(WriteAnswersTest, LeaderOverItsUncommittedLimitSaysSo) {
  Harness h(3, [](raft::Config& c) { c.max_uncommitted_bytes = 16; });
  h.Campaign(1);
  ASSERT_EQ(h.Leader(), 1u);
  h.Isolate(1);  // nothing commits: the uncommitted bytes only grow
  absl::Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) {
    refused = h.raft(1).Propose(std::string(10, 'x')).status();
  }
  ASSERT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;

  absl::Status answer = RefusedProposal(refused);
  EXPECT_EQ(answer.code(), absl::StatusCode::kResourceExhausted) << answer;
  EXPECT_EQ(answer.message().find("no leader"), std::string::npos) << answer;
  EXPECT_NE(answer.message().find("not applied"), std::string::npos) << answer;

  // Not the leader: still the not-leader answer, with the hint.
  absl::Status follower = h.raft(2).Propose("x").status();
  absl::Status follower_answer = RefusedProposal(follower);
  EXPECT_EQ(follower_answer.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(follower_answer.message().find("not the leader"), std::string::npos)
      << follower_answer;
}

}  // namespace
}  // namespace raftkv::server
