// redis-cli and redis-benchmark (Debian's redis-tools) against a live server: the handshakes
// they send are answered so that they work (README.md, "Talking to it").
// Skipped where redis-tools is not installed.
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/fakes.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server {
namespace {

using testing::TcpFixture;

bool HaveTool(const char* name) {
  return system(absl::StrCat("command -v ", name, " >/dev/null 2>&1").c_str()) == 0;
}

// Runs `cmd` under `timeout`; returns stdout+stderr and sets *status to the exit status.
std::string RunTool(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(("timeout 120 " + cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

TEST(TcpRedisToolsTest, RedisCliCommands) {
  if (!HaveTool("redis-cli")) GTEST_SKIP() << "redis-cli not installed";
  TcpFixture f;
  std::string cli = absl::StrCat("redis-cli -h 127.0.0.1 -p ", f.Start(), " ");
  int st;
  EXPECT_EQ(RunTool(cli + "ping", &st), "PONG\n");
  EXPECT_EQ(RunTool(cli + "set a 'hello world'", &st), "OK\n");
  EXPECT_EQ(RunTool(cli + "get a", &st), "hello world\n");
  EXPECT_EQ(RunTool(cli + "mset b 2 c 3", &st), "OK\n");
  EXPECT_EQ(RunTool(cli + "mget a b nope c", &st), "hello world\n2\n\n3\n");
  EXPECT_EQ(RunTool(cli + "exists a b nope", &st), "2\n");
  EXPECT_EQ(RunTool(cli + "del a b", &st), "2\n");
  EXPECT_EQ(RunTool(cli + "get a", &st), "\n");
  EXPECT_EQ(RunTool(cli + "dbsize", &st), "1\n");
  EXPECT_EQ(st, 0);
  // Interactive mode (stdin is not a tty here, but the same COMMAND DOCS handshake runs
  // only in the real interactive mode; -3 makes it send HELLO 3 and fall back).
  std::string out = RunTool("printf 'set i 1\\nget i\\n' | " + cli, &st);
  EXPECT_EQ(out, "OK\n1\n");
  out = RunTool(cli + "-3 ping", &st);
  EXPECT_TRUE(absl::StrContains(out, "PONG")) << out;
}

TEST(TcpRedisToolsTest, RedisBenchmarkCompletesWithoutErrors) {
  if (!HaveTool("redis-benchmark")) GTEST_SKIP() << "redis-benchmark not installed";
  TcpFixture f;
  uint16_t port = f.Start();
  int st;
  std::string out = RunTool(absl::StrCat("redis-benchmark -h 127.0.0.1 -p ", port,
                                     " -t set,get,ping -n 5000 -P 16 -c 10 -q"),
                        &st);
  EXPECT_EQ(st, 0) << out;
  EXPECT_FALSE(absl::StrContains(out, "rror")) << out;       // "Error", "error"
  EXPECT_FALSE(absl::StrContains(out, "WARNING")) << out;    // e.g. "Could not fetch CONFIG"
  for (const char* test : {"PING_INLINE:", "PING_MBULK:", "SET:", "GET:"}) {
    EXPECT_TRUE(absl::StrContains(out, test)) << test << " missing in:\n" << out;
  }
}

}  // namespace
}  // namespace raftkv::server
