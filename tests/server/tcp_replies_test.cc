// Replies on the client port that could break the text framing: values with CR or LF read
// over the text protocol.
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

}  // namespace
}  // namespace raftkv::server
