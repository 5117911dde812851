// The snapshot stream between two nodes (peer/snapshot_sender.h, snapshot_receiver.h) over a
// real gRPC server on 127.0.0.1: a valid file arrives verified and is handed on exactly once;
// a corrupted file is refused and nothing is handed on; a broken transfer resumes.
#include <filesystem>
#include <fstream>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/snapshot_receiver.h"
#include "server/peer/peer_channels.h"
#include "server/peer/snapshot_sender.h"
#include "test_snapshot.h"

namespace raftkv::server {
namespace {

using testing::ReceiverService;

class SnapshotTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("raftkv_xfer_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    // A real snapshot of a store with 500 keys.
    snap_ = (dir_ / "snap-00000000000000000500-1.db").string();
    ASSERT_NO_FATAL_FAILURE(testing::WriteTestSnapshot(dir_, 500, snap_));

    receiver_ = std::make_unique<SnapshotReceiver>((dir_ / "received").string(),
                                                   [this](raftpb::Message m) {
                                                     delivered_.push_back(std::move(m));
                                                   });
    service_ = std::make_unique<ReceiverService>(receiver_.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  raftpb::Message SnapMessage(uint64_t index) {
    raftpb::Message m;
    m.set_type(raftpb::MSG_SNAP);
    m.set_from(1);
    m.set_to(2);
    m.set_term(1);
    m.mutable_snapshot()->mutable_metadata()->set_index(index);
    m.mutable_snapshot()->mutable_metadata()->set_term(1);
    return m;
  }

  // Sends `path` to the receiver and waits for the sender's verdict.
  bool Send(const std::string& path, uint64_t index) {
    absl::Notification done;
    bool ok = false;
    SnapshotTransferOptions options;
    options.chunk_bytes = 4096;
    options.max_attempts = 2;
    options.backoff_ms = 10;
    PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port_)}});
    SnapshotSender sender(&channels, options,
                          [&](uint64_t peer, bool result) {
                            EXPECT_EQ(peer, 2u);
                            ok = result;
                            done.Notify();
                          });
    EXPECT_TRUE(sender.Start(SnapMessage(index), path));
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return ok;
  }

  std::filesystem::path dir_;
  std::string snap_;
  std::vector<raftpb::Message> delivered_;  // written by the gRPC thread before it acks
  std::unique_ptr<SnapshotReceiver> receiver_;
  std::unique_ptr<ReceiverService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(SnapshotTransferTest, ValidSnapshotArrivesVerifiedAndIsHandedOnOnce) {
  ASSERT_TRUE(Send(snap_, 500));
  ASSERT_EQ(delivered_.size(), 1u);
  const std::string& path = delivered_[0].snapshot().handle();
  EXPECT_EQ(std::filesystem::path(path).parent_path(), dir_ / "received");
  auto meta = kv::VerifySnapshot(path);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->kv_count, 500);
  EXPECT_EQ(std::filesystem::file_size(path), std::filesystem::file_size(snap_));
}

TEST_F(SnapshotTransferTest, CorruptedSnapshotIsRefusedAndNothingIsHandedOn) {
  // Flip bytes in the middle of the file: still SQLite-shaped, but the rows are wrong.
  std::string bad = (dir_ / "snap-00000000000000000500-1.bad.db").string();
  std::filesystem::copy_file(snap_, bad);
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(bad) / 2));
    std::string junk(64, '\xAA');
    f.write(junk.data(), junk.size());
  }
  EXPECT_FALSE(Send(bad, 500));
  EXPECT_TRUE(delivered_.empty());
  for (const auto& e : std::filesystem::directory_iterator(dir_ / "received")) {
    ADD_FAILURE() << "left behind: " << e.path();
  }
}

TEST_F(SnapshotTransferTest, IndexThatDoesNotMatchTheFileIsRefused) {
  EXPECT_FALSE(Send(snap_, 499));
  EXPECT_TRUE(delivered_.empty());
}

TEST_F(SnapshotTransferTest, PartialTransferResumesFromTheReceiversOffset) {
  const uint64_t size = std::filesystem::file_size(snap_);
  std::filesystem::create_directories(dir_ / "received");
  const auto part = dir_ / "received" /
                    ("snap-00000000000000000500-1.db." + std::to_string(size) + ".part");
  std::string head(8192, '\0');
  {
    std::ifstream in(snap_, std::ios::binary);
    in.read(head.data(), head.size());
  }
  auto leave_part = [&](const std::string& bytes) {
    std::ofstream out(part, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), bytes.size());
  };
  // Proof that the sender continues after the bytes already held rather than starting over:
  // a damaged 8 KiB prefix is kept, so the assembled file fails verification and is dropped.
  leave_part(std::string(8192, 'x'));
  EXPECT_FALSE(Send(snap_, 500));
  EXPECT_TRUE(delivered_.empty());
  EXPECT_FALSE(std::filesystem::exists(part));
  // A correct prefix (what a killed receiver leaves) is resumed into a valid snapshot.
  leave_part(head);
  ASSERT_TRUE(Send(snap_, 500));
  ASSERT_EQ(delivered_.size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(part));
  auto meta = kv::VerifySnapshot(delivered_[0].snapshot().handle());
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->kv_count, 500);
}

}  // namespace
}  // namespace raftkv::server
