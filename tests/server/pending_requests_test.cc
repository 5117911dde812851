// PendingRequests (replication/pending_requests.h) with a fake clock: every request is
// answered exactly once, at the right time, with the right kind of error.
#include "server/replication/pending_requests.h"

#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);
const absl::Duration kTimeout = absl::Milliseconds(500);

// Records how often a callback ran and with what.
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

struct Outcome {
  int calls = 0;
  absl::Status status = absl::UnknownError("never called");
  PendingRequests::ReadDone Callback() {
    return [this](absl::Status s) {
      ++calls;
      status = std::move(s);
    };
  }
  Replicator::WriteDone WriteCallback() {
    return [this](absl::StatusOr<kv::ApplyResult> r) {
      ++calls;
      status = r.status();
    };
  }
};

kv::ApplyResult Result(int64_t revision) {
  kv::ApplyResult r;
  r.revision = revision;
  return r;
}

std::vector<PendingRequests::ReadDone> Reads(Outcome* a, Outcome* b = nullptr) {
  std::vector<PendingRequests::ReadDone> out;
  out.push_back(a->Callback());
  if (b) out.push_back(b->Callback());
  return out;
}

TEST(PendingRequestsTest, WriteAnsweredWhenItsEntryApplies) {
  PendingRequests p(kTimeout);
  WriteOutcome w;
  p.AddWrite(7, 2, kT0, w.Callback());
  p.OnApplied(6, 2, Result(5));  // another index: not ours
  EXPECT_EQ(w.calls, 0);
  p.OnApplied(7, 2, Result(6));
  ASSERT_EQ(w.calls, 1);
  ASSERT_TRUE(w.result.ok());
  EXPECT_EQ(w.result->index, 7u);
  EXPECT_EQ(w.result->result.revision, 6);
  EXPECT_EQ(p.writes(), 0u);
  p.OnApplied(7, 2, Result(6));  // applied twice (replay): no second answer
  EXPECT_EQ(w.calls, 1);
}

TEST(PendingRequestsTest, EntryOfAnotherTermMeansTheWriteWasNotApplied) {
  PendingRequests p(kTimeout);
  WriteOutcome w;
  p.AddWrite(7, 2, kT0, w.Callback());
  p.OnApplied(7, 3, Result(6));
  ASSERT_EQ(w.calls, 1);
  EXPECT_EQ(w.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(w.result.status().message().find("not applied"), std::string::npos);
}

TEST(PendingRequestsTest, ApplyErrorIsPassedOn) {
  PendingRequests p(kTimeout);
  WriteOutcome w;
  p.AddWrite(3, 1, kT0, w.Callback());
  p.OnApplied(3, 1, absl::InvalidArgumentError("malformed command"));
  ASSERT_EQ(w.calls, 1);
  EXPECT_EQ(w.result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PendingRequestsTest, WritesAndReadsExpireAtTheirDeadlineOnly) {
  PendingRequests p(kTimeout);
  WriteOutcome w;
  Outcome r1, r2, waiting;
  p.AddWrite(1, 1, kT0, w.Callback());
  p.AddReads("ctx", kT0 + absl::Milliseconds(100), Reads(&r1, &r2));
  p.AddReads("ctx2", kT0, Reads(&waiting));
  p.OnReadState("ctx2", 50);  // confirmed, now waiting for the apply of 50

  p.Expire(kT0 + kTimeout - absl::Milliseconds(1));
  EXPECT_EQ(w.calls + r1.calls + r2.calls + waiting.calls, 0);

  p.Expire(kT0 + kTimeout);  // the write and the confirmed read are due, the batch is not
  ASSERT_EQ(w.calls, 1);
  EXPECT_EQ(w.result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(w.result.status().message().find("outcome unknown"), std::string::npos);
  EXPECT_NE(w.result.status().message().find("500 ms"), std::string::npos);
  ASSERT_EQ(waiting.calls, 1);
  EXPECT_EQ(waiting.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r1.calls, 0);

  p.Expire(kT0 + kTimeout + absl::Milliseconds(100));
  EXPECT_EQ(r1.calls, 1);
  EXPECT_EQ(r2.calls, 1);
  EXPECT_EQ(r1.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(p.writes() + p.reads_waiting_index() + p.reads_waiting_apply(), 0u);

  p.Expire(kT0 + absl::Hours(1));  // nothing answered twice
  EXPECT_EQ(w.calls + r1.calls + r2.calls + waiting.calls, 4);
}

TEST(PendingRequestsTest, ReadsReleaseInIndexOrderOnceApplied) {
  PendingRequests p(kTimeout);
  Outcome early, late;
  p.AddReads("a", kT0, Reads(&early));
  p.AddReads("b", kT0, Reads(&late));
  p.OnReadState("b", 20);
  p.OnReadState("a", 10);
  p.OnReadState("unknown", 5);  // expired meanwhile: ignored
  p.ReleaseApplied(9);
  EXPECT_EQ(early.calls + late.calls, 0);
  p.ReleaseApplied(15);
  EXPECT_EQ(early.calls, 1);
  EXPECT_TRUE(early.status.ok());
  EXPECT_EQ(late.calls, 0);
  p.ReleaseApplied(20);
  EXPECT_EQ(late.calls, 1);
  EXPECT_TRUE(late.status.ok());
}

TEST(PendingRequestsTest, ForwardedWriteAnsweredOnceAppliedHere) {
  PendingRequests p(kTimeout);
  Outcome w;
  p.AddAppliedElsewhere(12, Result(4), kT0, w.WriteCallback());
  p.ReleaseApplied(11);
  p.Expire(kT0 + kTimeout - absl::Milliseconds(1));
  EXPECT_EQ(w.calls, 0);
  EXPECT_EQ(p.writes_waiting_apply(), 1u);
  p.ReleaseApplied(12);
  EXPECT_EQ(w.calls, 1);
  EXPECT_TRUE(w.status.ok());
  p.Expire(kT0 + absl::Hours(1));
  EXPECT_EQ(w.calls, 1);
}

// Issue 10, item 2: a follower cut off from the leader after the leader applied its
// forwarded write must still answer its client by the deadline.
TEST(PendingRequestsTest, ForwardedWriteNotAppliedHereExpiresAtItsDeadline) {
  PendingRequests p(kTimeout);
  Outcome w;
  p.AddAppliedElsewhere(12, Result(4), kT0, w.WriteCallback());
  p.ReleaseApplied(11);
  p.Expire(kT0 + kTimeout - absl::Milliseconds(1));
  EXPECT_EQ(w.calls, 0);
  p.Expire(kT0 + kTimeout);
  ASSERT_EQ(w.calls, 1);
  // Applied on the leader, not visible here: the "outcome unknown" kind, saying what is known.
  EXPECT_EQ(w.status.code(), absl::StatusCode::kDeadlineExceeded) << w.status;
  EXPECT_NE(w.status.message().find("applied on the leader"), std::string::npos) << w.status;
  EXPECT_NE(w.status.message().find("index 12"), std::string::npos) << w.status;
  EXPECT_EQ(p.writes_waiting_apply(), 0u);
  p.ReleaseApplied(12);  // caught up later: no second answer
  EXPECT_EQ(w.calls, 1);
}

// Issue 10, item 1: a proposal at an index where an earlier term's write still waits (its
// entry was truncated, the node re-elected) answers that write instead of dropping it.
TEST(PendingRequestsTest, SecondProposalAtAnIndexAnswersTheFirst) {
  PendingRequests p(kTimeout);
  WriteOutcome old_write, new_write;
  p.AddWrite(7, 2, kT0, old_write.Callback());
  p.AddWrite(7, 4, kT0 + absl::Milliseconds(10), new_write.Callback());
  ASSERT_EQ(old_write.calls, 1);
  EXPECT_EQ(old_write.result.status().code(), absl::StatusCode::kDeadlineExceeded)
      << old_write.result.status();
  EXPECT_NE(old_write.result.status().message().find("outcome unknown"), std::string::npos);
  EXPECT_EQ(new_write.calls, 0);
  EXPECT_EQ(p.writes(), 1u);
  p.OnApplied(7, 4, Result(9));
  ASSERT_EQ(new_write.calls, 1);
  EXPECT_TRUE(new_write.result.ok());
  EXPECT_EQ(old_write.calls, 1);
}

TEST(PendingRequestsTest, LosingLeadershipAnswersWritesAtOnceAsOutcomeUnknown) {
  PendingRequests p(kTimeout);
  WriteOutcome a, b;
  Outcome forwarded;
  p.AddWrite(5, 2, kT0, a.Callback());
  p.AddWrite(6, 2, kT0, b.Callback());
  p.AddAppliedElsewhere(3, Result(1), kT0, forwarded.WriteCallback());
  p.OnLeadership(2);  // still leading term 2: nothing to answer
  EXPECT_EQ(a.calls + b.calls, 0);
  p.OnLeadership(0);  // stepped down
  ASSERT_EQ(a.calls, 1);
  ASSERT_EQ(b.calls, 1);
  for (const WriteOutcome* w : {&a, &b}) {
    EXPECT_EQ(w->result.status().code(), absl::StatusCode::kDeadlineExceeded)
        << w->result.status();
    EXPECT_NE(w->result.status().message().find("outcome unknown"), std::string::npos);
  }
  EXPECT_EQ(p.writes(), 0u);
  EXPECT_EQ(forwarded.calls, 0);  // the leader applied it: leadership here is irrelevant
  p.OnApplied(5, 2, Result(7));   // committed after all: no second answer
  p.Expire(kT0 + absl::Hours(1));
  EXPECT_EQ(a.calls + b.calls, 2);
}

TEST(PendingRequestsTest, ReElectedInANewTermAnswersTheOldTermsWritesOnly) {
  PendingRequests p(kTimeout);
  WriteOutcome old_term, new_term;
  p.AddWrite(5, 2, kT0, old_term.Callback());
  p.AddWrite(9, 3, kT0, new_term.Callback());
  p.OnLeadership(3);
  ASSERT_EQ(old_term.calls, 1);
  EXPECT_EQ(old_term.result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(new_term.calls, 0);
}

TEST(PendingRequestsTest, HandedOverLeadershipKeepsThatTermsWritesUntilApplied) {
  // A leader that handed over (leadership transfer): the target held all its entries, so
  // they commit under the new leader; they are answered by their apply, not at once.
  PendingRequests p(kTimeout);
  WriteOutcome handed, taken_over, older;
  p.AddWrite(4, 1, kT0, older.Callback());
  p.AddWrite(5, 2, kT0, handed.Callback());
  p.AddWrite(6, 2, kT0, taken_over.Callback());
  p.OnLeadership(0, /*handed_over_term=*/2);
  ASSERT_EQ(older.calls, 1);  // another term: outcome unknown at once, as before
  EXPECT_EQ(older.result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(handed.calls + taken_over.calls, 0);
  p.OnApplied(5, 2, Result(7));  // committed under the new leader
  ASSERT_EQ(handed.calls, 1);
  ASSERT_TRUE(handed.result.ok()) << handed.result.status();
  p.OnApplied(6, 3, Result(8));  // another leader's entry took the index: not applied
  ASSERT_EQ(taken_over.calls, 1);
  EXPECT_EQ(taken_over.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p.writes(), 0u);
}

TEST(PendingRequestsTest, TermChangeFailsReadsWaitingForTheirIndexOnly) {
  PendingRequests p(kTimeout);
  Outcome unconfirmed, confirmed;
  WriteOutcome w;
  p.AddWrite(4, 1, kT0, w.Callback());
  p.AddReads("u", kT0, Reads(&unconfirmed));
  p.AddReads("c", kT0, Reads(&confirmed));
  p.OnReadState("c", 3);
  p.OnTermChange();
  ASSERT_EQ(unconfirmed.calls, 1);
  EXPECT_EQ(unconfirmed.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(confirmed.calls, 0);  // its index was confirmed: still valid
  EXPECT_EQ(w.calls, 0);
  p.ReleaseApplied(3);
  EXPECT_EQ(confirmed.calls, 1);
  EXPECT_TRUE(confirmed.status.ok());
}

TEST(PendingRequestsTest, FailAllAnswersEverythingOnce) {
  PendingRequests p(kTimeout);
  WriteOutcome w;
  Outcome r, waiting, forwarded;
  p.AddWrite(1, 1, kT0, w.Callback());
  p.AddReads("r", kT0, Reads(&r));
  p.AddReads("w", kT0, Reads(&waiting));
  p.OnReadState("w", 9);
  p.AddAppliedElsewhere(9, Result(1), kT0, forwarded.WriteCallback());
  p.FailAll(absl::UnknownError("outcome unknown: shutting down"),
            absl::UnavailableError("node is shutting down"));
  // Issue 10: a proposed write may still commit (outcome unknown, not "unavailable"); a
  // write the leader applied was applied (its result); reads were never anything else.
  EXPECT_EQ(w.result.status().code(), absl::StatusCode::kUnknown) << w.result.status();
  for (const absl::Status& s : {r.status, waiting.status}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  }
  EXPECT_TRUE(forwarded.status.ok()) << forwarded.status;
  EXPECT_EQ(w.calls + r.calls + waiting.calls + forwarded.calls, 4);
  p.ReleaseApplied(100);
  p.Expire(kT0 + absl::Hours(1));
  EXPECT_EQ(w.calls + r.calls + waiting.calls + forwarded.calls, 4);
}

}  // namespace
}  // namespace raftkv::server
