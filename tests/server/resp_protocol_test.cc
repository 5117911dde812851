// The RESP2 request parser and the replies known at parse time, without sockets
// (resp_protocol.h).
#include "server/frontend/tcp/resp_protocol.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/fakes.h"

namespace raftkv::server {
namespace {

constexpr size_t kMaxReplyBytes = 8 << 20;

using testing::RespCommand;
using Args = std::vector<std::string>;
using Status = RespRequestParser::Status;

RespLimits SmallLimits() { return RespLimits{/*max_args=*/8, /*max_request_bytes=*/64}; }

TEST(RespParserTest, ParsesOneArrayAndReportsItsLength) {
  RespRequestParser p(RespLimits{});
  std::string req = RespCommand({"SET", "key", "hello world"});
  auto r = p.Parse(req + "*1\r\n");  // the next request's start is not consumed
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.consumed, req.size());
  EXPECT_EQ(r.args, (Args{"SET", "key", "hello world"}));
}

TEST(RespParserTest, BinarySafeBulkStrings) {
  RespRequestParser p(RespLimits{});
  std::string value("a\r\nb\0c", 6);
  auto r = p.Parse(RespCommand({"SET", "k", value}));
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.args[2], value);
}

TEST(RespParserTest, EmptyArrayAndEmptyBulk) {
  RespRequestParser p(RespLimits{});
  auto r = p.Parse("*0\r\n");
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.consumed, 4u);
  EXPECT_TRUE(r.args.empty());
  r = p.Parse("*1\r\n$0\r\n\r\n");
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.args, (Args{""}));
}

// Every split point of a request: incomplete until the last byte, then the same result.
TEST(RespParserTest, IncrementalAcrossEveryPrefix) {
  std::string req = RespCommand({"MSET", "k1", "value one", "k2", ""});
  RespRequestParser p(RespLimits{});
  for (size_t n = 1; n < req.size(); ++n) {
    auto r = p.Parse(std::string_view(req).substr(0, n));
    ASSERT_EQ(r.status, Status::kIncomplete) << "prefix " << n;
  }
  auto r = p.Parse(req);
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.args, (Args{"MSET", "k1", "value one", "k2", ""}));
  // And the parser is reset for the next request.
  r = p.Parse(RespCommand({"PING"}));
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.args, (Args{"PING"}));
}

TEST(RespParserTest, MalformedFramingIsAnError) {
  struct Case {
    std::string input;
    std::string error;
  };
  std::vector<Case> cases = {
      {"*x\r\n", "invalid multibulk length"},
      {"*-1\r\n", "invalid multibulk length"},
      {"*\r\n", "invalid multibulk length"},
      {"*9\r\n", "invalid multibulk length"},                   // over max_args (8)
      {"*99999999999999999999\r\n", "invalid multibulk length"},
      {"*1\r\n:5\r\n", "expected '$', got ':'"},                 // not a bulk string
      {"*1\r\n+OK\r\n", "expected '$', got '+'"},
      {"*1\r\n$-1\r\n", "invalid bulk length"},                   // null bulk in a request
      {"*1\r\n$abc\r\n", "invalid bulk length"},
      {"*1\r\n$65\r\n", "invalid bulk length"},                   // over max_request_bytes
      {"*2\r\n$30\r\n012345678901234567890123456789\r\n$30\r\n", "request too large"},
      {"*1\r\n$1\r\nab\r\n", "bulk string longer than its declared length"},  // lying length
      {"*1\r\n$3\r\nab\r\n\r\n", "bulk string longer than its declared length"},
      {"*1" + std::string(40, '1'), "invalid multibulk length"},  // header without end
  };
  for (const Case& c : cases) {
    RespRequestParser p(SmallLimits());
    auto r = p.Parse(c.input);
    EXPECT_EQ(r.status, Status::kError) << c.input;
    EXPECT_EQ(r.error, c.error) << c.input;
  }
}

TEST(RespParserTest, ShortBulkWaitsForMoreBytes) {
  // A bulk whose bytes have not all arrived is not an error: the partial-request timeout
  // deals with a client that never sends them.
  RespRequestParser p(RespLimits{});
  EXPECT_EQ(p.Parse("*2\r\n$3\r\nGET\r\n$10\r\nab").status, Status::kIncomplete);
}

std::string ImmediateReply(Args args) {
  RespSession session;
  session.client_id = 7;
  TcpRequest req = PrepareRespRequest(std::move(args), &session, kMaxReplyBytes);
  EXPECT_EQ(req.kind, RequestKind::kImmediate);
  return req.reply;
}

TEST(RespCommandsTest, PingEchoSelectQuit) {
  EXPECT_EQ(ImmediateReply({"PING"}), "+PONG\r\n");
  EXPECT_EQ(ImmediateReply({"ping", "hi there"}), "$8\r\nhi there\r\n");
  EXPECT_EQ(ImmediateReply({"ECHO", "x"}), "$1\r\nx\r\n");
  EXPECT_EQ(ImmediateReply({"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(ImmediateReply({"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  RespSession session;
  TcpRequest quit = PrepareRespRequest({"QUIT"}, &session, kMaxReplyBytes);
  EXPECT_EQ(quit.reply, "+OK\r\n");
  EXPECT_TRUE(quit.close_after);
}

TEST(RespCommandsTest, HandshakesOfRedisCliAndRedisBenchmark) {
  // redis-cli 7 (interactive): COMMAND DOCS; redis-benchmark: CONFIG GET save / appendonly.
  EXPECT_EQ(ImmediateReply({"COMMAND", "DOCS"}), "*0\r\n");
  EXPECT_EQ(ImmediateReply({"COMMAND"}), "*0\r\n");
  EXPECT_EQ(ImmediateReply({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(ImmediateReply({"CONFIG", "GET", "appendonly"}),
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(ImmediateReply({"CONFIG", "GET", "maxmemory"}), "*0\r\n");
  EXPECT_EQ(ImmediateReply({"CONFIG", "SET", "save", ""}),
            "-ERR CONFIG SET is not supported\r\n");
  EXPECT_EQ(ImmediateReply({"HELLO", "3"}), "-NOPROTO unsupported protocol version\r\n");
  std::string hello = ImmediateReply({"HELLO"});
  EXPECT_EQ(hello.substr(0, 5), "*14\r\n");
  EXPECT_NE(hello.find("$5\r\nproto\r\n:2\r\n"), std::string::npos);
  EXPECT_EQ(ImmediateReply({"CLIENT", "SETNAME", "x"}), "+OK\r\n");
  EXPECT_EQ(ImmediateReply({"CLIENT", "ID"}), ":7\r\n");
}

TEST(RespCommandsTest, ClientNameIsKeptPerSession) {
  RespSession session;
  EXPECT_EQ(PrepareRespRequest({"CLIENT", "GETNAME"}, &session, kMaxReplyBytes).reply,
            "$-1\r\n");
  PrepareRespRequest({"CLIENT", "SETNAME", "app"}, &session, kMaxReplyBytes);
  EXPECT_EQ(PrepareRespRequest({"CLIENT", "GETNAME"}, &session, kMaxReplyBytes).reply,
            "$3\r\napp\r\n");
}

TEST(RespCommandsTest, ArityAndUnknownCommands) {
  EXPECT_EQ(ImmediateReply({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(ImmediateReply({"GET", "a", "b"}),
            "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(ImmediateReply({"set", "a"}), "-ERR wrong number of arguments for 'set' command\r\n");
  EXPECT_EQ(ImmediateReply({"MSET", "a"}),
            "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(ImmediateReply({"MSET", "a", "1", "b"}),
            "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(ImmediateReply({"DEL"}), "-ERR wrong number of arguments for 'del' command\r\n");
  EXPECT_EQ(ImmediateReply({"EXISTS"}),
            "-ERR wrong number of arguments for 'exists' command\r\n");
  EXPECT_EQ(ImmediateReply({"SET", "a", "b", "EX", "10"}),
            "-ERR SET options (EX, PX, NX, XX, GET, KEEPTTL, ...) are not supported\r\n");
  EXPECT_EQ(ImmediateReply({"FLUSHALL"}),
            "-ERR unknown command 'FLUSHALL', with args beginning with: \r\n");
  // Client bytes echoed in an error cannot break the framing.
  EXPECT_EQ(ImmediateReply({"X\r\nY", "a\nb"}),
            "-ERR unknown command 'X??Y', with args beginning with: 'a?b' \r\n");
}

TEST(RespCommandsTest, KvCommandsAreReadsOrWrites) {
  RespSession s;
  EXPECT_EQ(PrepareRespRequest({"GET", "a"}, &s, kMaxReplyBytes).kind, RequestKind::kRead);
  EXPECT_EQ(PrepareRespRequest({"MGET", "a", "b"}, &s, kMaxReplyBytes).kind, RequestKind::kRead);
  EXPECT_EQ(PrepareRespRequest({"EXISTS", "a"}, &s, kMaxReplyBytes).kind, RequestKind::kRead);
  EXPECT_EQ(PrepareRespRequest({"SET", "a", "1"}, &s, kMaxReplyBytes).kind, RequestKind::kWrite);
  EXPECT_EQ(PrepareRespRequest({"MSET", "a", "1"}, &s, kMaxReplyBytes).kind, RequestKind::kWrite);
  EXPECT_EQ(PrepareRespRequest({"DEL", "a"}, &s, kMaxReplyBytes).kind, RequestKind::kWrite);
}

}  // namespace
}  // namespace raftkv::server
