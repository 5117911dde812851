// node_config.json parsing and NodeConfig::Validate: every bad input is one clear error.
#include "server/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace raftkv::server {
namespace {

using ::testing::HasSubstr;

TEST(ClusterJsonTest, ParsesTheSeedFormat) {
  auto nodes = ParseClusterJson(R"([
    {"ip": "127.0.0.1", "port": 5000, "grpc_port": 6000},
    {"ip": "127.0.0.1", "port": 5001, "grpc_port": 6001}])",
                                "c.json");
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[1].client_address(), "127.0.0.1:5001");
  EXPECT_EQ((*nodes)[1].grpc_address(), "127.0.0.1:6001");
}

TEST(ClusterJsonTest, RejectsBadFilesWithOneLineNamingTheFile) {
  struct Case {
    const char* json;
    const char* needle;
  };
  for (const Case& c : {Case{"{not json", "not a JSON array"},
                        Case{"[]", "no nodes"},
                        Case{R"([{"ip":"127.0.0.1","port":5000}])", "out of range"},
                        Case{R"([{"port":5000,"grpc_port":6000}])", "missing \"ip\""},
                        Case{R"([{"ip":"a","port":5000,"grpc_port":5000}])", "used twice"},
                        Case{R"([{"ip":"a","port":70000,"grpc_port":6000}])", "out of range"},
                        Case{R"([{"ip":"a","port":1,"grpc_port":2,"extra":3}])",
                             "not a JSON array"}}) {
    auto nodes = ParseClusterJson(c.json, "bad.json");
    ASSERT_FALSE(nodes.ok()) << c.json;
    EXPECT_EQ(nodes.status().code(), absl::StatusCode::kInvalidArgument);
    std::string msg(nodes.status().message());
    EXPECT_THAT(msg, HasSubstr("bad.json")) << c.json;
    EXPECT_THAT(msg, HasSubstr(c.needle)) << c.json;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ClusterIdTest, StableAndDependsOnMembersAndToken) {
  auto a = DefaultCluster();
  auto b = DefaultCluster();
  EXPECT_EQ(ClusterIdOf(a, "raftkv"), ClusterIdOf(b, "raftkv"));
  EXPECT_NE(ClusterIdOf(a, "raftkv"), ClusterIdOf(a, "other"));
  b[0].grpc_port = 6001;
  EXPECT_NE(ClusterIdOf(a, "raftkv"), ClusterIdOf(b, "raftkv"));
}

TEST(NodeConfigTest, DefaultsAreValid) {
  NodeConfig c;
  c.cluster = DefaultCluster();
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

TEST(NodeConfigTest, EachBadFieldIsNamed) {
  auto check = [](auto mutate, const char* needle) {
    NodeConfig c;
    c.cluster = DefaultCluster();
    mutate(c);
    absl::Status s = c.Validate();
    EXPECT_FALSE(s.ok()) << needle;
    EXPECT_THAT(std::string(s.message()), HasSubstr(needle));
  };
  check([](NodeConfig& c) { c.id = 1; }, "--id=1");
  check([](NodeConfig& c) { c.data_dir = ""; }, "--data-dir");
  check([](NodeConfig& c) { c.log_level = "loud"; }, "--log-level");
  check([](NodeConfig& c) { c.kv.max_key_bytes = 0; }, "--max-key-bytes");
  check([](NodeConfig& c) { c.raft.tick_ms = 0; }, "--tick-ms");
  check([](NodeConfig& c) { c.raft.election_ticks = 1; }, "--election-ticks");
  check([](NodeConfig& c) { c.raft.snapshot_entries = 0; }, "--snapshot-entries");
  check([](NodeConfig& c) { c.raft.snapshot_time_share_pct = 0; }, "--snapshot-time-share-pct");
  check([](NodeConfig& c) { c.raft.snapshot_time_share_pct = 101; },
        "--snapshot-time-share-pct");
  check([](NodeConfig& c) { c.raft.reader_threads = 0; }, "--reader-threads");
  check([](NodeConfig& c) { c.grpc_max_message_bytes = 1000; }, "--grpc-max-message-bytes");
  check([](NodeConfig& c) { c.tcp.max_request_bytes = 10; }, "max_request_bytes");
  check([](NodeConfig& c) { c.tcp.max_reply_bytes = c.kv.max_value_bytes; }, "max_reply_bytes");
  check([](NodeConfig& c) { c.listen_ip = "node0"; }, "--listen-ip=node0");
  check([](NodeConfig& c) { c.raft.peer.keepalive_ms = 50; }, "--peer-keepalive-ms");
  check([](NodeConfig& c) { c.raft.peer.connect_timeout_ms = 0; }, "--peer-connect-timeout-ms");
}

// --peer-keepalive-ms=0 turns keepalive off (the heal test's mutation); any other value
// must leave the peers' servers room to accept its pings.
TEST(NodeConfigTest, PeerKeepaliveMayBeOff) {
  NodeConfig c;
  c.cluster = DefaultCluster();
  c.raft.peer.keepalive_ms = 0;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  c.raft.peer.keepalive_ms = kMinPeerKeepaliveMs;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

// --listen-ip binds another address than the one the cluster file advertises.
TEST(NodeConfigTest, ListenIpDefaultsToTheNodesOwnAddress) {
  NodeConfig c;
  c.cluster = {NodeAddress{"node0", 5000, 6000}};
  EXPECT_EQ(c.listen_host(), "node0");
  c.listen_ip = "0.0.0.0";
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_EQ(c.listen_host(), "0.0.0.0");
  c.listen_ip = "::";
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

}  // namespace
}  // namespace raftkv::server
