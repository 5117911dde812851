// The follower's side of the snapshot stream (peer/snapshot_receiver.h) driven chunk by chunk
// by a hand-written sender over a real gRPC server on 127.0.0.1, so that each check the
// receiver makes can be hit on its own: a chunk whose bytes do not match its CRC, a name that
// leaves the directory, a chunk at the wrong offset, more or fewer bytes than announced, and
// two streams of one snapshot at once.
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/crc32c.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/peer_service.h"
#include "server/peer/snapshot_receiver.h"
#include "test_snapshot.h"

namespace raftkv::server {
namespace {

using testing::ReceiverService;

constexpr char kName[] = "snap-00000000000000000300-1.db";
constexpr uint64_t kChunk = 4096;

// One InstallSnapshot stream, written by hand.
class RawStream {
 public:
  explicit RawStream(raftpb::RaftPeer::Stub* stub) : stream_(stub->InstallSnapshot(&context_)) {}
  ~RawStream() {
    if (finished_) return;
    context_.TryCancel();
    stream_->Finish();
  }
  // Sends the header; returns the receiver's first ack (next_offset, or an error).
  raftpb::SnapshotAck Header(const std::string& name, uint64_t total_size, uint64_t index) {
    raftpb::SnapshotChunk h;
    h.mutable_message()->set_type(raftpb::MSG_SNAP);
    h.mutable_message()->set_from(1);
    h.mutable_message()->set_to(2);
    h.mutable_message()->set_term(1);
    h.mutable_message()->mutable_snapshot()->mutable_metadata()->set_index(index);
    h.mutable_message()->mutable_snapshot()->mutable_metadata()->set_term(1);
    h.set_name(name);
    h.set_total_size(total_size);
    return Exchange(h);
  }
  // Sends one chunk; `crc` defaults to the CRC of `data`.
  raftpb::SnapshotAck Chunk(uint64_t offset, const std::string& data, bool last,
                            std::optional<uint32_t> crc = std::nullopt) {
    raftpb::SnapshotChunk c;
    c.set_offset(offset);
    c.set_data(data);
    c.set_crc32c(crc ? *crc : base::crc32c::Value(data.data(), data.size()));
    c.set_last(last);
    return Exchange(c);
  }
  // Sends `bytes[from, to)` in kChunk pieces, the last one marked last if `to` is the end;
  // stops at the first error ack and returns the last ack.
  raftpb::SnapshotAck Range(const std::string& bytes, uint64_t from, uint64_t to) {
    raftpb::SnapshotAck ack;
    for (uint64_t off = from; off < to; off += kChunk) {
      const uint64_t n = std::min<uint64_t>(kChunk, to - off);
      ack = Chunk(off, bytes.substr(off, n), off + n == bytes.size());
      if (!ack.error().empty() || ack.done()) break;
    }
    return ack;
  }
  // The stream's status once the receiver has ended it.
  grpc::Status Finish() {
    stream_->WritesDone();
    finished_ = true;
    return stream_->Finish();
  }

 private:
  raftpb::SnapshotAck Exchange(const raftpb::SnapshotChunk& c) {
    raftpb::SnapshotAck ack;
    if (!stream_->Write(c) || !stream_->Read(&ack)) ack.set_error("<stream broken>");
    return ack;
  }
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<raftpb::SnapshotChunk, raftpb::SnapshotAck>> stream_;
  bool finished_ = false;
};

class SnapshotReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("raftkv_recv_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    const std::string path = (dir_ / kName).string();
    ASSERT_NO_FATAL_FAILURE(testing::WriteTestSnapshot(dir_, 300, path));
    std::ifstream in(path, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), {});
    ASSERT_GT(bytes_.size(), 4 * kChunk);

    received_ = dir_ / "received";
    receiver_ = std::make_unique<SnapshotReceiver>(received_.string(), [this](raftpb::Message m) {
      absl::MutexLock lock(&mu_);
      delivered_.push_back(std::move(m));
    });
    service_ = std::make_unique<ReceiverService>(receiver_.get());
    grpc::ServerBuilder b;
    ApplyPeerServerOptions(&b);  // as a node does
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_GT(port, 0);
    stub_ = raftpb::RaftPeer::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  std::vector<raftpb::Message> Delivered() {
    absl::MutexLock lock(&mu_);
    return delivered_;
  }
  std::filesystem::path PartPath() const {
    return received_ / (std::string(kName) + "." + std::to_string(bytes_.size()) + ".part");
  }
  // Every file under dir_ except the source snapshot and its state machine.
  std::vector<std::string> FilesOutsideReceived() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
      const std::string rel = std::filesystem::relative(e.path(), dir_).string();
      if (rel == kName || rel.rfind("db", 0) == 0 || rel.rfind("received", 0) == 0) continue;
      out.push_back(rel);
    }
    return out;
  }

  std::filesystem::path dir_, received_;
  std::string bytes_;  // a valid snapshot at index 300
  absl::Mutex mu_;
  std::vector<raftpb::Message> delivered_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SnapshotReceiver> receiver_;
  std::unique_ptr<ReceiverService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<raftpb::RaftPeer::Stub> stub_;
};

// The whole file, chunk by chunk, with the right CRCs: delivered once (the baseline the other
// tests deviate from).
TEST_F(SnapshotReceiverTest, ChunksWithTheirCrcsAreAssembledAndDelivered) {
  RawStream s(stub_.get());
  ASSERT_EQ(s.Header(kName, bytes_.size(), 300).next_offset(), 0u);
  raftpb::SnapshotAck ack = s.Range(bytes_, 0, bytes_.size());
  EXPECT_TRUE(ack.error().empty()) << ack.error();
  EXPECT_TRUE(ack.done());
  ASSERT_EQ(Delivered().size(), 1u);
  EXPECT_EQ(Delivered()[0].snapshot().handle(), (received_ / kName).string());
}

// A chunk damaged on the way (its bytes no longer match the CRC the sender computed) is
// refused at once, by that chunk's check, not later by the whole-file verification: the
// part file keeps exactly the good chunks before it, for a resumed attempt.
TEST_F(SnapshotReceiverTest, AChunkWhoseBytesDoNotMatchItsCrcIsRefusedAtThatChunk) {
  RawStream s(stub_.get());
  ASSERT_EQ(s.Header(kName, bytes_.size(), 300).next_offset(), 0u);
  ASSERT_TRUE(s.Range(bytes_, 0, 2 * kChunk).error().empty());
  std::string chunk = bytes_.substr(2 * kChunk, kChunk);
  const uint32_t sent_crc = base::crc32c::Value(chunk.data(), chunk.size());
  chunk[100] ^= 0x01;  // one bit flipped in transit
  raftpb::SnapshotAck ack = s.Chunk(2 * kChunk, chunk, false, sent_crc);
  EXPECT_EQ(ack.error(), "checksum mismatch in chunk at offset " + std::to_string(2 * kChunk));
  EXPECT_EQ(s.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Delivered().empty());
  ASSERT_TRUE(std::filesystem::exists(PartPath()));
  EXPECT_EQ(std::filesystem::file_size(PartPath()), 2 * kChunk);
}

// Snapshot names come from the network: a name that is not a plain file name is refused
// before anything is created, so no sender can write outside the received directory.
TEST_F(SnapshotReceiverTest, NamesThatAreNotPlainFileNamesAreRefused) {
  // A directory inside received/ so that a "sub/../.." path would resolve if it got through.
  std::filesystem::create_directories(received_ / "sub");
  const std::vector<std::string> bad = {
      "",
      "../escape.db",
      "sub/../../escape.db",
      "/tmp/escape.db",
      ".hidden.db",
      "..",
      std::string(201, 'a'),
      "bad name.db",
  };
  for (const std::string& name : bad) {
    RawStream s(stub_.get());
    EXPECT_EQ(s.Header(name, bytes_.size(), 300).error(), "bad snapshot header") << name;
    EXPECT_EQ(s.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
  }
  EXPECT_TRUE(FilesOutsideReceived().empty()) << FilesOutsideReceived()[0];
  std::vector<std::string> in_received;
  for (const auto& e : std::filesystem::recursive_directory_iterator(received_)) {
    if (e.path() != received_ / "sub") in_received.push_back(e.path().string());
  }
  EXPECT_TRUE(in_received.empty()) << in_received[0];
  // The longest accepted name is accepted (the bound is not off by one).
  RawStream ok(stub_.get());
  EXPECT_TRUE(ok.Header(std::string(200, 'a'), bytes_.size(), 300).error().empty());
}

// A chunk must continue exactly where the file ends: a gap or an overlap is refused and the
// part file keeps what it had.
TEST_F(SnapshotReceiverTest, AChunkAtAnyOtherOffsetThanTheNextIsRefused) {
  for (uint64_t wrong : {uint64_t{0}, kChunk + 1, 3 * kChunk}) {
    RawStream s(stub_.get());
    const uint64_t next = s.Header(kName, bytes_.size(), 300).next_offset();
    if (next == 0) {
      ASSERT_TRUE(s.Range(bytes_, 0, 2 * kChunk).error().empty());
    }
    ASSERT_EQ(std::filesystem::file_size(PartPath()), 2 * kChunk);
    raftpb::SnapshotAck ack = s.Chunk(wrong, bytes_.substr(wrong, kChunk), false);
    EXPECT_EQ(ack.error(), "chunk at offset " + std::to_string(wrong) + ", expected " +
                               std::to_string(2 * kChunk));
    EXPECT_EQ(std::filesystem::file_size(PartPath()), 2 * kChunk) << "offset " << wrong;
  }
  EXPECT_TRUE(Delivered().empty());
}

// More bytes than the header announced: refused and the part file dropped.
TEST_F(SnapshotReceiverTest, MoreBytesThanAnnouncedAreRefused) {
  const uint64_t announced = 2 * kChunk;
  RawStream s(stub_.get());
  ASSERT_EQ(s.Header(kName, announced, 300).next_offset(), 0u);
  ASSERT_TRUE(s.Chunk(0, bytes_.substr(0, kChunk), false).error().empty());
  raftpb::SnapshotAck ack = s.Chunk(kChunk, bytes_.substr(kChunk, kChunk + 1), true);
  EXPECT_EQ(ack.error(), "snapshot longer than announced");
  EXPECT_FALSE(std::filesystem::exists(received_ / (std::string(kName) + "." +
                                                    std::to_string(announced) + ".part")));
  EXPECT_TRUE(Delivered().empty());
}

// The chunk marked last before the announced size: refused and the part file dropped.
TEST_F(SnapshotReceiverTest, ALastChunkBeforeTheAnnouncedSizeIsRefused) {
  RawStream s(stub_.get());
  ASSERT_EQ(s.Header(kName, bytes_.size(), 300).next_offset(), 0u);
  ASSERT_TRUE(s.Chunk(0, bytes_.substr(0, kChunk), false).error().empty());
  raftpb::SnapshotAck ack = s.Chunk(kChunk, bytes_.substr(kChunk, kChunk), true);
  EXPECT_EQ(ack.error(), "snapshot shorter than announced");
  EXPECT_FALSE(std::filesystem::exists(PartPath()));
  EXPECT_TRUE(Delivered().empty());
}

// Two streams of one snapshot at once (a sender's retry while the receiver still serves the
// attempt whose connection died, or two leaders of different terms sending a snapshot of the
// same name) must not both write the one part file. The newer stream takes over: the older
// one is cut off before it writes another byte, and the newer one resumes at what the file
// holds. Unfixed, both wrote through their own descriptors: the older one completed, its
// file was verified, renamed into place and handed to the raft loop, and the newer one then
// went on writing into that very file.
TEST_F(SnapshotReceiverTest, ANewerStreamOfTheSameSnapshotTakesOverFromTheOlderOne) {
  RawStream first(stub_.get());
  ASSERT_EQ(first.Header(kName, bytes_.size(), 300).next_offset(), 0u);
  ASSERT_TRUE(first.Range(bytes_, 0, kChunk).error().empty());
  RawStream second(stub_.get());
  raftpb::SnapshotAck second_ack = second.Header(kName, bytes_.size(), 300);
  ASSERT_TRUE(second_ack.error().empty()) << second_ack.error();
  EXPECT_EQ(second_ack.next_offset(), kChunk);
  raftpb::SnapshotAck first_ack = first.Range(bytes_, kChunk, bytes_.size());
  EXPECT_FALSE(first_ack.done()) << "the older stream went on after a newer one took over";
  if (first_ack.done()) {
    // What the newer stream then does to the delivered file.
    second.Chunk(second_ack.next_offset(), std::string(kChunk, '\xAA'), false);
    ASSERT_EQ(Delivered().size(), 1u);
    const std::string delivered = Delivered()[0].snapshot().handle();
    std::ifstream in(delivered, std::ios::binary);
    const std::string now(std::istreambuf_iterator<char>(in), {});
    EXPECT_TRUE(now == bytes_) << "the delivered snapshot was written after it was verified";
    return;
  }
  raftpb::SnapshotAck ack = second.Range(bytes_, second_ack.next_offset(), bytes_.size());
  EXPECT_TRUE(ack.done()) << ack.error();
  ASSERT_EQ(Delivered().size(), 1u);
  std::ifstream in(Delivered()[0].snapshot().handle(), std::ios::binary);
  const std::string now(std::istreambuf_iterator<char>(in), {});
  EXPECT_TRUE(now == bytes_);
}

}  // namespace
}  // namespace raftkv::server
