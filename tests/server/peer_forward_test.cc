// RaftPeerService::Forward (peer/peer_service.h): the leader's handler of a forwarded write
// answers by its deadline even when the raft loop never does (issue 10, item 2).
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "server/peer/forwarder.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_service.h"

namespace raftkv::server {
namespace {

// Keeps every forwarded write's callback without answering it.
class SilentHandler : public PeerHandler {
 public:
  void Deliver(raftpb::Message) override {}
  bool IsRemovedMember(uint64_t) override { return false; }
  void WriteFromPeer(kvpb::Command, ForwardDone done) override {
    absl::MutexLock lock(&mu_);
    held_ = std::move(done);
  }
  // Answers the held write now (late, after the handler gave up).
  void AnswerLate() {
    ForwardDone done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(held_);
    }
    if (done) std::move(done)(absl::InternalError("answered after the deadline"));
  }

 private:
  absl::Mutex mu_;
  ForwardDone held_ ABSL_GUARDED_BY(mu_);
};

TEST(PeerForwardTest, ForwardAnswersByItsMaxWaitWhenTheLoopNeverDoes) {
  SilentHandler handler;
  RaftPeerService service(&handler, ::testing::TempDir(), absl::Milliseconds(200));
  raftpb::ForwardRequest request;
  request.set_command(kvpb::Command().SerializeAsString());
  raftpb::ForwardResponse response;
  grpc::ServerContext context;  // no deadline of the caller: only the service's bound
  grpc::Status status;
  absl::Notification returned;
  std::thread rpc([&] {
    status = service.Forward(&context, &request, &response);
    returned.Notify();
  });
  const bool in_time = returned.WaitForNotificationWithTimeout(absl::Seconds(10));
  handler.AnswerLate();  // unblocks the old code (and must be harmless for the new)
  rpc.join();
  ASSERT_TRUE(in_time) << "Forward still waiting 10 s after its 200 ms bound";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("outcome unknown"), std::string::npos)
      << status.error_message();
}

// Answers every forwarded write at once with `answer`.
class AnsweringHandler : public PeerHandler {
 public:
  explicit AnsweringHandler(absl::Status answer) : answer_(std::move(answer)) {}
  void Deliver(raftpb::Message) override {}
  bool IsRemovedMember(uint64_t) override { return false; }
  void WriteFromPeer(kvpb::Command, ForwardDone done) override { std::move(done)(answer_); }

 private:
  const absl::Status answer_;
};

// A RaftPeer server whose Forward fails the way a broken call does: UNAVAILABLE, and not
// from our handler (no raftkv-forward-answered mark).
class BrokenForwardService : public raftpb::RaftPeer::Service {
  grpc::Status Forward(grpc::ServerContext*, const raftpb::ForwardRequest*,
                       raftpb::ForwardResponse*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  }
};

// Forwards one write to a server running `service` and returns the follower's view of it.
absl::StatusOr<ForwardResult> ForwardTo(grpc::Service* service) {
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  EXPECT_NE(port, 0);
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  Forwarder forwarder(&channels);
  absl::Notification done;
  absl::StatusOr<ForwardResult> out = absl::InternalError("not answered");
  forwarder.Forward(2, kvpb::Command().SerializeAsString(), 5000,
                    [&](absl::StatusOr<ForwardResult> r) {
                      out = std::move(r);
                      done.Notify();
                    });
  done.WaitForNotification();
  server->Shutdown();
  return out;
}

// Issue 10: the leader's own "not applied" stays UNAVAILABLE (safe to retry); a Forward that
// failed without the leader's answer (it broke in transport, possibly after the leader
// applied it) is "outcome unknown", never UNAVAILABLE.
TEST(PeerForwardTest, TheLeadersRefusalIsNotAppliedABrokenCallIsOutcomeUnknown) {
  AnsweringHandler refuses(absl::UnavailableError("not the leader; the leader is node 1"));
  RaftPeerService leader(&refuses, ::testing::TempDir(), absl::Seconds(5));
  absl::StatusOr<ForwardResult> refused = ForwardTo(&leader);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();

  AnsweringHandler times_out(absl::DeadlineExceededError("outcome unknown"));
  RaftPeerService slow(&times_out, ::testing::TempDir(), absl::Seconds(5));
  EXPECT_EQ(ForwardTo(&slow).status().code(), absl::StatusCode::kDeadlineExceeded);

  BrokenForwardService broken;
  absl::StatusOr<ForwardResult> unknown = ForwardTo(&broken);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnknown) << unknown.status();
  EXPECT_NE(unknown.status().message().find("outcome unknown"), std::string::npos)
      << unknown.status();
}

}  // namespace
}  // namespace raftkv::server
