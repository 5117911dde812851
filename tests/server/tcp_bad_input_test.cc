// Bad input against a live server (every limit of kvd --help): each case gets a clear error or a
// clean close, and afterwards another client still gets correct service.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/fakes.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server {
namespace {

using testing::AwaitTrue;
using testing::RespCommand;
using testing::TcpFixture;
using testing::TestClient;

class TcpBadInputTest : public ::testing::Test {
 protected:
  TcpBadInputTest() {
    f_.options.max_line_bytes = 1024;
    f_.options.partial_request_timeout_ms = 300;
    f_.limits.max_key_bytes = 16;
    f_.limits.max_value_bytes = 100;
  }

  uint16_t Start() { return f_.Start(); }

  // A fresh client can write and read back, over both protocols.
  void ExpectOthersServed() {
    TestClient c(f_.port());
    std::string value = absl::StrCat("v", ++serial_);
    ASSERT_TRUE(c.Send("SET check " + value + "\nGET check\n"));
    EXPECT_EQ(c.ReadLine(), "OK");
    EXPECT_EQ(c.ReadLine(), value);
    ASSERT_TRUE(c.Send(RespCommand({"GET", "check"})));
    EXPECT_EQ(c.ReadResp(), absl::StrCat("$", value.size(), "\r\n", value, "\r\n"));
  }

  TcpFixture f_;
  int serial_ = 0;
};

TEST_F(TcpBadInputTest, OverLongLineWithoutNewlineIsRejectedAndClosed) {
  TestClient c(Start());
  ASSERT_TRUE(c.Send(std::string(1024 + 2, 'a')));
  EXPECT_EQ(c.ReadUntilClosed(), "ERR line too long\r\n");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, OverLongCompleteLineIsRejectedAndClosed) {
  TestClient c(Start());
  // Much more than the limit, and more after it: the close must not destroy the reply.
  ASSERT_TRUE(c.Send("SET k " + std::string(5000, 'v') + "\nPING\n"));
  EXPECT_EQ(c.ReadUntilClosed(), "ERR line too long\r\n");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, LineOfExactlyTheLimitIsServed) {
  f_.limits.max_value_bytes = 2000;
  TestClient c(Start());
  std::string line = "SET k " + std::string(1024 - 6, 'v');
  ASSERT_EQ(line.size(), 1024u);
  ASSERT_TRUE(c.Send(line + "\r\nGET k\n"));
  EXPECT_EQ(c.ReadLine(), "OK\r");
  EXPECT_EQ(c.ReadLine(), std::string(1024 - 6, 'v'));
}

TEST_F(TcpBadInputTest, KeyOverLimitIsAnErrorAndTheConnectionStays) {
  TestClient c(Start());
  std::string key(17, 'k');
  ASSERT_TRUE(c.Send("SET " + key + " v\nGET " + key + "\nMGET a " + key + "\n"));
  EXPECT_EQ(c.ReadLine(), "ERR key too long (17 bytes, limit 16)");
  EXPECT_EQ(c.ReadLine(), "ERR key too long (17 bytes, limit 16)");
  EXPECT_EQ(c.ReadLine(), "ERR key too long (17 bytes, limit 16)");
  ASSERT_TRUE(c.Send(RespCommand({"SET", key, "v"})));
  EXPECT_EQ(c.ReadResp(), "-ERR key too long (17 bytes, limit 16)\r\n");
  ASSERT_TRUE(c.Send("SET " + std::string(16, 'k') + " v\n"));  // at the limit: fine
  EXPECT_EQ(c.ReadLine(), "OK");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, ValueOverLimitIsAnErrorAndNothingIsWritten) {
  TestClient c(Start());
  ASSERT_TRUE(c.Send("SET a " + std::string(101, 'v') + "\nGET a\n"));
  EXPECT_EQ(c.ReadLine(), "ERR value too large (101 bytes, limit 100)");
  EXPECT_EQ(c.ReadLine(), "KEY NOT FOUND");
  ASSERT_TRUE(c.Send(RespCommand({"MSET", "a", "1", "b", std::string(101, 'v')})));
  EXPECT_EQ(c.ReadResp(), "-ERR value too large (101 bytes, limit 100)\r\n");
  ASSERT_TRUE(c.Send(RespCommand({"EXISTS", "a", "b"})));
  EXPECT_EQ(c.ReadResp(), ":0\r\n");  // MSET is atomic: not even "a"
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, UnknownVerbsAndMissingArguments) {
  TestClient c(Start());
  ASSERT_TRUE(c.Send("FLUSHALL\nSET a\nGET\nDEL\nMGET\nSET\n\nPING\n"));
  for (int i = 0; i < 7; ++i) EXPECT_EQ(c.ReadLine(), "INVALID COMMAND") << i;
  EXPECT_EQ(c.ReadLine(), "PONG");
  ASSERT_TRUE(c.Send(RespCommand({"FLUSHALL"}) + RespCommand({"GET"})));
  EXPECT_EQ(c.ReadResp(), "-ERR unknown command 'FLUSHALL', with args beginning with: \r\n");
  EXPECT_EQ(c.ReadResp(), "-ERR wrong number of arguments for 'get' command\r\n");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, NulBytesMakeALineInvalid) {
  TestClient c(Start());
  const char kData[] = "SET a\0b c\nSET a b\0c\nGET a\0\nGET a\n";
  ASSERT_TRUE(c.Send(std::string(kData, sizeof(kData) - 1)));
  EXPECT_EQ(c.ReadLine(), "INVALID COMMAND");
  EXPECT_EQ(c.ReadLine(), "INVALID COMMAND");
  EXPECT_EQ(c.ReadLine(), "INVALID COMMAND");
  EXPECT_EQ(c.ReadLine(), "KEY NOT FOUND");  // nothing was written
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, BinaryJunkLinesGetInvalidCommand) {
  TestClient c(Start());
  std::mt19937 rng(42);
  std::string junk;
  const int kLines = 50;
  for (int i = 0; i < kLines; ++i) {
    size_t len = rng() % 200;
    for (size_t j = 0; j < len; ++j) {
      char ch = static_cast<char>(rng() % 256);
      if (ch == '\n' || (j == 0 && ch == '*')) ch = '\xff';
      junk += ch;
    }
    junk += '\n';
  }
  ASSERT_TRUE(c.Send(junk));
  for (int i = 0; i < kLines; ++i) {
    std::optional<std::string> line = c.ReadLine();
    ASSERT_TRUE(line) << i;
    EXPECT_TRUE(*line == "INVALID COMMAND" || *line == "INVALID COMMAND\r") << *line;
  }
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, BinaryJunkAfterRespArrayStartIsAProtocolError) {
  TestClient c(Start());
  ASSERT_TRUE(c.Send("*3\r\n\x01\xfe junk" + std::string(100, '\0')));
  EXPECT_EQ(c.ReadUntilClosed(), "-ERR Protocol error: expected '$', got '?'\r\n");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, RespLyingLengthsAreProtocolErrorsThatClose) {
  Start();
  struct Case {
    std::string input;
    std::string reply;
  };
  std::vector<Case> cases = {
      {"*2\r\n$3\r\nGET\r\n$1\r\nabc\r\n",
       "-ERR Protocol error: bulk string longer than its declared length\r\n"},
      {"*-5\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*2\r\n$3\r\nGET\r\n$-7\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*2\r\n$3\r\nGET\r\n$99999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*99999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*2\r\n$3\r\nGET\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
  };
  for (const Case& tc : cases) {
    TestClient c(f_.port());
    // A valid request first: its reply still comes, before the error.
    ASSERT_TRUE(c.Send(RespCommand({"PING"}) + tc.input + RespCommand({"PING"})));
    EXPECT_EQ(c.ReadUntilClosed(), "+PONG\r\n" + tc.reply) << tc.input;
    ExpectOthersServed();
  }
}

TEST_F(TcpBadInputTest, RespLengthLongerThanTheDataTimesOut) {
  TestClient c(Start());
  ASSERT_TRUE(c.Send("*2\r\n$3\r\nGET\r\n$100\r\nabc"));  // 97 bytes never come
  ExpectOthersServed();  // meanwhile, others are served
  EXPECT_EQ(c.ReadUntilClosed(), "");
}

TEST_F(TcpBadInputTest, ClientThatNeverFinishesItsLineIsClosed) {
  TestClient c(Start());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.Send("PING\nSET a b"));
  EXPECT_EQ(c.ReadLine(), "PONG");
  ExpectOthersServed();
  EXPECT_EQ(c.ReadUntilClosed(), "");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  TestClient check(f_.port());
  ASSERT_TRUE(check.Send("GET a\n"));
  EXPECT_EQ(check.ReadLine(), "KEY NOT FOUND");  // the unfinished line did nothing
}

// The partial-request clock starts at the first byte of the request: trickling bytes does
// not keep a connection alive forever (slowloris).
// A byte every 50 ms never leaves the connection quiet for 300 ms: if each byte restarted
// the clock it would stay open for as long as bytes keep coming. The check is that it is
// closed while they still come, not how fast (a loaded machine only makes rounds longer,
// which closes it sooner).
TEST_F(TcpBadInputTest, TricklingBytesDoesNotExtendThePartialTimeout) {
  TestClient c(Start());
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    if (!c.Send("a")) break;
    // Wait 50 ms for the close; 100 rounds is 5 s, far past the 300 ms timeout.
    closed = c.ReadUntilClosed(/*timeout_ms=*/50).has_value();
  }
  EXPECT_TRUE(closed) << "still open after 100 bytes 50 ms apart";
}

TEST_F(TcpBadInputTest, ClientDisconnectingMidRequest) {
  Start();
  // Each client first gets a PONG, so the server has surely accepted it before it goes.
  {
    TestClient c(f_.port());
    ASSERT_TRUE(c.Send("PING\n"));
    ASSERT_EQ(c.ReadLine(), "PONG");
    ASSERT_TRUE(c.Send("SET x 1\nSET y 2"));  // the second line never completes
  }
  {
    TestClient c(f_.port());
    ASSERT_TRUE(c.Send("PING\n"));
    ASSERT_EQ(c.ReadLine(), "PONG");
    ASSERT_TRUE(c.Send(RespCommand({"SET", "y", "2"}).substr(0, 20)));
  }
  // Once the server has closed both, the complete request was applied and the partial not.
  ASSERT_TRUE(AwaitTrue([&] { return f_.server().num_connections() == 0; }));
  TestClient check(f_.port());
  ASSERT_TRUE(check.Send("MGET x y\n"));
  EXPECT_EQ(check.ReadLine(), "1");
  EXPECT_EQ(check.ReadLine(), "KEY NOT FOUND");
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, ClientDisconnectingWithRepliesInFlight) {
  Start();
  f_.replicator().Hold(true);
  {
    TestClient c(f_.port());
    ASSERT_TRUE(c.Send("SET z 1\nGET z\nGET z\n"));
    ASSERT_EQ(f_.replicator().AwaitQueued(1), 1u);
  }  // gone before any reply
  f_.replicator().Hold(false);
  ASSERT_TRUE(AwaitTrue([&] { return f_.server().num_connections() == 0; }));
  TestClient check(f_.port());
  ASSERT_TRUE(check.Send("GET z\n"));
  EXPECT_EQ(check.ReadLine(), "1");  // the write that was handed over is not lost
  ExpectOthersServed();
}

TEST_F(TcpBadInputTest, RequestOverMaxRequestBytesIsAProtocolError) {
  f_.options.max_request_bytes = 100 + 16 + 80;
  TestClient c(Start());
  ASSERT_TRUE(c.Send(RespCommand({"MSET", "a", std::string(100, 'v'), "b", std::string(100, 'v')})));
  EXPECT_EQ(c.ReadUntilClosed(), "-ERR Protocol error: request too large\r\n");
  ExpectOthersServed();
}

}  // namespace
}  // namespace raftkv::server
