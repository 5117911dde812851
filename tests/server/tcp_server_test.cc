// The text/RESP front end against a live server on 127.0.0.1 (tcp_server.h): the commands of
// both protocols, pipelining order, cluster errors, connection limit, idle timeout,
// backpressure and graceful Stop().
#include "server/frontend/tcp/tcp_server.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/fakes.h"

namespace raftkv::server {
namespace {

using testing::AwaitTrue;
using testing::RespCommand;
using testing::TcpFixture;
using testing::TestClient;

bool CanConnect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Sends `request` and expects exactly `lines` back.
void ExpectLines(TestClient& c, const std::string& request, std::vector<std::string> lines) {
  ASSERT_TRUE(c.Send(request));
  for (const std::string& want : lines) {
    EXPECT_EQ(c.ReadLine(), want) << "request: " << request;
  }
}

void ExpectResp(TestClient& c, const std::vector<std::string>& cmd, const std::string& want) {
  ASSERT_TRUE(c.Send(RespCommand(cmd)));
  EXPECT_EQ(c.ReadResp(), want) << "command: " << cmd[0];
}

TEST(TcpServerTest, TextProtocolCommands) {
  TcpFixture f;
  TestClient c(f.Start());
  ExpectLines(c, "SET a hello world\n", {"OK"});
  ExpectLines(c, "GET a\n", {"hello world"});
  ExpectLines(c, "put b  spaced \n", {"OK"});
  ExpectLines(c, "get b\n", {" spaced "});
  ExpectLines(c, "MGET a missing b\n", {"hello world", "KEY NOT FOUND", " spaced "});
  ExpectLines(c, "DELETE a\n", {"OK"});
  ExpectLines(c, "DEL a\n", {"KEY NOT FOUND"});
  ExpectLines(c, "GET a\n", {"KEY NOT FOUND"});
  ExpectLines(c, "PING\n", {"PONG"});
  ExpectLines(c, "SET e \n", {"OK"});  // empty value
  ExpectLines(c, "GET e\n", {""});
  ExpectLines(c, "HELLO\n", {"INVALID COMMAND"});
  // "\r\n" lines get "\r\n" replies (ReadLine keeps the '\r').
  ExpectLines(c, "GET b\r\nMGET b x\r\n", {" spaced \r", " spaced \r", "KEY NOT FOUND\r"});
  ASSERT_TRUE(c.Send("QUIT\nPING\n"));  // nothing after QUIT is answered
  EXPECT_EQ(c.ReadUntilClosed(), "");
}

TEST(TcpServerTest, NcStyleClientThatHalfClosesGetsAllReplies) {
  // printf 'SET a hello world\nGET a\n' | nc -q1 127.0.0.1 PORT
  TcpFixture f;
  TestClient c(f.Start());
  ASSERT_TRUE(c.Send("SET a hello world\nGET a\n"));
  c.ShutdownWrite();
  EXPECT_EQ(c.ReadUntilClosed(), "OK\nhello world\n");
}

TEST(TcpServerTest, RespCommands) {
  TcpFixture f;
  TestClient c(f.Start());
  ExpectResp(c, {"PING"}, "+PONG\r\n");
  ExpectResp(c, {"SET", "a", "x y"}, "+OK\r\n");
  ExpectResp(c, {"GET", "a"}, "$3\r\nx y\r\n");
  ExpectResp(c, {"GET", "nope"}, "$-1\r\n");
  std::string binary("\0\r\n\xff", 4);
  ExpectResp(c, {"SET", "bin", binary}, "+OK\r\n");
  ExpectResp(c, {"GET", "bin"}, "$4\r\n" + binary + "\r\n");
  ExpectResp(c, {"MSET", "k1", "v1", "k2", "v2"}, "+OK\r\n");
  ExpectResp(c, {"MGET", "k1", "nope", "k2"}, "*3\r\n$2\r\nv1\r\n$-1\r\n$2\r\nv2\r\n");
  ExpectResp(c, {"EXISTS", "k1", "nope", "k1"}, ":2\r\n");
  ExpectResp(c, {"DBSIZE"}, ":4\r\n");
  ExpectResp(c, {"DEL", "k1", "k2", "nope", "k1"}, ":2\r\n");
  ExpectResp(c, {"DBSIZE"}, ":2\r\n");
  ExpectResp(c, {"ECHO", "hi"}, "$2\r\nhi\r\n");
  ASSERT_TRUE(c.Send(RespCommand({"INFO"})));
  std::optional<std::string> info = c.ReadResp();
  ASSERT_TRUE(info);
  EXPECT_NE(info->find("redis_version:"), std::string::npos);
  EXPECT_NE(info->find("raft_role:leader"), std::string::npos);
  ExpectResp(c, {"QUIT"}, "+OK\r\n");
  EXPECT_EQ(c.ReadUntilClosed(), "");
}

TEST(TcpServerTest, TextAndRespMixOnOneConnection) {
  TcpFixture f;
  TestClient c(f.Start());
  ASSERT_TRUE(c.Send("SET a 1\n" + RespCommand({"GET", "a"}) + "GET a\n"));
  EXPECT_EQ(c.ReadLine(), "OK");
  EXPECT_EQ(c.ReadResp(), "$1\r\n1\r\n");
  EXPECT_EQ(c.ReadLine(), "1");
}

// Hundreds of commands in one write: replies in request order, and each GET sees the SET
// sent before it (even though reads and writes complete on another thread).
TEST(TcpServerTest, RespPipelineIsAnsweredInOrder) {
  TcpFixture f;
  TestClient c(f.Start());
  std::string batch;
  std::vector<std::string> want;
  for (int i = 0; i < 300; ++i) {
    std::string key = absl::StrCat("k", i % 7);
    std::string value = absl::StrCat("v", i);
    batch += RespCommand({"SET", key, value});
    want.push_back("+OK\r\n");
    batch += RespCommand({"PING", value});  // immediate: must not overtake the SET
    want.push_back(absl::StrCat("$", value.size(), "\r\n", value, "\r\n"));
    batch += RespCommand({"GET", key});
    want.push_back(absl::StrCat("$", value.size(), "\r\n", value, "\r\n"));
    batch += RespCommand({"EXISTS", key, "absent"});
    want.push_back(":1\r\n");
  }
  ASSERT_TRUE(c.Send(batch));
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(c.ReadResp(), want[i]) << "reply " << i;
  }
}

TEST(TcpServerTest, TextPipelineIsAnsweredInOrder) {
  TcpFixture f;
  TestClient c(f.Start());
  std::string batch;
  std::vector<std::string> want;
  for (int i = 0; i < 300; ++i) {
    batch += absl::StrCat("SET k v", i, "\nGET k\nPING\nDEL k\nGET k\n");
    for (std::string line : {std::string("OK"), absl::StrCat("v", i), std::string("PONG"),
                             std::string("OK"), std::string("KEY NOT FOUND")}) {
      want.push_back(line);
    }
  }
  ASSERT_TRUE(c.Send(batch));
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(c.ReadLine(), want[i]) << "reply " << i;
  }
}

// Writes of one connection do not overlap (the Replicator does not promise to keep the order
// of concurrent writes): with the replicator holding requests, only the first is handed over.
TEST(TcpServerTest, WritesOfOneConnectionRunOneAtATime) {
  TcpFixture f;
  TestClient c(f.Start());
  f.replicator().Hold(true);
  ASSERT_TRUE(c.Send("SET a 1\nSET a 2\nSET a 3\n"));
  EXPECT_EQ(f.replicator().AwaitQueued(1), 1u);
  // A negative: give a wrong implementation time to hand over a second write.
  EXPECT_EQ(f.replicator().AwaitQueued(2, absl::Milliseconds(300)), 1u);
  f.replicator().Hold(false);
  EXPECT_EQ(c.ReadLine(), "OK");
  EXPECT_EQ(c.ReadLine(), "OK");
  EXPECT_EQ(c.ReadLine(), "OK");
  ExpectLines(c, "GET a\n", {"3"});
}

// Issue 10: the two kinds of failure read differently on the wire: "not applied, safe to
// retry" is ERR UNAVAILABLE, "outcome unknown" is ERR UNKNOWN (text and RESP alike); a request
// refused as given keeps a plain ERR.
TEST(TcpServerTest, ClusterErrorsAreErrLines) {
  TcpFixture f;
  TestClient c(f.Start());
  f.replicator().FailWith(absl::UnavailableError("no leader"));
  ExpectLines(c, "SET a 1\n", {"ERR UNAVAILABLE no leader"});
  ExpectLines(c, "GET a\n", {"ERR UNAVAILABLE no leader"});
  ExpectLines(c, "MGET a b\n", {"ERR UNAVAILABLE no leader"});
  ExpectResp(c, {"SET", "a", "1"}, "-ERR UNAVAILABLE no leader\r\n");
  ExpectResp(c, {"MGET", "a", "b"}, "-ERR UNAVAILABLE no leader\r\n");
  f.replicator().FailWith(absl::ResourceExhaustedError("too many pending writes"));
  ExpectLines(c, "DEL a\n", {"ERR UNAVAILABLE too many pending writes"});
  ExpectResp(c, {"DEL", "a"}, "-ERR UNAVAILABLE too many pending writes\r\n");
  f.replicator().FailWith(absl::DeadlineExceededError("not answered within 5000 ms"));
  ExpectLines(c, "SET a 1\n", {"ERR UNKNOWN not answered within 5000 ms"});
  ExpectResp(c, {"SET", "a", "1"}, "-ERR UNKNOWN not answered within 5000 ms\r\n");
  f.replicator().FailWith(absl::UnknownError("node is shutting down"));
  ExpectLines(c, "DELETE a\n", {"ERR UNKNOWN node is shutting down"});
  ExpectResp(c, {"MSET", "a", "1"}, "-ERR UNKNOWN node is shutting down\r\n");
  f.replicator().FailWith(absl::InvalidArgumentError("malformed command"));
  ExpectLines(c, "SET a 1\n", {"ERR malformed command"});
  f.replicator().FailWith(absl::OkStatus());
  ExpectLines(c, "SET a 1\n", {"OK"});
  ExpectLines(c, "GET a\n", {"1"});
}

// SESSION: the writes that follow carry the session and consecutive sequences; sending a
// write again under its sequence (here on another connection) is answered with the first
// result and not applied again.
TEST(TcpServerTest, SessionMakesRetriedWritesApplyOnce) {
  TcpFixture f;
  TestClient c(f.Start());
  ExpectLines(c, "SET gone 1\n", {"OK"});
  ExpectLines(c, "SESSION 77 5\n", {"OK"});
  ExpectLines(c, "DEL gone\nSET k first\n", {"OK", "OK"});  // sequences 5 and 6
  ExpectLines(c, "SET k other\n", {"OK"});                 // sequence 7
  TestClient again(f.port());
  ExpectLines(again, "SESSION 77 5\n", {"OK"});
  // The DEL deleted the key the first time: its retry says so (not KEY NOT FOUND), and the
  // retried SET does not overwrite the newer value.
  ExpectLines(again, "DEL gone\nSET k first\n", {"OK", "OK"});
  ExpectLines(again, "GET k\n", {"other"});
  // Without a session the same DEL is a new write.
  TestClient plain(f.port());
  ExpectLines(plain, "DEL gone\n", {"KEY NOT FOUND"});
  // RESP shares the command.
  ExpectResp(again, {"SESSION", "78", "1"}, "+OK\r\n");
  ExpectResp(again, {"DEL", "k"}, ":1\r\n");
  ExpectResp(again, {"SESSION", "78", "1"}, "+OK\r\n");
  ExpectResp(again, {"DEL", "k"}, ":1\r\n");
  ExpectResp(again, {"SESSION", "0", "1"},
             "-ERR SESSION wants a client id >= 1 and a next sequence >= 1, both decimal\r\n");
  ExpectLines(again, "SESSION 1\n", {"INVALID COMMAND"});
  ExpectLines(again, "SESSION x 1\n", {"INVALID COMMAND"});
}

TEST(TcpServerTest, ConnectionsOverTheLimitAreToldAndClosed) {
  TcpFixture f;
  f.options.max_connections = 2;
  uint16_t port = f.Start();
  TestClient a(port), b(port);
  ExpectLines(a, "PING\n", {"PONG"});
  ExpectLines(b, "PING\n", {"PONG"});
  TestClient over(port);
  EXPECT_EQ(over.ReadUntilClosed(), "ERR too many connections\r\n");
  ExpectLines(a, "PING\n", {"PONG"});  // the others are undisturbed
  a.Close();
  ASSERT_TRUE(AwaitTrue([&] { return f.server().num_connections() == 1; }));
  TestClient again(port);
  ExpectLines(again, "PING\n", {"PONG"});
}

TEST(TcpServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
  TcpFixture f;
  f.options.idle_timeout_ms = 200;
  uint16_t port = f.Start();
  TestClient idle(port);
  ExpectLines(idle, "PING\n", {"PONG"});
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(idle.ReadUntilClosed(), "");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  TestClient other(port);
  ExpectLines(other, "PING\n", {"PONG"});
}

TEST(TcpServerTest, WaitingForTheClusterIsNotIdle) {
  TcpFixture f;
  f.options.idle_timeout_ms = 100;
  TestClient c(f.Start());
  f.replicator().Hold(true);
  ASSERT_TRUE(c.Send("SET a 1\n"));
  ASSERT_EQ(f.replicator().AwaitQueued(1), 1u);
  // Twice the idle timeout passes with the request in flight: the connection must stay.
  EXPECT_EQ(c.ReadLine(/*timeout_ms=*/300), std::nullopt);
  EXPECT_FALSE(c.eof());
  f.replicator().Hold(false);
  EXPECT_EQ(c.ReadLine(), "OK");
}

// A client that sends requests but never reads the replies: once our writes make no progress
// for idle_timeout_ms, the connection is closed (its buffers and slots are not held forever).
TEST(TcpServerTest, ClientThatNeverReadsIsClosedAfterIdleTimeout) {
  TcpFixture f;
  f.options.idle_timeout_ms = 300;
  f.options.max_pending_per_conn = 8;
  TestClient c(f.Start());
  std::string big(1 << 20, 'b');
  ASSERT_TRUE(c.Send(RespCommand({"SET", "big", big})));
  ASSERT_EQ(c.ReadResp(), "+OK\r\n");
  std::string gets;
  for (int i = 0; i < 64; ++i) gets += "GET big\n";  // 64 MiB of replies, far over the buffers
  ASSERT_TRUE(c.Send(gets));
  ASSERT_TRUE(AwaitTrue([&] { return f.server().num_connections() == 0; }));
  EXPECT_TRUE(c.ReadUntilClosed().has_value());
  TestClient other(f.port());
  ExpectLines(other, "PING\n", {"PONG"});
}

// At most max_pending_per_conn requests of a connection are unanswered at a time; the rest
// wait in the socket until replies drain. Counted with writes: the replicator sees each (the
// reads of a pipeline share one barrier, tcp_pipeline_test.cc).
TEST(TcpServerTest, BackpressureBoundsPendingRequestsPerConnection) {
  TcpFixture f;
  f.options.max_pending_per_conn = 4;
  TestClient c(f.Start());
  f.replicator().Hold(true);
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += absl::StrCat("SET k", i, " v\n");
  ASSERT_TRUE(c.Send(batch));
  EXPECT_EQ(f.replicator().AwaitQueuedWrites(4), 4u);
  EXPECT_EQ(f.replicator().AwaitQueuedWrites(5, absl::Milliseconds(300)), 4u);
  f.replicator().Hold(false);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(c.ReadLine(), "OK") << i;
  EXPECT_EQ(f.replicator().writes_applied(), 100u);
}

// The same bound for reads, whose pipeline shares read barriers: 100 GETs sent at once (one
// read of the socket) go to the replicator at most 4 at a time, so they take at least 25
// barriers (without the bound: one, for all of them).
TEST(TcpServerTest, BackpressureBoundsPendingReadsPerConnection) {
  TcpFixture f;
  f.options.max_pending_per_conn = 4;
  TestClient c(f.Start());
  f.replicator().Hold(true);
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += "GET k\n";
  ASSERT_TRUE(c.Send(batch));
  EXPECT_GE(f.replicator().AwaitQueued(1), 1u);
  f.replicator().Hold(false);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(c.ReadLine(), "KEY NOT FOUND") << i;
  EXPECT_GE(f.replicator().read_barriers(), 25u) << "more than 4 reads shared a barrier";
}

TEST(TcpServerTest, StopFinishesInFlightRequestsThenCloses) {
  TcpFixture f;
  TestClient c(f.Start());
  TestClient idle(f.port());
  ExpectLines(idle, "PING\n", {"PONG"});
  f.replicator().Hold(true);
  ASSERT_TRUE(c.Send("SET a 1\n"));
  ASSERT_EQ(f.replicator().AwaitQueued(1), 1u);
  std::thread stopper([&] { f.server().Stop(); });
  EXPECT_EQ(idle.ReadUntilClosed(), "");  // idle connections close at once
  f.replicator().Hold(false);
  EXPECT_EQ(c.ReadUntilClosed(), "OK\n");  // the in-flight write is answered, then closed
  stopper.join();
  EXPECT_EQ(f.server().num_connections(), 0u);
  EXPECT_FALSE(CanConnect(f.port()));  // no longer listening
}

TEST(TcpServerTest, StartErrors) {
  TcpFixture f;
  uint16_t port = f.Start();
  KvService kv(&f.replicator(), &f.state_machine(), KvLimits{});
  TcpServer same_port(&kv, TcpServerOptions{});
  EXPECT_EQ(same_port.Start("127.0.0.1", port).code(), absl::StatusCode::kUnavailable);
  TcpServer bad_host(&kv, TcpServerOptions{});
  EXPECT_EQ(bad_host.Start("not-an-address", 0).code(), absl::StatusCode::kInvalidArgument);
  TcpServerOptions too_small;
  too_small.max_request_bytes = 1000;  // a 1 MiB value could never be SET
  TcpServer bad_options(&kv, too_small);
  EXPECT_EQ(bad_options.Start("127.0.0.1", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.server().Start("127.0.0.1", 0).code(), absl::StatusCode::kFailedPrecondition);
  TestClient c(port);  // the first server is undisturbed
  ExpectLines(c, "PING\n", {"PONG"});
}

TEST(TcpServerTest, OptionsAreValidated) {
  TcpServerOptions o;
  EXPECT_TRUE(o.Validate(1024, 1 << 20).ok());
  EXPECT_FALSE(o.Validate(1024, 8 << 20).ok());  // a maximal SET would not fit
  o.max_pending_per_conn = 0;
  EXPECT_FALSE(o.Validate(1024, 1 << 20).ok());
  o.max_pending_per_conn = 1;
  o.max_pipeline_writes = 0;
  EXPECT_FALSE(o.Validate(1024, 1 << 20).ok());
  o.max_pipeline_writes = 1;
  o.max_pipeline_write_bytes = 0;
  EXPECT_FALSE(o.Validate(1024, 1 << 20).ok());
  o.max_pipeline_write_bytes = 1;
  EXPECT_TRUE(o.Validate(1024, 1 << 20).ok());
  TcpServerOptions small_reply;
  EXPECT_EQ(small_reply.max_reply_bytes, 8u << 20);
  small_reply.max_reply_bytes = (1 << 20) + 63;  // a GET of a maximal value would not fit
  EXPECT_FALSE(small_reply.Validate(1024, 1 << 20).ok());
  small_reply.max_reply_bytes = (1 << 20) + 64;
  EXPECT_TRUE(small_reply.Validate(1024, 1 << 20).ok());
}

}  // namespace
}  // namespace raftkv::server
