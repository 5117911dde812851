// Apply semantics: revisions, versions and create revisions as etcd; multi-op commands;
// replay; sessions; ApplyEmpty.
#include <string>

#include "gmock/gmock.h"
#include "kv/rocksdb_state_machine.h"
#include "kv/state_machine_test.h"

namespace raftkv::kv::testing {
namespace {

using ::testing::ElementsAre;

TEST_F(StateMachineTest, FreshStoreStartsAtRevisionOne) {
  EXPECT_EQ(sm_->applied_index(), 0u);
  EXPECT_EQ(sm_->applied_term(), 0u);
  EXPECT_EQ(sm_->revision(), 1);
  EXPECT_EQ(MustGet("a"), std::nullopt);
  RangeResult r = MustRange("\0", std::string_view("\0", 1));
  EXPECT_EQ(r.count, 0);
  EXPECT_EQ(r.revision, 1);
}

TEST_F(StateMachineTest, PutGetDelete) {
  ApplyResult put = Next(PutCmd("a", "1"), /*term=*/3);
  EXPECT_FALSE(put.duplicate);
  EXPECT_EQ(put.revision, 2);
  ASSERT_EQ(put.ops.size(), 1u);
  EXPECT_EQ(put.ops[0].prev, std::nullopt);
  EXPECT_EQ(sm_->applied_index(), 1u);
  EXPECT_EQ(sm_->applied_term(), 3u);
  EXPECT_EQ(sm_->revision(), 2);

  std::optional<KeyValue> a = MustGet("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->key, "a");
  EXPECT_EQ(a->value, "1");
  EXPECT_EQ(a->create_revision, 2);
  EXPECT_EQ(a->mod_revision, 2);
  EXPECT_EQ(a->version, 1);

  ApplyResult del = Next(DeleteCmd("a"), /*term=*/3);
  EXPECT_EQ(del.revision, 3);
  ASSERT_EQ(del.ops.size(), 1u);
  EXPECT_EQ(del.ops[0].deleted, 1);
  ASSERT_TRUE(del.ops[0].prev.has_value());
  EXPECT_EQ(del.ops[0].prev->value, "1");
  EXPECT_EQ(MustGet("a"), std::nullopt);
  EXPECT_EQ(sm_->applied_index(), 2u);
}

TEST_F(StateMachineTest, PutTwiceKeepsCreateRevisionAndBumpsVersion) {
  Next(PutCmd("k", "v1"));                    // revision 2
  Next(PutCmd("other", "x"));                 // revision 3
  ApplyResult second = Next(PutCmd("k", "v2"));  // revision 4
  EXPECT_EQ(second.revision, 4);
  ASSERT_TRUE(second.ops[0].prev.has_value());
  EXPECT_EQ(second.ops[0].prev->value, "v1");
  EXPECT_EQ(second.ops[0].prev->version, 1);
  EXPECT_EQ(second.ops[0].prev->mod_revision, 2);

  std::optional<KeyValue> k = MustGet("k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->value, "v2");
  EXPECT_EQ(k->create_revision, 2);
  EXPECT_EQ(k->mod_revision, 4);
  EXPECT_EQ(k->version, 2);
}

TEST_F(StateMachineTest, DeleteThenPutStartsANewGeneration) {
  Next(PutCmd("k", "v1"));  // 2
  Next(PutCmd("k", "v2"));  // 3
  Next(DeleteCmd("k"));     // 4
  Next(PutCmd("k", "v3"));  // 5
  std::optional<KeyValue> k = MustGet("k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->version, 1);
  EXPECT_EQ(k->create_revision, 5);
  EXPECT_EQ(k->mod_revision, 5);
}

TEST_F(StateMachineTest, DeleteOfMissingKeyDoesNotBumpRevision) {
  Next(PutCmd("a", "1"));  // 2
  ApplyResult r = Next(DeleteCmd("missing"));
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(r.ops[0].deleted, 0);
  EXPECT_EQ(r.ops[0].prev, std::nullopt);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(sm_->applied_index(), 2u);  // the entry is still applied
  ApplyResult range = Next(DeleteCmd("x", "z"));
  EXPECT_EQ(range.revision, 2);
  EXPECT_EQ(range.ops[0].deleted, 0);
  // A command with no ops changes nothing either.
  EXPECT_EQ(Next(Cmd()).revision, 2);
  // An Op with neither field set does nothing.
  kvpb::Command empty_op;
  empty_op.add_ops();
  ApplyResult e = Next(empty_op);
  EXPECT_EQ(e.revision, 2);
  ASSERT_EQ(e.ops.size(), 1u);
  EXPECT_EQ(e.ops[0].deleted, 0);
  EXPECT_EQ(sm_->applied_index(), 5u);
}

TEST_F(StateMachineTest, DeleteRangeFollowsEtcdRules) {
  for (const char* k : {"a", "b", "c", "d", "e"}) Next(PutCmd(k, "v"));  // revisions 2..6
  ApplyResult r = Next(DeleteCmd("b", "d"));  // [b, d)
  EXPECT_EQ(r.ops[0].deleted, 2);
  EXPECT_EQ(r.ops[0].prev, std::nullopt);  // prev only for single-key deletes
  EXPECT_EQ(r.revision, 7);
  EXPECT_THAT(Keys(MustRange("a", std::string_view("\0", 1))), ElementsAre("a", "d", "e"));

  // range_end <= key: empty range.
  ApplyResult empty = Next(DeleteCmd("e", "a"));
  EXPECT_EQ(empty.ops[0].deleted, 0);
  EXPECT_EQ(empty.revision, 7);

  // range_end "\0": every key >= key.
  ApplyResult to_end = Next(DeleteCmd("d", std::string(1, '\0')));
  EXPECT_EQ(to_end.ops[0].deleted, 2);
  EXPECT_EQ(to_end.revision, 8);
  EXPECT_THAT(Keys(MustRange("\0", std::string_view("\0", 1))), ElementsAre("a"));
}

TEST_F(StateMachineTest, OpsOfOneEntryShareOneRevision) {
  kvpb::Command cmd;
  AddPut(cmd, "a", "1");
  AddPut(cmd, "b", "2");
  AddPut(cmd, "c", "3");
  ApplyResult r = Next(cmd);
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(r.ops.size(), 3u);
  RangeResult all = MustRange("a", "z");
  ASSERT_EQ(all.kvs.size(), 3u);
  for (const KeyValue& kv : all.kvs) {
    EXPECT_EQ(kv.mod_revision, 2) << kv.key;
    EXPECT_EQ(kv.create_revision, 2) << kv.key;
  }
}

TEST_F(StateMachineTest, PutThenDeleteOfSameKeyInOneEntry) {
  kvpb::Command cmd;
  AddPut(cmd, "k", "v");
  AddDelete(cmd, "k");
  ApplyResult r = Next(cmd);
  // The delete sees the put: the key ends absent, but the entry changed something.
  ASSERT_EQ(r.ops.size(), 2u);
  EXPECT_EQ(r.ops[0].prev, std::nullopt);
  EXPECT_EQ(r.ops[1].deleted, 1);
  ASSERT_TRUE(r.ops[1].prev.has_value());
  EXPECT_EQ(r.ops[1].prev->value, "v");
  EXPECT_EQ(r.ops[1].prev->mod_revision, 2);
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(MustGet("k"), std::nullopt);
  Reopen();
  EXPECT_EQ(MustGet("k"), std::nullopt);
}

TEST_F(StateMachineTest, DeleteThenPutOfSameKeyInOneEntry) {
  Next(PutCmd("k", "old"));  // 2
  Next(PutCmd("k", "old2"));  // 3, version 2
  kvpb::Command cmd;
  AddDelete(cmd, "k");
  AddPut(cmd, "k", "new");
  ApplyResult r = Next(cmd);
  EXPECT_EQ(r.revision, 4);
  EXPECT_EQ(r.ops[0].deleted, 1);
  EXPECT_EQ(r.ops[1].prev, std::nullopt);  // the put saw the key deleted
  std::optional<KeyValue> k = MustGet("k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->value, "new");
  EXPECT_EQ(k->version, 1);
  EXPECT_EQ(k->create_revision, 4);
  EXPECT_EQ(k->mod_revision, 4);
}

TEST_F(StateMachineTest, PutTwiceInOneEntryCountsTwoVersions) {
  kvpb::Command cmd;
  AddPut(cmd, "k", "1");
  AddPut(cmd, "k", "2");
  ApplyResult r = Next(cmd);
  ASSERT_TRUE(r.ops[1].prev.has_value());
  EXPECT_EQ(r.ops[1].prev->value, "1");
  std::optional<KeyValue> k = MustGet("k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->value, "2");
  EXPECT_EQ(k->version, 2);
  EXPECT_EQ(k->create_revision, 2);
  EXPECT_EQ(k->mod_revision, 2);
}

TEST_F(StateMachineTest, RangeDeleteSeesPutsOfTheSameEntry) {
  Next(PutCmd("a1", "x"));  // 2
  Next(PutCmd("a3", "x"));  // 3
  kvpb::Command cmd;
  AddPut(cmd, "a2", "new");        // only in this entry so far
  AddDelete(cmd, "a3");            // deleted before the range delete: not counted again
  AddDelete(cmd, "a", "b");        // deletes a1 (stored) and a2 (this entry)
  AddPut(cmd, "a4", "after");      // after the range delete: survives
  ApplyResult r = Next(cmd);
  EXPECT_EQ(r.ops[1].deleted, 1);
  EXPECT_EQ(r.ops[2].deleted, 2);
  EXPECT_EQ(r.revision, 4);
  RangeResult all = MustRange("a", "b");
  EXPECT_THAT(Keys(all), ElementsAre("a4"));
  EXPECT_EQ(all.kvs[0].create_revision, 4);
}

TEST_F(StateMachineTest, ReplayAtOrBelowAppliedIndexIsANoOp) {
  Next(PutCmd("a", "1"));  // index 1, revision 2
  Next(PutCmd("b", "2"));  // index 2, revision 3
  for (uint64_t index : {1u, 2u}) {
    absl::StatusOr<ApplyResult> r = sm_->Apply(index, 1, PutCmd("a", "replayed"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->duplicate);
    EXPECT_TRUE(r->ops.empty());
    EXPECT_EQ(r->revision, 3);
  }
  ASSERT_TRUE(sm_->ApplyEmpty(2, 1).ok());
  EXPECT_EQ(sm_->applied_index(), 2u);
  EXPECT_EQ(sm_->revision(), 3);
  std::optional<KeyValue> a = MustGet("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->value, "1");
  EXPECT_EQ(a->version, 1);
}

TEST_F(StateMachineTest, OutOfOrderEntryIsRejectedAndChangesNothing) {
  Next(PutCmd("a", "1"));
  absl::StatusOr<ApplyResult> r = sm_->Apply(3, 1, PutCmd("a", "gap"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sm_->ApplyEmpty(5, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sm_->applied_index(), 1u);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(MustGet("a")->value, "1");
}

TEST_F(StateMachineTest, ApplyEmptyAdvancesIndexWithoutRevisionBump) {
  Next(PutCmd("a", "1"));  // index 1, revision 2
  ASSERT_TRUE(sm_->ApplyEmpty(2, 5).ok());
  EXPECT_EQ(sm_->applied_index(), 2u);
  EXPECT_EQ(sm_->applied_term(), 5u);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(MustRange("a", "").revision, 2);
  Reopen();
  EXPECT_EQ(sm_->applied_index(), 2u);
  EXPECT_EQ(sm_->applied_term(), 5u);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(Next(PutCmd("b", "2"), 5).revision, 3);
}

kvpb::Command SessionPut(uint64_t client, uint64_t seq, std::string key, std::string value) {
  kvpb::Command cmd = PutCmd(std::move(key), std::move(value));
  cmd.set_client_id(client);
  cmd.set_sequence(seq);
  return cmd;
}

kvpb::Command WithSession(kvpb::Command cmd, uint64_t client, uint64_t seq,
                          uint64_t window = 64, uint64_t expiry = 0) {
  cmd.set_client_id(client);
  cmd.set_sequence(seq);
  cmd.set_session_window(window);
  cmd.set_session_expiry_entries(expiry);
  return cmd;
}

// The number of sessions in the store (through Export, as a snapshot sees them).
size_t SessionCount(const StateMachine& sm) {
  struct Counter : ExportSink {
    size_t sessions = 0;
    absl::Status OnBegin(uint64_t, uint64_t, int64_t) override { return absl::OkStatus(); }
    absl::Status OnKeyValue(const KeyValue&) override { return absl::OkStatus(); }
    absl::Status OnSession(const SessionEntry&) override {
      ++sessions;
      return absl::OkStatus();
    }
  } counter;
  EXPECT_TRUE(sm.Export(counter).ok());
  return counter.sessions;
}

TEST_F(StateMachineTest, SessionSkipsRetriedSequences) {
  ApplyResult first = Next(SessionPut(7, 1, "a", "first"));  // index 1, revision 2
  EXPECT_FALSE(first.duplicate);

  // The same (client, sequence) committed again (a client retry): skipped, but applied.
  ApplyResult retry = Next(SessionPut(7, 1, "a", "retry"));
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.revision, 2);
  EXPECT_EQ(sm_->applied_index(), 2u);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(MustGet("a")->value, "first");
  EXPECT_EQ(MustGet("a")->version, 1);

  // Sequences need not be contiguous, nor arrive in order (a pipelining client, or a
  // follower forwarding many writes at once): 4 after 5 was never applied, so it applies.
  EXPECT_FALSE(Next(SessionPut(7, 5, "a", "five")).duplicate);
  EXPECT_FALSE(Next(SessionPut(7, 4, "a", "four")).duplicate);
  EXPECT_EQ(MustGet("a")->value, "four");
  EXPECT_TRUE(Next(SessionPut(7, 5, "a", "five again")).duplicate);
  EXPECT_EQ(MustGet("a")->value, "four");

  // Sessions are per client; client 0 means "no session" and never deduplicates.
  EXPECT_FALSE(Next(SessionPut(8, 1, "b", "x")).duplicate);
  EXPECT_FALSE(Next(SessionPut(0, 1, "c", "1")).duplicate);
  EXPECT_FALSE(Next(SessionPut(0, 1, "c", "2")).duplicate);
  EXPECT_EQ(MustGet("c")->version, 2);

  auto* rocks = dynamic_cast<RocksDbStateMachine*>(sm_.get());
  ASSERT_NE(rocks, nullptr);
  absl::StatusOr<std::optional<coding::SessionRecord>> s7 = rocks->GetSession(7);
  ASSERT_TRUE(s7.ok());
  ASSERT_TRUE(s7->has_value());
  EXPECT_EQ((*s7)->last_sequence, 5u);
  EXPECT_EQ((*s7)->last_index, 4u);
  EXPECT_EQ(*rocks->GetSession(0), std::nullopt);

  // The session table survives a restart.
  Reopen();
  EXPECT_TRUE(Next(SessionPut(7, 5, "a", "again")).duplicate);
  EXPECT_TRUE(Next(SessionPut(8, 1, "b", "again")).duplicate);
  EXPECT_EQ(MustGet("a")->value, "four");
}

// Issue 10: a duplicate is answered with the FIRST result, not an empty one: a retried DEL
// says it deleted the key (it did), a retried PUT reports the revision it was applied at, and
// neither is applied again (no lost update of another client's newer write).
TEST_F(StateMachineTest, DuplicateReturnsTheFirstResult) {
  Next(PutCmd("k", "v0"));                                             // revision 2
  ApplyResult del = Next(WithSession(DeleteCmd("k"), 3, 1));          // revision 3
  ASSERT_EQ(del.ops.size(), 1u);
  EXPECT_EQ(del.ops[0].deleted, 1);
  ApplyResult put = Next(WithSession(PutCmd("p", "mine"), 3, 2));     // revision 4
  EXPECT_EQ(put.revision, 4);
  Next(PutCmd("k", "recreated"));                                      // revision 5
  Next(PutCmd("p", "theirs"));                                         // revision 6

  ApplyResult del_again = Next(WithSession(DeleteCmd("k"), 3, 1));
  EXPECT_TRUE(del_again.duplicate);
  EXPECT_EQ(del_again.revision, 3);
  ASSERT_EQ(del_again.ops.size(), 1u);
  EXPECT_EQ(del_again.ops[0].deleted, 1);
  EXPECT_EQ(MustGet("k")->value, "recreated");  // not deleted a second time

  ApplyResult put_again = Next(WithSession(PutCmd("p", "mine"), 3, 2));
  EXPECT_TRUE(put_again.duplicate);
  EXPECT_EQ(put_again.revision, 4);
  EXPECT_EQ(MustGet("p")->value, "theirs");  // no lost update
  EXPECT_EQ(MustGet("p")->version, 2);
  EXPECT_EQ(sm_->revision(), 6);

  // Previous key-values are kept only when asked for (etcd prev_kv), to bound the table.
  kvpb::Command with_prev = WithSession(PutCmd("p", "again"), 3, 3);
  with_prev.set_session_keeps_prev(true);
  ApplyResult first = Next(with_prev);
  ASSERT_TRUE(first.ops[0].prev.has_value());
  ApplyResult dup = Next(with_prev);
  EXPECT_TRUE(dup.duplicate);
  ASSERT_TRUE(dup.ops[0].prev.has_value());
  EXPECT_EQ(dup.ops[0].prev->value, "theirs");
  EXPECT_EQ(dup.ops[0].prev->mod_revision, 6);
}

// The window: results below the client's first_unacked, and beyond the newest `window`
// sequences, are dropped; a retry of one is refused (not applied again, no result to give).
TEST_F(StateMachineTest, SessionWindowDropsAcknowledgedAndOldResults) {
  Next(WithSession(PutCmd("a", "1"), 5, 1, /*window=*/2));
  Next(WithSession(PutCmd("a", "2"), 5, 2, /*window=*/2));
  Next(WithSession(PutCmd("a", "3"), 5, 3, /*window=*/2));  // pushes 1 out
  ApplyResult old = Next(WithSession(PutCmd("a", "1"), 5, 1, /*window=*/2));
  EXPECT_TRUE(old.session_refused);
  EXPECT_FALSE(old.duplicate);
  EXPECT_EQ(MustGet("a")->value, "3");
  EXPECT_TRUE(Next(WithSession(PutCmd("a", "2"), 5, 2, /*window=*/2)).duplicate);

  kvpb::Command acked = WithSession(PutCmd("a", "4"), 5, 4, /*window=*/64);
  acked.set_first_unacked(4);  // the client has its answers for 1..3
  EXPECT_FALSE(Next(acked).duplicate);
  EXPECT_TRUE(Next(WithSession(PutCmd("a", "2"), 5, 2)).session_refused);
  EXPECT_TRUE(Next(WithSession(PutCmd("a", "4"), 5, 4)).duplicate);
  EXPECT_EQ(MustGet("a")->value, "4");
  EXPECT_EQ(MustGet("a")->version, 4);
}

// Expiry by log position only: a session idle for more than session_expiry_entries entries
// is gone once a later entry (carrying the limit) is applied, on every replica alike; the
// table stays bounded however many clients come and go.
TEST_F(StateMachineTest, SessionsExpireByLogPosition) {
  auto* rocks = dynamic_cast<RocksDbStateMachine*>(sm_.get());
  ASSERT_NE(rocks, nullptr);
  Next(WithSession(PutCmd("a", "1"), 7, 1, 64, /*expiry=*/5));  // index 1
  for (int i = 0; i < 4; ++i) Next(WithSession(PutCmd("b", "x"), 8, 1 + i, 64, 5));  // 2..5
  // Index 6: 6 - 5 = 1, nothing older than index 1: session 7 stays.
  Next(WithSession(PutCmd("b", "x"), 8, 10, 64, 5));
  EXPECT_TRUE(rocks->GetSession(7)->has_value());
  // Index 7: session 7 (last active at index 1 < 7 - 5) expires.
  Next(WithSession(PutCmd("b", "x"), 8, 11, 64, 5));
  EXPECT_FALSE(rocks->GetSession(7)->has_value());
  EXPECT_TRUE(rocks->GetSession(8)->has_value());
  // Its old sequence is a new write now (the client outlived its session).
  EXPECT_FALSE(Next(WithSession(PutCmd("a", "again"), 7, 1, 64, 5)).duplicate);

  // Entries without the stamp (expiry 0) expire nothing.
  for (int i = 0; i < 20; ++i) Next(WithSession(PutCmd("c", "x"), 100 + i, 1, 64, 0));
  EXPECT_EQ(SessionCount(*sm_), 22u);
  // With expiry 10, the table falls to the sessions of the last 10 entries (each entry
  // removes up to kMaxSessionsExpiredPerEntry of the idlest).
  for (int i = 0; i < 40; ++i) Next(WithSession(PutCmd("c", "x"), 1000 + i, 1, 64, 10));
  EXPECT_LE(SessionCount(*sm_), 11u);
  Reopen();
  EXPECT_LE(SessionCount(*sm_), 11u);
}

TEST_F(StateMachineTest, SessionRecordIsWrittenEvenWhenOpsChangeNothing) {
  kvpb::Command cmd = DeleteCmd("missing");
  cmd.set_client_id(9);
  cmd.set_sequence(1);
  ApplyResult r = Next(cmd);
  EXPECT_FALSE(r.duplicate);
  EXPECT_EQ(r.revision, 1);
  EXPECT_TRUE(Next(cmd).duplicate);
}

}  // namespace
}  // namespace raftkv::kv::testing
