// Pipelined writes on the client port (issue 14): the writes of one connection that are
// parsed and waiting go to the Replicator together, as one WriteBatch, and still apply and
// answer in request order; reads after them see them. The FakeReplicator can play the worst
// legal order for writes sent one by one while they are in flight together (the last first,
// replicator.h), so a front end that sent them as independent writes fails here.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/fakes.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server {
namespace {

using testing::RespCommand;
using testing::TcpFixture;
using testing::TestClient;

// SETs over a few keys, each key written several times, in one pipeline. Returns the
// requests and fills `last` with the value each key must end with.
std::string Burst(int n, std::vector<std::pair<std::string, std::string>>* last) {
  std::string out;
  last->clear();
  for (int i = 0; i < n; ++i) {
    std::string key = absl::StrCat("k", i % 3);
    std::string value = absl::StrCat("v", i);
    out += RespCommand({"SET", key, value});
    bool found = false;
    for (auto& [k, v] : *last) {
      if (k == key) {
        v = value;
        found = true;
      }
    }
    if (!found) last->emplace_back(key, value);
  }
  return out;
}

TEST(TcpPipelineTest, PipelinedWritesGoTogetherAndApplyInRequestOrder) {
  TcpFixture f;
  f.replicator().ReverseHeldWrites(true);
  f.replicator().Hold(true);
  TestClient c(f.Start());
  constexpr int kWrites = 20;
  std::vector<std::pair<std::string, std::string>> last;
  std::string pipeline = Burst(kWrites, &last);
  // A GET after the writes in the same pipeline must see the last of them.
  pipeline += RespCommand({"GET", "k0"});
  pipeline += RespCommand({"MGET", "k0", "k1", "k2"});
  ASSERT_TRUE(c.Send(pipeline));
  // All of them are with the cluster at once (one at a time, this waits for 10 s and fails).
  ASSERT_EQ(f.replicator().AwaitQueuedWrites(kWrites), static_cast<size_t>(kWrites))
      << "pipelined writes are not in flight together";
  f.replicator().Hold(false);
  for (int i = 0; i < kWrites; ++i) ASSERT_EQ(c.ReadResp(), "+OK\r\n") << "reply " << i;
  std::string want_get;
  std::string want_mget = "*3\r\n";
  for (const auto& [k, v] : last) {
    if (k == "k0") want_get = absl::StrCat("$", v.size(), "\r\n", v, "\r\n");
    want_mget += absl::StrCat("$", v.size(), "\r\n", v, "\r\n");
  }
  EXPECT_EQ(c.ReadResp(), want_get);
  EXPECT_EQ(c.ReadResp(), want_mget);
  EXPECT_GE(f.replicator().batches(), 1u);
}

// The reads of one pipeline share one read barrier (one event for the raft loop, one reader
// pool task) and their replies still come back in request order, each its own: GETs of
// present and missing keys, an EXISTS, an MGET, and an INFO (answered without a barrier) and
// a malformed GET (answered at once) among them.
TEST(TcpPipelineTest, PipelinedReadsShareOneReadBarrier) {
  TcpFixture f;
  TestClient c(f.Start());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c.Send(RespCommand({"SET", absl::StrCat("k", i), absl::StrCat("v", i)})));
    ASSERT_EQ(c.ReadResp(), "+OK\r\n");
  }
  const size_t before = f.replicator().read_barriers();
  std::string pipeline;
  std::vector<std::string> want;
  for (int i = 0; i < 12; ++i) {
    const std::string key = absl::StrCat("k", i % 6);  // k4 and k5 are missing
    pipeline += RespCommand({"GET", key});
    want.push_back(i % 6 < 4 ? absl::StrCat("$2\r\nv", i % 6, "\r\n") : "$-1\r\n");
    if (i == 5) {
      pipeline += RespCommand({"INFO"});
      want.push_back("");  // checked below: an INFO text
      pipeline += RespCommand({"GET"});
      want.push_back("-ERR wrong number of arguments for 'get' command\r\n");
    }
  }
  pipeline += RespCommand({"EXISTS", "k0", "k5", "k1"});
  want.push_back(":2\r\n");
  pipeline += RespCommand({"MGET", "k3", "k9"});
  want.push_back("*2\r\n$2\r\nv3\r\n$-1\r\n");
  ASSERT_TRUE(c.Send(pipeline));
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string got = c.ReadResp().value_or("(no reply)");
    if (want[i].empty()) {
      EXPECT_NE(got.find("raft_role:leader"), std::string::npos) << "reply " << i << ": " << got;
    } else {
      EXPECT_EQ(got, want[i]) << "reply " << i;
    }
  }
  // All requests arrived in one read of the socket (a few hundred bytes), so one run.
  EXPECT_EQ(f.replicator().read_barriers() - before, 1u)
      << "the pipeline's reads took a barrier each";
}

// Text protocol: the same, with a read in the middle that waits for the writes before it,
// and writes after it that it must not see.
TEST(TcpPipelineTest, TextPipelineReadsBetweenWritesSeeExactlyTheWritesBeforeThem) {
  TcpFixture f;
  f.replicator().ReverseHeldWrites(true);
  TestClient c(f.Start());
  std::string pipeline;
  for (int i = 0; i < 10; ++i) pipeline += absl::StrCat("SET a ", i, "\n");
  pipeline += "GET a\n";
  for (int i = 10; i < 20; ++i) pipeline += absl::StrCat("SET a ", i, "\nDEL b\nSET b ", i, "\n");
  pipeline += "MGET a b\n";
  f.replicator().Hold(true);
  ASSERT_TRUE(c.Send(pipeline));
  ASSERT_EQ(f.replicator().AwaitQueuedWrites(10), 10u);
  f.replicator().Hold(false);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(c.ReadLine(), "OK") << i;
  EXPECT_EQ(c.ReadLine(), "9");
  for (int i = 10; i < 20; ++i) {
    ASSERT_EQ(c.ReadLine(), "OK");
    ASSERT_EQ(c.ReadLine(), i == 10 ? "KEY NOT FOUND" : "OK") << "DEL b before SET b " << i;
    ASSERT_EQ(c.ReadLine(), "OK");
  }
  EXPECT_EQ(c.ReadLine(), "19");
  EXPECT_EQ(c.ReadLine(), "19");
}

// --max-pipeline-writes bounds a batch; the rest waits for the next one (one batch in flight).
TEST(TcpPipelineTest, MaxPipelineWritesBoundsTheBatchInFlight) {
  TcpFixture f;
  f.options.max_pipeline_writes = 4;
  f.replicator().Hold(true);
  TestClient c(f.Start());
  std::vector<std::pair<std::string, std::string>> last;
  ASSERT_TRUE(c.Send(Burst(10, &last)));
  ASSERT_EQ(f.replicator().AwaitQueuedWrites(4), 4u);
  // What the connection sends next is only sent after this batch is answered.
  ASSERT_TRUE(c.Send("PING\r\n"));
  EXPECT_EQ(f.replicator().AwaitQueuedWrites(5, absl::Milliseconds(200)), 4u);
  f.replicator().Hold(false);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(c.ReadResp(), "+OK\r\n") << i;
  EXPECT_EQ(c.ReadLine(), "+PONG\r");
  EXPECT_EQ(f.replicator().batches(), 3u);  // 4 + 4 + 2
}

// --max-pipeline-write-bytes ends a batch early; a single larger write still goes.
TEST(TcpPipelineTest, MaxPipelineWriteBytesBoundsTheBatch) {
  TcpFixture f;
  f.options.max_pipeline_write_bytes = 120;
  f.replicator().Hold(true);
  TestClient c(f.Start());
  const std::string big(200, 'x');
  std::string pipeline = RespCommand({"SET", "big", big});  // over the bound on its own
  for (int i = 0; i < 4; ++i) pipeline += RespCommand({"SET", "s", std::string(30, 'a' + i)});
  ASSERT_TRUE(c.Send(pipeline));
  ASSERT_EQ(f.replicator().AwaitQueuedWrites(1), 1u);
  EXPECT_EQ(f.replicator().AwaitQueuedWrites(2, absl::Milliseconds(200)), 1u);
  f.replicator().Hold(false);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.ReadResp(), "+OK\r\n") << i;
  // 1 alone (a plain Write), then two of 57 bytes per batch.
  EXPECT_EQ(f.replicator().batches(), 2u);
  ASSERT_TRUE(c.Send(RespCommand({"GET", "s"})));
  EXPECT_EQ(c.ReadResp(), absl::StrCat("$30\r\n", std::string(30, 'd'), "\r\n"));
}

// Sessions: the writes of a batch take the session's sequences in request order.
TEST(TcpPipelineTest, SessionSequencesFollowRequestOrderInABatch) {
  TcpFixture f;
  f.replicator().ReverseHeldWrites(true);
  TestClient c(f.Start());
  ASSERT_TRUE(c.Send(RespCommand({"SESSION", "7", "1"})));
  ASSERT_EQ(c.ReadResp(), "+OK\r\n");
  f.replicator().Hold(true);
  std::string pipeline;
  for (int i = 0; i < 5; ++i) pipeline += RespCommand({"SET", "x", absl::StrCat(i)});
  ASSERT_TRUE(c.Send(pipeline));
  ASSERT_EQ(f.replicator().AwaitQueuedWrites(5), 5u);
  f.replicator().Hold(false);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c.ReadResp(), "+OK\r\n");
  // Sent again with the same session and sequence 3: a duplicate, not applied again.
  ASSERT_TRUE(c.Send(RespCommand({"SESSION", "7", "3"})));
  ASSERT_EQ(c.ReadResp(), "+OK\r\n");
  ASSERT_TRUE(c.Send(RespCommand({"SET", "x", "2"}) + RespCommand({"GET", "x"})));
  EXPECT_EQ(c.ReadResp(), "+OK\r\n");
  EXPECT_EQ(c.ReadResp(), "$1\r\n4\r\n");
}

}  // namespace
}  // namespace raftkv::server
