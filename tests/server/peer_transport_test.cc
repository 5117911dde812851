// PeerTransport (peer/peer_transport.h): Send() only enqueues, whatever the peer does.
#include "server/peer/peer_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/peer/peer_channels.h"

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
// heartbeats and elections.
TEST(PeerTransportTest, SendNeverWaitsForAPeerWhoseConnectionHangs) {
  BlackHolePort hole;
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(hole.port())}});
  PeerTransport transport(&channels, PeerTransportOptions{}, [](uint64_t) {});
  absl::Duration slowest = absl::ZeroDuration();
  // Long enough for the sender thread to be stuck in its connection attempt for most of it.
  const absl::Time end = absl::Now() + absl::Seconds(2);
  while (absl::Now() < end) {
    const absl::Time start = absl::Now();
    std::vector<raftpb::Message> msgs;
    msgs.push_back(Heartbeat(2));
    transport.Send(std::move(msgs));
    slowest = std::max(slowest, absl::Now() - start);
    absl::SleepFor(absl::Milliseconds(10));  // the loop's pace, not synchronisation
  }
  EXPECT_LT(slowest, absl::Milliseconds(500)) << "Send() blocked for " << slowest;
}

// Stop() ends a sender stuck in a connection attempt instead of waiting it out.
TEST(PeerTransportTest, StopDoesNotWaitForAHangingConnection) {
  BlackHolePort hole;
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(hole.port())}});
  PeerTransport transport(&channels, PeerTransportOptions{}, [](uint64_t) {});
  std::vector<raftpb::Message> msgs;
  msgs.push_back(Heartbeat(2));
  transport.Send(std::move(msgs));
  absl::SleepFor(absl::Milliseconds(200));  // let the sender start its attempt
  const absl::Time start = absl::Now();
  transport.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// Every wait lies in [nominal / 2, nominal]: the nominal doubles from min up to max, so no
// wait exceeds max; Reset() starts over.
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
