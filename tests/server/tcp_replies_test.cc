// Replies on the client port that could break the text framing or grow without bound: values
// with CR or LF read over the text protocol, and --max-reply-bytes (tcp_server.h).
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

constexpr char kGetLineBreakErr[] =
    "ERR value has a line break (CR or LF): read it with RESP GET on this port";
constexpr char kMgetLineBreak[] = "VALUE HAS LINE BREAK";

void SetOverResp(TestClient& c, const std::string& key, const std::string& value) {
  ASSERT_TRUE(c.Send(RespCommand({"SET", key, value})));
  ASSERT_EQ(c.ReadResp(), "+OK\r\n") << "key " << key;
}

// Sends `request` and expects exactly `lines` back, then checks that the next line is the
// answer to a PING sent after it: a reply with one line too many fails here.
void ExpectFramedLines(TestClient& c, const std::string& request,
                       std::vector<std::string> lines, const std::string& eol = "\n") {
  ASSERT_TRUE(c.Send(request + "PING" + eol));
  std::string cr = eol == "\r\n" ? "\r" : "";
  for (const std::string& want : lines) {
    EXPECT_EQ(c.ReadLine(), want + cr) << "request: " << request;
  }
  // "PING\r\n" is answered "+PONG\r\n" (text_protocol.h).
  EXPECT_EQ(c.ReadLine(), std::string(eol == "\r\n" ? "+PONG\r" : "PONG"))
      << "request: " << request;
}

// Values written over RESP (or gRPC) may hold CR or LF; over text, one line per key must
// stay one line.
TEST(TcpRepliesTest, TextReadOfValueWithLineBreakKeepsOneLinePerKey) {
  TcpFixture f;
  TestClient c(f.Start());
  SetOverResp(c, "lf", "line1\nline2");
  SetOverResp(c, "cr", "a\rb");
  SetOverResp(c, "crlf_end", "tail\r\n");
  SetOverResp(c, "tab", "a\tb");  // other control bytes do not break framing: sent as is
  SetOverResp(c, "plain", "hello world");

  ExpectFramedLines(c, "GET lf\n", {kGetLineBreakErr});
  ExpectFramedLines(c, "GET cr\n", {kGetLineBreakErr});
  ExpectFramedLines(c, "GET crlf_end\r\n", {kGetLineBreakErr}, "\r\n");
  ExpectFramedLines(c, "GET tab\n", {"a\tb"});
  ExpectFramedLines(c, "MGET plain lf missing cr tab crlf_end\n",
                    {"hello world", kMgetLineBreak, "KEY NOT FOUND", kMgetLineBreak, "a\tb",
                     kMgetLineBreak});
  ExpectFramedLines(c, "MGET lf plain\r\n", {kMgetLineBreak, "hello world"}, "\r\n");

  // The exact bytes are one RESP GET away, on the same connection.
  ASSERT_TRUE(c.Send(RespCommand({"GET", "lf"})));
  EXPECT_EQ(c.ReadResp(), "$11\r\nline1\nline2\r\n");
}

// What the text protocol writes, it reads back byte for byte: SET refuses a CR in the value
// (the line ends at LF, so LF cannot occur).
TEST(TcpRepliesTest, TextSetRefusesCarriageReturnInValue) {
  TcpFixture f;
  TestClient c(f.Start());
  ExpectFramedLines(c, "SET k a\rb\n",
                    {"ERR value has a CR: a text-protocol value cannot hold line breaks "
                     "(write it with RESP SET)"});
  ExpectFramedLines(c, "SET k v\r\r\n",  // the line's own "\r\n" plus a CR in the value
                    {"ERR value has a CR: a text-protocol value cannot hold line breaks "
                     "(write it with RESP SET)"},
                    "\r\n");
  ExpectFramedLines(c, "GET k\n", {"KEY NOT FOUND"});  // nothing was written
  ExpectFramedLines(c, "SET k v\r\n", {"OK"}, "\r\n");
  ExpectFramedLines(c, "GET k\n", {"v"});
}

// One MGET may name --max-ops-per-request keys of up to --max-value-bytes each: 10,000 MiB
// with the defaults. The default --max-reply-bytes (8 MiB) refuses a reply over it, on both
// protocols, and the connection goes on.
TEST(TcpRepliesTest, MgetOverDefaultMaxReplyBytesIsRefused) {
  constexpr size_t kDefaultMaxReplyBytes = 8 << 20;
  TcpFixture f;
  TestClient c(f.Start());
  const std::string big(f.limits.max_value_bytes, 'v');
  std::vector<std::string> resp_mget = {"MGET"};
  std::string text_mget = "MGET";
  for (int i = 0; i < 9; ++i) {  // 9 MiB of values
    std::string key = absl::StrCat("big", i);
    SetOverResp(c, key, big);
    resp_mget.push_back(key);
    absl::StrAppend(&text_mget, " ", key);
  }
  ASSERT_GT(9 * big.size(), kDefaultMaxReplyBytes);

  // Only sizes and prefixes are compared: a failure must not print megabytes.
  ASSERT_TRUE(c.Send(RespCommand(resp_mget)));
  std::optional<std::string> reply = c.ReadResp();
  ASSERT_TRUE(reply);
  ASSERT_LE(reply->size(), kDefaultMaxReplyBytes);
  EXPECT_EQ(reply->rfind("-ERR UNAVAILABLE reply too large (", 0), 0u) << *reply;

  ASSERT_TRUE(c.Send(text_mget + "\nPING\n"));
  std::optional<std::string> line = c.ReadLine();
  ASSERT_TRUE(line);
  ASSERT_LE(line->size(), kDefaultMaxReplyBytes);
  EXPECT_EQ(line->rfind("ERR UNAVAILABLE reply too large (", 0), 0u) << *line;
  EXPECT_EQ(c.ReadLine(), "PONG");

  // Under the limit: served as before, on the same connection.
  ASSERT_TRUE(c.Send("MGET big0 missing\n"));
  line = c.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_TRUE(*line == big) << line->size() << " bytes";
  EXPECT_EQ(c.ReadLine(), "KEY NOT FOUND");
  ASSERT_TRUE(c.Send(RespCommand({"MGET", "big0", "big1"})));
  reply = c.ReadResp();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply == absl::StrCat("*2\r\n$", big.size(), "\r\n", big, "\r\n$", big.size(),
                                     "\r\n", big, "\r\n"))
      << reply->size() << " bytes";
}

// The bound counts the reply as sent (terminators, RESP headers); the read stops as soon as the
// values alone are over it.
TEST(TcpRepliesTest, MaxReplyBytesCountsTheReplyAsSent) {
  TcpFixture f;
  f.limits.max_value_bytes = 1000;
  f.options.max_reply_bytes = 3003;  // three 1000-byte values on "\n" lines, exactly
  TestClient c(f.Start());
  const std::string v(1000, 'x');
  for (const char* key : {"a", "b", "c", "d", "e"}) SetOverResp(c, key, v);

  ExpectFramedLines(c, "MGET a b c\n", {v, v, v});
  ExpectFramedLines(c, "MGET a b c\r\n",  // 3006 bytes with "\r\n"
                    {"ERR UNAVAILABLE reply too large (3006 bytes, limit 3003): ask for fewer keys"},
                    "\r\n");
  ExpectFramedLines(c, "MGET a b missing\n",  // 2 * 1001 + 14
                    {v, v, "KEY NOT FOUND"});
  ASSERT_TRUE(c.Send(RespCommand({"MGET", "a", "b", "c"})));  // 4 + 3 * (7 + 1000 + 2)
  EXPECT_EQ(c.ReadResp(), "-ERR UNAVAILABLE reply too large (3031 bytes, limit 3003): ask for fewer keys\r\n");
  ASSERT_TRUE(c.Send(RespCommand({"GET", "a"})));
  EXPECT_EQ(c.ReadResp(), "$1000\r\n" + v + "\r\n");
  // The values of a, b, c, d are 4000 bytes: the read stops there, e is not read.
  ExpectFramedLines(c, "MGET a b c d e\n",
                    {"ERR UNAVAILABLE reply too large (over 4000 bytes, limit 3003): ask for fewer keys"});
  ASSERT_TRUE(c.Send(RespCommand({"MGET", "a", "b", "c", "d", "e"})));
  EXPECT_EQ(c.ReadResp(),
            "-ERR UNAVAILABLE reply too large (over 4000 bytes, limit 3003): ask for fewer keys\r\n");
}

}  // namespace
}  // namespace raftkv::server
