// RaftLoop (replication/raft_loop.h) as a component, on a real data dir: the pending-writes
// limit, a committed entry whose command does not parse, a read barrier failed at once by a
// term change, a deposed leader's writes answered at once, a start with the store past the
// log's durable commit, and the compaction bound. The test plays the other nodes where there are any
// (tests/server/install_crash_scenario.h).
#include <future>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "eventually.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "install_crash_scenario.h"
#include "kv/temp_dir.h"
#include "server/data_dir.h"
#include "raft/wal/wal_storage.h"
#include "server/replication/raft_loop.h"

namespace raftkv::server {
namespace {

using ::testing::HasSubstr;
using kv::testing::TempDir;
using testing::Eventually;
using testing::PutCommand;
using testing::WaitableStateMachine;

std::unique_ptr<WaitableStateMachine> OpenStore(const DataDir& dir) {
  kv::StateMachineOptions o;
  o.db_path = dir.db();
  auto sm = kv::StateMachine::Open(o);
  EXPECT_TRUE(sm.ok()) << sm.status();
  return std::make_unique<WaitableStateMachine>(*std::move(sm));
}

// A write whose answer the test can wait for.
struct PendingWrite {
  std::promise<absl::Status> promise;
  std::future<absl::Status> answer = promise.get_future();
  Replicator::WriteDone Done() {
    return [this](absl::StatusOr<kv::ApplyResult> r) { promise.set_value(r.status()); };
  }
  bool Answered() { return answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }
};

// --max-pending-writes: with that many writes in the loop (held there: the loop is stuck
// applying the first of them), the next is refused at once as not applied; once they are
// answered, the slots are free again.
TEST(RaftLoopTest, WritesPastMaxPendingWritesAreRefusedAtOnceAndSlotsComeBack) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  std::unique_ptr<WaitableStateMachine> sm = OpenStore(dir);
  RaftLoopOptions options;
  options.cluster = {NodeAddress{"127.0.0.1", 1, 1}};
  options.tick_ms = 10;
  options.max_pending_writes = 3;
  auto loop = RaftLoop::Start(sm.get(), dir, options);
  ASSERT_TRUE(loop.ok()) << loop.status();
  auto write = [&](const std::string& key) {
    PendingWrite w;
    (*loop)->Write(PutCommand(key, "v"), w.Done());
    return w.answer.get();
  };
  ASSERT_TRUE(Eventually([&] { return write("first").ok(); })) << "no leader";

  sm->BlockApplyOf("hold");
  PendingWrite held[3];
  PendingWrite over;
  // On every exit (a failed assertion too): let the loop go and stop it, so that it answers
  // every write while they still exist.
  struct Release {
    WaitableStateMachine* sm;
    RaftLoop* loop;
    ~Release() {
      sm->Unblock();
      loop->Stop();
    }
  } release{sm.get(), loop->get()};
  (*loop)->Write(PutCommand("hold", "v"), held[0].Done());
  ASSERT_TRUE(sm->WaitBlocked(absl::Seconds(30))) << "the loop never applied the held write";
  (*loop)->Write(PutCommand("a", "v"), held[1].Done());
  (*loop)->Write(PutCommand("b", "v"), held[2].Done());
  (*loop)->Write(PutCommand("c", "v"), over.Done());
  ASSERT_EQ(over.answer.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "the write over the limit waited for the loop";
  const absl::Status refused = over.answer.get();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("--max-pending-writes"));
  EXPECT_THAT(refused.message(), HasSubstr("not applied"));
  for (PendingWrite& w : held) EXPECT_FALSE(w.Answered());

  sm->Unblock();
  for (PendingWrite& w : held) EXPECT_TRUE(w.answer.get().ok());
  EXPECT_TRUE(write("after").ok()) << "the slots of answered writes were not given back";
  auto c = sm->Get("c");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value()) << "the refused write was applied";
}

class FollowerLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sm_ = OpenStore(dir_);
    RaftLoopOptions options = testing::FollowerLoopOptions(dir_.root());
    options.request_timeout_ms = 30'000;  // so only the term change can end a read early
    // A member of a new cluster (an empty data dir otherwise waits to hear from its peers
    // before it takes part: raft/rejoin.cc).
    options.empty_start = raft::Config::EmptyStart::kNewCluster;
    auto loop = RaftLoop::Start(sm_.get(), dir_, options);
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
  }
  void TearDown() override {
    if (loop_) loop_->Stop();
  }

  // The leader's AppendEntries of `entries` after index `prev` (of term `prev_term`),
  // committing them all.
  raftpb::Message Append(uint64_t prev, uint64_t prev_term, uint64_t term,
                         std::vector<raftpb::Entry> entries) {
    raftpb::Message m;
    m.set_type(raftpb::MSG_APP);
    m.set_from(testing::kLeaderRaftId);
    m.set_to(testing::kFollowerRaftId);
    m.set_term(term);
    m.set_index(prev);
    m.set_log_term(prev_term);
    for (raftpb::Entry& e : entries) *m.add_entries() = std::move(e);
    m.set_commit(prev + m.entries_size());
    return m;
  }

  TempDir tmp_;
  DataDir dir_{tmp_.Sub("data")};
  std::unique_ptr<WaitableStateMachine> sm_;
  std::unique_ptr<RaftLoop> loop_;
};

// A committed entry whose bytes are not a command (no node can parse it: every node applies
// the same bytes) is recorded as applied without a change, and the entries after it apply.
// Stopping there would stall every node at that index forever.
TEST_F(FollowerLoopTest, ACommittedEntryThatIsNotACommandIsSkippedAndTheNextApplies) {
  raftpb::Entry bad;
  bad.set_index(1);
  bad.set_term(1);
  bad.set_data(std::string("\x0a\xff\x01", 3));  // a length-delimited field longer than the data
  ASSERT_FALSE(kvpb::Command().ParseFromString(bad.data()));
  loop_->Deliver(Append(0, 0, 1, {bad}));
  ASSERT_TRUE(sm_->WaitApplied(1, absl::Seconds(30))) << "the malformed entry stalled the store";
  loop_->Deliver(Append(1, 1, 1, {testing::PutEntry(2, 1, "k", "v")}));
  ASSERT_TRUE(sm_->WaitApplied(2, absl::Seconds(30)));
  auto got = sm_->Get("k");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v");
}

// A read barrier waits for the leader to confirm a read index. When the term changes first,
// that confirmation may never come (the leader it asked is deposed): the read fails at once
// as not applied, so the client retries, rather than waiting out its deadline.
TEST_F(FollowerLoopTest, AReadWaitingForItsIndexFailsAtOnceWhenTheTermChanges) {
  loop_->Deliver(Append(0, 0, 1, {testing::PutEntry(1, 1, "k", "v")}));
  ASSERT_TRUE(sm_->WaitApplied(1, absl::Seconds(30)));
  // Asked of leader 1, whose answer never comes (its address is a closed port).
  std::promise<absl::Status> read;
  loop_->ReadBarrier([&](absl::Status s) { read.set_value(s); });
  std::future<absl::Status> answer = read.get_future();
  // Node 3 leads term 2 now: its heartbeat tells the follower.
  raftpb::Message hb;
  hb.set_type(raftpb::MSG_HEARTBEAT);
  hb.set_from(3);
  hb.set_to(testing::kFollowerRaftId);
  hb.set_term(2);
  hb.set_commit(1);
  loop_->Deliver(hb);
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  const absl::Status s = answer.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

// A leader with a write in flight loses its leadership (a newer leader's heartbeat): the
// write is answered at once as outcome unknown ("leadership changed"), not at its deadline,
// which only a term-stamped write of this node's old leadership could otherwise reach.
TEST(RaftLoopLeadershipTest, AWriteOfADeposedLeaderIsAnsweredAtOnceAsOutcomeUnknown) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  std::unique_ptr<WaitableStateMachine> sm = OpenStore(dir);
  RaftLoopOptions options = testing::FollowerLoopOptions(dir.root());
  options.tick_ms = 10;                 // node 1 campaigns within a few hundred ms
  options.request_timeout_ms = 60'000;  // so only the step-down can answer the write soon
  options.empty_start = raft::Config::EmptyStart::kNewCluster;  // may campaign at once
  auto started = RaftLoop::Start(sm.get(), dir, options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<RaftLoop> loop = *std::move(started);
  // Node 1 (raft id 1) grants the pre-vote and then the vote node 2 asks for, as often as it
  // takes to find node 2 campaigning (a grant of the wrong kind or term is ignored).
  auto grant = [&](raftpb::MessageType type, uint64_t term) {
    raftpb::Message m;
    m.set_type(type);
    m.set_from(testing::kLeaderRaftId);
    m.set_to(testing::kFollowerRaftId);
    m.set_term(term);
    loop->Deliver(m);
  };
  ASSERT_TRUE(Eventually([&] {
    const NodeStatus st = loop->Status();
    if (st.role == "pre-candidate") grant(raftpb::MSG_PRE_VOTE_RESP, st.term + 1);
    if (st.role == "candidate") grant(raftpb::MSG_VOTE_RESP, st.term);
    return st.role == "leader";
  }, absl::Seconds(30))) << "node 2 never won the election";
  PendingWrite w;
  loop->Write(PutCommand("k", "v"), w.Done());
  // Node 3 leads term 5 (CheckQuorum would depose node 2 soon anyway: nobody acks it).
  raftpb::Message hb;
  hb.set_type(raftpb::MSG_HEARTBEAT);
  hb.set_from(3);
  hb.set_to(testing::kFollowerRaftId);
  hb.set_term(5);
  loop->Deliver(hb);
  ASSERT_EQ(w.answer.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "the write of the deposed leader waits for its deadline";
  const absl::Status s = w.answer.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("leadership changed"));
  loop->Stop();
}

// The loop does not sync a hard state whose only change is the commit index (raft_loop.h,
// PersistReady), so a crash can leave a store that applied entries past the log's durable
// commit index. Such a node starts (the log still holds those entries; start-up raises the
// commit to the store's applied index) and serves writes and reads.
TEST(RaftLoopRecoveryTest, ANodeWhoseStoreIsPastItsDurableCommitStartsAndServes) {
  TempDir tmp;
  DataDir dir(tmp.Sub("data"));
  std::unique_ptr<WaitableStateMachine> sm = OpenStore(dir);
  RaftLoopOptions options;
  options.cluster = {NodeAddress{"127.0.0.1", 1, 1}};
  options.tick_ms = 10;
  auto write = [&](RaftLoop& loop, const std::string& key) {
    PendingWrite w;
    loop.Write(PutCommand(key, "v"), w.Done());
    return w.answer.get();
  };
  {
    auto loop = RaftLoop::Start(sm.get(), dir, options);
    ASSERT_TRUE(loop.ok()) << loop.status();
    ASSERT_TRUE(Eventually([&] { return write(**loop, "a").ok(); })) << "no leader";
    ASSERT_TRUE(write(**loop, "b").ok());
    ASSERT_TRUE(write(**loop, "c").ok());
    (*loop)->Stop();
  }
  // What a crash before the commit reached the disk leaves: the log's commit index behind.
  const uint64_t applied = sm->applied_index();
  ASSERT_GE(applied, 3u);
  {
    auto wal = raft::wal::WalStorage::Open(dir.wal(), raft::wal::WalOptions{});
    ASSERT_TRUE(wal.ok()) << wal.status();
    ASSERT_EQ((*wal)->LastIndex(), applied);
    raftpb::HardState hs = (*wal)->hard_state();
    hs.set_commit(applied - 2);
    ASSERT_TRUE((*wal)->SetHardState(hs).ok());
    ASSERT_TRUE((*wal)->Sync().ok());
  }
  auto loop = RaftLoop::Start(sm.get(), dir, options);
  ASSERT_TRUE(loop.ok()) << loop.status();
  ASSERT_TRUE(Eventually([&] { return write(**loop, "d").ok(); })) << "the node never served";
  for (const char* key : {"a", "b", "c", "d"}) {
    auto got = sm->Get(key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->has_value()) << key;
  }
  EXPECT_GT(sm->applied_index(), applied);
  (*loop)->Stop();
}

// The log is compacted up to the lowest of what it must keep for: the snapshot (the oldest
// thing a follower can be sent), what RocksDB has flushed (a crash loses the rest of the
// store) and the backup (which follows the log), less the retained tail.
TEST(CompactionBoundTest, TheLowestOfSnapshotFlushedAndBackupLessTheTail) {
  EXPECT_EQ(CompactionBound(100, 200, 300, 10), 90u);
  EXPECT_EQ(CompactionBound(300, 100, 200, 10), 90u);
  EXPECT_EQ(CompactionBound(200, 300, 100, 10), 90u) << "compacted past the backup";
  EXPECT_EQ(CompactionBound(100, 100, 100, 0), 100u);
  // Nothing to compact while the bound is within the tail.
  EXPECT_EQ(CompactionBound(100, 100, 5, 10), 0u);
  EXPECT_EQ(CompactionBound(100, 100, 10, 10), 0u);
}

}  // namespace
}  // namespace raftkv::server
