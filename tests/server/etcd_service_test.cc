// The etcd v3 API subset over a real in-process gRPC server and a real single-node stack
// (RocksDB state machine, LocalReplicator, KvService): what etcdctl and clients rely on.
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "etcd_fakes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;
using ::testing::HasSubstr;
using testing::Ctx;
using testing::EtcdTestServer;
using testing::EtcdTestServerOptions;

class EtcdServiceTest : public ::testing::Test {
 protected:
  EtcdServiceTest() : kv_(server_.Kv()) {}

  pb::PutResponse Put(const std::string& key, const std::string& value, bool prev_kv = false) {
    pb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_prev_kv(prev_kv);
    pb::PutResponse resp;
    grpc::Status s = kv_->Put(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  grpc::Status Range(const std::string& key, const std::string& range_end,
                     pb::RangeResponse* resp, int64_t limit = 0) {
    pb::RangeRequest req;
    req.set_key(key);
    req.set_range_end(range_end);
    req.set_limit(limit);
    return kv_->Range(Ctx().get(), req, resp);
  }

  std::vector<std::string> Keys(const pb::RangeResponse& resp) {
    std::vector<std::string> keys;
    for (const auto& kv : resp.kvs()) keys.push_back(kv.key());
    return keys;
  }

  EtcdTestServer server_;
  std::unique_ptr<pb::KV::Stub> kv_;
};

TEST_F(EtcdServiceTest, PutThenRangeReturnsValueRevisionsAndHeader) {
  pb::PutResponse put = Put("foo", "bar");
  EXPECT_EQ(put.header().cluster_id(), 7u);
  EXPECT_EQ(put.header().member_id(), NodeId::FromPosition(0).etcd_member_id());
  EXPECT_EQ(put.header().raft_term(), 1u);
  const int64_t rev = put.header().revision();
  EXPECT_GT(rev, 0);

  pb::RangeResponse resp;
  ASSERT_TRUE(Range("foo", "", &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 1);
  EXPECT_EQ(resp.kvs(0).key(), "foo");
  EXPECT_EQ(resp.kvs(0).value(), "bar");
  EXPECT_EQ(resp.kvs(0).create_revision(), rev);
  EXPECT_EQ(resp.kvs(0).mod_revision(), rev);
  EXPECT_EQ(resp.kvs(0).version(), 1);
  EXPECT_EQ(resp.count(), 1);
  EXPECT_FALSE(resp.more());
  EXPECT_EQ(resp.header().revision(), rev);
  EXPECT_EQ(resp.header().member_id(), NodeId::FromPosition(0).etcd_member_id());

  pb::RangeResponse missing;
  ASSERT_TRUE(Range("nope", "", &missing).ok());
  EXPECT_EQ(missing.kvs_size(), 0);
  EXPECT_EQ(missing.count(), 0);
}

TEST_F(EtcdServiceTest, PutReturnsPrevKvOnlyWhenAsked) {
  pb::PutResponse first = Put("k", "v1", /*prev_kv=*/true);
  EXPECT_FALSE(first.has_prev_kv());  // the key did not exist
  pb::PutResponse second = Put("k", "v2", /*prev_kv=*/true);
  ASSERT_TRUE(second.has_prev_kv());
  EXPECT_EQ(second.prev_kv().value(), "v1");
  EXPECT_EQ(second.prev_kv().version(), 1);
  EXPECT_EQ(second.header().revision(), first.header().revision() + 1);
  pb::PutResponse third = Put("k", "v3", /*prev_kv=*/false);
  EXPECT_FALSE(third.has_prev_kv());
  pb::RangeResponse resp;
  ASSERT_TRUE(Range("k", "", &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 1);
  EXPECT_EQ(resp.kvs(0).version(), 3);
  EXPECT_EQ(resp.kvs(0).create_revision(), first.header().revision());
}

TEST_F(EtcdServiceTest, BinaryKeysAndValuesWithNulBytes) {
  const std::string k1("a\0b", 3), k2("a\0c", 3), k3("a", 1), k4("a\x01", 2);
  const std::string v1("x\0y\xff", 4);
  Put(k1, v1);
  Put(k2, "2");
  Put(k3, "3");
  Put(k4, "4");

  pb::RangeResponse exact;
  ASSERT_TRUE(Range(k1, "", &exact).ok());
  ASSERT_EQ(exact.kvs_size(), 1);
  EXPECT_EQ(exact.kvs(0).key(), k1);
  EXPECT_EQ(exact.kvs(0).value(), v1);

  // Prefix "a\0": range_end is the prefix with its last byte incremented.
  pb::RangeResponse prefix;
  ASSERT_TRUE(Range(std::string("a\0", 2), std::string("a\x01", 2), &prefix).ok());
  EXPECT_THAT(Keys(prefix), ::testing::ElementsAre(k1, k2));

  pb::RangeResponse just_a;
  ASSERT_TRUE(Range(k3, "", &just_a).ok());
  EXPECT_THAT(Keys(just_a), ::testing::ElementsAre(k3));
}

TEST_F(EtcdServiceTest, PrefixRangeWithLimitCountOnlyKeysOnly) {
  for (int i = 1; i <= 5; ++i) Put("foo" + std::to_string(i), "v" + std::to_string(i));
  Put("bar", "x");
  Put("fop", "outside");

  pb::RangeResponse all;
  ASSERT_TRUE(Range("foo", "fop", &all).ok());
  EXPECT_THAT(Keys(all), ::testing::ElementsAre("foo1", "foo2", "foo3", "foo4", "foo5"));
  EXPECT_EQ(all.count(), 5);
  EXPECT_FALSE(all.more());

  pb::RangeResponse limited;
  ASSERT_TRUE(Range("foo", "fop", &limited, /*limit=*/2).ok());
  EXPECT_THAT(Keys(limited), ::testing::ElementsAre("foo1", "foo2"));
  EXPECT_EQ(limited.count(), 5);
  EXPECT_TRUE(limited.more());

  pb::RangeRequest req;
  req.set_key("foo");
  req.set_range_end("fop");
  req.set_count_only(true);
  pb::RangeResponse count;
  ASSERT_TRUE(kv_->Range(Ctx().get(), req, &count).ok());
  EXPECT_EQ(count.kvs_size(), 0);
  EXPECT_EQ(count.count(), 5);

  req.set_count_only(false);
  req.set_keys_only(true);
  pb::RangeResponse keys;
  ASSERT_TRUE(kv_->Range(Ctx().get(), req, &keys).ok());
  ASSERT_EQ(keys.kvs_size(), 5);
  EXPECT_EQ(keys.kvs(0).key(), "foo1");
  EXPECT_EQ(keys.kvs(0).value(), "");
}

TEST_F(EtcdServiceTest, NulRangeEndMeansFromKey) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  const std::string nul(1, '\0');
  pb::RangeResponse from_b;
  ASSERT_TRUE(Range("b", nul, &from_b).ok());
  EXPECT_THAT(Keys(from_b), ::testing::ElementsAre("b", "c"));
  // etcdctl get --from-key '' sends key "\0" and range_end "\0": every key.
  pb::RangeResponse everything;
  ASSERT_TRUE(Range(nul, nul, &everything).ok());
  EXPECT_THAT(Keys(everything), ::testing::ElementsAre("a", "b", "c"));
}

TEST_F(EtcdServiceTest, SortAndRevisionFiltersApplyBeforeLimit) {
  pb::PutResponse first = Put("k1", "c");
  Put("k2", "a");
  Put("k3", "b");
  Put("k1", "c2");  // k1 now has the highest mod revision

  pb::RangeRequest req;
  req.set_key("k");
  req.set_range_end("l");
  req.set_sort_order(pb::RangeRequest::DESCEND);
  req.set_sort_target(pb::RangeRequest::KEY);
  req.set_limit(2);
  pb::RangeResponse desc;
  ASSERT_TRUE(kv_->Range(Ctx().get(), req, &desc).ok());
  EXPECT_THAT(Keys(desc), ::testing::ElementsAre("k3", "k2"));
  EXPECT_TRUE(desc.more());
  EXPECT_EQ(desc.count(), 3);

  req.set_sort_order(pb::RangeRequest::ASCEND);
  req.set_sort_target(pb::RangeRequest::VALUE);
  req.set_limit(0);
  pb::RangeResponse by_value;
  ASSERT_TRUE(kv_->Range(Ctx().get(), req, &by_value).ok());
  EXPECT_THAT(Keys(by_value), ::testing::ElementsAre("k2", "k3", "k1"));

  req.set_sort_order(pb::RangeRequest::NONE);
  req.set_sort_target(pb::RangeRequest::KEY);
  req.set_min_mod_revision(first.header().revision() + 1);
  req.set_max_create_revision(first.header().revision() + 1);  // excludes k3
  pb::RangeResponse filtered;
  ASSERT_TRUE(kv_->Range(Ctx().get(), req, &filtered).ok());
  EXPECT_THAT(Keys(filtered), ::testing::ElementsAre("k1", "k2"));
}

TEST_F(EtcdServiceTest, RangeRevisionMustBeCurrent) {
  Put("a", "1");
  const int64_t rev = Put("a", "2").header().revision();
  pb::RangeRequest req;
  req.set_key("a");
  req.set_revision(rev);
  pb::RangeResponse ok;
  EXPECT_TRUE(kv_->Range(Ctx().get(), req, &ok).ok());
  EXPECT_EQ(ok.kvs(0).value(), "2");

  req.set_revision(rev - 1);
  pb::RangeResponse old;
  grpc::Status s = kv_->Range(Ctx().get(), req, &old);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("historical reads not supported"));

  req.set_revision(rev + 1);
  s = kv_->Range(Ctx().get(), req, &old);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("future revision"));
}

TEST_F(EtcdServiceTest, InvalidRequestsAreInvalidArgument) {
  pb::RangeResponse r;
  EXPECT_EQ(Range("", "", &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  pb::PutRequest put;
  pb::PutResponse put_resp;
  EXPECT_EQ(kv_->Put(Ctx().get(), put, &put_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // empty key

  put.set_key(std::string(2000, 'k'));  // default limit 1024
  grpc::Status s = kv_->Put(Ctx().get(), put, &put_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("key too long"));

  pb::DeleteRangeRequest del;
  pb::DeleteRangeResponse del_resp;
  EXPECT_EQ(kv_->DeleteRange(Ctx().get(), del, &del_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(EtcdServiceTest, UnsupportedFeaturesAreUnimplemented) {
  pb::PutRequest put;
  put.set_key("k");
  put.set_lease(42);
  pb::PutResponse put_resp;
  EXPECT_EQ(kv_->Put(Ctx().get(), put, &put_resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  pb::CompactionResponse compact;
  EXPECT_EQ(kv_->Compact(Ctx().get(), pb::CompactionRequest(), &compact).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  pb::DefragmentResponse defrag;
  EXPECT_EQ(server_.Maintenance()
                ->Defragment(Ctx().get(), pb::DefragmentRequest(), &defrag)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  pb::DeleteRangeRequest del;
  del.set_key("a");
  del.set_range_end("b");
  del.set_prev_kv(true);
  pb::DeleteRangeResponse del_resp;
  EXPECT_EQ(kv_->DeleteRange(Ctx().get(), del, &del_resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(EtcdServiceTest, DeleteRangeSingleKeyPrefixAndMissing) {
  Put("p1", "1");
  Put("p2", "2");
  Put("p3", "3");
  Put("q", "4");

  pb::DeleteRangeRequest one;
  one.set_key("p1");
  one.set_prev_kv(true);
  pb::DeleteRangeResponse one_resp;
  ASSERT_TRUE(kv_->DeleteRange(Ctx().get(), one, &one_resp).ok());
  EXPECT_EQ(one_resp.deleted(), 1);
  ASSERT_EQ(one_resp.prev_kvs_size(), 1);
  EXPECT_EQ(one_resp.prev_kvs(0).value(), "1");

  pb::DeleteRangeResponse again;
  ASSERT_TRUE(kv_->DeleteRange(Ctx().get(), one, &again).ok());
  EXPECT_EQ(again.deleted(), 0);
  EXPECT_EQ(again.prev_kvs_size(), 0);

  pb::DeleteRangeRequest prefix;
  prefix.set_key("p");
  prefix.set_range_end("q");
  pb::DeleteRangeResponse prefix_resp;
  ASSERT_TRUE(kv_->DeleteRange(Ctx().get(), prefix, &prefix_resp).ok());
  EXPECT_EQ(prefix_resp.deleted(), 2);

  pb::RangeResponse left;
  ASSERT_TRUE(Range(std::string(1, '\0'), std::string(1, '\0'), &left).ok());
  EXPECT_THAT(Keys(left), ::testing::ElementsAre("q"));
  EXPECT_EQ(left.header().revision(), prefix_resp.header().revision());
}

TEST_F(EtcdServiceTest, TxnWithoutComparesIsOneAtomicRevision) {
  Put("gone", "x");
  pb::TxnRequest txn;
  auto* p1 = txn.add_success()->mutable_request_put();
  p1->set_key("t1");
  p1->set_value("v1");
  auto* p2 = txn.add_success()->mutable_request_put();
  p2->set_key("t2");
  p2->set_value("v2");
  txn.add_success()->mutable_request_delete_range()->set_key("gone");
  pb::TxnResponse resp;
  grpc::Status s = kv_->Txn(Ctx().get(), txn, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.succeeded());
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_TRUE(resp.responses(0).has_response_put());
  EXPECT_EQ(resp.responses(2).response_delete_range().deleted(), 1);

  pb::RangeResponse r;
  ASSERT_TRUE(Range("t", "u", &r).ok());
  ASSERT_EQ(r.kvs_size(), 2);
  EXPECT_EQ(r.kvs(0).mod_revision(), resp.header().revision());
  EXPECT_EQ(r.kvs(1).mod_revision(), resp.header().revision());
}

TEST_F(EtcdServiceTest, TxnRejectsComparesRangesAndDuplicateKeys) {
  pb::TxnRequest with_compare;
  auto* cmp = with_compare.add_compare();
  cmp->set_key("k");
  cmp->set_target(pb::Compare::VERSION);
  cmp->set_version(0);
  with_compare.add_success()->mutable_request_put()->set_key("k");
  pb::TxnResponse resp;
  grpc::Status s = kv_->Txn(Ctx().get(), with_compare, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("atomic"));

  pb::TxnRequest with_range;
  with_range.add_success()->mutable_request_range()->set_key("k");
  EXPECT_EQ(kv_->Txn(Ctx().get(), with_range, &resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  pb::TxnRequest dup;
  dup.add_success()->mutable_request_put()->set_key("d");
  auto* del = dup.add_success()->mutable_request_delete_range();
  del->set_key("a");
  del->set_range_end("z");
  EXPECT_EQ(kv_->Txn(Ctx().get(), dup, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Nothing above was written.
  pb::RangeResponse r;
  ASSERT_TRUE(Range(std::string(1, '\0'), std::string(1, '\0'), &r).ok());
  EXPECT_EQ(r.count(), 0);
}

TEST_F(EtcdServiceTest, StatusReportsLeaderIndexTermAndVersion) {
  const int64_t rev = Put("a", "1").header().revision();
  pb::StatusResponse status;
  ASSERT_TRUE(server_.Maintenance()->Status(Ctx().get(), pb::StatusRequest(), &status).ok());
  EXPECT_EQ(status.header().member_id(), NodeId::FromPosition(0).etcd_member_id());
  EXPECT_EQ(status.header().cluster_id(), 7u);
  EXPECT_EQ(status.header().revision(), rev);
  EXPECT_EQ(status.leader(), status.header().member_id());
  EXPECT_EQ(status.raftterm(), 1u);
  EXPECT_GE(status.raftindex(), 1u);
  EXPECT_EQ(status.raftappliedindex(), status.raftindex());
  EXPECT_EQ(status.version(), "3.4.0");
}

TEST_F(EtcdServiceTest, MemberListNamesEveryMemberWithUrls) {
  pb::MemberListResponse members;
  ASSERT_TRUE(
      server_.Cluster()->MemberList(Ctx().get(), pb::MemberListRequest(), &members).ok());
  ASSERT_EQ(members.members_size(), 1);
  const pb::Member& m = members.members(0);
  EXPECT_EQ(m.id(), NodeId::FromPosition(0).etcd_member_id());
  EXPECT_EQ(m.name(), "node0");
  EXPECT_THAT(m.clienturls(), ::testing::ElementsAre("http://" + server_.address()));
  EXPECT_THAT(m.peerurls(), ::testing::ElementsAre("http://" + server_.address()));
  EXPECT_EQ(members.header().member_id(), NodeId::FromPosition(0).etcd_member_id());
}

TEST_F(EtcdServiceTest, UnavailableNamesTheLeader) {
  server_.replicator()->PretendLeader(2, "10.1.2.3:6002");
  server_.replicator()->FailWith(absl::UnavailableError("not the leader"));
  pb::PutRequest put;
  put.set_key("k");
  pb::PutResponse resp;
  grpc::Status s = kv_->Put(Ctx().get(), put, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("not the leader"));
  EXPECT_THAT(s.error_message(), HasSubstr("10.1.2.3:6002"));

  pb::StatusResponse status;
  ASSERT_TRUE(server_.Maintenance()->Status(Ctx().get(), pb::StatusRequest(), &status).ok());
  EXPECT_EQ(status.leader(), NodeId::FromPosition(2).etcd_member_id());
}

TEST_F(EtcdServiceTest, ReplicatorErrorsMapToGrpcCodes) {
  const std::pair<absl::Status, grpc::StatusCode> cases[] = {
      {absl::DeadlineExceededError("slow"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::ResourceExhaustedError("full"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::InvalidArgumentError("bad"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::DataLossError("corrupt"), grpc::StatusCode::DATA_LOSS},
  };
  for (const auto& [error, code] : cases) {
    server_.replicator()->FailWith(error);
    pb::RangeResponse r;
    grpc::Status s = Range("k", "", &r);
    EXPECT_EQ(s.error_code(), code) << error;
    EXPECT_THAT(s.error_message(), HasSubstr(std::string(error.message())));
  }
}

// Issue 10: a failed write says which kind it is. Not applied: UNAVAILABLE or
// RESOURCE_EXHAUSTED; outcome unknown: DEADLINE_EXCEEDED or UNKNOWN. The trailing metadata
// raftkv-error-kind repeats it, so a client tells the server's UNAVAILABLE from a broken call.
TEST_F(EtcdServiceTest, WriteErrorsSayWhetherTheWriteHappened) {
  const struct {
    absl::Status error;
    grpc::StatusCode code;
    const char* kind;
  } cases[] = {
      {absl::UnavailableError("no leader"), grpc::StatusCode::UNAVAILABLE, "not-applied"},
      {absl::ResourceExhaustedError("full"), grpc::StatusCode::RESOURCE_EXHAUSTED,
       "not-applied"},
      {absl::DeadlineExceededError("slow; outcome unknown"),
       grpc::StatusCode::DEADLINE_EXCEEDED, "outcome-unknown"},
      {absl::UnknownError("outcome unknown: node is shutting down"),
       grpc::StatusCode::UNKNOWN, "outcome-unknown"},
  };
  for (const auto& c : cases) {
    server_.replicator()->FailWith(c.error);
    pb::PutRequest put;
    put.set_key("k");
    pb::PutResponse resp;
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    grpc::Status s = kv_->Put(ctx.get(), put, &resp);
    EXPECT_EQ(s.error_code(), c.code) << c.error;
    const auto& trailers = ctx->GetServerTrailingMetadata();
    auto it = trailers.find("raftkv-error-kind");
    ASSERT_NE(it, trailers.end()) << c.error;
    EXPECT_EQ(std::string(it->second.data(), it->second.size()), c.kind) << c.error;
  }
}

// A Put or DeleteRange sent again with the same raftkv-session-* metadata is applied once
// and answered with the first result (revision, deleted count); etcdctl sends none.
TEST_F(EtcdServiceTest, SessionMetadataMakesRetriesApplyOnce) {
  auto with_session = [](uint64_t seq) {
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    ctx->AddMetadata("raftkv-session-id", "991");
    ctx->AddMetadata("raftkv-session-sequence", std::to_string(seq));
    return ctx;
  };
  pb::PutRequest put;
  put.set_key("s");
  put.set_value("mine");
  pb::PutResponse first, again;
  ASSERT_TRUE(kv_->Put(with_session(1).get(), put, &first).ok());
  Put("s", "theirs");
  ASSERT_TRUE(kv_->Put(with_session(1).get(), put, &again).ok());
  EXPECT_EQ(again.header().revision(), first.header().revision());
  pb::RangeResponse r;
  ASSERT_TRUE(Range("s", "", &r).ok());
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).value(), "theirs");
  EXPECT_EQ(r.kvs(0).version(), 2);

  pb::DeleteRangeRequest del;
  del.set_key("s");
  pb::DeleteRangeResponse d1, d2;
  ASSERT_TRUE(kv_->DeleteRange(with_session(2).get(), del, &d1).ok());
  ASSERT_TRUE(kv_->DeleteRange(with_session(2).get(), del, &d2).ok());
  EXPECT_EQ(d1.deleted(), 1);
  EXPECT_EQ(d2.deleted(), 1);  // the first result, though the key is gone now

  std::unique_ptr<grpc::ClientContext> bad = Ctx();
  bad->AddMetadata("raftkv-session-id", "991");  // no sequence
  pb::PutResponse resp;
  EXPECT_EQ(kv_->Put(bad.get(), put, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(EtcdServiceTimeoutTest, HandlerGivesUpAfterRequestTimeout) {
  EtcdTestServerOptions options;
  options.etcd.request_timeout_ms = 200;
  EtcdTestServer server(options);
  server.replicator()->Hold(true);
  pb::PutRequest put;
  put.set_key("k");
  put.set_value("v");
  pb::PutResponse resp;
  grpc::Status s = server.Kv()->Put(Ctx(10000).get(), put, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("outcome is unknown"));
}

// The KV service answers from the write's callback (gRPC's callback API): a call in flight
// holds no server thread. With the sync server each held call blocked one, so 1,000 clients
// meant 1,000 threads. Counted in /proc, not timed.
TEST(EtcdServiceThreadsTest, WritesInFlightHoldNoServerThreadEach) {
  constexpr int kCalls = 300;
  EtcdTestServer server;
  server.replicator()->Hold(true);
  auto kv = server.Kv();
  struct Call {
    std::unique_ptr<grpc::ClientContext> context = Ctx(60000);
    pb::PutRequest req;
    pb::PutResponse resp;
  };
  std::vector<Call> calls(kCalls);
  absl::Mutex mu;
  int answered = 0;
  std::vector<grpc::StatusCode> codes;
  for (int i = 0; i < kCalls; ++i) {
    calls[i].req.set_key(absl::StrCat("k", i));
    calls[i].req.set_value("v");
    kv->async()->Put(calls[i].context.get(), &calls[i].req, &calls[i].resp,
                     [&](grpc::Status s) {
                       absl::MutexLock lock(&mu);
                       codes.push_back(s.error_code());
                       ++answered;
                     });
  }
  server.replicator()->AwaitHeldWrites(kCalls);
  const auto threads = std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                     std::filesystem::directory_iterator());
  EXPECT_LT(threads, kCalls / 2) << "threads in this process with " << kCalls
                                 << " writes held in the server";
  server.replicator()->ReleaseHeld();
  absl::MutexLock lock(&mu);
  auto all = [&]() { return answered == kCalls; };
  mu.Await(absl::Condition(&all));
  for (grpc::StatusCode code : codes) EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE);
}

TEST(EtcdServiceLimitsTest, ValueOverLimitIsRejected) {
  EtcdTestServerOptions options;
  options.limits.max_value_bytes = 16;
  EtcdTestServer server(options);
  pb::PutRequest put;
  put.set_key("k");
  put.set_value(std::string(17, 'v'));
  pb::PutResponse resp;
  grpc::Status s = server.Kv()->Put(Ctx().get(), put, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("value too large"));
}

TEST(EtcdServiceLimitsTest, RangeOverMaxRangeBytesAnswersMoreAndPagesThrough) {
  EtcdTestServerOptions options;
  options.etcd.max_range_bytes = 1000;
  EtcdTestServer server(options);
  auto kv = server.Kv();
  for (int i = 0; i < 30; ++i) {
    pb::PutRequest put;
    put.set_key(absl::StrFormat("p%02d", i));
    put.set_value(std::string(100, 'v'));
    pb::PutResponse put_resp;
    ASSERT_TRUE(kv->Put(Ctx().get(), put, &put_resp).ok());
  }
  // Page as etcd clients do: next key after the last one received, until more is false.
  std::vector<std::string> seen;
  std::string from = "p";
  for (int page = 0; page < 30; ++page) {
    pb::RangeRequest req;
    req.set_key(from);
    req.set_range_end("q");
    pb::RangeResponse resp;
    ASSERT_TRUE(kv->Range(Ctx().get(), req, &resp).ok());
    ASSERT_GT(resp.kvs_size(), 0);
    EXPECT_LE(resp.kvs_size(), 9) << "a page is bounded by bytes";
    EXPECT_EQ(resp.count(), 30 - static_cast<int64_t>(seen.size()));
    for (const auto& k : resp.kvs()) seen.push_back(k.key());
    if (!resp.more()) break;
    from = seen.back() + std::string(1, '\0');
  }
  ASSERT_EQ(seen.size(), 30u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(seen[i], absl::StrFormat("p%02d", i));
}

TEST(EtcdServiceLimitsTest, RangeOverMaxRangeKeysIsRefusedUnlessLimitedOrCounted) {
  EtcdTestServerOptions options;
  options.etcd.max_range_keys = 3;
  EtcdTestServer server(options);
  auto kv = server.Kv();
  for (const char* key : {"r1", "r2", "r3", "r4"}) {
    pb::PutRequest put;
    put.set_key(key);
    put.set_value("v");
    pb::PutResponse put_resp;
    ASSERT_TRUE(kv->Put(Ctx().get(), put, &put_resp).ok());
  }
  pb::RangeRequest req;
  req.set_key("r");
  req.set_range_end("s");
  pb::RangeResponse resp;
  grpc::Status s = kv->Range(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("max_range_keys"));

  req.set_limit(3);
  pb::RangeResponse limited;
  ASSERT_TRUE(kv->Range(Ctx().get(), req, &limited).ok());
  EXPECT_EQ(limited.kvs_size(), 3);
  EXPECT_TRUE(limited.more());
  EXPECT_EQ(limited.count(), 4);

  req.set_sort_order(pb::RangeRequest::DESCEND);  // needs the whole range: refused
  pb::RangeResponse sorted;
  EXPECT_EQ(kv->Range(Ctx().get(), req, &sorted).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  req.set_sort_order(pb::RangeRequest::NONE);
  req.set_limit(0);
  req.set_count_only(true);
  pb::RangeResponse counted;
  ASSERT_TRUE(kv->Range(Ctx().get(), req, &counted).ok());
  EXPECT_EQ(counted.count(), 4);
}

TEST_F(EtcdServiceTest, ConcurrentPutsGetDistinctRevisions) {
  constexpr int kThreads = 8, kPutsPerThread = 25;
  std::vector<std::vector<int64_t>> revisions(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = server_.Kv();
      for (int i = 0; i < kPutsPerThread; ++i) {
        pb::PutRequest req;
        req.set_key("c" + std::to_string(t) + "_" + std::to_string(i));
        req.set_value("v");
        pb::PutResponse resp;
        if (stub->Put(Ctx().get(), req, &resp).ok()) {
          revisions[t].push_back(resp.header().revision());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  for (const auto& r : revisions) all.insert(r.begin(), r.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPutsPerThread));
  pb::RangeResponse r;
  ASSERT_TRUE(Range("c", "d", &r).ok());
  EXPECT_EQ(r.count(), kThreads * kPutsPerThread);
}

}  // namespace
}  // namespace raftkv::server
