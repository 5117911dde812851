// PeerTransport (peer/peer_transport.h): Send() only enqueues, whatever the peer does; a full
// queue drops, a stream write carries what is queued up to a byte bound, a broken stream is
// reported unreachable and re-opened after a backoff, and Stop() ends every wait.
#include "server/peer/peer_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_service.h"
#include "eventually.h"

namespace raftkv::server {
namespace {

// A loopback port whose connection attempts hang: a listener that never accepts, with its
// accept queue already full, so the kernel drops further SYNs and a connect keeps
// retransmitting (as towards a peer whose host vanished).
class BlackHolePort {
 public:
  BlackHolePort() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listener_, 0), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Fill the accept queue (a backlog of 0 still admits one or two connections).
    for (int i = 0; i < 4; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      fillers_.push_back(fd);
    }
  }
  ~BlackHolePort() {
    for (int fd : fillers_) ::close(fd);
    ::close(listener_);
  }
  int port() const { return port_; }

 private:
  int listener_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

raftpb::Message Heartbeat(uint64_t to) {
  raftpb::Message m;
  m.set_type(raftpb::MSG_HEARTBEAT);
  m.set_from(1);
  m.set_to(to);
  m.set_term(1);
  return m;
}

// The raft loop calls Send() on every iteration: it must never wait for a peer. A sender
// thread that opened its stream while holding the queue's lock blocked Send() for as long as
// the connection attempt lasted (about 20 s towards a vanished host), and with it the loop's
// heartbeats and elections. Towards a black hole the stream can never open, so Send()
// returning at all (before Stop()) shows it did not wait for the connection; the bound on
// the wait only keeps a failing test from hanging.
TEST(PeerTransportTest, SendNeverWaitsForAPeerWhoseConnectionHangs) {
  BlackHolePort hole;
  // On the heap: if Send() is stuck the test leaks them rather than hang in their destructors.
  auto channels = std::make_unique<PeerChannels>(
      std::map<uint64_t, std::string>{{2, "127.0.0.1:" + std::to_string(hole.port())}});
  auto transport =
      std::make_unique<PeerTransport>(channels.get(), PeerTransportOptions{}, [](uint64_t) {});
  // The sender thread starts its (hanging) attempt with the first message.
  std::vector<raftpb::Message> first;
  first.push_back(Heartbeat(2));
  transport->Send(std::move(first));
  absl::Notification returned;
  std::thread loop([&] {
    for (int i = 0; i < 200; ++i) {
      std::vector<raftpb::Message> msgs;
      msgs.push_back(Heartbeat(2));
      transport->Send(std::move(msgs));
      if (i % 20 == 0) absl::SleepFor(absl::Milliseconds(10));  // the loop's pace
    }
    returned.Notify();
  });
  if (!returned.WaitForNotificationWithTimeout(absl::Seconds(60))) {
    loop.detach();
    channels.release();
    transport.release();
    FAIL() << "Send() has not returned while the sender was connecting to a black hole";
  }
  loop.join();
}

// Stop() ends a sender stuck in a connection attempt that can never complete (a black hole:
// the wait for the connection has no deadline), instead of waiting it out; the bound on the
// wait only keeps a failing test from hanging.
TEST(PeerTransportTest, StopEndsASenderStuckInAConnectionThatNeverCompletes) {
  BlackHolePort hole;
  auto channels = std::make_unique<PeerChannels>(
      std::map<uint64_t, std::string>{{2, "127.0.0.1:" + std::to_string(hole.port())}});
  std::atomic<int> unreachable{0};
  auto transport = std::make_unique<PeerTransport>(
      channels.get(), PeerTransportOptions{}, [&](uint64_t) { unreachable++; });
  std::vector<raftpb::Message> msgs;
  msgs.push_back(Heartbeat(2));
  transport->Send(std::move(msgs));
  absl::Notification stopped;
  std::thread stopper([&] {
    transport->Stop();
    stopped.Notify();
  });
  if (!stopped.WaitForNotificationWithTimeout(absl::Seconds(60))) {
    stopper.detach();
    channels.release();
    transport.release();
    FAIL() << "Stop() has not returned while the sender was connecting to a black hole";
  }
  stopper.join();
  // The stream never opened, so it never broke: nothing to report.
  EXPECT_EQ(unreachable.load(), 0);
}

// A port with nothing listening on it now (and, the test hopes, nobody else taking it
// before the test's own server does).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The receiving end of RaftPeer.Send: records each non-empty batch as the indexes of its
// messages (tests number their messages by index), and can break streams on purpose.
class RecordingPeer final : public raftpb::RaftPeer::Service {
 public:
  // Each stream ends with UNAVAILABLE after carrying this many non-empty batches (0: never);
  // only the first `break_streams` streams are broken so.
  void BreakStreams(int after_batches, int break_streams) {
    absl::MutexLock lock(&mu_);
    break_after_ = after_batches;
    break_streams_ = break_streams;
  }
  grpc::Status Send(grpc::ServerContext*, grpc::ServerReader<raftpb::MessageBatch>* reader,
                    raftpb::PeerEmpty*) override {
    int carried = 0;
    bool breaks;
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
      breaks = break_streams_ > 0 && break_after_ > 0;
      if (breaks) --break_streams_;
    }
    raftpb::MessageBatch batch;
    while (reader->Read(&batch)) {
      if (batch.messages_size() == 0) continue;  // an idle write
      std::vector<uint64_t> indexes;
      for (const raftpb::Message& m : batch.messages()) indexes.push_back(m.index());
      absl::MutexLock lock(&mu_);
      batches_.push_back(std::move(indexes));
      if (breaks && ++carried == break_after_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "broken on purpose");
      }
    }
    return grpc::Status::OK;
  }
  std::vector<std::vector<uint64_t>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  bool Received(uint64_t index) {
    absl::MutexLock lock(&mu_);
    for (const auto& b : batches_) {
      if (std::find(b.begin(), b.end(), index) != b.end()) return true;
    }
    return false;
  }
  int streams() {
    absl::MutexLock lock(&mu_);
    return streams_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::vector<uint64_t>> batches_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  int break_after_ ABSL_GUARDED_BY(mu_) = 0;
  int break_streams_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<grpc::Server> StartPeer(RecordingPeer* peer, int port) {
  grpc::ServerBuilder b;
  ApplyPeerServerOptions(&b);  // as a node does: accepts the channels' keepalive pings
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials());
  b.RegisterService(peer);
  return b.BuildAndStart();
}

raftpb::Message Numbered(uint64_t index) {
  raftpb::Message m = Heartbeat(2);
  m.set_type(raftpb::MSG_APP);
  m.set_index(index);
  return m;
}

// Messages queued while the peer is down: past max_queue_msgs they are dropped (Raft
// retransmits), the rest go out once the stream opens, as few batches as max_batch_bytes
// allows: everything queued in one write when it is large, one message per write when it
// is smaller than any message.
void QueueWhileDownThenConnect(size_t max_batch_bytes,
                               const std::vector<std::vector<uint64_t>>& expected) {
  const int port = UnusedPort();
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  PeerTransportOptions options;
  options.max_queue_msgs = 5;
  options.max_batch_bytes = max_batch_bytes;
  PeerTransport transport(&channels, options, [](uint64_t) {});
  std::vector<raftpb::Message> msgs;
  for (uint64_t i = 1; i <= 20; ++i) msgs.push_back(Numbered(i));
  transport.Send(std::move(msgs));
  RecordingPeer peer;
  std::unique_ptr<grpc::Server> server = StartPeer(&peer, port);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(testing::Eventually([&] { return peer.Received(5); }, absl::Seconds(30)));
  // A message sent after the queue drained arrives: 6..20 were dropped, not late.
  std::vector<raftpb::Message> marker;
  marker.push_back(Numbered(21));
  transport.Send(std::move(marker));
  ASSERT_TRUE(testing::Eventually([&] { return peer.Received(21); }, absl::Seconds(30)));
  std::vector<std::vector<uint64_t>> want = expected;
  want.push_back({21});
  EXPECT_EQ(peer.batches(), want);
  transport.Stop();
  server->Shutdown();
}

TEST(PeerTransportTest, PastTheQueueLimitMessagesAreDroppedAndTheRestGoInOneBatch) {
  QueueWhileDownThenConnect(4 * 1024 * 1024, {{1, 2, 3, 4, 5}});
}

TEST(PeerTransportTest, ABatchStopsAtTheFirstMessageThatReachesMaxBatchBytes) {
  const size_t one = Numbered(1).ByteSizeLong();
  // Room for one message and a bit: the second one crosses the bound and closes the batch.
  QueueWhileDownThenConnect(one + 1, {{1, 2}, {3, 4}, {5}});
}

// A stream the peer breaks is reported unreachable (once per break) and re-opened; what is
// sent after the break arrives on the new stream.
TEST(PeerTransportTest, ABrokenStreamIsReportedUnreachableAndReopened) {
  RecordingPeer peer;
  peer.BreakStreams(/*after_batches=*/1, /*break_streams=*/1);
  const int port = UnusedPort();
  std::unique_ptr<grpc::Server> server = StartPeer(&peer, port);
  ASSERT_NE(server, nullptr);
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  absl::Mutex mu;
  std::vector<uint64_t> unreachable;
  PeerTransport transport(&channels, PeerTransportOptions{}, [&](uint64_t id) {
    absl::MutexLock lock(&mu);
    unreachable.push_back(id);
  });
  std::vector<raftpb::Message> msgs;
  msgs.push_back(Numbered(1));
  transport.Send(std::move(msgs));
  ASSERT_TRUE(testing::Eventually([&] {
    absl::MutexLock lock(&mu);
    return !unreachable.empty();
  }, absl::Seconds(30)));
  msgs.clear();
  msgs.push_back(Numbered(2));
  transport.Send(std::move(msgs));
  ASSERT_TRUE(testing::Eventually([&] { return peer.Received(2); }, absl::Seconds(30)));
  EXPECT_EQ(peer.streams(), 2);
  EXPECT_TRUE(peer.Received(1));
  transport.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(unreachable, std::vector<uint64_t>{2});
  server->Shutdown();
}

// After a break the sender waits its backoff before re-opening (so a peer that keeps
// refusing is not hammered), and Stop() ends that wait. With the first wait at 60 s, no
// second stream may open while the test watches; without the wait one opens at once.
TEST(PeerTransportTest, ABrokenStreamIsReopenedOnlyAfterTheBackoffAndStopEndsTheWait) {
  RecordingPeer peer;
  peer.BreakStreams(/*after_batches=*/1, /*break_streams=*/1);
  const int port = UnusedPort();
  std::unique_ptr<grpc::Server> server = StartPeer(&peer, port);
  ASSERT_NE(server, nullptr);
  PeerChannelOptions channel_options;
  channel_options.reconnect_backoff_min_ms = 60000;
  channel_options.reconnect_backoff_max_ms = 60000;
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}}, channel_options);
  std::atomic<int> unreachable{0};
  auto transport = std::make_unique<PeerTransport>(&channels, PeerTransportOptions{},
                                                   [&](uint64_t) { unreachable++; });
  std::vector<raftpb::Message> msgs;
  msgs.push_back(Numbered(1));
  transport->Send(std::move(msgs));
  ASSERT_TRUE(testing::Eventually([&] { return unreachable.load() > 0; }, absl::Seconds(30)));
  msgs.clear();
  msgs.push_back(Numbered(2));
  transport->Send(std::move(msgs));
  // Watching for something that must not happen: a re-open within the backoff.
  EXPECT_FALSE(testing::Eventually([&] { return peer.streams() > 1; }, absl::Milliseconds(500)))
      << "re-opened within the 60 s backoff";
  absl::Notification stopped;
  std::thread stopper([&] {
    transport->Stop();
    stopped.Notify();
  });
  if (!stopped.WaitForNotificationWithTimeout(absl::Seconds(20))) {
    stopper.detach();
    transport.release();
    FAIL() << "Stop() waited out the reconnect backoff";
  }
  stopper.join();
  EXPECT_FALSE(peer.Received(2));
  EXPECT_EQ(unreachable.load(), 1);
  server->Shutdown();
}

// Every wait lies in [nominal / 2, nominal]: the nominal doubles from min up to max, so no
// wait exceeds max; Reset() starts over.
// The receiving service with a handler that knows member 7 was removed: a node with id 7 is
// refused and told why (on_removed runs, with the peer's reason), and nothing it sends is
// delivered; node 8 (a member added later, or never removed) is served as before.
class RemovalAwareHandler : public PeerHandler {
 public:
  void Deliver(raftpb::Message m) override {
    absl::MutexLock lock(&mu_);
    delivered_from_.push_back(m.from());
  }
  void WriteFromPeer(kvpb::Command, ForwardDone done) override {
    std::move(done)(absl::UnimplementedError("not in this test"));
  }
  bool IsRemovedMember(uint64_t id) override { return id == 7; }
  std::vector<uint64_t> delivered_from() {
    absl::MutexLock lock(&mu_);
    return delivered_from_;
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> delivered_from_ ABSL_GUARDED_BY(mu_);
};

TEST(PeerTransportTest, ARemovedSenderIsRefusedAndToldWhy) {
  RemovalAwareHandler handler;
  RaftPeerService service(&handler, ::testing::TempDir(), absl::Seconds(1), /*cluster_id=*/0);
  const int port = UnusedPort();
  grpc::ServerBuilder b;
  ApplyPeerServerOptions(&b);
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  for (uint64_t self : {uint64_t{7}, uint64_t{8}}) {
    SCOPED_TRACE(self);
    absl::Mutex mu;
    std::vector<std::string> told;
    PeerTransportOptions options;
    options.self_id = self;
    PeerTransport transport(
        &channels, options, [](uint64_t) {},
        [&](uint64_t peer, const std::string& why) {
          absl::MutexLock lock(&mu);
          told.push_back(absl::StrCat(peer, ": ", why));
        });
    raftpb::Message m = Heartbeat(2);
    m.set_from(self);
    std::vector<raftpb::Message> msgs;
    msgs.push_back(m);
    transport.Send(std::move(msgs));
    if (self == 7) {
      // Even with nothing more to send, the idle writes keep asking.
      ASSERT_TRUE(testing::Eventually([&] {
        absl::MutexLock lock(&mu);
        return told.size() >= 2;
      }, absl::Seconds(30)));
      absl::MutexLock lock(&mu);
      EXPECT_TRUE(absl::StartsWith(told[0], "2: member 7 ")) << told[0];
      EXPECT_NE(told[0].find("was removed from the cluster"), std::string::npos) << told[0];
    } else {
      ASSERT_TRUE(testing::Eventually(
          [&] { return !handler.delivered_from().empty(); }, absl::Seconds(30)));
      absl::MutexLock lock(&mu);
      EXPECT_TRUE(told.empty()) << told[0];
    }
    transport.Stop();
  }
  EXPECT_EQ(handler.delivered_from(), std::vector<uint64_t>{8});
  server->Shutdown();
}

TEST(BackoffTest, JitteredDoublingCappedAtMaxAndReset) {
  Backoff backoff(absl::Milliseconds(20), absl::Milliseconds(500));
  const int nominal_ms[] = {20, 40, 80, 160, 320, 500, 500, 500};
  for (int round = 0; round < 2; ++round) {
    for (int nominal : nominal_ms) {
      const absl::Duration wait = backoff.Next();
      EXPECT_GE(wait, absl::Milliseconds(nominal) / 2) << "nominal " << nominal;
      EXPECT_LE(wait, absl::Milliseconds(nominal)) << "nominal " << nominal;
    }
    backoff.Reset();
  }
}

// The waits are drawn at random, so peers that lost each other together do not re-dial in
// lockstep.
TEST(BackoffTest, WaitsAreJittered) {
  Backoff a(absl::Milliseconds(500), absl::Milliseconds(500));
  bool differ = false;
  absl::Duration first = a.Next();
  for (int i = 0; i < 20 && !differ; ++i) differ = a.Next() != first;
  EXPECT_TRUE(differ);
}

// One dial of an unreachable peer gives up after --peer-connect-timeout-ms (gRPC's default
// is 20 s, which outlasts most partitions and kept a healed node cut off: issue 15); a
// forwarded write then fails at once as not sent, instead of waiting out its deadline.
// (The sync stub, as Forwarder's call is fail-fast too: destroying a channel that served
// the callback API makes gRPC 1.51 double-free its completion queue under ASan.)
TEST(PeerChannelsTest, ADialOfAnUnreachablePeerGivesUpAfterTheConnectTimeout) {
  BlackHolePort hole;
  PeerChannelOptions options;
  options.connect_timeout_ms = 300;
  // Keepalive also sets TCP_USER_TIMEOUT, which bounds a connect too (to 1 s by default):
  // off, so that only the connect timeout can end this dial.
  options.keepalive_ms = 0;
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(hole.port())}}, options);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  raftpb::ForwardRequest request;
  raftpb::ForwardResponse response;
  const absl::Time start = absl::Now();
  const grpc::Status status = channels.stub(2)->Forward(&context, request, &response);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_LT(took, absl::Seconds(3)) << status.error_message();
}

}  // namespace
}  // namespace raftkv::server
