// Issue 5: "at least 1,000 idle plus 100 active" connections on one node.
#include <sys/resource.h>

#include <atomic>
#include <string>
#include <thread>
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

TEST(TcpManyConnectionsTest, ThousandIdlePlusHundredActive) {
  constexpr int kIdle = 1000;
  constexpr int kActive = 100;
  constexpr int kOpsPerClient = 50;
  // Both ends of every connection live in this process: about 2 x 1,100 descriptors.
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_cur < 4096) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < 2 * (kIdle + kActive) + 100) GTEST_SKIP() << "RLIMIT_NOFILE too low";

  TcpFixture f;
  uint16_t port = f.Start();
  std::vector<TestClient> idle;
  idle.reserve(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    idle.emplace_back(port);
    ASSERT_TRUE(idle.back().ok()) << i;
  }
  ASSERT_TRUE(AwaitTrue([&] { return f.server().num_connections() == kIdle; }))
      << f.server().num_connections();

  std::atomic<int> wrong{0};
  std::vector<std::thread> active;
  for (int t = 0; t < kActive; ++t) {
    active.emplace_back([&, t] {
      TestClient c(port);
      bool resp = t % 2 == 1;  // half the clients speak RESP, half the text protocol
      for (int i = 0; i < kOpsPerClient; ++i) {
        std::string key = absl::StrCat("c", t, "k", i % 5);
        std::string value = absl::StrCat("value ", t, " ", i);
        if (resp) {
          c.Send(RespCommand({"SET", key, value}) + RespCommand({"GET", key}));
          if (c.ReadResp() != "+OK\r\n") ++wrong;
          if (c.ReadResp() != absl::StrCat("$", value.size(), "\r\n", value, "\r\n")) ++wrong;
        } else {
          c.Send("SET " + key + " " + value + "\nGET " + key + "\n");
          if (c.ReadLine() != "OK") ++wrong;
          if (c.ReadLine() != value) ++wrong;
        }
      }
    });
  }
  for (std::thread& t : active) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(f.replicator().writes_applied(), static_cast<uint64_t>(kActive * kOpsPerClient));

  // Every idle connection is still open and served.
  for (int i = 0; i < kIdle; ++i) ASSERT_TRUE(idle[i].Send("PING\n")) << i;
  for (int i = 0; i < kIdle; ++i) ASSERT_EQ(idle[i].ReadLine(), "PONG") << i;
}

}  // namespace
}  // namespace raftkv::server
