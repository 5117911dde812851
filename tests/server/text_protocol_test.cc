// The text protocol's line parser, without sockets (text_protocol.h).
#include "server/frontend/tcp/text_protocol.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

using Args = std::vector<std::string>;

constexpr size_t kMaxReplyBytes = 8 << 20;
// The tests here send no SESSION: the writes they prepare carry no session.
ConnectionSession no_session;

void ExpectParse(std::string_view line, TextVerb verb, Args args) {
  TextCommand cmd = ParseTextLine(line);
  EXPECT_EQ(cmd.verb, verb) << "line: " << line;
  EXPECT_EQ(cmd.args, args) << "line: " << line;
}

void ExpectInvalid(std::string_view line) { ExpectParse(line, TextVerb::kInvalid, {}); }

TEST(TextProtocolTest, SetValueIsRestOfLineAfterOneSpace) {
  ExpectParse("SET a hello world", TextVerb::kSet, {"a", "hello world"});
  ExpectParse("PUT a hello world", TextVerb::kSet, {"a", "hello world"});
  ExpectParse("SET a  two leading", TextVerb::kSet, {"a", " two leading"});
  ExpectParse("SET a trailing ", TextVerb::kSet, {"a", "trailing "});
  ExpectParse("SET a ", TextVerb::kSet, {"a", ""});  // an empty value
  ExpectParse("SET k\tv x", TextVerb::kSet, {"k\tv", "x"});  // only ' ' separates
}

TEST(TextProtocolTest, VerbsAreCaseInsensitive) {
  ExpectParse("set a b", TextVerb::kSet, {"a", "b"});
  ExpectParse("pUt a b", TextVerb::kSet, {"a", "b"});
  ExpectParse("get a", TextVerb::kGet, {"a"});
  ExpectParse("Delete a", TextVerb::kDelete, {"a"});
  ExpectParse("del a", TextVerb::kDelete, {"a"});
  ExpectParse("mget a b", TextVerb::kMget, {"a", "b"});
  ExpectParse("ping", TextVerb::kPing, {});
  ExpectParse("Quit", TextVerb::kQuit, {});
}

TEST(TextProtocolTest, KeysAreCaseSensitive) {
  ExpectParse("GET Key", TextVerb::kGet, {"Key"});
}

TEST(TextProtocolTest, GetDeleteMget) {
  ExpectParse("GET a", TextVerb::kGet, {"a"});
  ExpectParse("GET  a ", TextVerb::kGet, {"a"});
  ExpectParse("DELETE a", TextVerb::kDelete, {"a"});
  ExpectParse("MGET k1 k2  k3", TextVerb::kMget, {"k1", "k2", "k3"});
  ExpectParse("  PING", TextVerb::kPing, {});
}

TEST(TextProtocolTest, MissingOrExtraArgumentsAreInvalid) {
  ExpectInvalid("SET");
  ExpectInvalid("SET ");
  ExpectInvalid("SET a");      // no value: no space after the key
  ExpectInvalid("GET");
  ExpectInvalid("GET a b");    // keys contain no spaces
  ExpectInvalid("DEL");
  ExpectInvalid("DELETE a b");
  ExpectInvalid("MGET");
  ExpectInvalid("MGET   ");
  ExpectInvalid("PING x");
  ExpectInvalid("QUIT now");
}

TEST(TextProtocolTest, UnknownVerbsAndJunkAreInvalid) {
  ExpectInvalid("");
  ExpectInvalid("   ");
  ExpectInvalid("FLUSHALL");
  ExpectInvalid("SETX a b");
  ExpectInvalid("\x01\x02\xff\xfe");
  ExpectInvalid("GETa");
}

TEST(TextProtocolTest, NulByteMakesTheLineInvalid) {
  ExpectInvalid(std::string_view("SET a b\0c", 9));
  ExpectInvalid(std::string_view("GET a\0", 6));
  ExpectInvalid(std::string_view("\0", 1));
}

// SESSION id seq (issue 10): the writes parsed after it take seq, seq+1, ... in order; a
// malformed one is INVALID COMMAND and changes nothing.
TEST(TextProtocolTest, SessionNumbersTheWritesThatFollow) {
  TextCommand cmd = ParseTextLine("session 12 7");
  EXPECT_EQ(cmd.verb, TextVerb::kSession);
  EXPECT_EQ(cmd.args, (Args{"12", "7"}));
  EXPECT_EQ(ParseTextLine("SESSION 12").verb, TextVerb::kInvalid);
  EXPECT_EQ(ParseTextLine("SESSION 1 2 3").verb, TextVerb::kInvalid);

  ConnectionSession session;
  EXPECT_EQ(PrepareTextRequest("SESSION 0 1", false, kMaxReplyBytes, &session).reply,
            "INVALID COMMAND\n");
  EXPECT_EQ(PrepareTextRequest("SESSION 5 x", false, kMaxReplyBytes, &session).reply,
            "INVALID COMMAND\n");
  EXPECT_EQ(session.client_id, 0u);
  EXPECT_EQ(PrepareTextRequest("SESSION 12 7", true, kMaxReplyBytes, &session).reply, "OK\r\n");
  EXPECT_EQ(session.client_id, 12u);
  PrepareTextRequest("SET a 1", false, kMaxReplyBytes, &session);
  PrepareTextRequest("GET a", false, kMaxReplyBytes, &session);  // reads take no sequence
  PrepareTextRequest("DEL a", false, kMaxReplyBytes, &session);
  EXPECT_EQ(session.next_sequence, 9u);
  WriteSession next = session.Take();
  EXPECT_EQ(next.client_id, 12u);
  EXPECT_EQ(next.sequence, 9u);
}

TEST(TextProtocolTest, ImmediateReplies) {
  EXPECT_EQ(PrepareTextRequest("PING", false, kMaxReplyBytes, &no_session).reply, "PONG\n");
  // The inline PING of redis-benchmark expects RESP.
  EXPECT_EQ(PrepareTextRequest("PING", true, kMaxReplyBytes, &no_session).reply, "+PONG\r\n");
  EXPECT_EQ(PrepareTextRequest("BOGUS", false, kMaxReplyBytes, &no_session).reply, "INVALID COMMAND\n");
  EXPECT_EQ(PrepareTextRequest("BOGUS", true, kMaxReplyBytes, &no_session).reply, "INVALID COMMAND\r\n");
  TcpRequest quit = PrepareTextRequest("QUIT", false, kMaxReplyBytes, &no_session);
  EXPECT_TRUE(quit.close_after);
  EXPECT_EQ(quit.reply, "");
  EXPECT_EQ(PrepareTextRequest("SET a b", false, kMaxReplyBytes, &no_session).kind, RequestKind::kWrite);
  EXPECT_EQ(PrepareTextRequest("DEL a", false, kMaxReplyBytes, &no_session).kind, RequestKind::kWrite);
  EXPECT_EQ(PrepareTextRequest("GET a", false, kMaxReplyBytes, &no_session).kind, RequestKind::kRead);
  EXPECT_EQ(PrepareTextRequest("MGET a b", false, kMaxReplyBytes, &no_session).kind, RequestKind::kRead);
}

// LF ends the line, so a CR is the only line break a SET value could carry; GET could not
// return it on one line, so SET refuses it before anything is written.
TEST(TextProtocolTest, SetWithCarriageReturnInValueIsRefusedAtOnce) {
  const std::string err =
      "ERR value has a CR: a text-protocol value cannot hold line breaks (write it with RESP "
      "SET)";
  TcpRequest set = PrepareTextRequest("SET k a\rb", false, kMaxReplyBytes, &no_session);
  EXPECT_EQ(set.kind, RequestKind::kImmediate);
  EXPECT_EQ(set.reply, err + "\n");
  EXPECT_EQ(PrepareTextRequest("PUT k b\r", true, kMaxReplyBytes, &no_session).reply, err + "\r\n");
  EXPECT_EQ(PrepareTextRequest("SET k a\tb", false, kMaxReplyBytes, &no_session).kind, RequestKind::kWrite);
}

}  // namespace
}  // namespace raftkv::server
