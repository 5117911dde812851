// Runs the built kvctl binary against an in-process single-node server (etcd_fakes.h) and
// against nothing: output, failover and exit codes (0 ok, 1 not found, 2 usage, 3
// unavailable).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "etcd_fakes.h"
#include "etcd_spawn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;
using ::testing::HasSubstr;
using testing::Ctx;
using testing::EtcdTestServer;
using testing::EtcdTestServerOptions;
using testing::RunProcess;
using testing::RunKvctl;
using testing::RunResult;


// A port that refuses connections for as long as this object lives: bound, not listening.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~ClosedPort() { close(fd_); }
  const std::string& address() const { return address_; }

 private:
  int fd_;
  std::string address_;
};

class KvctlTest : public ::testing::Test {
 protected:
  RunResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoints", server_.address(), "--timeout-ms", "5000"});
    return RunKvctl(std::move(args));
  }
  EtcdTestServer server_;
};

TEST_F(KvctlTest, PutGetDeleteWithExitCodes) {
  RunResult put = Run({"put", "greeting", "hello world"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");

  RunResult get = Run({"get", "greeting"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "hello world\n");

  RunResult del = Run({"delete", "greeting"});
  EXPECT_EQ(del.exit_code, 0) << del.err;

  RunResult missing = Run({"get", "greeting"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "");
  EXPECT_THAT(missing.err, HasSubstr("key not found: greeting"));

  RunResult del_missing = Run({"delete", "greeting"});
  EXPECT_EQ(del_missing.exit_code, 1);
}

TEST_F(KvctlTest, MgetPrintsOneLinePerKeyAndFailsIfAnyIsMissing) {
  ASSERT_EQ(Run({"put", "a", "1"}).exit_code, 0);
  ASSERT_EQ(Run({"put", "b", "2"}).exit_code, 0);
  RunResult all = Run({"mget", "a", "b"});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(all.out, "1\n2\n");
  RunResult some = Run({"mget", "a", "zz", "b"});
  EXPECT_EQ(some.exit_code, 1);
  EXPECT_EQ(some.out, "1\n(not found)\n2\n");
}

TEST_F(KvctlTest, JsonOutputEscapesBinaryValues) {
  // A value with a NUL, a quote, and a byte that is not UTF-8, put over gRPC (argv cannot
  // carry a NUL).
  pb::PutRequest put;
  put.set_key("bin");
  put.set_value(std::string("a\0\"\xff", 4));
  pb::PutResponse resp;
  ASSERT_TRUE(server_.Kv()->Put(Ctx().get(), put, &resp).ok());

  RunResult get = Run({"--output", "json", "get", "bin"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("\"key\":\"bin\",\"found\":true,\"value\":\"a\\u0000\\\"\\u00ff\""));
  EXPECT_THAT(get.out, HasSubstr(absl::StrCat("\"mod_revision\":", resp.header().revision())));

  RunResult missing = Run({"--output", "json", "get", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "{\"key\":\"nope\",\"found\":false}\n");
}

TEST_F(KvctlTest, StatusShowsEveryEndpointAndTheLeader) {
  ClosedPort closed;
  RunResult status = RunKvctl({"--endpoints", server_.address() + "," + closed.address(),
                               "--timeout-ms", "2000", "status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr(server_.address()));
  EXPECT_THAT(status.out, HasSubstr("leader"));
  EXPECT_THAT(status.out, HasSubstr("unreachable: " + closed.address()));

  RunResult json = RunKvctl({"--endpoints", server_.address(), "--output", "json", "status"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"id\":0,\"role\":\"leader\",\"term\":1"));
}

// Issue 9: a node's alarms (a failing backup, refused writes) are shown by kvctl status.
TEST_F(KvctlTest, StatusShowsTheAlarmsOfEachEndpoint) {
  server_.replicator()->SetAlarms({"backup failing: database is locked", "writes are refused"});
  RunResult status = RunKvctl({"--endpoints", server_.address(), "status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("ALARM " + server_.address() +
                                    ": backup failing: database is locked\n"));
  EXPECT_THAT(status.out, HasSubstr("ALARM " + server_.address() + ": writes are refused\n"));

  RunResult json = RunKvctl({"--endpoints", server_.address(), "--output", "json", "status"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"alarms\":[\"backup failing: database is locked\","
                                  "\"writes are refused\"]"));

  server_.replicator()->SetAlarms({});
  RunResult quiet = RunKvctl({"--endpoints", server_.address(), "--output", "json", "status"});
  EXPECT_THAT(quiet.out, HasSubstr("\"alarms\":[]"));
}

TEST_F(KvctlTest, FailsOverPastAnUnreachableEndpoint) {
  ClosedPort closed;
  RunResult put = RunKvctl({"--endpoints", closed.address() + "," + server_.address(),
                            "--timeout-ms", "2000", "put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  RunResult get = RunKvctl({"--endpoints", closed.address() + "," + server_.address(),
                            "--timeout-ms", "2000", "get", "k"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "v\n");
}

TEST_F(KvctlTest, ServerRejectionIsAUsageError) {
  RunResult put = Run({"put", std::string(2000, 'k'), "v"});  // over max_key_bytes (1024)
  EXPECT_EQ(put.exit_code, 2);
  EXPECT_THAT(put.err, HasSubstr("key too long"));
  EXPECT_THAT(put.err, HasSubstr(server_.address()));  // where it went wrong
}

TEST(KvctlNoServerTest, UnreachableClusterExitsThreeAndNamesEndpoints) {
  ClosedPort a, b;
  for (const char* cmd : {"get", "status"}) {
    std::vector<std::string> args = {"--endpoints", a.address() + "," + b.address(),
                                     "--timeout-ms", "2000", cmd};
    if (std::string(cmd) == "get") args.push_back("k");
    RunResult r = RunKvctl(args);
    EXPECT_EQ(r.exit_code, 3) << cmd;
    EXPECT_THAT(r.err + r.out, HasSubstr(a.address())) << cmd;
    EXPECT_THAT(r.err + r.out, HasSubstr(b.address())) << cmd;
  }
  RunResult put = RunKvctl({"--endpoints", a.address(), "--timeout-ms", "2000", "put", "k", "v"});
  EXPECT_EQ(put.exit_code, 3);
}

TEST(KvctlUsageTest, UsageErrorsExitTwoAndHelpExitsZero) {
  EXPECT_EQ(RunKvctl({}).exit_code, 2);                          // no subcommand
  EXPECT_EQ(RunKvctl({"get"}).exit_code, 2);                     // missing key
  EXPECT_EQ(RunKvctl({"put", "k"}).exit_code, 2);                // missing value
  EXPECT_EQ(RunKvctl({"frobnicate"}).exit_code, 2);              // unknown command
  EXPECT_EQ(RunKvctl({"--output", "xml", "get", "k"}).exit_code, 2);
  EXPECT_EQ(RunKvctl({"--timeout-ms", "0", "get", "k"}).exit_code, 2);
  EXPECT_EQ(RunKvctl({"--endpoints", ",", "get", "k"}).exit_code, 2);
  RunResult help = RunKvctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes"));
}

}  // namespace
}  // namespace raftkv::server
