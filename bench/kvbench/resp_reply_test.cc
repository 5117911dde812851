#include "kvbench/resp_reply.h"

#include "gtest/gtest.h"

namespace raftkv::bench {
namespace {

TEST(RespReplyTest, CompleteReplies) {
  size_t used = 0;
  EXPECT_EQ(ParseReply("+OK\r\n+OK\r\n", &used), ReplyParse::kOk);
  EXPECT_EQ(used, 5u);
  EXPECT_EQ(ParseReply("$5\r\nhello\r\n", &used), ReplyParse::kOk);
  EXPECT_EQ(used, 11u);
  EXPECT_EQ(ParseReply("$-1\r\n", &used), ReplyParse::kOk);
  EXPECT_EQ(used, 5u);
  EXPECT_EQ(ParseReply(":42\r\n", &used), ReplyParse::kOk);
  EXPECT_EQ(ParseReply("*2\r\n$1\r\na\r\n$-1\r\n", &used), ReplyParse::kOk);
  EXPECT_EQ(used, 16u);
  EXPECT_EQ(ParseReply("-ERR not leader\r\n", &used), ReplyParse::kError);
  EXPECT_EQ(used, 17u);
}

TEST(RespReplyTest, IncompleteUntilTheLastByte) {
  const std::string full = "*2\r\n$5\r\nhello\r\n+OK\r\n";
  size_t used = 0;
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(ParseReply(full.substr(0, n), &used), ReplyParse::kIncomplete) << n;
  }
  EXPECT_EQ(ParseReply(full, &used), ReplyParse::kOk);
  EXPECT_EQ(used, full.size());
}

TEST(RespReplyTest, Malformed) {
  size_t used = 0;
  EXPECT_EQ(ParseReply("hello\r\n", &used), ReplyParse::kMalformed);
  EXPECT_EQ(ParseReply("$x\r\n", &used), ReplyParse::kMalformed);
  EXPECT_EQ(ParseReply("$2\r\nabcd\r\n", &used), ReplyParse::kMalformed);
}

TEST(RespReplyTest, EncodesCommands) {
  std::string out;
  AppendCommand({"SET", "k", ""}, &out);
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
}

}  // namespace
}  // namespace raftkv::bench
