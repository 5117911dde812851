// The raft loop's persist-then-send order (issue 16, item 1), through its seam:
// ProcessReadyInOrder and PersistReady (server/replication/raft_loop.h) are what
// RaftLoop::ProcessReady runs; here they run against real Raft cores with a recording log
// (MemoryStorage underneath, plus what its last Sync() made durable) and a recording
// transport that checks every message as it leaves:
//   - a granted vote leaves only once the voter's term and vote are synced;
//   - an append acknowledgement leaves only once the entries it acknowledges are synced;
//   - no message (pre-vote traffic aside) names a term the sender has not synced;
//   - no node's commit index ever runs ahead of what a quorum has synced, in particular while
//     the leader's own fsync is still running and a follower's acknowledgement arrives (the
//     leader counts its own entries only after its sync, at Advance).
// Moving the second send ahead of the persist step, or Advance ahead of it, fails these tests.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "server/replication/raft_loop.h"

namespace raftkv::server {
namespace {

using raft::Raft;
using raft::Ready;
using raftpb::Message;

// The WAL's twin for these tests: every call goes to a MemoryStorage; Sync() also records
// what is durable from then on, and first runs `during_sync` (the fsync is "in progress":
// the test may deliver other nodes' messages then, as they run in parallel in a cluster).
class RecordingLog final : public raft::LogStorage {
 public:
  RecordingLog(uint64_t id, std::vector<std::string>* trace) : id_(id), trace_(trace) {}

  raftpb::HardState hard_state() const override { return mem_.hard_state(); }
  raftpb::SnapshotMetadata snapshot_metadata() const override { return mem_.snapshot_metadata(); }
  uint64_t FirstIndex() const override { return mem_.FirstIndex(); }
  uint64_t LastIndex() const override { return mem_.LastIndex(); }
  absl::StatusOr<uint64_t> Term(uint64_t index) const override { return mem_.Term(index); }
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                    uint64_t max_bytes) const override {
    return mem_.Entries(lo, hi, max_bytes);
  }

  absl::Status Append(const std::vector<raftpb::Entry>& entries) override {
    if (!entries.empty()) {
      Trace(absl::StrCat("append [", entries.front().index(), ",", entries.back().index(), "]"));
    }
    return mem_.Append(entries);
  }
  absl::Status SetHardState(const raftpb::HardState& hs) override {
    Trace(absl::StrCat("hard state term ", hs.term(), " vote ", hs.vote(), " commit ",
                       hs.commit()));
    return mem_.SetHardState(hs);
  }
  absl::Status Sync() override {
    if (during_sync) during_sync();
    absl::Status s = mem_.Sync();
    if (s.ok()) RecordDurable();
    ++syncs_;
    Trace("sync");
    return s;
  }
  absl::Status Compact(uint64_t index) override { return mem_.Compact(index); }
  absl::Status ApplySnapshot(const raftpb::SnapshotMetadata& meta) override {
    absl::Status s = mem_.ApplySnapshot(meta);  // durable on return
    if (s.ok()) RecordDurable();
    return s;
  }

  // ---- What a crash would leave (as of the last Sync) ----
  const raftpb::HardState& durable_hard_state() const { return durable_hs_; }
  // The term of entry `index` in the durable log, 0 if it holds no such entry.
  uint64_t DurableTerm(uint64_t index) const {
    auto it = durable_terms_.find(index);
    return it == durable_terms_.end() ? 0 : it->second;
  }

  size_t syncs() const { return syncs_; }  // Sync() calls so far

  // Runs at the start of every Sync(), before anything it covers is durable.
  std::function<void()> during_sync;

 private:
  void RecordDurable() {
    durable_hs_ = mem_.hard_state();
    durable_terms_.clear();
    for (uint64_t i = mem_.FirstIndex() - 1; i <= mem_.LastIndex(); ++i) {
      if (absl::StatusOr<uint64_t> t = mem_.Term(i); t.ok() && i > 0) durable_terms_[i] = *t;
    }
  }
  void Trace(const std::string& what) { trace_->push_back(absl::StrCat("n", id_, " ", what)); }

  const uint64_t id_;
  std::vector<std::string>* const trace_;
  raft::MemoryStorage mem_;
  raftpb::HardState durable_hs_;
  std::map<uint64_t, uint64_t> durable_terms_;
  size_t syncs_ = 0;
};

std::string Describe(const Message& m) {
  return absl::StrCat(raftpb::MessageType_Name(m.type()), " ", m.from(), "->", m.to(),
                      " term ", m.term(), " index ", m.index(), m.reject() ? " reject" : "");
}

// n cores, each driven through the loop's seam with a RecordingLog; the network is one queue
// the test delivers from. Every broken promise is collected in violations().
class LoopCluster {
 public:
  explicit LoopCluster(int n) {
    for (int i = 1; i <= n; ++i) {
      Node node;
      node.log = std::make_unique<RecordingLog>(i, &trace_);
      raft::Config c;
      c.id = i;
      for (int p = 1; p <= n; ++p) c.peers.push_back(p);
      c.seed = 7;
      c.check_invariants = true;
      absl::StatusOr<std::unique_ptr<Raft>> core = Raft::Create(c, node.log.get());
      EXPECT_TRUE(core.ok()) << core.status();
      node.core = *std::move(core);
      nodes_.push_back(std::move(node));
    }
  }

  Raft& core(uint64_t id) { return *nodes_.at(id - 1).core; }
  RecordingLog& log(uint64_t id) { return *nodes_.at(id - 1).log; }
  const std::vector<std::string>& violations() const { return violations_; }
  // Every broken promise, then the trace: what a failing test prints.
  std::string Report() const {
    std::string out = absl::StrCat(violations_.size(), " broken promises:\n");
    for (const std::string& v : violations_) absl::StrAppend(&out, "  ", v, "\n");
    return absl::StrCat(out, "trace:\n", Trace());
  }
  // Storage calls and sends of every node, in order (for failure messages).
  std::string Trace() const {
    std::string out;
    for (const std::string& t : trace_) absl::StrAppend(&out, "  ", t, "\n");
    return out;
  }
  // Removes and returns the undelivered messages `pick` selects.
  std::deque<Message> Take(const std::function<bool(const Message&)>& pick) {
    std::deque<Message> taken;
    std::deque<Message> rest;
    for (Message& m : net_) (pick(m) ? taken : rest).push_back(std::move(m));
    net_.swap(rest);
    return taken;
  }
  size_t Count(raftpb::MessageType type, bool reject) const {
    size_t n = 0;
    for (const Message& m : sent_) n += m.type() == type && m.reject() == reject;
    return n;
  }

  // Handles every Ready of `id` exactly as the raft loop does.
  void Process(uint64_t id) {
    Raft& c = core(id);
    while (c.HasReady()) {
      ProcessReadyInOrder(
          c, [&](std::vector<Message> msgs) { Send(id, std::move(msgs)); },
          [&](const Ready& rd) { PersistReady(rd, log(id)); },
          [&](const Ready&) {});
      CheckCommits();
    }
  }
  void ProcessAll() {
    for (size_t i = 1; i <= nodes_.size(); ++i) Process(i);
  }

  // Steps `m` into its recipient's core (then the commit check).
  void Deliver(const Message& m) {
    core(m.to()).Step(m);
    CheckCommits();
  }
  // Delivers everything queued (dropping what `drop` selects), processing Readies, until the
  // network is quiet.
  void Stabilize(const std::function<bool(const Message&)>& drop = {}) {
    for (int round = 0; round < 1000; ++round) {
      ProcessAll();
      if (net_.empty()) return;
      std::deque<Message> batch;
      batch.swap(net_);
      for (const Message& m : batch) {
        if (!drop || !drop(m)) Deliver(m);
      }
    }
    ADD_FAILURE() << "no quiet network after 1000 rounds";
  }
  // Ticks `id` until it campaigns, then stabilizes; returns whether `id` leads.
  bool Elect(uint64_t id) {
    for (int i = 0; i < 100 && core(id).role() == raft::Role::kFollower; ++i) {
      core(id).Tick();
      Process(id);
    }
    Stabilize();
    return core(id).role() == raft::Role::kLeader;
  }

  // Checks the promise each message makes about the sender's disk, as it leaves.
  void Send(uint64_t from, std::vector<Message> msgs) {
    const RecordingLog& l = log(from);
    const raftpb::HardState& hs = l.durable_hard_state();
    for (Message& m : msgs) {
      trace_.push_back(absl::StrCat("n", from, " send ", Describe(m)));
      const bool pre_vote = m.type() == raftpb::MSG_PRE_VOTE ||
                            m.type() == raftpb::MSG_PRE_VOTE_RESP ||
                            m.type() == raftpb::MSG_STATE_PROBE ||
                            m.type() == raftpb::MSG_STATE_PROBE_RESP;
      if (!pre_vote && m.term() > hs.term()) {
        Violation(m, absl::StrCat("names term ", m.term(), " but the sender's synced term is ",
                                  hs.term()));
      }
      if (m.type() == raftpb::MSG_VOTE_RESP && !m.reject() &&
          (hs.term() != m.term() || hs.vote() != m.to())) {
        Violation(m, absl::StrCat("grants a vote the sender has not synced (synced term ",
                                  hs.term(), ", vote ", hs.vote(), ")"));
      }
      if (m.type() == raftpb::MSG_APP_RESP && !m.reject() && m.index() > 0) {
        absl::StatusOr<uint64_t> term = core(from).log().Term(m.index());
        const uint64_t synced = l.DurableTerm(m.index());
        if (!term.ok() || synced != *term) {
          Violation(m, absl::StrCat("acknowledges entry ", m.index(),
                                    " which the sender has not synced (synced term there: ",
                                    synced, ")"));
        }
      }
      sent_.push_back(m);
      net_.push_back(std::move(m));
    }
  }

  // No commit index runs ahead of what a quorum has synced (with the committing node's
  // term at that index).
  void CheckCommits() {
    for (size_t id = 1; id <= nodes_.size(); ++id) {
      const uint64_t commit = core(id).log().committed();
      if (commit == 0) continue;
      absl::StatusOr<uint64_t> term = core(id).log().Term(commit);
      if (!term.ok()) continue;  // compacted: covered by a snapshot
      size_t synced = 0;
      for (size_t j = 1; j <= nodes_.size(); ++j) synced += log(j).DurableTerm(commit) == *term;
      if (synced <= nodes_.size() / 2) {
        violations_.push_back(absl::StrCat("n", id, " has commit index ", commit, " (term ",
                                           *term, ") synced on only ", synced, " of ",
                                           nodes_.size(), " nodes"));
      }
    }
  }

 private:
  struct Node {
    std::unique_ptr<RecordingLog> log;
    std::unique_ptr<Raft> core;
  };
  void Violation(const Message& m, const std::string& why) {
    violations_.push_back(absl::StrCat(Describe(m), " ", why));
  }

  std::vector<Node> nodes_;
  std::vector<std::string> trace_;
  std::deque<Message> net_;
  std::vector<Message> sent_;
  std::vector<std::string> violations_;
};

TEST(ReadyOrderTest, VotesLeaveOnlyAfterTermAndVoteAreSynced) {
  LoopCluster c(3);
  ASSERT_TRUE(c.Elect(1)) << c.Trace();
  // Not vacuous: two granted votes were checked as they left.
  EXPECT_EQ(c.Count(raftpb::MSG_VOTE_RESP, /*reject=*/false), 2u) << c.Trace();
  EXPECT_TRUE(c.violations().empty()) << c.Report();

  // A second election in a new term, with node 1 cut off: node 2 or 3 takes over.
  const uint64_t first_term = c.core(1).term();
  auto cut_off_1 = [](const Message& m) { return m.from() == 1 || m.to() == 1; };
  auto new_leader = [&] {
    return c.core(2).role() == raft::Role::kLeader || c.core(3).role() == raft::Role::kLeader;
  };
  for (int i = 0; i < 100 && !new_leader(); ++i) {
    c.core(2).Tick();
    c.core(3).Tick();
    c.Stabilize(cut_off_1);
  }
  ASSERT_TRUE(new_leader()) << c.Trace();
  EXPECT_GT(c.core(2).term(), first_term);
  c.Stabilize();
  EXPECT_GE(c.Count(raftpb::MSG_VOTE_RESP, false), 3u) << c.Trace();
  EXPECT_TRUE(c.violations().empty()) << c.Report();
}

TEST(ReadyOrderTest, AppendAcksLeaveOnlyAfterEntriesAreSynced) {
  LoopCluster c(3);
  ASSERT_TRUE(c.Elect(1)) << c.Trace();
  const size_t acks_before = c.Count(raftpb::MSG_APP_RESP, false);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.core(1).Propose(absl::StrCat("w", i)).ok());
    c.Stabilize();
  }
  const uint64_t last = c.core(1).log().LastIndex();
  EXPECT_EQ(c.core(1).log().committed(), last) << c.Trace();
  EXPECT_EQ(c.core(2).log().committed(), last) << c.Trace();
  // Not vacuous: each proposal was acknowledged by both followers, each ack checked.
  EXPECT_GE(c.Count(raftpb::MSG_APP_RESP, false) - acks_before, 6u) << c.Trace();
  EXPECT_TRUE(c.violations().empty()) << c.Report();
}

// The leader sends its entries before its own fsync (messages_before_persist). A follower's
// acknowledgement that arrives while that fsync runs must not commit them: with the leader
// counted, one follower would make a quorum of entries that only that follower has synced.
TEST(ReadyOrderTest, LeaderCountsItsOwnEntriesOnlyAfterItsSync) {
  LoopCluster c(3);
  ASSERT_TRUE(c.Elect(1)) << c.Trace();
  const uint64_t commit_before = c.core(1).log().committed();

  bool delivered = false;
  c.log(1).during_sync = [&] {
    if (delivered) return;
    delivered = true;
    // Node 2 gets the leader's MsgApp (sent before the persist step), syncs, answers; its
    // answer reaches the leader while the leader's own fsync is still running.
    std::deque<Message> to_2 = c.Take([](const Message& m) { return m.to() == 2; });
    EXPECT_FALSE(to_2.empty()) << "the leader's MsgApp did not leave before its sync";
    for (const Message& m : to_2) c.Deliver(m);
    c.Process(2);
    std::deque<Message> answers =
        c.Take([](const Message& m) { return m.from() == 2 && m.to() == 1; });
    EXPECT_FALSE(answers.empty()) << "node 2 did not answer";
    for (const Message& m : answers) c.Deliver(m);
    EXPECT_EQ(c.core(1).log().committed(), commit_before)
        << "the leader committed before its own sync";
  };
  ASSERT_TRUE(c.core(1).Propose("x").ok());
  c.Process(1);
  c.log(1).during_sync = nullptr;
  EXPECT_TRUE(delivered);
  c.Stabilize();
  // After its sync the leader counts itself: the entry commits.
  EXPECT_EQ(c.core(1).log().committed(), c.core(1).log().LastIndex()) << c.Trace();
  EXPECT_TRUE(c.violations().empty()) << c.Report();
}

// One node: nobody else holds the entry, so it may commit only once its own sync is done.
TEST(ReadyOrderTest, SingleNodeCommitsOnlyWhatItSynced) {
  LoopCluster c(1);
  ASSERT_TRUE(c.Elect(1)) << c.Trace();
  size_t syncs_checked = 0;
  c.log(1).during_sync = [&] {
    ++syncs_checked;
    c.CheckCommits();
  };
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.core(1).Propose(absl::StrCat("w", i)).ok());
    c.Stabilize();
  }
  EXPECT_GE(syncs_checked, 3u);
  EXPECT_EQ(c.core(1).log().committed(), c.core(1).log().LastIndex());
  EXPECT_TRUE(c.violations().empty()) << c.Report();
}

// One write costs each node one fsync, for the entry: the commit index that follows it
// (the leader's, and each follower's when the next append or heartbeat tells it) changes only
// the commit part of the hard state, which the core leaves out of must_sync. It is written
// with the next sync and may be lost in a crash (start-up copes: recovery.h, OpenLog).
TEST(ReadyOrderTest, AWriteCostsEachNodeOneSyncNotOneMoreForTheCommit) {
  LoopCluster c(3);
  ASSERT_TRUE(c.Elect(1)) << c.Trace();
  for (int i = 0; i < 3; ++i) {
    size_t before[4];
    for (uint64_t id = 1; id <= 3; ++id) before[id] = c.log(id).syncs();
    ASSERT_TRUE(c.core(1).Propose(absl::StrCat("w", i)).ok());
    c.Stabilize();
    for (uint64_t id = 1; id <= 3; ++id) {
      EXPECT_EQ(c.core(id).log().committed(), c.core(1).log().LastIndex()) << c.Trace();
      EXPECT_EQ(c.log(id).syncs() - before[id], 1u) << "node " << id << ", write " << i
                                                    << "\n" << c.Trace();
    }
  }
  EXPECT_TRUE(c.violations().empty()) << c.Report();
}

}  // namespace
}  // namespace raftkv::server
