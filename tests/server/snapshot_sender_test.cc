// The leader's side of the snapshot stream (peer/snapshot_sender.h) against a scripted
// receiver on 127.0.0.1: a broken stream is retried and resumes at the receiver's offset,
// Stop() ends a transfer the receiver holds up, the rate limit paces the chunks, and an
// offset the receiver acknowledges past the end of the file is refused, not read.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/crc32c.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_service.h"
#include "server/peer/snapshot_sender.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

constexpr uint64_t kChunk = 1000;

// A receiver that follows the protocol (peer/snapshot_sender.h) without verifying the file,
// keeping what it received in memory, with faults on request.
class ScriptedReceiver final : public raftpb::RaftPeer::Service {
 public:
  struct Script {
    // Streams that end with UNAVAILABLE after this many chunks (0: none).
    int break_after_chunks = 0;
    int break_streams = 0;
    // Every header is answered with this next_offset instead of the bytes held.
    std::optional<uint64_t> claim_offset;
    // After this many chunks of a stream, stop answering until the stream is cancelled.
    int hold_after_chunks = 0;
  };
  explicit ScriptedReceiver(Script script) : script_(script) {}

  grpc::Status InstallSnapshot(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) override {
    raftpb::SnapshotChunk header;
    if (!stream->Read(&header)) return grpc::Status::CANCELLED;
    bool breaks;
    raftpb::SnapshotAck ack;
    {
      absl::MutexLock lock(&mu_);
      headers_.push_back(header);
      breaks = script_.break_streams > 0;
      if (breaks) --script_.break_streams;
      ack.set_next_offset(script_.claim_offset ? *script_.claim_offset : bytes_.size());
    }
    stream->Write(ack);
    int chunks = 0;
    raftpb::SnapshotChunk chunk;
    while (stream->Read(&chunk)) {
      ++chunks;
      {
        absl::MutexLock lock(&mu_);
        chunks_.push_back({chunk.offset(), absl::Now()});
        if (chunk.offset() != bytes_.size()) {
          ack.set_error("unexpected offset");
          stream->Write(ack);
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unexpected offset");
        }
        bytes_ += chunk.data();
      }
      if (breaks && chunks == script_.break_after_chunks) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "broken on purpose");
      }
      if (script_.hold_after_chunks > 0 && chunks == script_.hold_after_chunks) {
        held_.Notify();
        while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
        return grpc::Status::CANCELLED;
      }
      absl::MutexLock lock(&mu_);
      ack.set_next_offset(bytes_.size());
      ack.set_done(chunk.last());
      stream->Write(ack);
      if (chunk.last()) return grpc::Status::OK;
    }
    return grpc::Status::CANCELLED;
  }

  std::string bytes() {
    absl::MutexLock lock(&mu_);
    return bytes_;
  }
  // The offset of every chunk received, in order, with when it arrived.
  std::vector<std::pair<uint64_t, absl::Time>> chunks() {
    absl::MutexLock lock(&mu_);
    return chunks_;
  }
  int streams() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(headers_.size());
  }
  absl::Notification& held() { return held_; }

 private:
  absl::Mutex mu_;
  Script script_ ABSL_GUARDED_BY(mu_);
  std::string bytes_ ABSL_GUARDED_BY(mu_);
  std::vector<raftpb::SnapshotChunk> headers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, absl::Time>> chunks_ ABSL_GUARDED_BY(mu_);
  absl::Notification held_;
};

class SnapshotSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("raftkv_sender_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "snap-00000000000000000009-1.db").string();
    for (int i = 0; i < 10 * static_cast<int>(kChunk) + 123; ++i) {
      content_.push_back(static_cast<char>('a' + i % 26));
    }
    std::ofstream(path_, std::ios::binary) << content_;
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }
  void StartReceiver(ScriptedReceiver::Script script) {
    receiver_ = std::make_unique<ScriptedReceiver>(script);
    grpc::ServerBuilder b;
    ApplyPeerServerOptions(&b);  // as a node does: accepts the channels' keepalive pings
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(receiver_.get());
    server_ = b.BuildAndStart();
    ASSERT_GT(port_, 0);
    channels_ = std::make_unique<PeerChannels>(
        std::map<uint64_t, std::string>{{2, "127.0.0.1:" + std::to_string(port_)}});
  }
  raftpb::Message SnapMessage() {
    raftpb::Message m;
    m.set_type(raftpb::MSG_SNAP);
    m.set_from(1);
    m.set_to(2);
    m.set_term(1);
    m.mutable_snapshot()->mutable_metadata()->set_index(9);
    m.mutable_snapshot()->mutable_metadata()->set_term(1);
    return m;
  }
  SnapshotTransferOptions Options() {
    SnapshotTransferOptions o;
    o.chunk_bytes = kChunk;
    o.max_attempts = 3;
    o.backoff_ms = 10;
    return o;
  }
  // Runs one transfer to the end; returns what on_done said.
  bool Transfer(SnapshotTransferOptions options) {
    absl::Notification done;
    std::atomic<bool> ok{false};
    SnapshotSender sender(channels_.get(), options, [&](uint64_t peer, bool result) {
      EXPECT_EQ(peer, 2u);
      ok = result;
      done.Notify();
    });
    EXPECT_TRUE(sender.Start(SnapMessage(), path_));
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    return ok;
  }

  std::filesystem::path dir_;
  std::string path_;
  std::string content_;  // 10 full chunks and a short one
  std::unique_ptr<ScriptedReceiver> receiver_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<PeerChannels> channels_;
  int port_ = 0;
};

// A stream broken after three chunks is opened again after the backoff and continues at the
// offset the receiver names: no chunk is sent twice, none is skipped.
TEST_F(SnapshotSenderTest, ABrokenStreamIsRetriedFromTheReceiversOffset) {
  StartReceiver({.break_after_chunks = 3, .break_streams = 1});
  ASSERT_TRUE(Transfer(Options()));
  EXPECT_EQ(receiver_->streams(), 2);
  EXPECT_TRUE(receiver_->bytes() == content_);
  std::vector<uint64_t> offsets;
  for (const auto& [offset, at] : receiver_->chunks()) offsets.push_back(offset);
  std::vector<uint64_t> want;
  for (uint64_t o = 0; o < content_.size(); o += kChunk) want.push_back(o);
  EXPECT_EQ(offsets, want);
}

// A receiver that breaks every stream: the sender gives up after max_attempts and says so.
TEST_F(SnapshotSenderTest, AStreamThatKeepsBreakingFailsAfterMaxAttempts) {
  StartReceiver({.break_after_chunks = 1, .break_streams = 100});
  EXPECT_FALSE(Transfer(Options()));
  EXPECT_EQ(receiver_->streams(), 3);
}

// Stop() while the receiver holds the stream (no ack comes): the transfer is cancelled,
// reported failed exactly once, and Stop() returns. The bound only keeps a failing test from
// hanging.
TEST_F(SnapshotSenderTest, StopEndsATransferTheReceiverHoldsUp) {
  StartReceiver({.hold_after_chunks = 2});
  std::atomic<int> reports{0};
  std::atomic<bool> ok{true};
  auto sender = std::make_unique<SnapshotSender>(channels_.get(), Options(),
                                                 [&](uint64_t, bool result) {
                                                   ok = result;
                                                   reports++;
                                                 });
  ASSERT_TRUE(sender->Start(SnapMessage(), path_));
  ASSERT_TRUE(receiver_->held().WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::Notification stopped;
  std::thread stopper([&] {
    sender->Stop();
    stopped.Notify();
  });
  if (!stopped.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    server_->Shutdown(std::chrono::system_clock::now());  // cancels the held stream
    stopper.join();
    FAIL() << "Stop() did not end a transfer stuck waiting for an ack";
  }
  stopper.join();
  EXPECT_EQ(reports.load(), 1);
  EXPECT_FALSE(ok.load());
  EXPECT_EQ(receiver_->streams(), 1) << "a stopped transfer was retried";
  EXPECT_FALSE(sender->Start(SnapMessage(), path_)) << "a stopped sender started a transfer";
}

// --snapshot-rate-bytes-per-sec: chunk k leaves no earlier than k chunks' worth of the rate
// after the transfer began. (A lower bound on time, which a slow machine cannot break.)
TEST_F(SnapshotSenderTest, TheRateLimitPacesTheChunks) {
  StartReceiver({});
  SnapshotTransferOptions o = Options();
  o.rate_bytes_per_sec = 20 * kChunk;  // 11 chunks: at least half a second
  const absl::Time start = absl::Now();
  ASSERT_TRUE(Transfer(o));
  EXPECT_TRUE(receiver_->bytes() == content_);
  const auto chunks = receiver_->chunks();
  ASSERT_EQ(chunks.size(), 11u);
  for (size_t k = 1; k < chunks.size(); ++k) {
    // Chunk k is written once k chunks were sent and their time at the rate has passed.
    const absl::Duration earliest = absl::Seconds(static_cast<double>(k * kChunk) /
                                                  static_cast<double>(o.rate_bytes_per_sec));
    EXPECT_GE(chunks[k].second - start, earliest) << "chunk " << k;
  }
}

// Captures what the sender logs, to check the reason it gives for a failure.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// A receiver that claims more bytes than the file has (it holds another file of that name,
// or it is broken) must not make the sender compute a chunk of size - offset, which wraps
// around; the transfer fails at once with that reason, sending no chunk and not blaming the
// leader's own file.
TEST_F(SnapshotSenderTest, AnOffsetPastTheEndOfTheFileIsRefused) {
  StartReceiver({.claim_offset = content_.size() + 1});
  LogCapture log;
  EXPECT_FALSE(Transfer(Options()));
  EXPECT_TRUE(receiver_->chunks().empty());
  EXPECT_EQ(receiver_->streams(), 1) << "retried a receiver that asked for the impossible";
  const std::string text = log.text();
  EXPECT_NE(text.find("offset " + std::to_string(content_.size() + 1) + " past the end"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("read error"), std::string::npos) << text;
}

// An offset equal to the size (the receiver holds the whole file from an earlier attempt):
// one empty chunk marked last completes it.
TEST_F(SnapshotSenderTest, AnOffsetAtTheEndSendsOnlyTheLastMark) {
  StartReceiver({});
  ASSERT_TRUE(Transfer(Options()));  // now the receiver holds the whole file
  const size_t chunks_before = receiver_->chunks().size();
  ASSERT_TRUE(Transfer(Options()));
  const auto chunks = receiver_->chunks();
  ASSERT_EQ(chunks.size(), chunks_before + 1);
  EXPECT_EQ(chunks.back().first, content_.size());
  EXPECT_TRUE(receiver_->bytes() == content_);
}

TEST_F(SnapshotSenderTest, AnUnknownPeerFailsAtOnce) {
  StartReceiver({});
  absl::Notification done;
  bool ok = true;
  SnapshotSender sender(channels_.get(), Options(), [&](uint64_t peer, bool result) {
    EXPECT_EQ(peer, 7u);
    ok = result;
    done.Notify();
  });
  raftpb::Message m = SnapMessage();
  m.set_to(7);
  ASSERT_TRUE(sender.Start(m, path_));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE(ok);
  EXPECT_EQ(receiver_->streams(), 0);
}

}  // namespace
}  // namespace raftkv::server
