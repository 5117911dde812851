// Maintenance.Snapshot over a real in-process gRPC server and a real single-node stack: the
// stream (chunking, remaining_bytes, header), that what arrives is a valid snapshot of the
// store, clean-up of the exported file, the concurrency limit, and errors.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etcd_fakes.h"
#include "eventually.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;
using ::testing::HasSubstr;
using testing::Ctx;
using testing::EtcdTestServer;
using testing::EtcdTestServerOptions;
// The handler deletes its file after the stream ended, possibly just after the client saw
// the end: Eventually awaits it.
using testing::Eventually;

int64_t PutKeys(EtcdTestServer& server, int count, size_t value_bytes) {
  auto kv = server.Kv();
  int64_t revision = 0;
  for (int i = 0; i < count; ++i) {
    pb::PutRequest req;
    req.set_key(absl::StrCat("key", i));
    req.set_value(std::string(value_bytes, static_cast<char>('a' + i % 26)));
    pb::PutResponse resp;
    grpc::Status s = kv->Put(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    revision = resp.header().revision();
  }
  return revision;
}

struct Received {
  grpc::Status status;
  std::vector<pb::SnapshotResponse> messages;
  std::string bytes;
};

Received FetchSnapshot(EtcdTestServer& server) {
  auto maintenance = server.Maintenance();
  auto context = Ctx();
  auto reader = maintenance->Snapshot(context.get(), pb::SnapshotRequest());
  Received out;
  pb::SnapshotResponse resp;
  while (reader->Read(&resp)) {
    out.bytes += resp.blob();
    out.messages.push_back(resp);
  }
  out.status = reader->Finish();
  return out;
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

bool IsEmptyDir(const std::string& dir) {
  return std::filesystem::is_empty(std::filesystem::path(dir));
}


TEST(EtcdSnapshotTest, UnimplementedWithoutMakeSnapshot) {
  EtcdTestServer server;
  Received r = FetchSnapshot(server);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(r.messages.empty());
}

TEST(EtcdSnapshotTest, StreamsAValidSnapshotInChunksAndDeletesTheFile) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  options.etcd.snapshot_chunk_bytes = 4096;
  EtcdTestServer server(options);
  const int64_t revision = PutKeys(server, 300, 100);

  Received r = FetchSnapshot(server);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GT(r.messages.size(), 2u);  // 300 x 100-byte values do not fit in 4 KiB
  uint64_t expected_remaining = r.bytes.size();
  for (const pb::SnapshotResponse& m : r.messages) {
    EXPECT_LE(m.blob().size(), 4096u);
    EXPECT_GT(m.blob().size(), 0u);
    expected_remaining -= m.blob().size();
    EXPECT_EQ(m.remaining_bytes(), expected_remaining);
    EXPECT_EQ(m.header().revision(), revision);
    EXPECT_EQ(m.header().raft_term(), 1u);
    EXPECT_EQ(m.header().cluster_id(), 7u);
  }
  EXPECT_EQ(r.messages.back().remaining_bytes(), 0u);

  const std::string path = WriteTemp("etcd_snapshot_received.db", r.bytes);
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(path);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->kv_count, 300);
  EXPECT_EQ(meta->revision, revision);
  std::filesystem::remove(path);

  EXPECT_TRUE(Eventually([&] { return IsEmptyDir(server.snapshot_dir()); }))
      << "exported file left in " << server.snapshot_dir();
}

TEST(EtcdSnapshotTest, EmptyStoreGivesAValidSnapshot) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  EtcdTestServer server(options);
  Received r = FetchSnapshot(server);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.messages.size(), 1u);  // a fresh SQLite file is far below 1 MiB
  EXPECT_EQ(r.messages[0].remaining_bytes(), 0u);
  const std::string path = WriteTemp("etcd_snapshot_empty.db", r.bytes);
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(path);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->kv_count, 0);
  std::filesystem::remove(path);
}

TEST(EtcdSnapshotTest, MakeSnapshotErrorIsMappedToItsCode) {
  EtcdTestServerOptions options;
  options.etcd.make_snapshot = []() -> absl::StatusOr<std::string> {
    return absl::ResourceExhaustedError("disk full while writing snapshot");
  };
  EtcdTestServer server(options);
  Received r = FetchSnapshot(server);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(r.status.error_message(), HasSubstr("disk full"));
  EXPECT_TRUE(r.messages.empty());
}

// A node that cannot prove it is up to date (a follower cut off from the leader) must not
// hand out a possibly stale copy: the barrier's error, and no file is written.
TEST(EtcdSnapshotTest, ReadBarrierFailureIsUnavailableAndWritesNothing) {
  std::atomic<int> calls{0};
  EtcdTestServerOptions options;
  options.etcd.make_snapshot = [&]() -> absl::StatusOr<std::string> {
    ++calls;
    return absl::InternalError("must not be called");
  };
  EtcdTestServer server(options);
  server.replicator()->FailWith(absl::UnavailableError("not the leader"));
  Received r = FetchSnapshot(server);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(r.status.error_message(), HasSubstr("not the leader"));
  EXPECT_EQ(calls.load(), 0);
}

TEST(EtcdSnapshotTest, MoreThanMaxConcurrentSnapshotsIsResourceExhausted) {
  absl::Notification entered, release;
  EtcdTestServerOptions options;
  options.etcd.max_concurrent_snapshots = 1;
  options.etcd.make_snapshot = [&]() -> absl::StatusOr<std::string> {
    entered.Notify();
    release.WaitForNotification();
    return absl::UnavailableError("released");
  };
  EtcdTestServer server(options);
  Received first;
  std::thread t([&] { first = FetchSnapshot(server); });
  entered.WaitForNotification();
  Received second = FetchSnapshot(server);
  release.Notify();
  t.join();
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(second.status.error_message(), HasSubstr("max_concurrent_snapshots"));
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(EtcdSnapshotTest, ClientCancellingMidStreamStillDeletesTheFile) {
  EtcdTestServerOptions options;
  options.serve_snapshots = true;
  options.etcd.snapshot_chunk_bytes = 512;
  EtcdTestServer server(options);
  PutKeys(server, 200, 200);
  auto maintenance = server.Maintenance();
  auto context = Ctx();
  auto reader = maintenance->Snapshot(context.get(), pb::SnapshotRequest());
  pb::SnapshotResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_GT(resp.remaining_bytes(), 0u);
  context->TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(Eventually([&] { return IsEmptyDir(server.snapshot_dir()); }))
      << "exported file left in " << server.snapshot_dir();
}

}  // namespace
}  // namespace raftkv::server
