// Wire compatibility: Debian's etcdctl (etcd v3.4 client) against our services on an
// in-process single-node stack. Skipped when etcdctl is not installed (package etcd-client).
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "etcd_fakes.h"
#include "etcd_spawn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

using ::testing::HasSubstr;
using testing::EtcdTestServer;
using testing::RunProcess;
using testing::RunResult;

constexpr char kEtcdctl[] = "/usr/bin/etcdctl";

class EtcdctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kEtcdctl)) GTEST_SKIP() << kEtcdctl << " not installed";
    setenv("ETCDCTL_API", "3", 1);
    // Loopback must not go through a proxy (build-notes.md).
    setenv("NO_PROXY", "127.0.0.1", 1);
    setenv("no_proxy", "127.0.0.1", 1);
  }

  RunResult Etcdctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {"--endpoints=" + server_.address(), "--command-timeout=5s", "--dial-timeout=5s"});
    return RunProcess(kEtcdctl, args);
  }

  EtcdTestServer server_;
};

TEST_F(EtcdctlTest, PutGetPrefixDelete) {
  RunResult put = Etcdctl({"put", "foo", "bar"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  ASSERT_EQ(Etcdctl({"put", "fab", "baz"}).exit_code, 0);
  ASSERT_EQ(Etcdctl({"put", "other", "x"}).exit_code, 0);

  RunResult get = Etcdctl({"get", "foo"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "foo\nbar\n");

  RunResult prefix = Etcdctl({"get", "--prefix", "f"});
  EXPECT_EQ(prefix.exit_code, 0) << prefix.err;
  EXPECT_EQ(prefix.out, "fab\nbaz\nfoo\nbar\n");

  RunResult prev = Etcdctl({"put", "foo", "bar2", "--prev-kv"});
  EXPECT_EQ(prev.out, "OK\nfoo\nbar\n");

  RunResult del = Etcdctl({"del", "foo"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out, "1\n");

  RunResult gone = Etcdctl({"get", "foo"});
  EXPECT_EQ(gone.exit_code, 0) << gone.err;
  EXPECT_EQ(gone.out, "");

  RunResult del_prefix = Etcdctl({"del", "--prefix", "f"});
  EXPECT_EQ(del_prefix.out, "1\n");  // fab
  RunResult all = Etcdctl({"get", "--from-key", ""});
  EXPECT_EQ(all.out, "other\nx\n");
}

TEST_F(EtcdctlTest, EndpointStatusHealthAndMemberList) {
  RunResult status = Etcdctl({"endpoint", "status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  // endpoint, id (hex), version, db size, is leader, is learner, term, index, applied, errors
  EXPECT_THAT(status.out, HasSubstr(server_.address() + ", 1, 3.4.0, "));
  EXPECT_THAT(status.out, HasSubstr(", true, false, 1, "));

  RunResult health = Etcdctl({"endpoint", "health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_THAT(health.out + health.err, HasSubstr("is healthy"));

  RunResult members = Etcdctl({"member", "list"});
  EXPECT_EQ(members.exit_code, 0) << members.err;
  const std::string url = "http://" + server_.address();
  EXPECT_EQ(members.out, "1, started, node0, " + url + ", " + url + ", false\n");
}

TEST_F(EtcdctlTest, CompareTxnIsRefusedAndPlainTxnApplies) {
  RunResult plain = RunProcess("/bin/sh", {"-c", "printf '\\nput t1 a\\nput t2 b\\n\\n\\n' | " +
                                                     std::string(kEtcdctl) + " --endpoints=" +
                                                     server_.address() + " txn"});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out, "SUCCESS\n\nOK\n\nOK\n");
  EXPECT_EQ(Etcdctl({"get", "t2"}).out, "t2\nb\n");

  RunResult compare = RunProcess(
      "/bin/sh", {"-c", "printf 'value(\"t1\") = \"a\"\\n\\nput t1 c\\n\\n\\n' | " +
                            std::string(kEtcdctl) + " --endpoints=" + server_.address() + " txn"});
  EXPECT_NE(compare.exit_code, 0);
  EXPECT_THAT(compare.err, HasSubstr("Unimplemented"));
  EXPECT_EQ(Etcdctl({"get", "t1"}).out, "t1\na\n");  // unchanged
}

}  // namespace
}  // namespace raftkv::server
