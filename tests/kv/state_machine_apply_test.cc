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

TEST_F(StateMachineTest, SessionSkipsRetriedSequences) {
  ApplyResult first = Next(SessionPut(7, 1, "a", "first"));  // index 1, revision 2
  EXPECT_FALSE(first.duplicate);

  // The same (client, sequence) committed again (a client retry): skipped, but applied.
  ApplyResult retry = Next(SessionPut(7, 1, "a", "retry"));
  EXPECT_TRUE(retry.duplicate);
  EXPECT_TRUE(retry.ops.empty());  // the original result is not re-created
  EXPECT_EQ(retry.revision, 2);
  EXPECT_EQ(sm_->applied_index(), 2u);
  EXPECT_EQ(sm_->revision(), 2);
  EXPECT_EQ(MustGet("a")->value, "first");
  EXPECT_EQ(MustGet("a")->version, 1);

  // A higher sequence applies (gaps are allowed); an older one is then a duplicate too.
  EXPECT_FALSE(Next(SessionPut(7, 5, "a", "five")).duplicate);
  EXPECT_TRUE(Next(SessionPut(7, 4, "a", "four")).duplicate);
  EXPECT_EQ(MustGet("a")->value, "five");

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
  EXPECT_EQ((*s7)->last_index, 3u);
  EXPECT_EQ(*rocks->GetSession(0), std::nullopt);

  // The session table survives a restart.
  Reopen();
  EXPECT_TRUE(Next(SessionPut(7, 5, "a", "again")).duplicate);
  EXPECT_TRUE(Next(SessionPut(8, 1, "b", "again")).duplicate);
  EXPECT_EQ(MustGet("a")->value, "five");
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
