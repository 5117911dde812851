// Runs the built kvctl binary: `snapshot save` against an in-process single-node server
// (etcd_fakes.h) and `snapshot status` on what it saved and on broken files. Exit codes: 0
// ok, 2 file missing, 3 no endpoint serves a snapshot, 4 a file failed verification.
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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
using ::testing::Not;
using testing::Ctx;
using testing::EtcdTestServer;
using testing::EtcdTestServerOptions;
using testing::ReadWholeFile;
using testing::RunProcess;
using testing::RunKvctl;
using testing::RunResult;


// A port that refuses connections for as long as this object lives: bound, not listening.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~RefusingPort() { close(fd_); }
  const std::string& address() const { return address_; }

 private:
  int fd_;
  std::string address_;
};

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

// A fresh directory per test for the files kvctl writes.
class KvctlSnapshotTest : public ::testing::Test {
 protected:
  KvctlSnapshotTest() {
    std::string tmpl = ::testing::TempDir() + "/raftkv_kvctl_snap_XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  ~KvctlSnapshotTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static void PutKeys(EtcdTestServer& server, int count) {
    auto kv = server.Kv();
    for (int i = 0; i < count; ++i) {
      pb::PutRequest req;
      req.set_key(absl::StrCat("k", i));
      req.set_value(absl::StrCat("value-", i));
      pb::PutResponse resp;
      grpc::Status s = kv->Put(Ctx().get(), req, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }

  // kvctl snapshot save FILE against `endpoints`.
  RunResult Save(const std::string& endpoints, const std::string& file,
                 std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--endpoints", endpoints, "--timeout-ms", "5000"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"snapshot", "save", file});
    return RunKvctl(args);
  }

  // A valid snapshot with `count` keys, saved by kvctl from a fresh server.
  std::string SavedSnapshot(int count) {
    EtcdTestServerOptions options;
    options.serve_snapshots = true;
    EtcdTestServer server(options);
    PutKeys(server, count);
    const std::string file = dir_ + "/good.db";
    RunResult save = Save(server.address(), file);
    EXPECT_EQ(save.exit_code, 0) << save.err;
    return file;
  }

  std::string dir_;
};

TEST_F(KvctlSnapshotTest, SaveThenStatusShowsTheKeys) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  options.etcd.snapshot_chunk_bytes = 1024;  // many chunks
  EtcdTestServer server(options);
  PutKeys(server, 250);
  const std::string file = dir_ + "/s.db";

  RunResult save = Save(server.address(), file);
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_THAT(save.out, HasSubstr("Snapshot saved to " + file + " from " + server.address()));
  EXPECT_THAT(save.out, HasSubstr("keys: 250\n"));
  EXPECT_THAT(save.out, HasSubstr("revision: 251\n"));  // a fresh store starts at revision 1
  EXPECT_THAT(save.out, HasSubstr(absl::StrCat(
                            "size: ", std::filesystem::file_size(file), " bytes\n")));
  EXPECT_FALSE(Exists(file + ".part"));

  RunResult status = RunKvctl({"snapshot", "status", file});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("format version: 2\n"));
  EXPECT_THAT(status.out, HasSubstr("keys: 250\n"));
  EXPECT_THAT(status.out, HasSubstr("revision: 251\n"));
  EXPECT_THAT(status.out, HasSubstr("checksum: ok\n"));
  EXPECT_THAT(status.out, HasSubstr("created at: 20"));  // ISO year

  RunResult json = RunKvctl({"--output", "json", "snapshot", "status", file});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"valid\":true"));
  EXPECT_THAT(json.out, HasSubstr("\"kv_count\":250"));
  EXPECT_THAT(json.out, HasSubstr("\"checksum_ok\":true"));
}

TEST_F(KvctlSnapshotTest, SaveJsonOutputAndReplacesAnExistingFile) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  EtcdTestServer server(options);
  PutKeys(server, 3);
  const std::string file = dir_ + "/s.db";
  std::ofstream(file) << "old content";
  RunResult save = Save(server.address(), file, {"--output", "json"});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_THAT(save.out, HasSubstr("\"kv_count\":3,"));
  EXPECT_THAT(save.out, HasSubstr("\"revision\":4,"));
  EXPECT_THAT(save.out, HasSubstr("\"endpoint\":\"" + server.address() + "\""));
  EXPECT_TRUE(kv::VerifySnapshot(file).ok());
}

TEST_F(KvctlSnapshotTest, SaveFailsOverPastAnUnreachableEndpoint) {
  RefusingPort closed;
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  EtcdTestServer server(options);
  PutKeys(server, 5);
  const std::string file = dir_ + "/s.db";
  RunResult save = Save(closed.address() + "," + server.address(), file);
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_THAT(save.out, HasSubstr("from " + server.address()));
  EXPECT_THAT(save.out, HasSubstr("keys: 5\n"));
}

// A node that is not the leader (its read barrier fails UNAVAILABLE) is skipped.
TEST_F(KvctlSnapshotTest, SaveSkipsANodeThatCannotServeAFreshSnapshot) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  EtcdTestServer follower(options);
  follower.replicator()->FailWith(absl::UnavailableError("not the leader"));
  EtcdTestServer leader(options);
  PutKeys(leader, 7);
  const std::string file = dir_ + "/s.db";
  RunResult save = Save(follower.address() + "," + leader.address(), file);
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_THAT(save.out, HasSubstr("from " + leader.address()));
  EXPECT_THAT(save.out, HasSubstr("keys: 7\n"));
}

TEST_F(KvctlSnapshotTest, SaveWithNoEndpointExitsThreeAndLeavesNoFile) {
  RefusingPort a, b;
  const std::string file = dir_ + "/s.db";
  RunResult save = Save(a.address() + "," + b.address(), file);
  EXPECT_EQ(save.exit_code, 3) << save.err;
  EXPECT_THAT(save.err, HasSubstr(a.address()));
  EXPECT_THAT(save.err, HasSubstr(b.address()));
  EXPECT_FALSE(Exists(file));
  EXPECT_FALSE(Exists(file + ".part"));
}

TEST_F(KvctlSnapshotTest, SaveFromServerWithoutSnapshotSupportExitsThree) {
  EtcdTestServer server;  // make_snapshot unset: UNIMPLEMENTED
  const std::string file = dir_ + "/s.db";
  RunResult save = Save(server.address(), file);
  EXPECT_EQ(save.exit_code, 3) << save.err;
  EXPECT_THAT(save.err, HasSubstr("not enabled"));
  EXPECT_FALSE(Exists(file));
  EXPECT_FALSE(Exists(file + ".part"));
}

// The server streams a file whose meta is intact but whose kv rows no longer match the
// checksum: the received file fails verification, exit 4, nothing is left behind.
TEST_F(KvctlSnapshotTest, SaveOfACorruptSnapshotExitsFourAndLeavesNoFile) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  options.after_write = [](const std::string& path) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "UPDATE kv SET value = X'00' WHERE rowid = (SELECT MIN(rowid) "
                               "FROM kv)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  };
  EtcdTestServer server(options);
  PutKeys(server, 10);
  const std::string file = dir_ + "/s.db";
  std::ofstream(file) << "previous";
  RunResult save = Save(server.address(), file);
  EXPECT_EQ(save.exit_code, 4) << save.err;
  EXPECT_THAT(save.err, HasSubstr("failed verification"));
  EXPECT_THAT(save.err, HasSubstr(server.address()));
  EXPECT_FALSE(Exists(file + ".part"));
  EXPECT_EQ(ReadWholeFile(file), "previous");  // untouched
}

TEST_F(KvctlSnapshotTest, StatusOfATruncatedCopyExitsFour) {
  const std::string good = SavedSnapshot(200);
  const std::string truncated = dir_ + "/truncated.db";
  std::filesystem::copy_file(good, truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(good) / 2);
  RunResult status = RunKvctl({"snapshot", "status", truncated});
  EXPECT_EQ(status.exit_code, 4) << status.err;
  EXPECT_THAT(status.err, HasSubstr("invalid snapshot"));
  EXPECT_THAT(status.err, HasSubstr(truncated));
  EXPECT_EQ(status.out, "");

  RunResult json = RunKvctl({"--output", "json", "snapshot", "status", truncated});
  EXPECT_EQ(json.exit_code, 4);
  EXPECT_THAT(json.out, HasSubstr("\"valid\":false"));
}

TEST_F(KvctlSnapshotTest, StatusOfANonSqliteFileExitsFour) {
  const std::string file = dir_ + "/notes.txt";
  std::ofstream(file) << std::string(8192, 'x');
  RunResult status = RunKvctl({"snapshot", "status", file});
  EXPECT_EQ(status.exit_code, 4) << status.err;
  EXPECT_THAT(status.err, HasSubstr(file));
  EXPECT_THAT(status.err, HasSubstr("invalid snapshot"));
}

TEST_F(KvctlSnapshotTest, StatusOfAMissingFileExitsTwo) {
  const std::string file = dir_ + "/nothing-here.db";
  RunResult status = RunKvctl({"snapshot", "status", file});
  EXPECT_EQ(status.exit_code, 2) << status.err;
  EXPECT_THAT(status.err, HasSubstr(file));
  EXPECT_THAT(status.err, Not(HasSubstr("invalid snapshot")));
}

TEST_F(KvctlSnapshotTest, HelpDocumentsExitCodeFour) {
  RunResult help = RunKvctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("4 a snapshot"));
}

}  // namespace
}  // namespace raftkv::server
